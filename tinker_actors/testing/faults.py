"""FaultHelper: short names for the common fault rules of a running :class:`LocalService`."""

from __future__ import annotations

from typing import Any

from tinker_actors.local import FaultAction, FaultRule, LocalService

__all__ = ["FaultHelper"]


class FaultHelper:
    """Adds fault rules to ``service``; each method returns the rule id (see :meth:`fired`)."""

    def __init__(self, service: LocalService) -> None:
        self._service = service

    def add(self, endpoint: str, action: FaultAction | str = FaultAction.STATUS, **options: Any) -> int:
        """Any rule: ``options`` are :class:`FaultRule` fields (status, times, probability, ...)."""
        return self._service.faults.add(FaultRule(endpoint=endpoint, action=FaultAction(action), **options))

    def fail(self, endpoint: str, status: int = 500, *, times: int | None = 1, **options: Any) -> int:
        """Answer ``status`` (with a default JSON body for that status)."""
        return self.add(endpoint, FaultAction.STATUS, status=status, times=times, **options)

    def rate_limit(self, endpoint: str, *, retry_after: float | None = 1.0, times: int | None = 1,
                   **options: Any) -> int:
        """Answer 429 with ``Retry-After``."""
        return self.add(endpoint, FaultAction.STATUS, status=429, retry_after=retry_after, times=times, **options)

    def pending(self, queue_state: str = "active", *, times: int | None = 1, **options: Any) -> int:
        """Polls answer 408 try_again with ``queue_state`` (e.g. ``paused_capacity``)."""
        return self.add("retrieve_future", FaultAction.STATUS, status=408, queue_state=queue_state,
                        times=times, **options)

    def expire_futures(self, *, times: int | None = 1, **options: Any) -> int:
        """Polls answer 410 (the promise expired)."""
        return self.add("retrieve_future", FaultAction.STATUS, status=410, times=times, **options)

    def delay(self, endpoint: str, seconds: float, *, times: int | None = None, **options: Any) -> int:
        return self.add(endpoint, FaultAction.DELAY, delay_s=seconds, times=times, **options)

    def drop(self, endpoint: str, *, after_processing: bool = False, times: int | None = 1,
             **options: Any) -> int:
        """Close the connection without an answer (after running the request, if asked)."""
        action = FaultAction.DROP_AFTER if after_processing else FaultAction.DROP
        return self.add(endpoint, action, times=times, **options)

    def never_complete(self, endpoint: str, *, times: int | None = 1, **options: Any) -> int:
        """The submission succeeds; its future stays pending forever."""
        return self.add(endpoint, FaultAction.NEVER_COMPLETE, times=times, **options)

    def malformed_json(self, endpoint: str, *, times: int | None = 1, **options: Any) -> int:
        return self.add(endpoint, FaultAction.MALFORMED_JSON, times=times, **options)

    def restart_on(self, endpoint: str, *, times: int | None = 1, **options: Any) -> int:
        """Restart the service when ``endpoint`` is called (in-memory state is lost)."""
        return self.add(endpoint, FaultAction.RESTART, times=times, **options)

    # ---- losing models (tinker_actors.local.engine.model_faults; docs/guides/recovery.md) ----------------

    def drop_model(self, model_id: str) -> bool:
        """The service forgets the model now (404 for requests naming it, queued ones fail, its run reports
        ``corrupted``). False if the service has no such ready model."""
        return self._service.faults.drop_model(model_id)

    def corrupt_model(self, model_id: str) -> bool:
        """The model breaks now: its requests are accepted and fail with a server error."""
        return self._service.faults.corrupt_model(model_id)

    def drop_model_on(self, endpoint: str, *, times: int | None = 1, **options: Any) -> int:
        """When a request to ``endpoint`` (a JSON one: ``optim_step``, ``save_weights``, ...) matches, drop the
        model it names, then serve it (``every_nth=8``: at the 8th such request)."""
        return self.add(endpoint, FaultAction.DROP_MODEL, times=times, **options)

    def corrupt_model_on(self, endpoint: str, *, times: int | None = 1, **options: Any) -> int:
        """As :meth:`drop_model_on`, but the model breaks instead."""
        return self.add(endpoint, FaultAction.CORRUPT_MODEL, times=times, **options)

    def restart_service(self) -> None:
        """Restart the service now: every loaded model is lost; runs, checkpoints and sessions are kept."""
        self._service.restart()

    def fired(self, rule_id: int) -> int:
        """How many times the rule fired."""
        return self._service.faults.fired(rule_id)

    def clear(self) -> None:
        self._service.faults.clear()
