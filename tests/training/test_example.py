"""examples/custom_loss_regularizers.py runs to completion and prints the grad-norm history.

How fast it runs is not asserted here (a loaded machine would fail it): speed belongs in bench/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_loss_regularizers.py"


@pytest.mark.timeout(60)
def test_custom_loss_example_trains_and_prints_the_history() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    table = lines[lines.index("gradient norms w.r.t. the target logprobs (from the GradNormTracker actor):") + 2:]
    steps = [int(line.split()[0]) for line in table if line.strip() and line.split()[0].isdigit()]
    assert steps == list(range(1, 21))
    assert lines[-1].startswith("done in ") and lines[-1].endswith(" s")
