"""The sampling outputs of 0.38 (FEATURES S6) as a user writes them, run by either SDK.

Usage: ``journey_sampling.py [tinker|tinker_actors]``. With ``tinker`` (the default) it runs under the
official tinker==0.38.0 SDK's interpreter (``.venv-tinker038``); with ``tinker_actors`` under ours. The
only difference is the import below: the rest is the same code, pointed at a local service by
``TINKER_BASE_URL`` / ``TINKER_API_KEY`` (and, for ours, ``TINKER_ACTORS_PROTOCOL``).

What it does, each call awaited before the next (so the requests arrive in a fixed order), on the base model
``tiny-byte`` with fixed seeds: top-k logprobs of the sampled tokens; logprobs of chosen prompt tokens (a
dense ``[len(prompt) - 1, 2]`` tensor with -1 where nothing is asked, then the same cells as a sparse CSR
tensor); prompt logprobs of the last N tokens (``sample`` and ``compute_logprobs``); alternative prompt
tokens; the same long prompt sampled twice (prefix-cache hits); then a LoRA model trained to say
end-of-text, sampled with ``stop`` left out and with ``stop=[]``, and its new weights' cache hits.
The last stdout line is ``{"steps": {name: "ok" | error}, "values": {...}}``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

if sys.argv[1:2] == ["tinker_actors"]:
    import tinker_actors as tinker
    from tinker_actors import types
else:
    import tinker  # type: ignore[no-redef]
    from tinker import types  # type: ignore[no-redef]

try:
    from journey_kit import Journey, done  # run as a script: its folder is first on sys.path
except ImportError:  # imported by a test, for its constants
    from tests.compat038.journey_kit import Journey, done

TIMEOUT_S = 60.0
BASE = "tiny-byte"
EOS = 256  # tiny-byte's <|endoftext|>
PROMPT = list(b"the quick brown fox jumps over the lazy dog. the quick")
LONG = list(b"the river runs to the sea, and the sea is never full. ") * 4
# target_prompt_logprobs cells: (row, column, token id); row i scores prompt position i + 1
TARGETS = [(3, 0, 101), (3, 1, 32), (20, 1, 7), (len(PROMPT) - 2, 0, 256)]
LAST_N = 4
ALT_K = 3


def _done(value: Any) -> Any:
    return done(value, TIMEOUT_S)


def _target_ids() -> np.ndarray:
    ids = np.full((len(PROMPT) - 1, 2), -1, dtype=np.int64)
    for row, column, token in TARGETS:
        ids[row, column] = token
    return ids


def _sparse_targets() -> Any:
    """The same cells as a CSR tensor, built by hand (the official SDK's builder needs torch)."""
    ids = _target_ids()
    rows, cols = np.nonzero(ids != -1)
    crow = np.zeros(ids.shape[0] + 1, dtype=np.int64)
    np.add.at(crow, rows + 1, 1)
    return types.TensorData(data=ids[rows, cols].tolist(), dtype="int64", shape=list(ids.shape),
                            sparse_crow_indices=np.cumsum(crow).tolist(), sparse_col_indices=cols.tolist())


def base_model_outputs(journey: Journey, sampler: Any) -> None:
    prompt = types.ModelInput.from_ints(PROMPT)

    def topk() -> dict[str, Any]:
        result = sampler.sample(prompt, 2, types.SamplingParams(max_tokens=6, seed=5, temperature=0.8),
                                topk_sample_logprobs=4).result(timeout=TIMEOUT_S)
        return {"tokens": [s.tokens for s in result.sequences], "logprobs": [s.logprobs for s in result.sequences],
                "topk": [[[list(pair) for pair in row] for row in s.topk_logprobs] for s in result.sequences],
                "topk_np_shapes": [list(s.topk_logprobs_np.token_ids.shape) for s in result.sequences],
                "sequence_ids": [s.sequence_id for s in result.sequences],
                "stop_reasons": [s.stop_reason for s in result.sequences]}

    def targets_dense() -> dict[str, Any]:
        result = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1, seed=0), include_prompt_logprobs=True,
                                target_prompt_logprobs=types.TensorData.from_numpy(_target_ids())
                                ).result(timeout=TIMEOUT_S)
        target = result.target_prompt_logprobs
        return {"shape": target.shape, "dtype": target.dtype, "values": target.to_numpy().tolist(),
                "prompt_logprobs": result.prompt_logprobs}

    def targets_sparse() -> dict[str, Any]:
        result = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1, seed=0),
                                target_prompt_logprobs=_sparse_targets()).result(timeout=TIMEOUT_S)
        target = result.target_prompt_logprobs
        return {"shape": target.shape, "data": [float(v) for v in target.data],
                "crow": list(target.sparse_crow_indices), "col": list(target.sparse_col_indices)}

    def last_n() -> dict[str, Any]:
        result = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1, seed=0), include_prompt_logprobs=True,
                                topk_prompt_logprobs=2, prompt_logprobs_last_n=LAST_N).result(timeout=TIMEOUT_S)
        computed = sampler.compute_logprobs(prompt, prompt_logprobs_last_n=LAST_N).result(timeout=TIMEOUT_S)
        return {"prompt_logprobs": result.prompt_logprobs,
                "topk_prompt_logprobs": [None if row is None else [list(p) for p in row]
                                         for row in result.topk_prompt_logprobs],
                "compute_logprobs": computed}

    def alt_tokens() -> dict[str, Any]:
        result = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1, seed=7, temperature=0.9),
                                prompt_alt_tokens_k=ALT_K).result(timeout=TIMEOUT_S)
        alt = result.prompt_alt_tokens
        return {"shape": alt.tokens.shape, "tokens": alt.tokens.to_numpy().tolist(),
                "logprobs": alt.logprobs.to_numpy().tolist(), "dtypes": [alt.tokens.dtype, alt.logprobs.dtype]}

    def cache_hits() -> dict[str, Any]:
        long_prompt = types.ModelInput.from_ints(LONG)
        hits = [sampler.sample(long_prompt, 3, types.SamplingParams(max_tokens=2, seed=s)).result(
            timeout=TIMEOUT_S).prompt_cache_hit_tokens for s in range(2)]
        return {"hits": hits}

    journey.step("topk_sample_logprobs", topk)
    journey.step("target_prompt_logprobs_dense", targets_dense)
    journey.step("target_prompt_logprobs_sparse", targets_sparse)
    journey.step("prompt_logprobs_last_n", last_n)
    journey.step("prompt_alt_tokens", alt_tokens)
    journey.step("prompt_cache_hits", cache_hits)


