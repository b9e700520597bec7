"""Fault injection rules: which requests misbehave, how, and how often.

A :class:`FaultRule` names the endpoints it matches (an endpoint name such as ``asample``, a path
glob such as ``/api/v1/*``, or ``*``), when it fires (a probability, every n-th matching request,
at most ``times`` times; deterministic under ``seed``) and what it does (:class:`FaultAction`).
The :class:`FaultRegistry` is shared by the three control surfaces (Python, the admin endpoints and
the CLI) and is thread-safe: tests add rules from their own thread while the service runs.

Models can also be lost on purpose, at once (:meth:`FaultRegistry.drop_model`, :meth:`~FaultRegistry.corrupt_model`)
or by a rule (``drop_model`` / ``corrupt_model`` actions: the model the matching request names is lost just
before that request is handled); what that means for clients is in ``tinker_actors.local.engine.model_faults``.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MODEL_ACTIONS", "FaultAction", "FaultMatch", "FaultRegistry", "FaultRule", "ModelControl"]


class FaultAction(StrEnum):
    """What a firing rule does to the request."""

    STATUS = "status"                  # answer ``status`` with ``body``/``headers`` (defaults per status)
    DELAY = "delay"                    # wait ``delay_s``, then serve normally
    DROP = "drop"                      # close the connection without answering; the request is not run
    DROP_AFTER = "drop_after"          # run the request, then close without answering (answer lost)
    NEVER_COMPLETE = "never_complete"  # the submission succeeds, its future stays pending forever;
                                       # on other endpoints the request is held unanswered
    MALFORMED_JSON = "malformed_json"  # answer 200 with a body that is not valid JSON
    RESTART = "restart"                # restart the whole service (in-memory state lost, data dir kept)
    DROP_MODEL = "drop_model"          # the model the request names is forgotten, then the request is served
    CORRUPT_MODEL = "corrupt_model"    # the model the request names breaks, then the request is served


MODEL_ACTIONS = frozenset({FaultAction.DROP_MODEL, FaultAction.CORRUPT_MODEL})


class ModelControl(Protocol):
    """What the running service offers to lose models at once (``tinker_actors.local.engine.model_faults``)."""

    def drop_model(self, model_id: str) -> bool: ...

    def corrupt_model(self, model_id: str) -> bool: ...

    def model_states(self) -> list[Any]: ...


class FaultRule(BaseModel):
    """One fault. ``delay_s`` applies before any action (a slow error, a slow drop, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = Field(description="endpoint name (asample), path glob (/api/v1/*) or *")
    action: FaultAction = FaultAction.STATUS
    status: int = Field(default=500, ge=100, le=599)
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    retry_after: float | None = Field(default=None, ge=0, description="adds a Retry-After header")
    queue_state: str = "active"
    delay_s: float = Field(default=0.0, ge=0)
    probability: float = Field(default=1.0, ge=0, le=1)
    every_nth: int | None = Field(default=None, ge=1)
    times: int | None = Field(default=None, ge=1)
    method: str | None = None
    request_type: str | None = Field(
        default=None, description="for retrieve_future: only polls of this future type (e.g. Sample)")
    seed: int | None = None

    @field_validator("method")
    @classmethod
    def _upper_method(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _action_needs_delay(self) -> FaultRule:
        if self.action is FaultAction.DELAY and self.delay_s <= 0:
            raise ValueError("a delay fault needs delay_s > 0")
        return self

    def matches(self, endpoint: str, path: str, method: str, request_type: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.request_type is not None and self.request_type != request_type:
            return False
        pattern = self.endpoint
        if pattern == "*":
            return True
        if pattern.startswith("/"):
            return fnmatch.fnmatchcase(path, pattern)
        return fnmatch.fnmatchcase(endpoint, pattern)


@dataclass(frozen=True)
class FaultMatch:
    """A rule that fired for one request."""

    rule_id: int
    rule: FaultRule


class _Armed:
    def __init__(self, rule_id: int, rule: FaultRule, default_seed: int) -> None:
        self.rule_id = rule_id
        self.rule = rule
        self.random = random.Random(rule.seed if rule.seed is not None else default_seed + rule_id)
        self.matched = 0
        self.fired = 0

    def decide(self) -> bool:
        rule = self.rule
        self.matched += 1
        if rule.times is not None and self.fired >= rule.times:
            return False
        if rule.every_nth is not None and self.matched % rule.every_nth != 0:
            return False
        if rule.probability < 1.0 and self.random.random() >= rule.probability:
            return False
        self.fired += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {"id": self.rule_id, "rule": self.rule.model_dump(mode="json", exclude_defaults=True),
                "matched": self.matched, "fired": self.fired}


class FaultRegistry:
    """The active rules, checked in the order they were added; the first that fires wins."""

    def __init__(self, seed: int = 0, models: ModelControl | None = None) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rules: list[_Armed] = []
        self._ids = itertools.count(1)
        self._models = models
        self._seconds_per_token = 0.0

    # ---- a slow sampler --------------------------------------------------------------------------
    def slow_sampling(self, seconds_per_token: float) -> None:
        """Every sampling step from now on takes at least ``seconds_per_token`` longer (0 turns it off): a
        loaded sampler, so a test can act while a sample is surely still running (cancel it, kill a client)."""
        if not 0 <= seconds_per_token <= 10:
            raise ValueError(f"seconds_per_token must be within [0, 10], got {seconds_per_token}")
        self._seconds_per_token = float(seconds_per_token)

    @property
    def seconds_per_token(self) -> float:
        return self._seconds_per_token

    # ---- models lost at once (they need the running service) -------------------------------------
    def drop_model(self, model_id: str) -> bool:
        """The service forgets the model now: requests naming it answer 404, requests queued for it fail
        (``server``), its run reports ``corrupted: true``. False if the service has no such ready model."""
        return self._model_control().drop_model(model_id)

    def corrupt_model(self, model_id: str) -> bool:
        """The model breaks now: its requests are accepted and fail (``server``), its run reports
        ``corrupted: true``. False if the service has no such ready model."""
        return self._model_control().corrupt_model(model_id)

    def model_states(self) -> list[Any]:
        """The models in the service's memory (``ModelState``: status, optimizer step, ...)."""
        return self._model_control().model_states()

    def _model_control(self) -> ModelControl:
        if self._models is None:
            raise RuntimeError("this fault registry is not attached to a local service")
        return self._models

    def add(self, rule: FaultRule) -> int:
        """Arm ``rule``; returns its id (for :meth:`remove`)."""
        with self._lock:
            rule_id = next(self._ids)
            self._rules.append(_Armed(rule_id, rule, self._seed))
            return rule_id

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.rule_id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def list_rules(self) -> list[dict[str, Any]]:
        """Each rule with its id and how often it matched and fired."""
        with self._lock:
            return [armed.describe() for armed in self._rules]

    def fired(self, rule_id: int) -> int:
        with self._lock:
            for armed in self._rules:
                if armed.rule_id == rule_id:
                    return armed.fired
        return 0

    def check(self, endpoint: str, path: str, method: str, request_type: str | None) -> FaultMatch | None:
        with self._lock:
            for armed in self._rules:
                if armed.rule.matches(endpoint, path, method, request_type) and armed.decide():
                    return FaultMatch(armed.rule_id, armed.rule)
        return None
