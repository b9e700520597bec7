"""``inflight`` samplers (0.38's ``SamplingClientKind``): sampling sessions that follow a training model's weights.

A ``save_weights_for_sampler(kind="inflight")`` makes a sampling session that samples with its training model's
latest weights: every later ``optim_step`` (or ``load_weights``) of that model publishes a sampler over the new
weights to all the model's inflight sessions, without any save. The new sampler is built inside the model's own
operation (on its worker thread, in the model's ``seq_id`` order), so it never sees weights halfway through a step,
and published on the service loop before that operation's future is answered: a sample sent after an
``optim_step`` finished uses its weights. :attr:`InflightSamplers.version` counts the publishes of a model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinker_actors.local.engine.backend import SamplerEngine, Trainer

if TYPE_CHECKING:
    from tinker_actors.local.engine.state import EndedSession, ServiceState

__all__ = ["InflightSamplers", "inflight_of"]


@dataclass
class _Published:
    engine: SamplerEngine
    version: int


class InflightSamplers:
    """Which sampling sessions follow which training model, and each model's latest sampler. Service loop only."""

    def __init__(self) -> None:
        self._followers: dict[str, set[str]] = {}  # model id -> inflight sampling session ids
        self._model_of: dict[str, str] = {}  # sampling session id -> model id
        self._published: dict[str, _Published] = {}  # model id -> latest sampler

    def follow(self, sampler_id: str, model_id: str, engine: SamplerEngine) -> None:
        """``sampler_id`` follows ``model_id`` from now on; ``engine`` samples its current weights."""
        self._followers.setdefault(model_id, set()).add(sampler_id)
        self._model_of[sampler_id] = model_id
        self._publish(model_id, engine)

    def follows(self, sampler_id: str) -> bool:
        return sampler_id in self._model_of

    def engine(self, sampler_id: str) -> SamplerEngine | None:
        model_id = self._model_of.get(sampler_id)
        published = self._published.get(model_id) if model_id is not None else None
        return published.engine if published is not None else None

    def version(self, model_id: str) -> int:
        """How many times ``model_id``'s weights were published to its inflight samplers (0: never)."""
        published = self._published.get(model_id)
        return published.version if published is not None else 0

    def after_update(self, model_id: str, trainer: Trainer) -> Callable[[], None] | None:
        """Called on the worker thread right after ``trainer``'s weights changed: what publishes them on the
        service loop (None when no inflight sampler follows the model: nothing to build)."""
        if not self._followers.get(model_id):
            return None
        engine = trainer.sampler()
        return lambda: self._publish(model_id, engine)

    def _publish(self, model_id: str, engine: SamplerEngine) -> None:
        previous = self._published.get(model_id)
        self._published[model_id] = _Published(engine, (previous.version if previous else 0) + 1)

    def forget(self, sampler_id: str) -> None:
        model_id = self._model_of.pop(sampler_id, None)
        if model_id is not None:
            followers = self._followers.get(model_id)
            if followers is not None:
                followers.discard(sampler_id)
                if not followers:  # nobody follows it: its latest weights need not be kept
                    del self._followers[model_id]
                    self._published.pop(model_id, None)

    def session_ended(self, ended: EndedSession) -> None:
        """Free what an ended session's samplers and models kept here (a published sampler holds weights)."""
        for sampler_id in ended.sampler_ids:
            self.forget(sampler_id)
        for model_id in ended.model_ids:
            if not self._followers.get(model_id):  # a follower in a live session keeps the last weights
                self._followers.pop(model_id, None)
                self._published.pop(model_id, None)

    def __len__(self) -> int:
        """Models with published weights kept here."""
        return len(self._published)


_BY_STATE: weakref.WeakKeyDictionary[ServiceState, InflightSamplers] = weakref.WeakKeyDictionary()


def inflight_of(state: ServiceState) -> InflightSamplers:
    """The one :class:`InflightSamplers` of a running service (its ``ServiceState``), made on first use."""
    samplers = _BY_STATE.get(state)
    if samplers is None:
        samplers = _BY_STATE[state] = InflightSamplers()
        state.session_end_listeners.append(samplers.session_ended)
    return samplers
