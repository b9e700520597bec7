"""Generic OTP-style supervision on pykka (no Tinker imports).

Quick tour::

    from supervisors import ChildSpec, Restart, Strategy, SupervisedActor, Supervisor

    class Counter(SupervisedActor):
        def on_init(self) -> None:
            self.count = 0

        def on_receive(self, message: object) -> int:
            self.count += 1
            return self.count

    sup = Supervisor.start([ChildSpec("counter", Counter.start)], strategy=Strategy.ONE_FOR_ONE)
    counter = sup.child("counter")          # a stable name: follows restarts
    counter.ask("inc", timeout=1.0)
    print(sup.tree())
    sup.stop()

See docs/supervision.md for the concepts and the differences from OTP.
"""

from supervisors.actor import ChildLink, SupervisedActor, crash_on_error, current_actor
from supervisors.directory import ChildDirectory, ChildInfo, ChildState, SupervisorStatus, render_tree
from supervisors.errors import (
    AskTimeout,
    ChildAlreadyExists,
    ChildNotFound,
    ChildNotRunning,
    ChildSpecError,
    ChildStartError,
    FatalHandlerError,
    NameLookupTimeout,
    SupervisionError,
    SupervisorGaveUp,
    SupervisorNotRunning,
)
from supervisors.exits import ChildExited, ExitKind, ExitReason
from supervisors.names import NamedRef
from supervisors.spec import ChildSpec, Restart, Strategy
from supervisors.supervisor import (
    RestartIntensity,
    StartChild,
    Supervisor,
    SupervisorActor,
    SupervisorConfig,
    Sync,
    TerminateChild,
)
from supervisors.timers import Timer, TimerService, default_timer_service, send_after, send_interval

__all__ = [
    "AskTimeout",
    "ChildAlreadyExists",
    "ChildDirectory",
    "ChildExited",
    "ChildInfo",
    "ChildLink",
    "ChildNotFound",
    "ChildNotRunning",
    "ChildSpec",
    "ChildSpecError",
    "ChildStartError",
    "ChildState",
    "ExitKind",
    "ExitReason",
    "FatalHandlerError",
    "NameLookupTimeout",
    "NamedRef",
    "Restart",
    "RestartIntensity",
    "StartChild",
    "Strategy",
    "SupervisedActor",
    "SupervisionError",
    "Supervisor",
    "SupervisorActor",
    "SupervisorConfig",
    "SupervisorGaveUp",
    "SupervisorNotRunning",
    "SupervisorStatus",
    "Sync",
    "TerminateChild",
    "Timer",
    "TimerService",
    "crash_on_error",
    "current_actor",
    "default_timer_service",
    "render_tree",
    "send_after",
    "send_interval",
]
