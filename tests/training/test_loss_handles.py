"""ServiceClient.create_custom_loss and LossHandle (official SDK 0.38), against the embedded service over real HTTP.

A handle's loss trains exactly as the same loss given as a plain callable; its gradient matches finite
differences; every rule of custom losses is refused with a typed error before anything is sent; a handle of
another session, or data that does not match the declared ranks, is refused too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import tinker_actors as tinker
from tests.training.support import assert_grads_close, batch, finite_difference
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import InvalidInputError
from tinker_actors.local import FaultRule, LocalService
from tinker_actors.local.server.wire_log import WireCapture
from tinker_actors.training.custom_loss import CustomLossError, compute_custom_loss
from tinker_actors.training.loss_handles import (
    CustomLossDefinitionError,
    LossHandle,
    LossHandleSessionError,
    TorchRequiredError,
    handle_loss,
    trace_loss,
)
from tinker_actors.types import CustomLossInputRank

pytest.importorskip("torch")
import torch
import torch.fx
import torch.nn.functional as F

TEXT = b"the keeper climbed the stairs of the lighthouse every night"


def config(service: LocalService, protocol: str = "0.38") -> Config:
    return Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False, protocol=protocol,
                  retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
                  poll_backoff=PollBackoff(initial=0.01, max=0.05))


@pytest.fixture(params=["0.38", "0.6.3"])
def client(service: LocalService, request: pytest.FixtureRequest) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(config=config(service, request.param)) as svc:
        yield svc


def advantage_datums() -> list[tinker.Datum]:
    """Three next-token datums with weights and a scalar (rank 0) advantage each."""
    data = []
    for i, advantage in enumerate((1.0, -0.5, 2.0)):
        tokens = list(TEXT[i * 8:i * 8 + 20])
        data.append(tinker.Datum(
            model_input=tinker.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:],
                            "weights": np.linspace(0.5, 1.5, len(tokens) - 1).astype(np.float32),
                            "advantage": tinker.TensorData(data=[advantage], dtype="float32", shape=[])}))
    return data


def pg_loss(logprobs: torch.Tensor, weights: torch.Tensor, advantage: torch.Tensor
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A per-datum policy-gradient loss with a smooth penalty: what create_custom_loss takes."""
    loss = -(advantage * (logprobs * weights).sum()) + 0.1 * F.softplus(logprobs + math.log(0.5)).sum()
    return loss, {"custom/pg:sum": loss, "custom/mean_logprob:mean": logprobs.mean()}


PG_RANKS: dict[str, CustomLossInputRank] = {"logprobs": 1, "weights": 1, "advantage": 0}


