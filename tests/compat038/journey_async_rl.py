"""Async RL on 0.38 (FEATURES S6) as a user writes it, run by either SDK: inflight samplers, cancelled samples,
many samples in flight (batched polls when the service turns ``sample_use_retrieve_futures`` on).

Usage: ``journey_async_rl.py [tinker|tinker_actors]``; the only difference is the import. Pointed at a local
service by ``TINKER_BASE_URL`` / ``TINKER_API_KEY``. Steps: an inflight sampler of a training model samples
(seeded); one training step later, with no save, the same sampler samples again, and a snapshot sampler of a
checkpoint saved at that step samples the same prompt; a long sample is cancelled by its caller; many samples
are sent at once and all awaited. The last stdout line is ``{"steps": {name: "ok" | error}, "values": {...}}``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

if sys.argv[1:2] == ["tinker_actors"]:
    import tinker_actors as tinker
    from tinker_actors import types
else:
    import tinker
    from tinker import types

try:
    from journey_kit import Journey, done  # run as a script: its folder is first on sys.path
except ImportError:  # imported by a test, for its constants
    from tests.compat038.journey_kit import Journey, done

TIMEOUT_S = 60.0
PROMPT = list(b"the cat ")
TEXT = list(b"the cat sat on the mat. the cat sat on the mat.")
MANY = 32


def _done(value: Any) -> Any:
    return done(value, TIMEOUT_S)


def _sample(sampler: Any, max_tokens: int = 12) -> dict[str, Any]:
    params = types.SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=5)
    response = sampler.sample(types.ModelInput.from_ints(PROMPT), 1, params).result(timeout=TIMEOUT_S)
    sequence = response.sequences[0]
    return {"tokens": list(sequence.tokens), "logprobs": [round(float(x), 5) for x in sequence.logprobs or []]}


def _train_step(training: Any) -> None:
    datum = types.Datum(model_input=types.ModelInput.from_ints(TEXT[:-1]),
                        loss_fn_inputs={"target_tokens": TEXT[1:], "weights": [1.0] * (len(TEXT) - 1)})
    training.forward_backward([datum], "cross_entropy").result(timeout=TIMEOUT_S)
    training.optim_step(types.AdamParams(learning_rate=0.05)).result(timeout=TIMEOUT_S)


def main() -> None:
    journey = Journey()
    # closed as the official SDK's docs close it: the session finishes and its pollers stop before the
    # interpreter does
    with tinker.ServiceClient() as service:
        training = _done(service.create_lora_training_client(base_model="tiny-byte", rank=8, seed=3))
        inflight = journey.step("inflight_sampler", lambda: _done(
            training.save_weights_and_get_sampling_client(kind="inflight")))
        if inflight is not None:
            journey.values["inflight_before"] = journey.step("sample_before_step", lambda: _sample(inflight))
            journey.step("train_step", lambda: _train_step(training))
            journey.values["inflight_after"] = journey.step("sample_after_step", lambda: _sample(inflight))

            def snapshot_after_step() -> dict[str, Any]:
                path = training.save_weights_for_sampler(name="after-step").result(timeout=TIMEOUT_S).path
                return _sample(_done(service.create_sampling_client(model_path=path)))

            journey.values["snapshot_after"] = journey.step("snapshot_sample", snapshot_after_step)

            def cancel_long_sample() -> dict[str, Any]:
                params = types.SamplingParams(max_tokens=400, temperature=1.0, seed=9, stop=[])
                future = inflight.sample(types.ModelInput.from_ints(PROMPT), 4, params)
                time.sleep(0.3)
                cancelled = future.future().cancel() if hasattr(future, "future") else future.cancel()
                time.sleep(1.0)  # the cancel request goes out in the background
                return {"cancelled": bool(cancelled)}

            journey.values["cancel"] = journey.step("cancel_long_sample", cancel_long_sample)

            def many_at_once() -> int:
                params = types.SamplingParams(max_tokens=4, temperature=1.0)
                futures = [inflight.sample(types.ModelInput.from_ints(PROMPT), 1, params) for _ in range(MANY)]
                return sum(len(f.result(timeout=TIMEOUT_S).sequences) for f in futures)

            journey.values["many"] = journey.step("many_samples", many_at_once)
    journey.report()


if __name__ == "__main__":
    main()
