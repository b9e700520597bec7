"""Testing helpers for code built on tinker-actors (or on any Tinker SDK).

Fault injection against the embedded local service, as pytest fixtures::

    # conftest.py
    pytest_plugins = ["tinker_actors.testing.plugin"]

    # test_mine.py
    def test_survives_rate_limits(local_service, faults):
        faults.rate_limit("asample", retry_after=1, times=2)
        ...  # point your client at local_service.base_url / local_service.api_key

:class:`FaultHelper` can also be used without pytest.
"""

from tinker_actors.local import FaultAction, FaultRule, LocalService
from tinker_actors.testing.faults import FaultHelper

__all__ = ["FaultAction", "FaultHelper", "FaultRule", "LocalService"]
