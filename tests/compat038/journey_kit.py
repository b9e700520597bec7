"""What every journey script shares: the record of its steps and how it waits for a factory call's client.

A journey script runs under either SDK (``journey_<area>.py tinker|tinker_actors``); it is started as a script,
so its own folder is first on ``sys.path`` and ``import journey_kit`` finds this module in both interpreters.
Nothing here imports an SDK: the script's import line is the only difference between the two runs.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def done(value: Any, timeout: float) -> Any:
    """A factory call's client: 0.38 returns a future of it (``.result()``), older call styles the client."""
    return value.result(timeout=timeout) if hasattr(value, "result") else value


class Journey:
    """Each step's outcome (``"ok"`` or its traceback) and the values the test compares."""

    def __init__(self, *, keep_results: bool = False) -> None:
        self.steps: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._keep_results = keep_results  # a step's result (when not None) is also a value, by its name

    def step(self, name: str, body: Callable[[], T]) -> T | None:
        try:
            result = body()
        except Exception:
            self.steps[name] = traceback.format_exc(limit=8)
            return None
        self.steps[name] = "ok"
        if self._keep_results and result is not None:
            self.values[name] = result
        return result

    def refusal(self, name: str, body: Callable[[], Any]) -> None:
        """``body`` must fail (before or after the request): the error is the value."""
        try:
            body()
        except Exception as error:
            self.values[name] = {"refused": type(error).__name__, "message": str(error)}
            self.steps[name] = "ok"
        else:
            self.steps[name] = "not refused"

    def report(self) -> None:
        """The summary the test reads: the last line of stdout. Under the official SDK the process then ends at
        once: the official 0.38 process sometimes aborts (SIGABRT, no Python frame) while the interpreter
        finalizes, after the work is done and reported, with its HTTP runtime's threads (pyqwest, tokio) still
        running (seen in the async-RL and training journeys). Nothing is left to check then; a tinker-actors
        run exits normally, as a user's would, and its exit code is checked."""
        print(json.dumps({"steps": self.steps, "values": self.values}, default=str))
        if "tinker" in sys.modules and "tinker_actors" not in sys.modules:
            sys.stdout.flush()
            os._exit(0)