def pg_batch_loss(data: list[tinker.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The same loss as a plain batch callable (the official SDK's other form)."""
    total = torch.zeros(())
    means = []
    for datum, lp in zip(data, logprobs, strict=True):
        weights = datum.loss_fn_inputs["weights"].to_torch()
        advantage = datum.loss_fn_inputs["advantage"].to_torch()
        total = total + (-(advantage * (lp * weights).sum()) + 0.1 * F.softplus(lp + math.log(0.5)).sum())
        means.append(float(lp.detach().mean()))
    return total, {"custom/pg:sum": float(total.detach()), "custom/mean_logprob:mean": sum(means) / len(means)}


def forward_logprobs(training: tinker.TrainingClient, data: list[tinker.Datum]) -> list[np.ndarray]:
    plain = [tinker.Datum(model_input=d.model_input,
                          loss_fn_inputs={"target_tokens": d.loss_fn_inputs["target_tokens"]}) for d in data]
    return [out["logprobs"].to_numpy() for out in training.forward(plain, "cross_entropy").result(30).loss_fn_outputs]


# ---- the handle trains as the plain callable does ----------------------------------------------------

def test_a_handle_trains_exactly_as_the_same_loss_given_as_a_callable(client: tinker.ServiceClient) -> None:
    handle = client.create_custom_loss(pg_loss, PG_RANKS).result(10)
    assert isinstance(handle, LossHandle) and handle.session_id == client.session_id and handle.loss_id is None
    assert handle.name == "pg_loss" and handle.input_names == ("weights", "advantage")
    by_handle = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
    by_callable = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
    data = advantage_datums()
    for _ in range(2):
        out_handle = by_handle.forward_backward_custom(data, handle)
        out_callable = by_callable.forward_backward_custom(data, pg_batch_loss)
        by_handle.optim_step(tinker.AdamParams(learning_rate=1e-2))
        by_callable.optim_step(tinker.AdamParams(learning_rate=1e-2)).result(30)
        handle_metrics, callable_metrics = out_handle.result(30).metrics, out_callable.result(30).metrics
        for key in ("custom/pg:sum", "custom/mean_logprob:mean", "loss:sum"):  # loss:sum: Σ gradient · logprobs
            assert handle_metrics[key] == pytest.approx(callable_metrics[key], rel=1e-5), key
    # Same gradients, so the same updates: both models still give the same logprobs.
    for a, b in zip(forward_logprobs(by_handle, data), forward_logprobs(by_callable, data), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # ... and they moved: the steps were applied.
    fresh = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
    assert not np.allclose(forward_logprobs(fresh, data)[0], forward_logprobs(by_handle, data)[0])


def test_metrics_combine_over_datums_by_their_suffix(service: LocalService) -> None:
    def stats(logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return -logprobs.sum(), {"custom/tokens:sum": torch.ones_like(logprobs).sum(),
                                 "custom/tokens_avg:mean": torch.ones_like(logprobs).sum()}

    with tinker.ServiceClient(config=config(service)) as svc:
        handle = svc.create_custom_loss(stats, {"logprobs": 1}).result(10)
        training = svc.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
        data = advantage_datums()
        lengths = [d.loss_fn_inputs["target_tokens"].size for d in data]
        metrics = training.forward_backward_custom(data, handle).result(30).metrics
        assert metrics["custom/tokens:sum"] == sum(lengths)
        assert metrics["custom/tokens_avg:mean"] == pytest.approx(sum(lengths) / len(lengths))
        logprobs = forward_logprobs(training, data)  # no optim_step: the same weights
        assert metrics["loss:sum"] == pytest.approx(-sum(float(lp.sum()) for lp in logprobs), rel=1e-5)


# ---- gradients -----------------------------------------------------------------------------------------

def _value(loss: Callable[..., Any], data: list[tinker.Datum]) -> Callable[[list[np.ndarray]], float]:
    return lambda lps: float(loss(data, [torch.tensor(lp, dtype=torch.float64) for lp in lps])[0])


def test_a_handles_gradient_matches_finite_differences() -> None:
    data, logprobs = batch(np.random.default_rng(5), [4, 6, 3])

    def focal(logprobs: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = torch.exp(logprobs)
        loss = -((1 - p) ** 2 * logprobs * weights).sum() + torch.logsumexp(logprobs, 0)
        return loss, {"custom/focal:sum": loss}

    loss = handle_loss(trace_loss(focal, {"logprobs": 1, "weights": 1}, "s"))
    result = compute_custom_loss(data, logprobs, loss)
    assert_grads_close(result.grads, finite_difference(_value(loss, data), logprobs), rtol=1e-4, atol=1e-5)
    assert result.metrics["custom/focal:sum"] == pytest.approx(result.loss, rel=1e-5)


def test_rank_2_logprobs_have_the_shape_of_the_targets() -> None:
    rng = np.random.default_rng(6)
    data, logprobs = [], []
    for length in (3, 5):
        data.append(tinker.Datum(model_input=tinker.ModelInput.from_ints([1] * length),
                                 loss_fn_inputs={"target_tokens": rng.integers(0, 200, (length, 2)).astype(np.int64)}))
        logprobs.append(-rng.uniform(0.1, 3.0, 2 * length))  # flat, as the forward returns them

    def top2(logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return -(logprobs[:, 0] * 0.75 + logprobs[:, 1] * 0.25).sum(), {"custom/rows:sum": logprobs.new_ones(
            logprobs.shape[0]).sum()}

    loss = handle_loss(trace_loss(top2, {"logprobs": 2}, "s"))
    result = compute_custom_loss(data, logprobs, loss)
    assert result.metrics["custom/rows:sum"] == 8
    assert_grads_close(result.grads, [np.tile([-0.75, -0.25], n) for n in (3, 5)])


# ---- what create_custom_loss refuses, before anything is sent -------------------------------------------

_CAPTURED = torch.ones(3)
_MODULE = torch.nn.Softplus()


def _outside_helper(x: torch.Tensor) -> torch.Tensor:
    return x * 2


torch.fx.wrap("_outside_helper")  # fx records a call to it: a function that is neither torch nor math


def _many_parameters() -> Callable[..., Any]:
    names = ", ".join(f"x{i}" for i in range(16))
    namespace: dict[str, Any] = {}
    exec(f"def many(logprobs, {names}):\n    return logprobs.sum(), {{}}", namespace)
    return namespace["many"]  # type: ignore[no-any-return]


def _loss(body: Callable[[torch.Tensor], Any]) -> Callable[[torch.Tensor], Any]:
    def loss(logprobs: torch.Tensor) -> Any:
        return body(logprobs)
    return loss


def _branching(logprobs: torch.Tensor) -> Any:
    if logprobs.sum() > 0:
        return logprobs.sum(), {}
    return -logprobs.sum(), {}


def _no_such_method(logprobs: torch.Tensor) -> Any:
    return logprobs.no_such_method(), {}  # type: ignore[attr-defined]


def _backward(logprobs: torch.Tensor) -> Any:
    loss = logprobs.sum()
    loss.backward()  # type: ignore[no-untyped-call]
    return loss, {}


REFUSED: dict[str, tuple[Any, Any, str]] = {
    "not a function": (42, {"logprobs": 1}, "takes a function"),
    "logprobs not first": (lambda weights, logprobs: (logprobs.sum(), {}), {"logprobs": 1, "weights": 1},
                           "must take logprobs first"),
    "too many parameters": (_many_parameters(), {"logprobs": 1, **{f"x{i}": 1 for i in range(16)}}, "at most 16"),
    "uppercase parameter": (lambda logprobs, Adv: (logprobs.sum(), {}), {"logprobs": 1, "Adv": 1}, "lowercase"),
    "*args": (lambda logprobs, *rest: (logprobs.sum(), {}), {"logprobs": 1, "rest": 1}, "plain positional"),
    "keyword-only": (lambda logprobs, *, w: (logprobs.sum(), {}), {"logprobs": 1, "w": 1}, "plain positional"),
    "default": (lambda logprobs, w=None: (logprobs.sum(), {}), {"logprobs": 1, "w": 1}, "has a default"),
    "rank missing": (lambda logprobs, w: (logprobs.sum(), {}), {"logprobs": 1}, "map each parameter"),
    "rank for no parameter": (lambda logprobs: (logprobs.sum(), {}), {"logprobs": 1, "w": 1}, "map each parameter"),
    "ranks not a mapping": (lambda logprobs: (logprobs.sum(), {}), [("logprobs", 1)], "map each parameter"),
    "rank 3": (lambda logprobs: (logprobs.sum(), {}), {"logprobs": 3}, "must be 0"),
    "rank True": (lambda logprobs: (logprobs.sum(), {}), {"logprobs": True}, "must be 0"),
    "scalar logprobs": (lambda logprobs: (logprobs.sum(), {}), {"logprobs": 0}, "not 0"),
    "numpy": (_loss(lambda lp: (np.exp(lp).sum(), {})), {"logprobs": 1}, "cannot be traced"),
    "branching on values": (_branching, {"logprobs": 1}, "cannot be traced"),
    "nn module": (_loss(lambda lp: (_MODULE(lp).sum(), {})), {"logprobs": 1}, "torch.nn modules"),
    "captured tensor": (_loss(lambda lp: ((lp * _CAPTURED).sum(), {})), {"logprobs": 1}, "captured"),
    "another library's function": (_loss(lambda lp: (_outside_helper(lp).sum(), {})), {"logprobs": 1},
                                   "only call torch and math"),
    "item()": (_loss(lambda lp: (lp.sum(), {"custom/s:sum": lp.sum().item()})), {"logprobs": 1}, "leaves torch"),
    "backward()": (_backward, {"logprobs": 1}, "backward"),
    "not a tensor method": (_no_such_method, {"logprobs": 1}, "not a torch.Tensor"),
    "one return value": (_loss(lambda lp: lp.sum()), {"logprobs": 1}, "must return \\(loss, metrics\\)"),
    "constant loss": (_loss(lambda lp: (1.0, {})), {"logprobs": 1}, "computed from its inputs"),
    "metrics not a dict": (_loss(lambda lp: (lp.sum(), [lp.sum()])), {"logprobs": 1}, "as a dict"),
    "metric without custom/": (_loss(lambda lp: (lp.sum(), {"loss:sum": lp.sum()})), {"logprobs": 1}, "custom/"),
    "metric without suffix": (_loss(lambda lp: (lp.sum(), {"custom/s": lp.sum()})), {"logprobs": 1}, "custom/"),
    "uppercase metric": (_loss(lambda lp: (lp.sum(), {"custom/S:sum": lp.sum()})), {"logprobs": 1}, "lowercase"),
    "metric not a tensor": (_loss(lambda lp: (lp.sum(), {"custom/s:sum": 1.5})), {"logprobs": 1}, "must be a tensor"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_each_rule_is_refused_typed_before_anything_is_sent(service: LocalService, case: str) -> None:
    fn, ranks, message = REFUSED[case]
    with service.wire_log.capture() as wire, tinker.ServiceClient(config=config(service)) as svc:
        with pytest.raises(CustomLossDefinitionError, match=message) as refused:
            svc.create_custom_loss(fn, ranks)
        assert isinstance(refused.value, InvalidInputError) and isinstance(refused.value, ValueError)
        assert not svc.has_session  # not even the session was created for it
    assert not [r for r in wire.snapshot() if "custom_loss" in r.path or r.path.endswith("create_session")]


def test_a_session_creates_each_loss_once(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as svc:
        svc.create_custom_loss(pg_loss, PG_RANKS).result(10)
        with pytest.raises(CustomLossDefinitionError, match="already created 'pg_loss'"):
            svc.create_custom_loss(pg_loss, PG_RANKS)
        other_ranks: dict[str, CustomLossInputRank] = {**PG_RANKS, "weights": 2}
        other = svc.create_custom_loss(pg_loss, other_ranks).result(10)  # other ranks: another loss
        assert other.name == "pg_loss"


def test_a_loss_whose_session_failed_can_be_created_again(service: LocalService) -> None:
    rule = service.faults.add(FaultRule(endpoint="create_session", status=400, times=1))
    with tinker.ServiceClient(config=config(service)) as svc:
        with pytest.raises(tinker.BadRequestError):
            svc.create_custom_loss(pg_loss, PG_RANKS).result(10)
        assert service.faults.fired(rule) == 1
        assert svc.create_custom_loss(pg_loss, PG_RANKS).result(10).name == "pg_loss"  # not "already created"


def test_without_torch_the_error_says_so(service: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    with tinker.ServiceClient(config=config(service)) as svc:
        monkeypatch.setitem(sys.modules, "torch.fx", None)  # `import torch.fx` now raises ImportError
        with pytest.raises(TorchRequiredError, match="needs torch") as refused:
            svc.create_custom_loss(pg_loss, PG_RANKS)
        assert isinstance(refused.value, ImportError) and isinstance(refused.value, InvalidInputError)


# ---- what forward_backward_custom refuses with a handle -------------------------------------------------

def _training_ops(wire: WireCapture) -> list[str]:
    return [r.path for r in wire.snapshot() if r.path.endswith(("/forward", "/forward_backward", "/optim_step"))]


def test_a_handle_of_another_session_is_refused(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as mine, tinker.ServiceClient(config=config(service)) as theirs:
        handle = theirs.create_custom_loss(pg_loss, PG_RANKS).result(10)
        training = mine.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
        with service.wire_log.capture() as wire:
            with pytest.raises(LossHandleSessionError, match="only clients of that session") as refused:
                training.forward_backward_custom(advantage_datums(), handle)
            assert isinstance(refused.value, InvalidInputError)
        assert _training_ops(wire) == []
        # The same loss created in this session works.
        mine_handle = mine.create_custom_loss(pg_loss, PG_RANKS).result(10)
        assert training.forward_backward_custom(advantage_datums(), mine_handle).result(30).metrics


@pytest.mark.parametrize(("change", "message"), [
    (lambda inputs: inputs.pop("advantage"), "has no loss_fn_inputs\\['advantage'\\]"),
    (lambda inputs: inputs.update(advantage=tinker.TensorData(data=[1.0], dtype="float32", shape=[1])),
     "'advantage'\\] has rank 1, but loss 'pg_loss' declared advantage with rank 0"),
    (lambda inputs: inputs.update(weights=np.ones((19, 1), dtype=np.float32)), "'weights'\\] has rank 2"),
    (lambda inputs: inputs.update(target_tokens=np.ones((19, 2), dtype=np.int64)), "declared logprobs"),
])
def test_data_that_does_not_match_the_declared_ranks_is_refused(
        service: LocalService, change: Callable[[dict[str, Any]], Any], message: str) -> None:
    with tinker.ServiceClient(config=config(service)) as svc:
        handle = svc.create_custom_loss(pg_loss, PG_RANKS).result(10)
        training = svc.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
        data = advantage_datums()
        inputs = dict(data[1].loss_fn_inputs)
        change(inputs)
        data[1] = tinker.Datum(model_input=data[1].model_input, loss_fn_inputs=inputs)
        with service.wire_log.capture() as wire:
            with pytest.raises(InvalidInputError, match=message) as refused:
                training.forward_backward_custom(data, handle)
            assert str(refused.value).startswith("datum 1")
        assert _training_ops(wire) == []


def test_a_non_scalar_loss_fails_the_step_and_sends_no_backward(service: LocalService) -> None:
    def per_token(logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return -logprobs, {}

    with tinker.ServiceClient(config=config(service)) as svc:
        handle = svc.create_custom_loss(per_token, {"logprobs": 1}).result(10)
        training = svc.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
        with service.wire_log.capture() as wire, pytest.raises(CustomLossError, match="must return a scalar"):
            training.forward_backward_custom(advantage_datums(), handle).result(30)
        assert [path.rsplit("/", 1)[1] for path in _training_ops(wire)] in (["forward"], ["forward_backward"])
