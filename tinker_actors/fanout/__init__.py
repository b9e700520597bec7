"""Rollouts beyond one process: sampler handles, seq-id blocks per clone, executors and Ray workers.

* :mod:`~tinker_actors.fanout.handles`: ``SamplingClient.get_sampler_handle()`` / ``from_sampler_handle()``;
* :mod:`~tinker_actors.fanout.seq_blocks`: each clone of a sampling session numbers its samples in a block
  of its own (``join_sampling_session``);
* :mod:`~tinker_actors.fanout.fork_guard`: a fork-started child refuses to run instead of hanging;
* :mod:`~tinker_actors.fanout.executors`: rollouts over any ``concurrent.futures.Executor``
  (a ``spawn`` / ``forkserver`` process pool, :class:`~tinker_actors.fanout.ray_pool.RayExecutor`);
* :mod:`~tinker_actors.fanout.ray_pool`: rollout workers as Ray actors (the optional ``ray`` extra; Ray is
  imported only when that module is used).

Guides: docs/guides/fan_out.md, docs/guides/ray.md. The names below are imported on first use, so that
``import tinker_actors`` never imports Ray or the executors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tinker_actors.fanout.errors import (
    ForkedProcessError,
    InvalidSamplerHandleError,
    MissingExtraError,
    RolloutWorkerDiedError,
)

if TYPE_CHECKING:
    from tinker_actors.fanout.executors import Rollout, rollouts, spawn_pool
    from tinker_actors.fanout.ray_pool import RayExecutor, RolloutPool

__all__ = ["ForkedProcessError", "InvalidSamplerHandleError", "MissingExtraError", "RayExecutor", "Rollout",
           "RolloutPool", "RolloutWorkerDiedError", "rollouts", "spawn_pool"]

_LAZY = {"Rollout": "executors", "rollouts": "executors", "spawn_pool": "executors",
         "RayExecutor": "ray_pool", "RolloutPool": "ray_pool"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
