"""Training calls against the embedded service over real HTTP (issue 9): the empty batch, unload_model, and
bad input refused by the call itself with a typed error, before anything is queued or sent."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinker_actors as tinker
from tests.local.support import Api
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import LocalService
from tinker_actors.training.regularizers import L2, Logprobs, Regularizer, TermValue

TEXT = list(b"the keeper climbed the stairs of the lighthouse every night")


@pytest.fixture
def client(service: LocalService) -> Iterator[tinker.ServiceClient]:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False,
                    retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05))
    with tinker.ServiceClient(config=config) as svc:
        yield svc


def datum(tokens: Sequence[int], **inputs: Any) -> tinker.Datum:
    tokens = list(tokens)
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1),
                                        **inputs})


def model_requests(service: LocalService, model_id: str) -> list[tuple[int, str]]:
    """(seq_id, endpoint) of every sequenced request the service received for this model."""
    return sorted((row["seq_id"], row["endpoint"]) for row in service.stats.snapshot()["sequenced"]
                  if row["id"] == model_id)


def received(service: LocalService, endpoint: str) -> int:
    counts: dict[str, Any] = service.stats.snapshot()["endpoints"].get(endpoint, {})
    return int(counts.get("received", 0))


class MeanNLL:
    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        count = sum(lp.size for lp in logprobs) or 1
        return TermValue(-sum(float(lp.sum()) for lp in logprobs) / count,
                         [np.full_like(lp, -1.0 / count) for lp in logprobs])


# ---- the empty batch -------------------------------------------------------------------------------

def test_an_empty_batch_sends_nothing_and_the_optim_step_after_it_runs(service: LocalService,
                                                                       client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2, seed=0).result()
    sent_before = {name: received(service, name) for name in ("forward_backward", "forward")}
    for output in (training.forward_backward([], "importance_sampling").result(5),
                   training.forward([], "cross_entropy").result(5),
                   training.forward_backward_custom([], MeanNLL()).result(5)):
        assert (output.loss_fn_output_type, output.loss_fn_outputs, output.metrics) == ("", [], {})
    assert {name: received(service, name) for name in sent_before} == sent_before  # nothing went out
    step = training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result(30)
    assert step is not None
    # The empty calls used no seq id: the optim_step is the model's first sequenced request.
    assert model_requests(service, training.model_id) == [(1, "optim_step")]


def test_an_empty_batch_from_async_code(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()

    async def run() -> tinker.ForwardBackwardOutput:
        future = await training.forward_backward_async([], "cross_entropy")
        return await future

    assert asyncio.run(run()).loss_fn_outputs == []


def test_an_empty_custom_batch_does_not_call_the_loss(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    calls: list[int] = []

    def loss(data: Any, logprobs: Any) -> Any:
        calls.append(len(logprobs))
        raise AssertionError("not called for an empty batch")

    assert training.forward_backward_custom([], loss).result(5).loss_fn_outputs == []
    assert calls == []


# ---- unload_model ----------------------------------------------------------------------------------

def test_unload_model_unloads_it_on_the_server(service: LocalService, client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    training.forward_backward([datum(TEXT[:12])], "cross_entropy").result(30)
    unloads = received(service, "unload_model")
    response = training.unload_model()
    assert response.model_id == training.model_id
    assert received(service, "unload_model") == unloads + 1
    # The server freed the model: a request for it now answers 404 with the reason.
    api = Api(service)
    try:
        refused = api.post("/api/v1/forward", {"model_id": training.model_id, "seq_id": 2, "forward_input": {
            "data": [], "loss_fn": "cross_entropy"}})
    finally:
        api.close()
    assert refused.status_code == 404 and "unloaded" in refused.json()["error"]
    with pytest.raises(tinker.ClientStoppedError):  # and this client is stopped
        training.forward_backward([datum(TEXT[:12])], "cross_entropy").result(5)


def test_unload_model_async(service: LocalService, client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    response = asyncio.run(training.unload_model_async(timeout=30))
    assert response.model_id == training.model_id


# ---- bad input: a typed error from the call, nothing queued or sent --------------------------------

def bad_calls(training: tinker.TrainingClient) -> list[tuple[str, Any]]:
    good = datum(TEXT[:12])
    return [
        ("data\\[1\\]\\.loss_fn_inputs\\['advantages'\\] holds nan at position 10", lambda: training.forward_backward(
            [good, datum(TEXT[:12], advantages=np.array([0.5] * 10 + [math.nan]))], "importance_sampling")),
        ("data\\[0\\]\\.loss_fn_inputs\\['weights'\\] holds inf at position 1", lambda: training.forward(
            [tinker.Datum(model_input=tinker.ModelInput.from_ints(TEXT[:5]), loss_fn_inputs={
                "target_tokens": tinker.TensorData.from_list(TEXT[1:6], "int64"),
                "weights": tinker.TensorData.from_list([1.0, math.inf, 1.0, 1.0, 1.0], "float32")})],
            "cross_entropy")),
        ("loss_fn_config\\['beta'\\] must be a finite number", lambda: training.forward_backward(
            [good], "dro", {"beta": math.nan})),
        ("got a single Datum", lambda: training.forward_backward(good, "cross_entropy")),  # type: ignore[arg-type]
        ("data\\[0\\] is a dict", lambda: training.forward_backward([good.model_dump()], "cross_entropy")),  # type: ignore[list-item]
        ("optim_step takes an AdamParams", lambda: training.optim_step(None)),  # type: ignore[arg-type]
        ("eps: must be > 0", lambda: training.optim_step({"eps": 0.0})),  # type: ignore[arg-type]
        ("eps: must be > 0", lambda: training.optim_step(tinker.AdamParams.model_construct(eps=0.0))),
        ("learning_rate: must be a finite number", lambda: training.optim_step(
            tinker.AdamParams.model_construct(learning_rate=math.nan))),
        ("checkpoint name must be a str", lambda: training.save_state(123)),  # type: ignore[arg-type]
        ("checkpoint name must be a str", lambda: training.save_state(Path("ckpt"))),  # type: ignore[arg-type]
        ("checkpoint name must be a str", lambda: training.save_weights_for_sampler(Path("s"))),  # type: ignore
        ("Invalid tinker path", lambda: training.load_state(Path("tinker://r/weights/a"))),  # type: ignore
        ("regularizers\\[0\\] is a dict", lambda: training.forward_backward_custom(
            [good], MeanNLL(), regularizers=[{"name": "l2", "term": L2(), "weight": 0.1}])),
        ("got a single Regularizer", lambda: training.forward_backward_custom(
            [good], MeanNLL(), regularizers=Regularizer("l2", L2(), 0.1))),  # type: ignore[arg-type]
        ("got a single Datum", lambda: training.forward_backward_custom(good, MeanNLL())),  # type: ignore[arg-type]
        ("holds nan", lambda: training.forward_backward_custom(
            [datum(TEXT[:4], advantages=[0.1, math.nan, 0.2])], MeanNLL())),
    ]


def test_bad_input_is_refused_by_the_call_before_anything_is_queued(service: LocalService,
                                                                    client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    for says, call in bad_calls(training):
        with pytest.raises(tinker.InvalidInputError, match=says) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert model_requests(service, training.model_id) == []  # nothing sent...
    # ...and no seq id used up: the next request is seq 1 and runs at once (no gap for the server to wait on).
    training.forward_backward([datum(TEXT[:12])], "cross_entropy").result(30)
    assert model_requests(service, training.model_id) == [(1, "forward_backward")]


def test_adam_params_out_of_range_are_refused_at_construction() -> None:
    with pytest.raises(tinker.InvalidInputError, match="eps: must be > 0"):
        tinker.AdamParams(eps=0)
    with pytest.raises(tinker.InvalidInputError, match="learning_rate: must be a finite number"):
        tinker.AdamParams(learning_rate=float("nan"))


# ---- regularizers that do not depend on the logprobs ------------------------------------------------

def test_a_constant_regularizer_is_a_zero_gradient_term(client: tinker.ServiceClient) -> None:
    torch = pytest.importorskip("torch")
    training = client.create_lora_training_client("tiny-byte", rank=2, seed=0).result()
    batch = [datum(TEXT[:12]), datum(TEXT[8:20])]

    def constant(data: Any, logprobs: Any) -> Any:
        return torch.tensor(2.5), {}

    with_constant = training.forward_backward_custom(
        batch, MeanNLL(), regularizers=[Regularizer("const", constant, 1.0)]).result(60)
    assert with_constant.metrics["regularizer/const/value"] == 2.5
    assert with_constant.metrics["regularizer/const/grad_norm"] == 0.0
    assert with_constant.metrics["custom_loss/total"] == pytest.approx(with_constant.metrics["custom_loss/base"] + 2.5)

    def constant_base(data: Any, logprobs: Any) -> Any:
        return torch.tensor(1.0), {}

    from tinker_actors.training.custom_loss import CustomLossError

    with pytest.raises(CustomLossError, match="does not depend on the logprobs"):  # the base loss must depend
        training.forward_backward_custom(batch, constant_base).result(60)
