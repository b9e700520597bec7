"""The training features of 0.38 with our SDK over real HTTP, on protocol 0.38 and on 0.6.3 where it can
express them: gspo, AdamW's weight decay and clipping, top-K targets (dense and sparse), text settings,
and what is refused before anything is sent (a Dimuon model; stable_reinforce on 0.6.3)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import tinker_actors as tinker
from tinker_actors import types
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import InvalidInputError, RequestFailedError, UnsupportedFeatureError
from tinker_actors.local import LocalService

PROTOCOLS = ["0.38", "0.6.3"]
PROMPT = list(b"the ")
GOOD = PROMPT + list(b"cat sat on the mat")
BAD = PROMPT + list(b"dog ran off a log")
TEXT = list(b"the keeper climbed the stairs of the lighthouse")


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, service: LocalService) -> Iterator[tinker.ServiceClient]:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False,
                    protocol=request.param, retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05,
                                                              deadline=10.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05))
    with tinker.ServiceClient(config=config) as svc:
        yield svc


def _plain(sequence: list[int]) -> tinker.Datum:
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(sequence[:-1]),
                        loss_fn_inputs={"target_tokens": sequence[1:], "weights": [1.0] * (len(sequence) - 1)})


def _gspo_datum(sequence: list[int], sampler_logprobs: np.ndarray, advantage: float) -> tinker.Datum:
    sampled = np.arange(len(sequence) - 1) >= len(PROMPT) - 1
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(sequence[:-1]), loss_fn_inputs={
        "target_tokens": np.asarray(sequence[1:]), "logprobs": sampler_logprobs,
        "advantages": np.where(sampled, advantage, 0.0), "sequence_ratio_mask": sampled.astype(np.float32)})


def _logprobs(training: tinker.TrainingClient, *sequences: list[int]) -> list[np.ndarray]:
    out = training.forward([_plain(s) for s in sequences], "cross_entropy").result(30)
    return [o["logprobs"].to_numpy().astype(np.float64) for o in out.loss_fn_outputs]


def test_gspo_loss_falls_over_steps_on_a_fixed_batch(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=8, seed=11,
                                                  optimizer=types.AdamOptimizerConfig()).result(30)
    good, bad = _logprobs(training, GOOD, BAD)
    batch = [_gspo_datum(GOOD, good, 1.0), _gspo_datum(BAD, bad, -1.0)]
    config = {"clip_low_threshold": 0.5, "clip_high_threshold": 2.0}
    losses = []
    for _ in range(5):
        out = training.forward_backward(batch, "gspo", config).result(30)
        training.optim_step(types.AdamParams(learning_rate=5e-4, weight_decay=0.01, grad_clip_norm=0.5)).result(30)
        losses.append(out.metrics["loss:sum"])
        assert out.loss_fn_outputs[0]["logprobs"].shape == [len(GOOD) - 1]
    # On-policy first: every sequence ratio is 1, so the loss is -sum(A) = -(18 - 17) (18 rewarded sampled
    # tokens, 17 penalized). Then the ratios move, the rewarded sequence's up and the other's down.
    assert losses[0] == pytest.approx(-1.0, abs=1e-4)
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses
    new_good, new_bad = _logprobs(training, GOOD, BAD)
    assert new_good.sum() - new_bad.sum() > good.sum() - bad.sum() + 5.0


def _one_step(client: tinker.ServiceClient, adam: types.AdamParams) -> dict[str, float]:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=3).result(30)
    training.forward_backward([_plain(TEXT)], "cross_entropy").result(30)
    metrics = training.optim_step(optim_params=adam).result(30).metrics
    assert metrics is not None
    return metrics


def test_weight_decay_and_gradient_clipping_reach_the_model(client: tinker.ServiceClient) -> None:
    # A large eps makes Adam's first step proportional to the gradient it is given (|g| << eps), so a clipped
    # gradient moves the weights by grad_clip_norm / grad_norm of the unclipped step.
    plain = _one_step(client, types.AdamParams(learning_rate=1.0, eps=1e4))
    clipped = _one_step(client, types.AdamParams(learning_rate=1.0, eps=1e4, grad_clip_norm=0.5))
    assert plain["grad_norm:mean"] == pytest.approx(clipped["grad_norm:mean"])  # measured before clipping
    assert plain["grad_norm:mean"] > 0.5
    ratio = clipped["update_norm:mean"] / plain["update_norm:mean"]
    assert ratio == pytest.approx(0.5 / plain["grad_norm:mean"], rel=0.05)
    # Decoupled weight decay shrinks every adapter by lr * weight_decay of itself, whatever the gradient.
    decayed = _one_step(client, types.AdamParams(learning_rate=1.0, eps=1e4, weight_decay=0.1))
    assert decayed["param_norm:mean"] < 0.95 * plain["param_norm:mean"]


def test_optim_step_takes_one_adam_params_under_either_name(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=3).result(30)
    training.forward_backward([_plain(TEXT)], "cross_entropy").result(30)
    training.optim_step(adam_params=types.AdamParams(learning_rate=1e-3)).result(30)
    with pytest.raises(InvalidInputError, match="not both"):
        training.optim_step(types.AdamParams(), adam_params=types.AdamParams())


def _top_k(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    targets = np.zeros((n, k), dtype=np.int64)
    weights = np.zeros((n, k), dtype=np.float32)
    targets[:, 0], weights[:, 0] = TEXT[1:], 1.0
    targets[:3, 1:] = rng.integers(97, 123, (3, k - 1))
    weights[:3] = rng.dirichlet(np.ones(k), 3)
    return targets, weights


def test_top_k_targets_dense_and_sparse_train_the_same(client: tinker.ServiceClient, service: LocalService) -> None:
    n, k = len(TEXT) - 1, 8  # wide enough that CSR is smaller (most rows list one token)
    targets, weights = _top_k(n, k)
    model_input = tinker.ModelInput.from_ints(TEXT[:-1])
    dense = tinker.Datum(model_input=model_input, loss_fn_inputs={"target_tokens": targets, "weights": weights})
    sparse = tinker.Datum(model_input=model_input, loss_fn_inputs={
        "target_tokens": types.TensorData.from_numpy_sparse(targets),
        "weights": types.TensorData.from_numpy_sparse(weights)})
    assert all(tensor.is_sparse for tensor in sparse.loss_fn_inputs.values())
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=5).result(30)
    with service.wire_log.capture() as wire:
        first = training.forward([dense], "cross_entropy").result(30)
        second = training.forward([sparse], "cross_entropy").result(30)
    assert second.metrics["loss:sum"] == pytest.approx(first.metrics["loss:sum"], rel=1e-6)
    logprobs = first.loss_fn_outputs[0]["logprobs"]
    assert logprobs.shape == [n, k]
    np.testing.assert_allclose(second.loss_fn_outputs[0]["logprobs"].to_numpy(), logprobs.to_numpy(), rtol=1e-6)
    # The loss is the top-K cross-entropy: -sum(w * logp) over every listed target.
    assert first.metrics["loss:sum"] == pytest.approx(-float(np.sum(weights * logprobs.to_numpy())), rel=1e-5)
    sent = [r.decoded() for r in wire.records if r.path.endswith(("/forward_backward", "/forward"))]
    weights_sent = [_loss_input(body, "weights") for body in sent]
    if client.protocol.version == "0.38":
        assert "dense" in weights_sent[0] and "sparse_csr" in weights_sent[1]
    else:  # 0.6.3 has no sparse form: the same dense body twice
        assert weights_sent[0] == weights_sent[1] and weights_sent[1]["shape"] == [n, k]


def _loss_input(body: Any, name: str) -> Any:
    fb_input = body.get("forward_backward_input") or body.get("forward_input") or body
    inputs: Any = fb_input["data"][0]["loss_fn_inputs"]
    return inputs[name]


def test_text_settings_go_as_text_on_0_38_and_as_numbers_or_not_at_all_on_0_6_3(
        client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=5).result(30)
    good, = _logprobs(training, GOOD)
    datum = _gspo_datum(GOOD, good, 1.0)
    with service.wire_log.capture() as wire:
        if client.protocol.version == "0.38":
            with pytest.raises(RequestFailedError, match=r"must be a number, got the text '0\.5'"):
                training.forward([datum], "ppo", {"clip_low_threshold": "0.5"}).result(30)
            with pytest.raises(RequestFailedError, match="got the text 'tight'"):
                training.forward([datum], "ppo", {"clip_low_threshold": "tight"}).result(30)
        else:
            out = training.forward([datum], "ppo", {"clip_low_threshold": "0.5"}).result(30)  # its number
            assert out.metrics["loss:sum"] < 0
            with pytest.raises(InvalidInputError, match=r"protocol 0\.6\.3 carries numeric loss settings only"):
                training.forward([datum], "ppo", {"clip_low_threshold": "tight"})
    bodies = [r.decoded() for r in wire.records if r.path.endswith(("/forward_backward", "/forward"))]
    if client.protocol.version == "0.38":
        assert [b["loss_fn_config_v2"]["clip_low_threshold"] for b in bodies] == [{"text": "0.5"}, {"text": "tight"}]
        assert all("loss_fn_config" not in b for b in bodies)  # text goes in the v2 map only
    else:
        assert [json.dumps(b["forward_input"]["loss_fn_config"]) for b in bodies] == ['{"clip_low_threshold": 0.5}']


def test_what_is_not_built_is_refused_before_anything_is_sent(client: tinker.ServiceClient,
                                                             service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=5).result(30)
    with service.wire_log.capture() as wire:
        with pytest.raises(UnsupportedFeatureError, match="optimizer other than Adam"):
            client.create_lora_training_client("tiny-byte", rank=4, optimizer=types.DimuonOptimizerConfig()).result()
        if client.protocol.version == "0.6.3":  # 0.38 sends it (the service: a 400)
            with pytest.raises(UnsupportedFeatureError, match="stable_reinforce"):
                training.forward_backward([_plain(TEXT)], "stable_reinforce")
    assert [r.path for r in wire.records if "heartbeat" not in r.path and "telemetry" not in r.path] == []
