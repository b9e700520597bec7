"""A user's code written in the official SDK 0.38's call style, run as it is by either SDK.

Usage: ``call_style_038.py tinker`` (with the official 0.38 interpreter) or ``call_style_038.py tinker_actors``
(with ours): only the imported module changes. ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` point at a local
service whose first ``create_model`` is slow (the test sets that up), so the first training client is still
being created when a done callback runs on the SDK's own event loop.

Each step's outcome is recorded, a failing step does not stop the others, and the last stdout line is one JSON
summary: ``{"steps": {name: "ok" | traceback}, "values": {...}, "warnings": {name: [{category, future_warning,
message, file}]}}``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pickle
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

tinker: Any = importlib.import_module(sys.argv[1])
types: Any = tinker.types
TEXT = list(b"the quick brown fox jumps over the lazy dog. ")
PROMPT = types.ModelInput.from_ints(TEXT[:8])
PARAMS = types.SamplingParams(max_tokens=4, temperature=0.0)
TIMEOUT_S = 60.0
HERE = Path(__file__).resolve()


def datum(tokens: list[int]) -> Any:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": tokens[1:]})


class Journey:
    def __init__(self) -> None:
        self.steps: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.warnings: dict[str, list[dict[str, Any]]] = {}

    def step(self, name: str, body: Callable[[], Any]) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.values[name] = body()
                self.steps[name] = "ok"
            except Exception:
                self.steps[name] = traceback.format_exc(limit=8)
        self.warnings[name] = [{"category": w.category.__name__,
                                "future_warning": issubclass(w.category, FutureWarning),
                                "message": str(w.message), "file": Path(w.filename).name} for w in caught]


def blocking_on_the_loop(service: Any) -> dict[str, Any]:
    """A done callback, run on the SDK's own event loop, waits for a client still being created."""
    pending = service.create_lora_training_client(base_model="tiny-byte", rank=2)  # its create_model is slow
    outcome: dict[str, Any] = {}
    called = threading.Event()

    def callback(_: Any) -> None:
        started = time.monotonic()
        try:
            pending.result()
            outcome["raised"] = None
        except RuntimeError as error:
            outcome["raised"] = "RuntimeError"
            outcome["says_await"] = "await" in str(error).lower()
        except Exception as error:  # anything else is a failure of the check
            outcome["raised"] = f"not a RuntimeError: {error!r}"
        outcome["seconds_in_callback"] = time.monotonic() - started
        called.set()

    service.create_sampling_client(base_model="tiny-byte").future().add_done_callback(callback)
    outcome["callback_ran"] = called.wait(TIMEOUT_S)
    outcome["in_callback_under_a_second"] = outcome.pop("seconds_in_callback", 99.0) < 1.0
    # The loop was not stopped by the refused call: the slow creation still completes.
    outcome["then_created"] = type(pending.result(timeout=TIMEOUT_S)).__name__
    return outcome


def sync_style(service: Any) -> dict[str, Any]:
    """Creation calls return futures: ``.result()`` gives the client."""
    future = service.create_lora_training_client(base_model="tiny-byte", rank=4, seed=1)
    training = future.result(timeout=TIMEOUT_S)
    loss = training.forward_backward([datum(TEXT)], "cross_entropy").result(timeout=TIMEOUT_S).metrics["loss:sum"]
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result(timeout=TIMEOUT_S)
    sampler = training.save_weights_and_get_sampling_client().result(timeout=TIMEOUT_S)
    tokens = len(sampler.sample(PROMPT, 1, PARAMS).result(timeout=TIMEOUT_S).sequences[0].tokens)
    state = training.save_state("call-style").result(timeout=TIMEOUT_S).path
    restored = service.create_training_client_from_state(state).result(timeout=TIMEOUT_S)
    resumed = service.create_training_client_from_state_with_optimizer(state).result(timeout=TIMEOUT_S)
    base = service.create_sampling_client(base_model="tiny-byte").result(timeout=TIMEOUT_S)
    return {"future_is_an_api_future": isinstance(future, tinker.APIFuture),
            "clients": [type(c).__name__ for c in (training, sampler, restored, resumed, base)],
            "loss_positive": loss > 0, "sampled_tokens": tokens}


