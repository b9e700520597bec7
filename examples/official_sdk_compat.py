"""The same user code on the official SDK and on tinker-actors: only the import changes.

    .venv/bin/python examples/official_sdk_compat.py                   # import tinker  (official SDK)
    .venv/bin/python examples/official_sdk_compat.py --tinker-actors   # import tinker_actors as tinker
    TINKER_SDK=tinker_actors .venv/bin/python examples/official_sdk_compat.py

Everything below ``main`` is written exactly as code for the official ``tinker`` SDK is written
(ServiceClient, futures with ``.result()``, the two-level ``await`` of the ``*_async`` methods,
``tinker.types``). It runs against the embedded local service unless TINKER_BASE_URL and
TINKER_API_KEY are set. The last line, ``SUMMARY {...}``, is a JSON digest of the *shapes* of what came
back, so that the two runs can be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

TEXT = list(b"the keeper climbed the stairs of the lighthouse every night. ")


@contextlib.contextmanager
def endpoint() -> Iterator[tuple[str, str]]:
    if os.environ.get("TINKER_BASE_URL") and os.environ.get("TINKER_API_KEY"):
        yield os.environ["TINKER_BASE_URL"], os.environ["TINKER_API_KEY"]
        return
    # The official SDK lets TINKER_API_KEY win over api_key=; a real key must not go to a local server.
    os.environ.pop("TINKER_API_KEY", None)
    from tinker_actors.local import LocalService

    with LocalService() as local:
        yield local.base_url, local.api_key


def datum(tinker: Any, tokens: list[int], **inputs: list[float]) -> Any:
    return tinker.types.Datum(model_input=tinker.types.ModelInput.from_ints(tokens[:-1]),
                              loss_fn_inputs={"target_tokens": tokens[1:], **inputs})


async def async_part(tinker: Any, training: Any, sampler: Any) -> dict[str, Any]:
    """The official two-level shape: ``await x_async()`` gives a future, awaiting that gives the value."""
    fwd_bwd_future = await training.forward_backward_async([datum(tinker, TEXT)], "cross_entropy")
    optim_future = await training.optim_step_async(tinker.types.AdamParams(learning_rate=1e-3))
    fwd_bwd = await fwd_bwd_future.result_async()
    await optim_future.result_async()
    prompt = tinker.types.ModelInput.from_ints(TEXT[:8])
    samples = await asyncio.gather(*(sampler.sample_async(prompt=prompt, num_samples=1,
                                                          sampling_params=tinker.types.SamplingParams(max_tokens=4))
                                     for _ in range(3)))
    logprobs = await sampler.compute_logprobs_async(prompt)
    return {"async_metrics": sorted(fwd_bwd.metrics), "async_samples": [len(s.sequences[0].tokens) for s in samples],
            "async_logprobs": len(logprobs)}


def run(tinker: Any, base_url: str, api_key: str) -> dict[str, Any]:
    types = tinker.types
    service_client = tinker.ServiceClient(base_url=base_url, api_key=api_key)
    models = [m.model_name for m in service_client.get_server_capabilities().supported_models]
    training_client = service_client.create_lora_training_client(base_model="tiny-byte", rank=8)

    losses = []
    for _ in range(5):
        fwd_bwd_future = training_client.forward_backward([datum(tinker, TEXT), datum(tinker, TEXT[:20])],
                                                          "cross_entropy")
        optim_future = training_client.optim_step(types.AdamParams(learning_rate=5e-3))
        fwd_bwd = fwd_bwd_future.result()
        optim_future.result()
        losses.append(fwd_bwd.metrics["loss:sum"])
    n = len(TEXT) - 1
    rl = training_client.forward_backward([datum(tinker, TEXT, logprobs=[-2.0] * n, advantages=[0.5] * n)], "ppo",
                                          {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}).result()
    forward = training_client.forward([datum(tinker, TEXT)], "cross_entropy").result()

    state_path = training_client.save_state("compat-state").result().path
    sampler_path = training_client.save_weights_for_sampler("compat-sampler").result().path
    sampling_client = service_client.create_sampling_client(model_path=sampler_path)
    prompt = types.ModelInput.from_ints(TEXT[:8])
    sampled = sampling_client.sample(prompt=prompt, num_samples=2,
                                     sampling_params=types.SamplingParams(max_tokens=6, temperature=0.0)).result()
    logprobs = sampling_client.compute_logprobs(prompt).result()
    ephemeral = training_client.save_weights_and_get_sampling_client()
    from_ephemeral = ephemeral.sample(prompt=prompt, num_samples=1,
                                      sampling_params=types.SamplingParams(max_tokens=6, temperature=0.0)).result()

    resumed = service_client.create_training_client_from_state_with_optimizer(state_path)
    resumed_info = resumed.get_info()
    rest_client = service_client.create_rest_client()
    checkpoints = rest_client.list_checkpoints(training_client.model_id).result().checkpoints
    async_results = asyncio.run(async_part(tinker, training_client, sampling_client))

    return {
        "models": sorted(str(m) for m in models),
        "loss_fell": losses[-1] < losses[0],
        "fwd_bwd_outputs": len(fwd_bwd.loss_fn_outputs),
        "logprobs_shape": [len(out["logprobs"].tolist()) for out in fwd_bwd.loss_fn_outputs],
        "metric_keys": sorted(fwd_bwd.metrics),
        "ppo_metric_keys": sorted(rl.metrics),
        "forward_output_keys": sorted(forward.loss_fn_outputs[0]),
        "state_path_kind": state_path.split("/")[-2],
        "sampler_path_kind": sampler_path.split("/")[-2],
        "samples": [(len(s.tokens), s.stop_reason) for s in sampled.sequences],
        "sample_logprobs": [len(s.logprobs or []) for s in sampled.sequences],
        "compute_logprobs": [len(logprobs), logprobs[0]],
        "ephemeral_equals_named": from_ephemeral.sequences[0].tokens == sampled.sequences[0].tokens,
        "resumed_rank": resumed_info.lora_rank,
        "checkpoint_types": sorted(str(c.checkpoint_type) for c in checkpoints),
        **async_results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tinker-actors", action="store_true", help="run on tinker-actors instead of the official SDK")
    args = parser.parse_args()
    use_actors = args.tinker_actors or os.environ.get("TINKER_SDK") == "tinker_actors"
    tinker = importlib.import_module("tinker_actors" if use_actors else "tinker")  # the one line that changes
    with endpoint() as (base_url, api_key):
        summary = run(tinker, base_url, api_key)
    print(f"SDK: {tinker.__name__} {tinker.__version__}")
    print("SUMMARY " + json.dumps(summary, sort_keys=True))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
