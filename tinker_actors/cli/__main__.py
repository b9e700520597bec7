"""``python -m tinker_actors.cli``: the same as the ``tinker-actors`` script."""

import sys

from tinker_actors.cli import main

sys.exit(main())