def async_style(service: Any) -> dict[str, Any]:
    """``await`` a creation call and any call's future directly (one await)."""

    async def main() -> dict[str, Any]:
        training = await service.create_lora_training_client(base_model="tiny-byte", rank=4, seed=2)
        output = await training.forward_backward([datum(TEXT)], "cross_entropy")
        await training.optim_step(types.AdamParams(learning_rate=1e-3))
        sampler = await training.save_weights_and_get_sampling_client()
        response = await sampler.sample(PROMPT, 1, PARAMS)
        logprobs = await sampler.compute_logprobs(PROMPT)
        base = await service.create_sampling_client(base_model="tiny-byte")
        gathered = await asyncio.gather(*(base.sample(PROMPT, 1, PARAMS).coroutine() for _ in range(3)))
        return {"clients": [type(c).__name__ for c in (training, sampler, base)],
                "loss_positive": output.metrics["loss:sum"] > 0, "sampled_tokens": len(response.sequences[0].tokens),
                "logprobs": len(logprobs), "gathered": len(gathered)}

    return asyncio.run(main())


def async_one_level_deprecated(service: Any) -> dict[str, Any]:
    """The creation calls' ``_async`` forms: deprecated in 0.38, one ``await`` gives the client."""

    async def main() -> list[str]:
        training = await service.create_lora_training_client_async(base_model="tiny-byte", rank=2)
        sampler = await training.save_weights_and_get_sampling_client_async()
        base = await service.create_sampling_client_async(base_model="tiny-byte")
        return [type(c).__name__ for c in (training, sampler, base)]

    return {"clients": asyncio.run(main())}


def async_two_levels_of_063(service: Any) -> dict[str, Any]:
    """0.6.3's ``await (await client.x_async(...))`` of the training calls, and ``await sample_async(...)``."""

    async def main() -> dict[str, Any]:
        training = await service.create_lora_training_client(base_model="tiny-byte", rank=2)
        forward_future = await training.forward_backward_async([datum(TEXT)], "cross_entropy")
        optim_future = await training.optim_step_async(types.AdamParams(learning_rate=1e-3))
        output = await forward_future
        await optim_future.result_async()
        sampler = await training.save_weights_and_get_sampling_client()
        response = await sampler.sample_async(PROMPT, 1, PARAMS)
        return {"loss_positive": output.metrics["loss:sum"] > 0, "sampled_tokens": len(response.sequences[0].tokens)}

    return asyncio.run(main())


def direct_use_deprecated(service: Any) -> dict[str, Any]:
    """0.6.3 code: the creation call's return value used as the client itself."""
    training = service.create_lora_training_client(base_model="tiny-byte", rank=2)
    first = training.forward_backward([datum(TEXT)], "cross_entropy").result(timeout=TIMEOUT_S)
    training.forward_backward([datum(TEXT)], "cross_entropy").result(timeout=TIMEOUT_S)
    model_id = training.model_id
    sampler = training.save_weights_and_get_sampling_client()
    tokens = len(sampler.sample(PROMPT, 1, PARAMS).result(timeout=TIMEOUT_S).sequences[0].tokens)
    clone = pickle.loads(pickle.dumps(sampler))
    return {"is_a_training_client": isinstance(training, tinker.TrainingClient),
            "is_a_sampling_client": isinstance(sampler, tinker.SamplingClient),
            "loss_positive": first.metrics["loss:sum"] > 0, "has_model_id": bool(model_id),
            "sampled_tokens": tokens, "unpickled": type(clone).__name__}


def main() -> None:
    journey = Journey()
    service = tinker.ServiceClient()
    for name, body in (("blocking_on_the_loop", blocking_on_the_loop), ("sync_style", sync_style),
                       ("async_style", async_style), ("async_one_level_deprecated", async_one_level_deprecated),
                       ("async_two_levels_of_063", async_two_levels_of_063),
                       ("direct_use_deprecated", direct_use_deprecated)):
        journey.step(name, lambda body=body: body(service))
    print(json.dumps({"steps": journey.steps, "values": journey.values, "warnings": journey.warnings}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
