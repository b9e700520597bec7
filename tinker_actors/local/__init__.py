"""The embedded Tinker-compatible service (see ``docs/local-service.md``).

``LocalService`` runs it in-process; ``tinker-actors local serve`` runs it from the command line.
``FaultRule`` / ``FaultAction`` describe injected faults (``svc.faults.add(FaultRule(...))``).
"""

from tinker_actors.local.config import LocalServiceConfig
from tinker_actors.local.faults import FaultAction, FaultRegistry, FaultRule
from tinker_actors.local.service import DEFAULT_API_KEY, LocalService

__all__ = ["DEFAULT_API_KEY", "FaultAction", "FaultRegistry", "FaultRule", "LocalService", "LocalServiceConfig"]
