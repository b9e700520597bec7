"""The embedded Tinker-compatible service (see ``docs/local-service.md``).

``LocalService`` runs it in-process; ``tinker-actors local serve`` runs it from the command line.
``FaultRule`` / ``FaultAction`` describe injected faults (``svc.faults.add(FaultRule(...))``).

Layout, by layer: ``server/`` (HTTP server, fault rules), ``api/`` (dispatch, routes, one module per
endpoint group), ``engine/`` (state, sessions, futures, ordering, storage, limits, backends),
``model/`` (the tiny numpy LM); ``config.py`` and ``service.py`` tie them together.
"""

from tinker_actors.local.config import LocalServiceConfig
from tinker_actors.local.engine.work_limits import WorkLimits
from tinker_actors.local.server.faults import FaultAction, FaultRegistry, FaultRule
from tinker_actors.local.service import DEFAULT_API_KEY, LocalService

__all__ = [
    "DEFAULT_API_KEY",
    "FaultAction",
    "FaultRegistry",
    "FaultRule",
    "LocalService",
    "LocalServiceConfig",
    "WorkLimits",
]
