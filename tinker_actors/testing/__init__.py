"""Testing helpers for code built on tinker-actors (or on any Tinker SDK).

Fault injection against the embedded local service, as pytest fixtures::

    # conftest.py (either module name works: "tinker_actors.testing" or "tinker_actors.testing.plugin")
    pytest_plugins = ["tinker_actors.testing.plugin"]

    # test_mine.py
    def test_survives_rate_limits(local_service, faults):
        faults.rate_limit("asample", retry_after=1, times=2)
        ...  # point your client at local_service.base_url / local_service.api_key

:class:`FaultHelper` can also be used without pytest.
"""

import importlib.util

from tinker_actors.local import FaultAction, FaultRule, LocalService
from tinker_actors.testing.faults import FaultHelper

__all__ = ["FaultAction", "FaultHelper", "FaultRule", "LocalService"]

# With pytest installed this package is itself a plugin module too (pytest_plugins =
# ["tinker_actors.testing"]); without pytest, FaultHelper still works.
if importlib.util.find_spec("pytest") is not None:
    from tinker_actors.testing.plugin import faults, local_service, local_service_env, pytest_configure

    __all__ += ["faults", "local_service", "local_service_env", "pytest_configure"]
