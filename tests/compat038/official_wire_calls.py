"""The wire pin's calls (wire_scenario.json) made with the official tinker==0.38.0 SDK.

Run with ``.venv-tinker038/bin/python`` against a local service that records what it receives
(tests/compat038/test_wire_capture.py makes the same calls with our SDK and compares). Each call
is awaited before the next, so the requests arrive in a fixed order. The last stdout line is a
JSON summary ``{"steps": {name: "ok" | error}, "values": {...}}``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tinker
from tinker import types

TIMEOUT_S = 30.0
SCENARIO: dict[str, Any] = json.loads(Path(__file__).with_name("wire_scenario.json").read_text())


def _datum(tokens: list[int], inputs: dict[str, Any]) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": tokens[1:], **inputs})


def main() -> None:
    steps: dict[str, str] = {}
    values: dict[str, Any] = {}

    def step(name: str, body: Callable[[], Any]) -> Any:
        if any(outcome != "ok" for outcome in steps.values()):
            steps[name] = "not run: an earlier step failed"  # the order is the point: stop at the first gap
            return None
        try:
            result = body()
        except Exception:
            steps[name] = traceback.format_exc(limit=6)
            return None
        steps[name] = "ok"
        return result

    s = SCENARIO
    service = tinker.ServiceClient()
    training = step("create_lora_training_client", lambda: service.create_lora_training_client(
        base_model=s["base_model"], rank=s["rank"], seed=s["seed"], user_metadata=s["user_metadata"]
    ).result(timeout=TIMEOUT_S))
    data = [_datum(d["tokens"], d["inputs"]) for d in s["datums"]]
    ppo = s["ppo"]
    n = len(ppo["tokens"]) - 1
    ppo_datum = _datum(ppo["tokens"], {"logprobs": [ppo["logprobs"]] * n, "advantages": [ppo["advantages"]] * n})
    step("forward_backward", lambda: training.forward_backward(data, "cross_entropy").result(timeout=TIMEOUT_S))
    step("forward", lambda: training.forward(data[:1], "cross_entropy").result(timeout=TIMEOUT_S))
    step("forward_backward_ppo", lambda: training.forward_backward(
        [ppo_datum], "ppo", ppo["config"]).result(timeout=TIMEOUT_S))
    step("optim_step", lambda: training.optim_step(
        types.AdamParams(learning_rate=s["learning_rate"])).result(timeout=TIMEOUT_S))
    state = step("save_state", lambda: training.save_state(s["state_name"]).result(timeout=TIMEOUT_S))
    state_path = state.path if state is not None else None
    step("load_state", lambda: training.load_state(state_path).result(timeout=TIMEOUT_S))
    step("load_state_with_optimizer", lambda: training.load_state_with_optimizer(state_path).result(
        timeout=TIMEOUT_S))
    saved = step("save_weights_for_sampler", lambda: training.save_weights_for_sampler(
        s["sampler_name"]).result(timeout=TIMEOUT_S))
    sampler = step("create_sampling_client", lambda: service.create_sampling_client(
        model_path=saved.path).result(timeout=TIMEOUT_S))
    prompt = types.ModelInput.from_ints(s["prompt"])
    sample = step("sample", lambda: sampler.sample(
        prompt, s["num_samples"], types.SamplingParams(max_tokens=s["max_tokens"], temperature=0.0),
        include_prompt_logprobs=True, topk_prompt_logprobs=s["topk_prompt_logprobs"]).result(timeout=TIMEOUT_S))
    values["sample_tokens"] = None if sample is None else [q.tokens for q in sample.sequences]
    step("compute_logprobs", lambda: sampler.compute_logprobs(prompt).result(timeout=TIMEOUT_S))
    rest = tinker.RestClient()
    step("list_checkpoints", lambda: rest.list_checkpoints(training.model_id).result(timeout=TIMEOUT_S))
    step("delete_checkpoint", lambda: rest.delete_checkpoint_from_tinker_path(state_path).result(
        timeout=TIMEOUT_S))
    print(json.dumps({"steps": steps, "values": values}, default=str))


if __name__ == "__main__":
    sys.exit(main())
