"""``ServiceClient.create_custom_loss`` (official SDK 0.38) as a user writes it, run by either SDK.

Usage: ``journey_custom_loss.py [tinker|tinker_actors]``. With ``tinker`` (the default) it runs under the
official tinker==0.38.0 SDK's interpreter (torch must be importable there); with ``tinker_actors`` under ours.
The only difference is the import below, pointed at a local service by ``TINKER_BASE_URL`` / ``TINKER_API_KEY``.

What it does: a per-datum policy-gradient loss with a scalar advantage per datum is traced into a handle;
three steps of ``forward_backward_custom(data, handle)`` + ``optim_step`` record the loss's metrics; then what
both SDKs refuse (each a ``ValueError``): broken rules, the same loss created twice, a handle of another
session, a datum without an input the loss reads. The last stdout line is
``{"steps": {name: "ok" | error}, "values": {...}}``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

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

TIMEOUT_S = 30.0
TEXT = list(b"the keeper climbed the stairs of the lighthouse every night")
ADVANTAGES = (1.0, -0.5, 2.0)
STEPS = 3
RANKS: dict[str, Any] = {"logprobs": 1, "weights": 1, "advantage": 0}  # each SDK types it as its own Literal


def pg_loss(logprobs: torch.Tensor, weights: torch.Tensor, advantage: torch.Tensor
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = -(advantage * (logprobs * weights).sum())
    return loss, {"custom/pg:sum": loss, "custom/mean_logprob:mean": logprobs.mean()}


def bad_metric_name(logprobs: torch.Tensor) -> Any:
    return -logprobs.sum(), {"pg": logprobs.sum()}


def branching(logprobs: torch.Tensor) -> Any:
    if logprobs.sum() > 0:
        return logprobs.sum(), {}
    return -logprobs.sum(), {}


SCALE = torch.tensor(2.0)


def captured(logprobs: torch.Tensor) -> Any:
    return -(logprobs * SCALE).sum(), {}


def batch() -> list[types.Datum]:
    data = []
    for i, advantage in enumerate(ADVANTAGES):
        tokens = TEXT[i * 8:i * 8 + 20]
        data.append(types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs={
            "target_tokens": np.asarray(tokens[1:], dtype=np.int64),
            "weights": np.linspace(0.5, 1.5, len(tokens) - 1).astype(np.float32),
            "advantage": types.TensorData(data=[advantage], dtype="float32", shape=[])}))
    return data


def refusal(journey: Journey, name: str, body: Callable[[], Any]) -> None:
    """``body`` must raise a ValueError (before or after the request): whether it did is the value."""
    try:
        body()
    except Exception as error:
        journey.values[name] = {"value_error": isinstance(error, ValueError), "message": str(error)}
        journey.steps[name] = "ok"
    else:
        journey.steps[name] = "not refused"


def main() -> None:
    journey = Journey()
    service_client = tinker.ServiceClient()
    training = journey.step("create", lambda: done(service_client.create_lora_training_client(
        base_model="tiny-byte", rank=4, seed=0), TIMEOUT_S))
    handle = journey.step("create_custom_loss", lambda: service_client.create_custom_loss(
        pg_loss, input_ranks=RANKS).result(timeout=TIMEOUT_S))
    if training is None or handle is None:
        journey.report()
        return
    journey.values["handle"] = {"name": handle.name, "loss_id": handle.loss_id,
                                "inputs": [[item.name, item.rank] for item in handle.inputs]}

    def steps() -> None:
        metrics = []
        for _ in range(STEPS):
            result = training.forward_backward_custom(batch(), handle).result(timeout=TIMEOUT_S)
            training.optim_step(types.AdamParams(learning_rate=1e-2)).result(timeout=TIMEOUT_S)
            metrics.append({key: result.metrics[key] for key in ("custom/pg:sum", "custom/mean_logprob:mean")})
        journey.values["steps"] = metrics

    journey.step("train", steps)

    refusal(journey, "bad_metric_name", lambda: service_client.create_custom_loss(bad_metric_name, {"logprobs": 1}))
    refusal(journey, "branching", lambda: service_client.create_custom_loss(branching, {"logprobs": 1}))
    refusal(journey, "captured_tensor", lambda: service_client.create_custom_loss(captured, {"logprobs": 1}))
    refusal(journey, "missing_rank", lambda: service_client.create_custom_loss(pg_loss, {"logprobs": 1}))
    refusal(journey, "created_twice",
            lambda: service_client.create_custom_loss(pg_loss, RANKS).result(timeout=TIMEOUT_S))

    def without_advantage() -> None:
        data = batch()
        data[1] = types.Datum(model_input=data[1].model_input, loss_fn_inputs={
            key: value for key, value in data[1].loss_fn_inputs.items() if key != "advantage"})
        training.forward_backward_custom(data, handle).result(timeout=TIMEOUT_S)

    refusal(journey, "datum_without_input", without_advantage)

    other_session = tinker.ServiceClient()
    foreign = other_session.create_custom_loss(pg_loss, RANKS).result(timeout=TIMEOUT_S)
    refusal(journey, "other_session",
            lambda: training.forward_backward_custom(batch(), foreign).result(timeout=TIMEOUT_S))
    journey.report()


if __name__ == "__main__":
    main()
