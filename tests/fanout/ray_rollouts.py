"""Rollout functions the fan-out tests run in worker processes (Ray workers, spawned pool processes)."""

from __future__ import annotations

import os
import time
from typing import Any

import tinker_actors as tinker

PARAMS = tinker.SamplingParams(max_tokens=2, temperature=1.0)


def rollout(sampler: tinker.SamplingClient, task: dict[str, Any]) -> dict[str, Any]:
    """Wait ``task["sleep"]`` seconds (room for a kill or a publish meanwhile), then sample once (a prompt the
    service refuses with ``task["bad"]``).

    Answers where it ran: the process, the sampling session, the sampler's model path."""
    time.sleep(task.get("sleep", 0.0))
    started = time.monotonic()
    prompt = [104, 105, 10**7 if task.get("bad") else task.get("n", 0) % 100]  # bad: a token the model lacks
    response = sampler.sample(tinker.ModelInput.from_ints(prompt), 1, PARAMS).result(60)
    return {"n": task.get("n"), "pid": os.getpid(), "session": sampler.sampling_session_id,
            "model_path": sampler.model_path, "sample_seconds": time.monotonic() - started,
            "tokens": response.sequences[0].tokens}
