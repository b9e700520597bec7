"""A user's whole training loop with the official tinker==0.38.0 SDK (run with ITS interpreter).

The official 0.38 SDK cannot share a virtualenv with the 0.6.3 one the other compat tests import
(same package name), so tests/compat038 starts this script with ``.venv-tinker038/bin/python``,
pointed at a local service through ``TINKER_BASE_URL`` and ``TINKER_API_KEY``. It never imports
tinker_actors (not installed there): the SDK is used exactly as its documentation shows a user.

Usage: ``official_loop.py``. Each step's outcome is recorded, a failing step does not stop the
steps that do not depend on it, and the last line of stdout is one JSON summary:
``{"steps": {name: "ok" | error text}, "values": {...}, "warnings": [...]}``.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import tinker
from tinker import types

T = TypeVar("T")
TIMEOUT_S = 30.0  # each .result(); the test bounds the whole run as well
TEXT = list(b"the quick brown fox jumps over the lazy dog. ")
PROMPT = list(b"the ")


class _Recorder:
    """Each step's outcome and the values the test checks."""

    def __init__(self) -> None:
        self.steps: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.started = time.monotonic()

    def step(self, name: str, body: Callable[[], T]) -> T | None:
        begun = time.monotonic()
        try:
            result = body()
        except Exception:
            self.steps[name] = traceback.format_exc(limit=6)
            return None
        self.steps[name] = "ok"
        self.values.setdefault("seconds", {})[name] = round(time.monotonic() - begun, 3)
        return result


