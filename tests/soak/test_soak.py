"""Soak: a training loop and concurrent sampling under random faults and actor kills, for minutes.

Runs only when asked: ``TINKER_ACTORS_SOAK=1 .venv/bin/python -m pytest tests/soak`` (duration in seconds:
``TINKER_ACTORS_SOAK_SECONDS``, default 120). Invariants checked at the end: every future ended (result or
typed error), no optim_step was applied twice or applied without its caller being told, the supervisor
tree is healthy, and no thread was left behind by the closed client.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time

import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import FaultAction, FaultRule, LocalService

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(os.environ.get("TINKER_ACTORS_SOAK") != "1", reason="set TINKER_ACTORS_SOAK=1 to soak"),
    pytest.mark.timeout(int(os.environ.get("TINKER_ACTORS_SOAK_SECONDS", "120")) + 180),
]

TEXT = list(b"a long run through every kind of trouble, and every caller answered. " * 2)
FAULTS = [
    FaultRule(endpoint="forward_backward", status=503, times=2),
    FaultRule(endpoint="optim_step", action=FaultAction.DROP_AFTER, times=1),
    FaultRule(endpoint="retrieve_future", status=408, queue_state="paused_capacity", times=3),
    FaultRule(endpoint="retrieve_future", action=FaultAction.DELAY, delay_s=0.3, times=2),
    FaultRule(endpoint="asample", status=429, times=2),
    FaultRule(endpoint="asample", action=FaultAction.DROP, times=1),
    FaultRule(endpoint="session_heartbeat", status=500, times=3),
]


def datum(tokens: list[int]) -> tinker.Datum:
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})


def test_soak() -> None:
    seconds = float(os.environ.get("TINKER_ACTORS_SOAK_SECONDS", "120"))
    rng = random.Random(int(os.environ.get("TINKER_ACTORS_SOAK_SEED", "0")))
    config = Config(api_key="tml-k", base_url="http://127.0.0.1:1", heartbeat_interval=1.0,
                    retry=RetryPolicy(max_retries=4, base_delay=0.05, max_delay=0.5, deadline=20.0),
                    poll_backoff=PollBackoff(initial=0.02, max=0.2), no_progress_timeout=20.0)
    outcomes: dict[str, int] = {}
    with LocalService(long_poll_s=1.0) as service:
        config = config.replace(base_url=service.base_url)
        threads_before = _client_threads()
        with tinker.ServiceClient(config=config) as client:
            training = client.create_lora_training_client("tiny-byte", rank=2).result()
            sampler = client.create_sampling_client(base_model="tiny-byte",
                                                    retry_config=tinker.RetryConfig(retry_delay_base=0.05)).result()
            optims_ok = 0
            last_kill = 0.0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if rng.random() < 0.2:
                    service.faults.add(rng.choice(FAULTS))
                fwd_bwd = training.forward_backward([datum(TEXT[:32])], "cross_entropy")
                optim = training.optim_step(tinker.AdamParams(learning_rate=1e-3))
                samples = [sampler.sample(tinker.ModelInput.from_ints(TEXT[:4]), 1,
                                          tinker.SamplingParams(max_tokens=2)) for _ in range(4)]
                if rng.random() < 0.1 and time.monotonic() - last_kill > 2.0:  # within the restart intensity
                    last_kill = time.monotonic()
                    with contextlib.suppress(Exception):
                        training.actor.resolve(2.0).proxy().crash(RuntimeError("soak kill")).get(timeout=2)
                for name, future in [("forward_backward", fwd_bwd), ("optim_step", optim),
                                     *[("sample", s) for s in samples]]:
                    try:
                        future.result(60)
                        key = f"{name}:ok"
                        optims_ok += name == "optim_step"
                    except tinker.TinkerError as error:
                        key = f"{name}:{type(error).__name__}"
                    outcomes[key] = outcomes.get(key, 0) + 1
            service.faults.clear()
            executed = service.stats.snapshot()["endpoints"]["optim_step"]["executed"]
            tree = client.runtime.tree()
        print("soak outcomes:", dict(sorted(outcomes.items())))
        assert outcomes.get("optim_step:ok", 0) > 0
        # Every optim_step the server ran was reported to its caller as done, and none ran twice.
        assert executed == optims_ok, (executed, optims_ok)
        assert "gave_up" not in tree
        time.sleep(0.5)
        # The runtime's own threads (its loop, supervisors, timers, session manager, ...), not one per request.
        assert _client_threads() <= threads_before + 8, [thread.name for thread in threading.enumerate()]


def _client_threads() -> int:
    """Threads of this process but the local service's (its worker threads start when first needed)."""
    return sum(not thread.name.startswith("tinker-local") for thread in threading.enumerate())
