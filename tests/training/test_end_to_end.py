"""forward_backward_custom against the embedded service over real HTTP on 127.0.0.1, in both protocols."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import NotSentError
from tinker_actors.local import LocalService
from tinker_actors.local.server.wire_log import WireCapture
from tinker_actors.training.chunking import ChunkLimits
from tinker_actors.training.custom_loss import CustomLossError
from tinker_actors.training.regularizers import L2, KLPenalty, Logprobs, Regularizer, TermValue, reference_logprobs

pytest.importorskip("torch")
import torch

TEXT = b"the keeper climbed the stairs of the lighthouse every night"


@pytest.fixture(params=["0.6.3", "0.38"])
def protocol(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def wire(service: LocalService) -> Iterator[WireCapture]:
    """What the service receives during the test."""
    with service.wire_log.capture() as capture:
        yield capture


@pytest.fixture
def client(service: LocalService, protocol: str) -> Iterator[tinker.ServiceClient]:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False,
                    retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05), protocol=protocol)
    with tinker.ServiceClient(config=config) as svc:
        assert svc.protocol.version == protocol
        yield svc


def datum(tokens: Sequence[int]) -> tinker.Datum:
    tokens = list(tokens)
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})


def batch() -> list[tinker.Datum]:
    return [datum(TEXT[i:i + 24]) for i in range(0, 24, 8)]


_OPERATIONS = {"/api/v1/forward": "forward", "/api/v1/forward_backward": "forward_backward",
               "/api/v1/optim_step": "optim_step"}


def endpoints(wire: WireCapture, model_id: str) -> list[str]:
    """This model's training operations as the service received them, each once and in seq_id order (0.38
    sends a forward as a forward_backward with ``forward_only``: named ``forward`` here too)."""
    names, seq_ids = [], []
    for record in wire.snapshot():
        body = record.decoded() if record.method == "POST" and record.path in _OPERATIONS else None
        if not isinstance(body, dict) or body.get("model_id") != model_id:
            continue
        names.append("forward" if body.get("forward_only") else _OPERATIONS[record.path])
        seq_ids.append(int(body["seq_id"]))
    assert seq_ids == sorted(set(seq_ids)), seq_ids  # sent once each, in order
    return names


class MeanNLL:
    """The mean negative log-likelihood of the targets, as a numpy loss object."""

    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        count = sum(lp.size for lp in logprobs)
        return TermValue(-sum(float(lp.sum()) for lp in logprobs) / count,
                         [np.full_like(lp, -1.0 / count) for lp in logprobs])


def test_custom_loss_with_regularizers_trains_in_order(wire: WireCapture, client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
    regs = [Regularizer("l2", L2(center=-1.0), 0.001), Regularizer("kl", KLPenalty([np.zeros(23)] * 3, "k2"), 0.0)]
    losses = []
    for _ in range(6):
        result = training.forward_backward_custom(batch(), MeanNLL(), regularizers=regs)
        training.optim_step(tinker.AdamParams(learning_rate=2e-2))
        losses.append(result.result(30).metrics["custom_loss/base"])
    assert losses[-1] < losses[0] - 0.2, losses
    assert endpoints(wire, training.model_id) == ["forward", "forward_backward", "optim_step"] * 6
    history = training.grad_norm_history()
    assert [record.step for record in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1].report.base == pytest.approx(1 / np.sqrt(69))  # ‖-1/N‖ over N = 69 tokens
    assert [term.name for term in history[-1].report.terms] == ["l2", "kl"]
    summary = training.grad_norm_summary()
    assert summary is not None and summary.steps == 6


def test_optim_step_submitted_right_after_never_overtakes_the_backward(
        wire: WireCapture, client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()

    def slow_loss(data: list[tinker.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        time.sleep(0.4)  # the optim_step below is queued long before the gradient exists
        return -torch.stack([lp.sum() for lp in logprobs]).sum(), {}

    started = time.monotonic()
    custom = training.forward_backward_custom(batch(), slow_loss)
    assert time.monotonic() - started < 0.3  # the call does not wait for the forward pass
    optim = training.optim_step(tinker.AdamParams(learning_rate=1e-3))
    after = training.forward(batch(), "cross_entropy")
    optim.result(30)
    assert custom.done()
    after.result(30)
    assert endpoints(wire, training.model_id) == ["forward", "forward_backward", "optim_step", "forward"]


def test_wire_weights_are_the_negated_gradient(service: LocalService, client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()

    def squared(data: list[tinker.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = torch.stack([(lp * lp).sum() for lp in logprobs]).sum()
        return loss, {"squared": loss.item()}

    out = training.forward_backward_custom(batch(), squared).result(30)
    # The server computed -Σ weights·logprobs; with weights = -2·logprobs that is 2·Σ logprobs².
    assert out.metrics["loss:sum"] == pytest.approx(2 * out.metrics["squared"], rel=1e-4)
    forward = training.forward(batch(), "cross_entropy").result(30)
    expected = sum(float(np.sum(o["logprobs"].to_numpy() ** 2)) for o in forward.loss_fn_outputs)
    assert out.metrics["squared"] == pytest.approx(expected, rel=1e-4)  # no optim_step: same weights


def test_backward_chunks_keep_their_places(service: LocalService, wire: WireCapture, protocol: str) -> None:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False, protocol=protocol)
    with tinker.ServiceClient(config=config, chunk_limits=ChunkLimits(max_datums=2)) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
        custom = training.forward_backward_custom(batch(), MeanNLL())
        training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result(30)
        assert len(custom.result(30).loss_fn_outputs) == 3
        assert endpoints(wire, training.model_id) == ["forward", "forward", "forward_backward",
                                                         "forward_backward", "optim_step"]


def test_a_failing_loss_sends_neither_backward_nor_what_follows(
        wire: WireCapture, client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()

    class Broken:
        def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
            raise ArithmeticError("bad loss")

    custom = training.forward_backward_custom(batch(), Broken())
    optim = training.optim_step(tinker.AdamParams(learning_rate=1e-3))
    with pytest.raises(CustomLossError, match="bad loss"):
        custom.result(30)
    with pytest.raises(NotSentError):
        optim.result(30)
    training.forward(batch(), "cross_entropy").result(30)  # the client carries on
    assert endpoints(wire, training.model_id) == ["forward", "forward"]


def test_kl_penalty_against_a_sampling_clients_reference(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
    reference = reference_logprobs(training.save_weights_and_get_sampling_client().result(), batch())
    forward = training.forward(batch(), "cross_entropy").result(30)
    for ref, output in zip(reference, forward.loss_fn_outputs, strict=True):
        np.testing.assert_allclose(ref, output["logprobs"].to_numpy(), atol=1e-3)  # same weights, same logprobs
    kl = Regularizer("kl", KLPenalty(reference), 1.0)
    out = training.forward_backward_custom(batch(), MeanNLL(), regularizers=[kl]).result(30)
    assert out.metrics["regularizer/kl/value"] == pytest.approx(0.0, abs=1e-4)


OFFICIAL_STYLE = '''
import torch
import tinker_actors as tinker
from tinker_actors import types

service_client = tinker.ServiceClient(base_url=BASE_URL, api_key=API_KEY)
training_client = service_client.create_lora_training_client(base_model="tiny-byte", rank=4)
tokenizer = training_client.get_tokenizer()
tokens = tokenizer.encode("the keeper climbed the stairs")
datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})


def loss_fn(data: list[types.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    loss = torch.cat(logprobs).neg().mean()
    return loss, {"custom_loss": loss.item()}


before = training_client.forward_backward_custom([datum], loss_fn).result()
training_client.optim_step(types.AdamParams(learning_rate=1e-2)).result()


async def twice() -> float:
    future = await training_client.forward_backward_custom_async([datum], loss_fn)
    result = await future
    await (await training_client.optim_step_async(types.AdamParams(learning_rate=1e-2)))
    return result.metrics["custom_loss"]


import asyncio
after = asyncio.run(twice())
RESULT = (before.metrics["custom_loss"], after)
service_client.close()
'''


def test_the_official_sdks_custom_loss_code_runs_unchanged(service: LocalService) -> None:
    namespace: dict[str, Any] = {"BASE_URL": service.base_url, "API_KEY": service.api_key}
    exec(compile(OFFICIAL_STYLE, "official_style", "exec"), namespace)
    before, after = namespace["RESULT"]
    assert after < before
