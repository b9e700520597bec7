"""Hand-written gradients against central finite differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.local.model import DatumArrays, LoraTrainer

from .helpers import random_datum, randomize_lora

H = 1e-6
TOLERANCE = 2e-6  # relative to the largest gradient entry checked


def _loss(trainer: LoraTrainer, state: dict[str, np.ndarray], batch: list[DatumArrays], loss_fn: str,
          config: dict[str, float] | None) -> float:
    trainer.load_state(state, with_optimizer=False)
    return trainer.forward(batch, loss_fn, config).metrics["loss:sum"]


def _check_gradients(
    trainer: LoraTrainer,
    batch: list[DatumArrays],
    loss_fn: str,
    config: dict[str, float] | None = None,
    entries_per_key: int = 3,
    seed: int = 0,
) -> None:
    state = randomize_lora(trainer, seed)
    trainer.forward_backward(batch, loss_fn, config)
    analytic = trainer.gradients()
    rng = np.random.default_rng(seed + 1)
    checked = 0
    for key, grad in analytic.items():
        for _ in range(entries_per_key):
            index = tuple(int(rng.integers(0, n)) for n in grad.shape)
            values = {}
            for sign in (1, -1):
                perturbed = dict(state)
                perturbed[f"lora.{key}"] = state[f"lora.{key}"].copy()
                perturbed[f"lora.{key}"][index] += sign * H
                values[sign] = _loss(trainer, perturbed, batch, loss_fn, config)
            numeric = (values[1] - values[-1]) / (2 * H)
            scale = max(1.0, float(np.abs(grad).max()))
            assert abs(numeric - grad[index]) <= TOLERANCE * scale, (key, index, numeric, grad[index])
            checked += 1

    # A random direction through all parameters at once catches anything the sampled entries missed.
    direction = {key: rng.standard_normal(g.shape) for key, g in analytic.items()}
    along = {}
    for sign in (1, -1):
        moved = dict(state)
        for key, d in direction.items():
            moved[f"lora.{key}"] = state[f"lora.{key}"] + sign * H * d
        along[sign] = _loss(trainer, moved, batch, loss_fn, config)
    numeric = (along[1] - along[-1]) / (2 * H)
    exact = sum(float(np.vdot(analytic[key], d)) for key, d in direction.items())
    assert abs(numeric - exact) <= TOLERANCE * max(1.0, abs(exact)), (numeric, exact)
    assert checked == entries_per_key * len(analytic)
    assert any(float(np.abs(g).max()) > 1e-4 for g in analytic.values())


def _trainer(base: str = "tiny-byte", targets: tuple[bool, bool, bool] = (True, True, True)) -> LoraTrainer:
    mlp, attn, unembed = targets
    return LoraTrainer(base, rank=2, seed=3, train_mlp=mlp, train_attn=attn, train_unembed=unembed, dtype=np.float64)


@pytest.mark.parametrize(
    "targets",
    [(True, False, False), (False, True, False), (False, False, True), (True, True, True)],
    ids=["mlp", "attn", "unembed", "all"],
)
def test_cross_entropy_gradients_of_each_target_set(targets: tuple[bool, bool, bool]) -> None:
    trainer = _trainer(targets=targets)
    rng = np.random.default_rng(10)
    # Ragged batch: the shorter datum is padded inside the trainer.
    batch = [random_datum(rng, trainer.info.vocab_size, 7), random_datum(rng, trainer.info.vocab_size, 4)]
    _check_gradients(trainer, batch, "cross_entropy")


def test_cross_entropy_with_weights_on_the_bpe_model() -> None:
    trainer = _trainer("tiny-bpe")
    rng = np.random.default_rng(11)
    weights = np.array([0.0, 1.0, 2.5, 0.0, -0.5, 1.0])
    batch = [random_datum(rng, trainer.info.vocab_size, 6, weights=weights)]
    _check_gradients(trainer, batch, "cross_entropy")
    # Zero weight: that token's loss term is exactly zero.
    result = trainer.forward(batch, "cross_entropy")
    assert result.outputs[0]["elementwise_loss"][0] == 0.0


def _rl_batch(trainer: LoraTrainer, ratios: list[float], advantages: list[float]) -> list[DatumArrays]:
    """A datum whose sampler logprobs q put exp(logp - q) at the given ratios for the current weights."""
    rng = np.random.default_rng(12)
    n = len(ratios)
    probe = random_datum(rng, trainer.info.vocab_size, n)
    logp = trainer.forward([probe], "cross_entropy").outputs[0]["logprobs"].astype(np.float64)
    # outputs are float32; recompute q from the float64 trainer's own logprobs via a forward with weights
    exact = _exact_logprobs(trainer, probe)
    assert np.allclose(exact, logp, atol=1e-5)
    q = exact - np.log(np.asarray(ratios))
    inputs = dict(probe.loss_inputs)
    inputs["logprobs"] = q
    inputs["advantages"] = np.asarray(advantages, dtype=np.float64)
    return [DatumArrays(tokens=probe.tokens, loss_inputs=inputs)]


def _exact_logprobs(trainer: LoraTrainer, datum: DatumArrays) -> np.ndarray:
    """float64 logprobs: the per-token cross-entropy loss with one-hot weights, read from loss:sum."""
    n = len(datum.tokens)
    values = []
    for i in range(n):
        weights = np.zeros(n)
        weights[i] = 1.0
        single = DatumArrays(tokens=datum.tokens, loss_inputs={**datum.loss_inputs, "weights": weights})
        values.append(-trainer.forward([single], "cross_entropy").metrics["loss:sum"])
    return np.asarray(values)


RATIOS = [0.5, 0.9, 1.1, 1.5, 0.6, 3.0, 5.0, 1.0]
ADVANTAGES = [1.0, -1.0, 1.0, 1.0, -1.0, -0.5, 2.0, 0.7]


def test_importance_sampling_gradients() -> None:
    trainer = _trainer()
    randomize_lora(trainer, 0)
    _check_gradients(trainer, _rl_batch(trainer, RATIOS, ADVANTAGES), "importance_sampling")


def test_ppo_gradients_in_and_out_of_the_clip_region() -> None:
    trainer = _trainer()
    randomize_lora(trainer, 0)
    batch = _rl_batch(trainer, RATIOS, ADVANTAGES)
    config = {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    result = trainer.forward(batch, "ppo", config)
    # r=1.5,A>0 / r=0.6,A<0 / r=3,A<0 ... some tokens are clipped (no gradient), others are not.
    assert 0.0 < result.metrics["clip_fraction:mean"] < 1.0
    _check_gradients(trainer, batch, "ppo", config)


def test_ppo_clipped_tokens_get_no_gradient() -> None:
    trainer = _trainer(targets=(False, False, True))
    randomize_lora(trainer, 0)
    # Every token outside the trust region on the side where min() picks the clipped term.
    batch = _rl_batch(trainer, [1.5, 2.0, 0.5], [1.0, 3.0, -1.0])
    trainer.forward_backward(batch, "ppo", None)
    assert all(not np.any(g) for g in trainer.gradients().values())


def test_dro_gradients() -> None:
    trainer = _trainer()
    randomize_lora(trainer, 0)
    _check_gradients(trainer, _rl_batch(trainer, RATIOS, ADVANTAGES), "dro", {"beta": 0.3})


def test_cispo_gradient_is_weighted_cross_entropy_with_the_clipped_ratio_held_fixed() -> None:
    # cispo's clip(r) is stop-gradient, so finite differences of its loss are not its gradient: it must
    # equal the gradient of -sum(c * A * logp) with c = clip(r) frozen, checked here against a
    # cross_entropy run with weights c * A (whose gradient is itself checked by finite differences).
    trainer = _trainer()
    randomize_lora(trainer, 0)
    low, high = 0.8, 1.3
    batch = _rl_batch(trainer, RATIOS, ADVANTAGES)
    config = {"clip_low_threshold": low, "clip_high_threshold": high}
    result = trainer.forward(batch, "cispo", config)
    assert 0.0 < result.metrics["clip_fraction:mean"] < 1.0

    trainer.forward_backward(batch, "cispo", config)
    cispo = trainer.gradients()
    trainer.optim_step(lr=0.0)  # clears the pending gradients without moving the weights

    frozen = np.clip(np.asarray(RATIOS), low, high) * np.asarray(ADVANTAGES)
    datum = batch[0]
    weighted = DatumArrays(
        tokens=datum.tokens, loss_inputs={"target_tokens": datum.loss_inputs["target_tokens"], "weights": frozen}
    )
    _check_gradients(trainer, [weighted], "cross_entropy", entries_per_key=1)
    trainer.optim_step(lr=0.0)
    randomize_lora(trainer, 0)
    trainer.forward_backward([weighted], "cross_entropy")
    reference = trainer.gradients()
    for key, grad in cispo.items():
        np.testing.assert_allclose(grad, reference[key], rtol=1e-7, atol=1e-10)


def test_gradients_accumulate_over_calls_like_one_bigger_batch() -> None:
    trainer = _trainer()
    randomize_lora(trainer, 4)
    rng = np.random.default_rng(13)
    first = [random_datum(rng, trainer.info.vocab_size, 6)]
    second = [random_datum(rng, trainer.info.vocab_size, 9), random_datum(rng, trainer.info.vocab_size, 3)]
    trainer.forward_backward(first, "cross_entropy")
    trainer.forward_backward(second, "cross_entropy")
    assert trainer.pending_backwards == 2
    accumulated = trainer.gradients()
    trainer.optim_step(lr=0.0)
    assert trainer.pending_backwards == 0
    assert all(not np.any(g) for g in trainer.gradients().values())

    trainer.forward_backward(first + second, "cross_entropy")
    together = trainer.gradients()
    for key, grad in accumulated.items():
        np.testing.assert_allclose(grad, together[key], rtol=1e-9, atol=1e-12)
    # forward keeps no gradient
    before = trainer.gradients()
    trainer.forward(first, "cross_entropy")
    for key, grad in trainer.gradients().items():
        np.testing.assert_array_equal(grad, before[key])


def test_micro_batching_changes_nothing_but_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinker_actors.local.model import trainer as trainer_module

    trainer = _trainer()
    randomize_lora(trainer, 5)
    rng = np.random.default_rng(14)
    batch = [random_datum(rng, trainer.info.vocab_size, n) for n in (9, 3, 12, 5, 7)]
    whole = trainer.forward_backward(batch, "cross_entropy")
    whole_grads = trainer.gradients()
    trainer.optim_step(lr=0.0)

    # padded budget 20: groups [9, 3], [12], [5, 7]
    monkeypatch.setattr(trainer_module, "MICRO_BATCH_TOKENS", 20)
    validated = [trainer._validated(i, d, "cross_entropy") for i, d in enumerate(batch)]
    assert [len(group) for group in trainer_module._micro_batches(validated)] == [2, 1, 2]
    split = trainer.forward_backward(batch, "cross_entropy")
    assert split.metrics["loss:sum"] == pytest.approx(whole.metrics["loss:sum"], rel=1e-12)
    for a, b in zip(split.outputs, whole.outputs, strict=True):
        np.testing.assert_array_equal(a["logprobs"], b["logprobs"])
    for key, grad in trainer.gradients().items():
        np.testing.assert_allclose(grad, whole_grads[key], rtol=1e-9, atol=1e-12)
    assert trainer.pending_backwards == 1