class _Warnings(logging.Handler):
    """What the SDK logs at WARNING or worse: there must be none against the local service."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def _datum(tokens: list[int], *, numpy_inputs: bool) -> types.Datum:
    targets = tokens[1:]
    weights = [1.0] * len(targets)
    inputs: dict[str, Any]
    if numpy_inputs:  # numpy arrays and TensorData, as the docs show both
        inputs = {"target_tokens": types.TensorData.from_numpy(np.asarray(targets, dtype=np.int64)),
                  "weights": np.asarray(weights, dtype=np.float32)}
    else:
        inputs = {"target_tokens": targets, "weights": weights}
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


def train(rec: _Recorder, service: tinker.ServiceClient, *, steps: int, batch: int) -> Any:
    """Create a LoRA model, then fwd/bwd + optim_step pipelined; the loss must go down."""
    training = rec.step("create_lora_training_client", lambda: service.create_lora_training_client(
        base_model="tiny-byte", rank=8, user_metadata={"exp": "compat038"}).result(timeout=TIMEOUT_S))
    if training is None:
        return None
    info = rec.step("get_info", training.get_info)
    if info is not None:
        rec.values["info"] = {"model_id": info.model_id, "lora_rank": info.lora_rank,
                              "model_name": info.model_data.model_name}
    data = [_datum(TEXT, numpy_inputs=i % 2 == 0) for i in range(batch)]

    def loop() -> list[float]:
        losses = []
        for _ in range(steps):
            # Pipelined as the docs advise: the optimizer step is submitted before the result is read.
            fwdbwd = training.forward_backward(data, "cross_entropy")
            optim = training.optim_step(types.AdamParams(learning_rate=5e-3))
            out = fwdbwd.result(timeout=TIMEOUT_S)
            optim.result(timeout=TIMEOUT_S)
            losses.append(out.metrics["loss:sum"])
            rec.values["fwdbwd_outputs"] = len(out.loss_fn_outputs)
            rec.values["fwdbwd_logprobs_len"] = len(out.loss_fn_outputs[0]["logprobs"].tolist())
        return losses

    losses = rec.step("forward_backward_and_optim_step", loop)
    rec.values["losses"] = losses

    def forward() -> dict[str, Any]:
        out = training.forward(data[:1], "cross_entropy").result(timeout=TIMEOUT_S)
        return {"keys": sorted(out.loss_fn_outputs[0]), "loss": out.metrics["loss:sum"],
                "logprobs_len": len(out.loss_fn_outputs[0]["logprobs"].tolist())}

    rec.values["forward"] = rec.step("forward", forward)
    return training


def checkpoints_and_sampling(rec: _Recorder, service: tinker.ServiceClient, training: Any) -> None:
    datum = _datum(TEXT, numpy_inputs=False)
    state = rec.step("save_state", lambda: training.save_state("c38-state").result(timeout=TIMEOUT_S))
    state_path = state.path if state is not None else None
    rec.values["state_path"] = state_path
    if state_path is not None:
        rec.step("load_state", lambda: training.load_state(state_path).result(timeout=TIMEOUT_S))
        rec.step("load_state_with_optimizer",
                 lambda: training.load_state_with_optimizer(state_path).result(timeout=TIMEOUT_S))

        def from_state() -> dict[str, Any]:
            here = training.forward([datum], "cross_entropy").result(timeout=TIMEOUT_S).metrics["loss:sum"]
            restored = service.create_training_client_from_state(state_path).result(timeout=TIMEOUT_S)
            there = restored.forward([datum], "cross_entropy").result(timeout=TIMEOUT_S).metrics["loss:sum"]
            return {"loss_here": here, "loss_restored": there, "rank": restored.get_info().lora_rank}

        rec.values["from_state"] = rec.step("create_training_client_from_state", from_state)

        def from_state_with_optimizer() -> float:
            restored = service.create_training_client_from_state_with_optimizer(state_path).result(
                timeout=TIMEOUT_S)
            out = restored.forward_backward([datum], "cross_entropy").result(timeout=TIMEOUT_S)
            restored.optim_step(types.AdamParams(learning_rate=1e-3)).result(timeout=TIMEOUT_S)
            return float(out.metrics["loss:sum"])

        rec.step("create_training_client_from_state_with_optimizer", from_state_with_optimizer)

    saved = rec.step("save_weights_for_sampler",
                     lambda: training.save_weights_for_sampler("c38-sampler").result(timeout=TIMEOUT_S))
    sampler_path = saved.path if saved is not None else None
    rec.values["sampler_path"] = sampler_path
    if sampler_path is None:
        return
    sampler = rec.step("create_sampling_client", lambda: service.create_sampling_client(
        model_path=sampler_path).result(timeout=TIMEOUT_S))
    if sampler is None:
        return
    rec.values["sampler_base_model"] = rec.step("sampler_get_base_model", sampler.get_base_model)
    prompt = types.ModelInput.from_ints(PROMPT)

    def sample() -> dict[str, Any]:
        result = sampler.sample(prompt, 3, types.SamplingParams(max_tokens=6, temperature=0.0)).result(
            timeout=TIMEOUT_S)
        return {"tokens": [s.tokens for s in result.sequences],
                "logprobs_len": [len(s.logprobs or []) for s in result.sequences],
                "stop_reasons": [s.stop_reason for s in result.sequences],
                "sequence_ids": [s.sequence_id for s in result.sequences]}

    rec.values["sample"] = rec.step("sample", sample)

    def sample_with_stop() -> dict[str, Any]:
        greedy = rec.values["sample"]["tokens"][0]
        result = sampler.sample(prompt, 2, types.SamplingParams(
            max_tokens=6, temperature=0.0, stop=[greedy[2]])).result(timeout=TIMEOUT_S)
        return {"tokens": [s.tokens for s in result.sequences],
                "stop_reasons": [s.stop_reason for s in result.sequences],
                "expected": greedy[:greedy.index(greedy[2]) + 1]}

    if rec.values["sample"] is not None:
        rec.values["sample_stop"] = rec.step("sample_with_stop", sample_with_stop)

    def prompt_logprobs() -> dict[str, Any]:
        result = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True,
                                topk_prompt_logprobs=2).result(timeout=TIMEOUT_S)
        topk = result.topk_prompt_logprobs
        return {"prompt_logprobs": result.prompt_logprobs,
                "topk_widths": None if topk is None else [None if row is None else len(row) for row in topk],
                "sequence_ids": [s.sequence_id for s in result.sequences]}

    rec.values["prompt_logprobs"] = rec.step("sample_prompt_logprobs", prompt_logprobs)
    rec.values["compute_logprobs"] = rec.step(
        "compute_logprobs", lambda: sampler.compute_logprobs(prompt).result(timeout=TIMEOUT_S))

    def ephemeral() -> list[int]:
        client = training.save_weights_and_get_sampling_client().result(timeout=TIMEOUT_S)
        out = client.sample(prompt, 1, types.SamplingParams(max_tokens=6, temperature=0.0)).result(
            timeout=TIMEOUT_S)
        return list(out.sequences[0].tokens)

    rec.values["ephemeral_tokens"] = rec.step("save_weights_and_get_sampling_client", ephemeral)

    def base_sampler() -> int:
        client = service.create_sampling_client(base_model="tiny-byte").result(timeout=TIMEOUT_S)
        return len(client.sample(prompt, 2, types.SamplingParams(max_tokens=2)).result(
            timeout=TIMEOUT_S).sequences)

    rec.values["base_sampler_sequences"] = rec.step("create_sampling_client_base_model", base_sampler)


def rest(rec: _Recorder, training: Any) -> None:
    """The REST client: runs, checkpoints, sessions, samplers; delete and list again."""
    rest_client = tinker.RestClient()
    run_id = training.model_id
    caps = rec.step("get_server_capabilities",
                    lambda: rest_client.get_server_capabilities().result(timeout=TIMEOUT_S))
    rec.values["models"] = None if caps is None else [m.model_name for m in caps.supported_models]

    def runs() -> dict[str, Any]:
        listed = rest_client.list_training_runs(limit=100).result(timeout=TIMEOUT_S)
        run = rest_client.get_training_run(run_id).result(timeout=TIMEOUT_S)
        return {"run_ids": [r.training_run_id for r in listed.training_runs],
                "base_model": run.base_model, "lora_rank": run.lora_rank, "user_metadata": run.user_metadata}

    rec.values["runs"] = rec.step("list_training_runs", runs)
    state_path = rec.values.get("state_path")
    if state_path is not None:
        def by_path() -> dict[str, Any]:
            run = rest_client.get_training_run_by_tinker_path(state_path).result(timeout=TIMEOUT_S)
            info = rest_client.get_weights_info_by_tinker_path(state_path).result(timeout=TIMEOUT_S)
            return {"run_id": run.training_run_id, "base_model": info.base_model, "lora_rank": info.lora_rank}

        rec.values["by_path"] = rec.step("get_weights_info_by_tinker_path", by_path)

    def listed() -> list[str]:
        return sorted(c.tinker_path for c in rest_client.list_checkpoints(run_id).result(
            timeout=TIMEOUT_S).checkpoints)

    rec.values["checkpoints_before"] = rec.step("list_checkpoints", listed)
    rec.values["user_checkpoints"] = rec.step("list_user_checkpoints", lambda: sorted(
        c.tinker_path for c in rest_client.list_user_checkpoints(limit=1000).result(
            timeout=TIMEOUT_S).checkpoints))
    if state_path is not None:
        rec.step("delete_checkpoint_from_tinker_path",
                 lambda: rest_client.delete_checkpoint_from_tinker_path(state_path).result(timeout=TIMEOUT_S))
        rec.values["deleted"] = state_path
    rec.values["checkpoints_after"] = rec.step("list_checkpoints_after_delete", listed)

    def sessions() -> dict[str, Any]:
        ids = rest_client.list_sessions(limit=1000).result(timeout=TIMEOUT_S).sessions
        session = rest_client.get_session(ids[0]).result(timeout=TIMEOUT_S) if ids else None
        return {"count": len(ids), "has_runs": bool(session and session.training_run_ids)}

    rec.values["sessions"] = rec.step("list_sessions", sessions)


def cli(rec: _Recorder, training: Any) -> None:
    """The official CLI's run and checkpoint commands, run in this process (a new process would
    import the SDK again): list, then delete the sampler checkpoint by its run and type."""
    from click.testing import CliRunner
    from tinker.cli.__main__ import main_cli

    run_id = training.model_id

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(main_cli, ["-f", "json", *args], catch_exceptions=False)
        if result.exit_code != 0:
            raise RuntimeError(f"tinker {' '.join(args)} exited with {result.exit_code}: {result.output}")
        output = result.output
        start = min((i for i in (output.find("{"), output.find("[")) if i >= 0), default=0)
        return json.loads(output[start:]) if output[start:].strip() else None

    rec.values["cli_run_info"] = rec.step("cli_run_info", lambda: invoke("run", "info", run_id))
    rec.values["cli_checkpoints"] = rec.step(
        "cli_checkpoint_list", lambda: invoke("checkpoint", "list", "--run-id", run_id))
    rec.values["cli_delete"] = rec.step("cli_checkpoint_delete", lambda: invoke(
        "checkpoint", "delete", "--run-id", run_id, "--type", "sampler_weights", "--yes"))
    rec.values["cli_checkpoints_after"] = rec.step(
        "cli_checkpoint_list_after_delete", lambda: invoke("checkpoint", "list", "--run-id", run_id))


def main() -> None:
    warnings = _Warnings()
    logging.getLogger("tinker").addHandler(warnings)
    rec = _Recorder()
    rec.values["tinker_version"] = tinker.__version__
    service = tinker.ServiceClient()
    training = train(rec, service, steps=6, batch=4)
    if training is not None:
        checkpoints_and_sampling(rec, service, training)
        rest(rec, training)
        cli(rec, training)
    rec.step("close", lambda: service.close("success").result(timeout=TIMEOUT_S))
    rec.values["total_seconds"] = round(time.monotonic() - rec.started, 3)
    print(json.dumps({"steps": rec.steps, "values": rec.values, "warnings": warnings.lines}, default=str))


if __name__ == "__main__":
    main()
