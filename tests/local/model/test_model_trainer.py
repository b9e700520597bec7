"""LoraTrainer: loss formulas, outputs and metrics, Adam, state round trips, input validation."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tinker_actors.local.model import (
    ContextWindowExceeded,
    DatumArrays,
    IncompatibleCheckpoint,
    InvalidModelInput,
    LoraTrainer,
    UnknownBaseModel,
    read_lora_config,
)

from .helpers import random_datum, randomize_lora


def _rl_datum(rng: np.random.Generator, vocab: int, n: int) -> DatumArrays:
    return random_datum(
        rng,
        vocab,
        n,
        logprobs=-rng.uniform(1.0, 8.0, n),
        advantages=rng.normal(0.0, 1.0, n),
    )


def test_outputs_and_metrics_have_the_wire_shapes() -> None:
    trainer = LoraTrainer("tiny-bpe", rank=4)
    rng = np.random.default_rng(0)
    batch = [random_datum(rng, trainer.info.vocab_size, n) for n in (5, 12, 1)]
    result = trainer.forward_backward(batch, "cross_entropy")
    assert len(result.outputs) == 3
    for datum, output in zip(batch, result.outputs, strict=True):
        assert set(output) == {"logprobs", "elementwise_loss"}
        for value in output.values():
            assert value.dtype == np.float32
            assert value.shape == (len(datum.tokens),)
        assert np.all(output["logprobs"] <= 0)
    assert "loss:sum" in result.metrics
    assert all(key.count(":") == 1 for key in result.metrics)
    total = sum(float(o["elementwise_loss"].sum()) for o in result.outputs)
    assert result.metrics["loss:sum"] == pytest.approx(total, rel=1e-5)
    # A fresh adapter (B = 0) is the base model: near-uniform-ish random model, loss ~ log(vocab) or more.
    assert result.metrics["loss:sum"] / 18 > 0.5 * np.log(trainer.info.vocab_size)


@pytest.mark.parametrize("loss_fn", ["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"])
def test_elementwise_loss_matches_the_formula(loss_fn: str) -> None:
    trainer = LoraTrainer("tiny-byte", rank=4, dtype=np.float64)
    randomize_lora(trainer, 1)
    rng = np.random.default_rng(1)
    datum = _rl_datum(rng, trainer.info.vocab_size, 10)
    weights = rng.uniform(0.0, 2.0, 10)
    datum = DatumArrays(tokens=datum.tokens, loss_inputs={**datum.loss_inputs, "weights": weights})
    # logprobs near the model's so ratios land on both sides of the clip bounds
    logp = trainer.forward([datum], "cross_entropy").outputs[0]["logprobs"].astype(np.float64)
    q = logp + rng.uniform(-0.6, 0.6, 10)
    inputs = {**datum.loss_inputs, "logprobs": q}
    datum = DatumArrays(tokens=datum.tokens, loss_inputs=inputs)
    adv = inputs["advantages"]

    result = trainer.forward([datum], loss_fn)
    out = result.outputs[0]
    lp = out["logprobs"].astype(np.float64)
    r = np.exp(lp - q)
    expected = {
        "cross_entropy": -weights * lp,
        "importance_sampling": -weights * r * adv,
        "ppo": -weights * np.minimum(r * adv, np.clip(r, 0.8, 1.2) * adv),
        "cispo": -weights * np.clip(r, 0.0, 4.0) * adv * lp,
        "dro": -weights * (adv * lp - 0.5 * 0.1 * (lp - q) ** 2),
    }[loss_fn]
    np.testing.assert_allclose(out["elementwise_loss"], expected, rtol=1e-5, atol=1e-6)
    assert result.metrics["loss:sum"] == pytest.approx(float(expected.sum()), rel=1e-5, abs=1e-6)


def test_missing_weights_mean_ones_and_config_defaults_apply() -> None:
    trainer = LoraTrainer("tiny-byte", rank=4)
    rng = np.random.default_rng(2)
    datum = _rl_datum(rng, trainer.info.vocab_size, 8)
    ones = DatumArrays(tokens=datum.tokens, loss_inputs={**datum.loss_inputs, "weights": np.ones(8)})
    for loss_fn in ("cross_entropy", "ppo", "cispo", "dro"):
        assert trainer.forward([datum], loss_fn).metrics["loss:sum"] == trainer.forward([ones], loss_fn).metrics[
            "loss:sum"
        ]
    assert (
        trainer.forward([datum], "ppo").metrics["loss:sum"]
        == trainer.forward([datum], "ppo", {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}).metrics["loss:sum"]
    )
    assert (
        trainer.forward([datum], "dro").metrics["loss:sum"]
        == trainer.forward([datum], "dro", {"beta": 0.1}).metrics["loss:sum"]
    )
    assert (
        trainer.forward([datum], "dro").metrics["loss:sum"]
        != trainer.forward([datum], "dro", {"beta": 2.0}).metrics["loss:sum"]
    )


def test_per_token_clip_thresholds_override_the_config() -> None:
    trainer = LoraTrainer("tiny-byte", rank=4)
    rng = np.random.default_rng(3)
    datum = _rl_datum(rng, trainer.info.vocab_size, 6)
    per_token = DatumArrays(
        tokens=datum.tokens,
        loss_inputs={**datum.loss_inputs, "clip_low_threshold": np.full(6, 0.5), "clip_high_threshold": np.full(6, 2)},
    )
    via_config = trainer.forward([datum], "ppo", {"clip_low_threshold": 0.5, "clip_high_threshold": 2.0})
    assert trainer.forward([per_token], "ppo").metrics["loss:sum"] == pytest.approx(via_config.metrics["loss:sum"])


def _lora_params(trainer: LoraTrainer) -> dict[str, np.ndarray]:
    state = trainer.state(with_optimizer=False)
    return {key.removeprefix("lora."): value for key, value in state.items() if key.startswith("lora.")}


def _adam_reference(
    params: dict[str, np.ndarray], grads_per_step: list[dict[str, np.ndarray]], lr: float, b1: float, b2: float,
    eps: float, wd: float, clip: float,
) -> dict[str, np.ndarray]:
    p = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for t, grads in enumerate(grads_per_step, start=1):
        norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        factor = clip / norm if clip > 0 and norm > clip else 1.0
        for k in p:
            g = grads[k] * factor
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            p[k] = p[k] - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p[k])
    return p


@pytest.mark.parametrize(
    ("lr", "b1", "b2", "eps", "wd", "clip"),
    [(1e-2, 0.9, 0.95, 1e-12, 0.0, 0.0), (3e-3, 0.8, 0.99, 1e-8, 0.1, 0.05)],
    ids=["tinker-defaults-betas", "weight-decay-and-clipping"],
)
def test_adam_matches_a_direct_computation(lr: float, b1: float, b2: float, eps: float, wd: float, clip: float) -> None:
    trainer = LoraTrainer("tiny-byte", rank=2, dtype=np.float64)
    randomize_lora(trainer, 5)
    params = _lora_params(trainer)
    rng = np.random.default_rng(5)
    grads_per_step = []
    metrics: dict[str, float] = {}
    for _ in range(3):
        trainer.forward_backward([random_datum(rng, trainer.info.vocab_size, 9)], "cross_entropy")
        grads_per_step.append(trainer.gradients())
        metrics = trainer.optim_step(lr, b1, b2, eps, weight_decay=wd, grad_clip_norm=clip)
    expected = _adam_reference(params, grads_per_step, lr, b1, b2, eps, wd, clip)
    state = trainer.state(with_optimizer=True)
    for key, value in expected.items():
        np.testing.assert_allclose(state[f"lora.{key}"], value, rtol=1e-10, atol=1e-13)
    assert int(state["adam.step"]) == 3 == trainer.optimizer_step
    last_norm = np.sqrt(sum(np.sum(g**2) for g in grads_per_step[-1].values()))
    assert metrics["grad_norm:mean"] == pytest.approx(last_norm)
    assert all(key.count(":") == 1 for key in metrics)
    if clip:
        assert last_norm > clip  # the clipping branch was exercised


def test_optim_step_defaults_are_tinker_0_6_3_adam() -> None:
    trainer = LoraTrainer("tiny-byte", rank=2, dtype=np.float64)
    randomize_lora(trainer, 6)
    params = _lora_params(trainer)
    trainer.forward_backward([random_datum(np.random.default_rng(6), 257, 5)], "cross_entropy")
    grads = trainer.gradients()
    trainer.optim_step()
    expected = _adam_reference(params, [grads], 1e-4, 0.9, 0.95, 1e-12, 0.0, 0.0)
    state = trainer.state(with_optimizer=False)
    for key, value in expected.items():
        np.testing.assert_allclose(state[f"lora.{key}"], value, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"beta1": 1.0}, {"beta2": -0.1}, {"eps": float("nan")}])
def test_bad_adam_parameters_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidModelInput):
        LoraTrainer("tiny-byte", rank=2).optim_step(**bad)


def _train_steps(trainer: LoraTrainer, seed: int, steps: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        trainer.forward_backward([random_datum(rng, trainer.info.vocab_size, 16)], "cross_entropy")
        trainer.optim_step(lr=1e-2)


def test_state_round_trip_with_optimizer_continues_identically_through_savez() -> None:
    original = LoraTrainer("tiny-bpe", rank=8, seed=7, train_attn=False)
    _train_steps(original, 1, 3)
    buffer = io.BytesIO()
    np.savez(buffer, **original.state(with_optimizer=True))  # type: ignore[arg-type]  # stubs: kwds vs allow_pickle
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}

    config = read_lora_config(arrays)
    assert (config.base_name, config.rank, config.seed, config.train_attn) == ("tiny-bpe", 8, 7, False)
    restored = LoraTrainer.from_state(arrays)
    assert restored.optimizer_step == 3
    _train_steps(original, 2, 2)
    _train_steps(restored, 2, 2)
    a, b = original.state(with_optimizer=True), restored.state(with_optimizer=True)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_state_without_optimizer_restarts_adam() -> None:
    trainer = LoraTrainer("tiny-byte", rank=4)
    _train_steps(trainer, 1, 2)
    weights_only = trainer.state(with_optimizer=False)
    assert not any(key.startswith("adam.") for key in weights_only)
    restored = LoraTrainer.from_state(weights_only)
    assert restored.optimizer_step == 0
    for key, value in weights_only.items():
        np.testing.assert_array_equal(restored.state(with_optimizer=False)[key], value)
    # loading weights only into a trainer with optimizer history resets that history
    trainer.load_state(weights_only, with_optimizer=False)
    assert trainer.optimizer_step == 0
    with pytest.raises(IncompatibleCheckpoint, match="optimizer"):
        trainer.load_state(weights_only, with_optimizer=True)


def test_load_state_refuses_an_incompatible_checkpoint() -> None:
    state = LoraTrainer("tiny-byte", rank=4).state(with_optimizer=False)
    with pytest.raises(IncompatibleCheckpoint, match="rank"):
        LoraTrainer("tiny-byte", rank=8).load_state(state, with_optimizer=False)
    with pytest.raises(IncompatibleCheckpoint):
        LoraTrainer("tiny-bpe", rank=4).load_state(state, with_optimizer=False)
    with pytest.raises(IncompatibleCheckpoint):
        LoraTrainer("tiny-byte", rank=4, train_mlp=False).load_state(state, with_optimizer=False)
    broken = dict(state)
    broken["lora.unembed.b"] = np.zeros((3, 3))
    with pytest.raises(IncompatibleCheckpoint, match="shape"):
        LoraTrainer("tiny-byte", rank=4).load_state(broken, with_optimizer=False)
    with pytest.raises(IncompatibleCheckpoint):
        read_lora_config({"something": np.zeros(2)})


def test_lora_init_is_seeded_and_b_starts_at_zero() -> None:
    a = LoraTrainer("tiny-byte", rank=4, seed=1).state(with_optimizer=False)
    b = LoraTrainer("tiny-byte", rank=4, seed=1).state(with_optimizer=False)
    c = LoraTrainer("tiny-byte", rank=4, seed=2).state(with_optimizer=False)
    default = LoraTrainer("tiny-byte", rank=4, seed=None).state(with_optimizer=False)
    zero = LoraTrainer("tiny-byte", rank=4, seed=0).state(with_optimizer=False)
    np.testing.assert_array_equal(a["lora.unembed.a"], b["lora.unembed.a"])
    assert not np.array_equal(a["lora.unembed.a"], c["lora.unembed.a"])
    np.testing.assert_array_equal(default["lora.unembed.a"], zero["lora.unembed.a"])
    assert not np.any(a["lora.unembed.b"])
    # which matrices have adapters
    attn_only = LoraTrainer("tiny-byte", rank=4, train_mlp=False, train_unembed=False).state(with_optimizer=False)
    assert {k for k in attn_only if k.startswith("lora.")} == {
        f"lora.layers.{i}.attn.{m}.{f}" for i in range(2) for m in ("wq", "wk", "wv", "wo") for f in "ab"
    }


def test_constructor_errors() -> None:
    with pytest.raises(UnknownBaseModel):
        LoraTrainer("gpt-5", rank=4)
    with pytest.raises(InvalidModelInput):
        LoraTrainer("tiny-byte", rank=0)
    with pytest.raises(InvalidModelInput):
        LoraTrainer("tiny-byte", rank=4, train_mlp=False, train_attn=False, train_unembed=False)


def test_invalid_batches_are_clear_value_errors() -> None:
    trainer = LoraTrainer("tiny-byte", rank=4)
    rng = np.random.default_rng(8)
    good = random_datum(rng, 257, 5)

    def datum(**inputs: object) -> DatumArrays:
        return DatumArrays(tokens=good.tokens, loss_inputs={**good.loss_inputs, **inputs})  # type: ignore[dict-item]

    cases: list[tuple[list[DatumArrays], str, str]] = [
        ([], "cross_entropy", "no datum"),
        ([good], "mse", "unknown loss_fn"),
        ([DatumArrays(tokens=np.array([1, 2, 300]), loss_inputs={"target_tokens": np.array([1, 2, 3])})],
         "cross_entropy", "outside the vocabulary"),
        ([datum(target_tokens=np.array([1, 2]))], "cross_entropy", "shape"),
        ([datum(target_tokens=np.array([1, 2, 3, 4, -1]))], "cross_entropy", "outside the vocabulary"),
        ([datum(weights=np.ones((5, 1)))], "cross_entropy", "shape"),
        ([datum(weights=np.array([1, 1, np.nan, 1, 1.0]))], "cross_entropy", "non-finite"),
        ([good], "ppo", "needs loss input 'logprobs'"),
        ([datum(logprobs=np.zeros(5))], "importance_sampling", "'advantages'"),
        ([datum(mask=np.ones(5))], "cross_entropy", "unknown loss input"),
        ([DatumArrays(tokens=np.zeros(0, np.int64), loss_inputs={"target_tokens": np.zeros(0, np.int64)})],
         "cross_entropy", "empty"),
        ([DatumArrays(tokens=np.array([1.5, 2.0]), loss_inputs={"target_tokens": np.array([1, 2])})],
         "cross_entropy", "integer"),
    ]
    for batch, loss_fn, message in cases:
        with pytest.raises(InvalidModelInput, match=message):
            trainer.forward_backward(batch, loss_fn)
    with pytest.raises(InvalidModelInput, match="not used by cross_entropy"):
        trainer.forward([good], "cross_entropy", {"beta": 1.0})
    with pytest.raises(InvalidModelInput, match="clip_low_threshold must not exceed"):
        trainer.forward([datum(logprobs=np.zeros(5), advantages=np.ones(5))], "ppo", {"clip_low_threshold": 2.0})
    with pytest.raises(InvalidModelInput, match="not finite"):
        trainer.forward([datum(logprobs=np.full(5, -1e4), advantages=np.ones(5))], "importance_sampling")
    assert trainer.pending_backwards == 0  # nothing was accumulated by the failed calls

    # Integral floats (JSON) for tokens, and RL inputs that cross_entropy does not use, are fine.
    floats = DatumArrays(
        tokens=good.tokens.astype(np.float32), loss_inputs={**good.loss_inputs, "advantages": np.ones(5)}
    )
    assert trainer.forward([floats], "cross_entropy").metrics["loss:sum"] == pytest.approx(
        trainer.forward([good], "cross_entropy").metrics["loss:sum"]
    )


def test_a_datum_longer_than_the_context_window_is_rejected() -> None:
    trainer = LoraTrainer("tiny-byte", rank=4)
    window = trainer.info.context_window
    rng = np.random.default_rng(9)
    trainer.forward([random_datum(rng, 257, window)], "cross_entropy")
    with pytest.raises(ContextWindowExceeded, match="context window"):
        trainer.forward([random_datum(rng, 257, window + 1)], "cross_entropy")