def end_of_text(journey: Journey, service: Any) -> None:
    """A model trained to say end-of-text: stop left out stops there, stop=[] runs to max_tokens."""
    text = list(b"the quick brown fox jumps over the lazy dog. ")

    def train() -> Any:
        training = _done(service.create_lora_training_client(base_model=BASE, rank=4, seed=0))
        datum = types.Datum(model_input=types.ModelInput.from_ints(text),
                            loss_fn_inputs={"target_tokens": [EOS] * len(text), "weights": [1.0] * len(text)})
        for _ in range(5):
            training.forward_backward([datum], "cross_entropy").result(timeout=TIMEOUT_S)
            training.optim_step(types.AdamParams(learning_rate=0.05)).result(timeout=TIMEOUT_S)
        return _done(training.save_weights_and_get_sampling_client("ends-text"))

    sampler = journey.step("train_to_end_text", train)
    if sampler is None:
        return
    prompt = types.ModelInput.from_ints(list(b"the "))

    def stops(stop: Any) -> dict[str, Any]:
        params = types.SamplingParams(max_tokens=8, seed=1) if stop == "left out" else \
            types.SamplingParams(max_tokens=8, seed=1, stop=stop)
        result = sampler.sample(prompt, 2, params).result(timeout=TIMEOUT_S)
        return {"tokens": [s.tokens for s in result.sequences],
                "stop_reasons": [s.stop_reason for s in result.sequences]}

    journey.step("stop_left_out", lambda: stops("left out"))
    journey.step("stop_none", lambda: stops(None))
    journey.step("stop_empty_list", lambda: stops([]))
    journey.step("stop_listed", lambda: stops(["never there"]))

    def new_weights_hits() -> list[int]:
        long_prompt = types.ModelInput.from_ints(LONG)
        return [sampler.sample(long_prompt, 1, types.SamplingParams(max_tokens=1, seed=0)).result(
            timeout=TIMEOUT_S).prompt_cache_hit_tokens for _ in range(2)]

    journey.step("new_weights_cache_hits", new_weights_hits)


def main() -> None:
    journey = Journey(keep_results=True)
    service = tinker.ServiceClient()
    sampler = journey.step("create_sampler", lambda: _done(service.create_sampling_client(base_model=BASE)))
    if sampler is not None:
        journey.values.pop("create_sampler")
        base_model_outputs(journey, sampler)
    end_of_text(journey, service)
    journey.values.pop("train_to_end_text", None)
    journey.report()


if __name__ == "__main__":
    main()
