"""StableReinforce's calls made with the official tinker==0.38.0 SDK, for tests/compat038/test_wire_stable_reinforce.py.

Run with ``.venv-tinker038/bin/python`` against a local service that records what it receives; the test makes the
same calls (:data:`CALLS` there) with tinker-actors and compares the requests. Each call is awaited before the
next, so the requests arrive in a fixed order. The last stdout line is a JSON summary ``{"steps": {name: "ok" |
"refused: <type>: <message>" | error}, "values": {...}}``: the local service answers ``stable_reinforce`` with a
400 (its objective is not published), which this script expects and reports as "refused".
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

import tinker
from tinker import types

TIMEOUT_S = 30.0
BASE_MODEL = "tiny-byte"
PROMPT = [116, 104, 101, 32, 99]


def rollout_datum(prompt: list[int], sequence: Any) -> types.Datum:
    """The datum of one sampled sequence, with spans naming it: the prompt runs, then the sampled runs."""
    tokens = prompt + list(sequence.tokens)
    sampled = len(sequence.tokens)
    datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "advantages": [0.5] * (len(tokens) - 1),
                                        "logprobs": [0.0] * (len(prompt) - 1) + list(sequence.logprobs)})
    sid = sequence.sequence_id
    return datum.with_provenance(
        model_input=[types.PromptProvenanceSpan(sequence_id=sid, length=len(prompt)),
                     types.SampledProvenanceSpan(sequence_id=sid, length=sampled - 1)],
        loss_fn_inputs=[types.PromptProvenanceSpan(sequence_id=sid, offset=1, length=len(prompt) - 1),
                        types.SampledProvenanceSpan(sequence_id=sid, length=sampled)])


def main() -> None:
    steps: dict[str, str] = {}
    values: dict[str, Any] = {}

    def step(name: str, body: Callable[[], Any], *, refusal_expected: bool = False) -> Any:
        if any(not outcome.startswith(("ok", "refused")) for outcome in steps.values()):
            steps[name] = "not run: an earlier step failed"
            return None
        try:
            result = body()
        except tinker.APIStatusError as error:
            steps[name] = (f"refused: {type(error).__name__}: {error.message}" if refusal_expected
                           else traceback.format_exc(limit=6))
            return None
        except Exception:
            steps[name] = traceback.format_exc(limit=6)
            return None
        steps[name] = "ok"
        return result

    service = tinker.ServiceClient()
    training = step("create_lora_training_client", lambda: service.create_lora_training_client(
        base_model=BASE_MODEL, rank=4, seed=11).result(timeout=TIMEOUT_S))
    sampler = step("save_weights_and_get_sampling_client", lambda: training.save_weights_and_get_sampling_client(
        record_stability_info=True).result(timeout=TIMEOUT_S))
    params = types.SamplingParams(max_tokens=3, temperature=0.0)
    prompt = types.ModelInput.from_ints(PROMPT)
    sample = step("sample", lambda: sampler.sample(prompt, 1, params).result(timeout=TIMEOUT_S))
    datum = rollout_datum(PROMPT, sample.sequences[0]) if sample is not None else None
    values["sequence_id"] = None if sample is None else sample.sequences[0].sequence_id
    step("forward_backward_spans_importance_sampling", lambda: training.forward_backward(
        [datum], "importance_sampling").result(timeout=TIMEOUT_S))
    saved = step("save_weights_for_sampler", lambda: training.save_weights_for_sampler(
        "stable").result(timeout=TIMEOUT_S))
    other = step("create_sampling_client", lambda: service.create_sampling_client(
        model_path=saved.path, record_stability_info=True).result(timeout=TIMEOUT_S))
    step("sample_again", lambda: other.sample(prompt, 2, params).result(timeout=TIMEOUT_S))
    step("forward_backward_stable_reinforce", lambda: training.forward_backward(
        [datum], "stable_reinforce", {"kl_coeff": 0.01}).result(timeout=TIMEOUT_S), refusal_expected=True)
    print(json.dumps({"steps": steps, "values": values}, default=str))


if __name__ == "__main__":
    sys.exit(main())
