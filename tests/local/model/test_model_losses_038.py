"""The training features of protocol 0.38 in the tiny model: gspo, 2-D (top-K) targets, text settings,
the refused stable_reinforce, and AdamW as torch computes it. Gradients against finite differences, float64."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.local.model import DatumArrays, InvalidModelInput, LoraTrainer

from .helpers import random_datum, randomize_lora
from .test_model_gradients import _check_gradients, _exact_logprobs, _trainer


def _gspo_datum(trainer: LoraTrainer, log_ratios: list[float], advantages: list[float], mask: list[float],
                **extra: np.ndarray) -> tuple[DatumArrays, np.ndarray]:
    """A datum whose sampler logprobs q put logp - q at `log_ratios` for the current weights, and its exact
    (float64) target logprobs."""
    rng = np.random.default_rng(21)
    probe = random_datum(rng, trainer.info.vocab_size, len(log_ratios))
    logp = _exact_logprobs(trainer, probe)
    inputs = {
        "target_tokens": probe.loss_inputs["target_tokens"],
        "logprobs": logp - np.asarray(log_ratios),
        "advantages": np.asarray(advantages, dtype=np.float64),
        "sequence_ratio_mask": np.asarray(mask, dtype=np.float64),
        **extra,
    }
    return DatumArrays(tokens=probe.tokens, loss_inputs=inputs), logp


def _gspo_reference(log_ratios: list[float], advantages: list[float], mask: list[float], low: float, high: float,
                    weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """The loss of the Tinker definition, the sequence ratio per token, and which tokens are clipped."""
    marked = np.asarray(mask) != 0
    s = np.exp(np.mean(np.asarray(log_ratios)[marked]))
    adv = np.asarray(advantages)
    w = np.ones_like(adv) if weights is None else weights
    unclipped, clipped = s * adv, np.clip(s, low, high) * adv
    return float(np.sum(-w * np.minimum(unclipped, clipped))), np.full_like(adv, s), clipped < unclipped


# ---------------------------------------------------------------------------------------------- gspo


def test_gspo_value_is_the_clipped_objective_on_the_sequence_ratio() -> None:
    trainer = _trainer()
    randomize_lora(trainer, 0)
    log_ratios = [9.0, -7.0, 0.3, 0.1, -0.2, 0.25]  # the first two are "prompt" positions, outside the mask
    advantages = [0.0, 0.0, 1.0, -0.5, 2.0, 1.0]
    mask = [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    datum, _ = _gspo_datum(trainer, log_ratios, advantages, mask)
    config = {"clip_low_threshold": 0.9, "clip_high_threshold": 1.05}
    result = trainer.forward([datum], "gspo", config)
    expected, ratio, clipped = _gspo_reference(log_ratios, advantages, mask, 0.9, 1.05)
    assert result.metrics["loss:sum"] == pytest.approx(expected, rel=1e-9)
    # Masked-out tokens do not move the ratio: s = exp(mean(0.3, 0.1, -0.2, 0.25)) ~ 1.116, above 1.05.
    assert ratio[0] == pytest.approx(np.exp(0.1125))
    assert result.metrics["clip_fraction:mean"] == pytest.approx(np.mean(clipped))
    assert 0.0 < result.metrics["clip_fraction:mean"] < 1.0  # A > 0 clipped, A < 0 kept (min picks s * A)
    np.testing.assert_allclose(result.outputs[0]["elementwise_loss"],
                               -np.minimum(ratio * advantages, np.clip(ratio, 0.9, 1.05) * advantages), rtol=1e-6)


def test_gspo_gradient_is_the_sequence_level_gradient_when_it_should_be() -> None:
    # One advantage for the sequence, every token in the mask, no clipping: GSPO-token's gradient is the
    # gradient of the sequence-level objective -sum(A * s(theta)), so finite differences of the loss check it.
    trainer = _trainer()
    randomize_lora(trainer, 1)
    log_ratios = [0.2, -0.1, 0.05, 0.3, -0.25]
    datum, _ = _gspo_datum(trainer, log_ratios, [0.7] * 5, [1.0] * 5)
    _check_gradients(trainer, [datum], "gspo", {"clip_low_threshold": 0.0, "clip_high_threshold": 100.0}, seed=1)


def test_gspo_token_gradient_carries_the_sequence_ratio_with_each_tokens_own_gradient() -> None:
    # Per-token advantages and weights, a partial mask and clipping on: d loss / d logp_t = -w_t * s * A_t for
    # the tokens min() keeps unclipped, 0 for the others. That is importance_sampling's gradient with sampler
    # logprobs q' = logp - log(s) (so that exp(logp - q') = s) and the clipped tokens weighted 0; its own
    # gradient is checked against finite differences here too.
    trainer = _trainer()
    randomize_lora(trainer, 2)
    log_ratios = [4.0, 0.3, 0.1, -0.2, 0.25, 0.05]
    advantages = [0.0, 1.0, -0.5, 2.0, 1.0, -1.5]
    mask = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    weights = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 1.0])
    low, high = 0.9, 1.05
    datum, logp = _gspo_datum(trainer, log_ratios, advantages, mask, weights=weights)
    config = {"clip_low_threshold": low, "clip_high_threshold": high}
    trainer.forward_backward([datum], "gspo", config)
    gspo = trainer.gradients()
    trainer.optim_step(lr=0.0)  # clears the pending gradients without moving the weights

    _, ratio, clipped = _gspo_reference(log_ratios, advantages, mask, low, high, weights)
    assert clipped.any() and not clipped.all()
    surrogate = DatumArrays(tokens=datum.tokens, loss_inputs={
        "target_tokens": datum.loss_inputs["target_tokens"], "logprobs": logp - np.log(ratio),
        "advantages": np.asarray(advantages), "weights": np.where(clipped, 0.0, weights)})
    _check_gradients(trainer, [surrogate], "importance_sampling", entries_per_key=1, seed=2)
    trainer.optim_step(lr=0.0)
    randomize_lora(trainer, 2)
    trainer.forward_backward([surrogate], "importance_sampling")
    reference = trainer.gradients()
    assert any(np.abs(g).max() > 1e-4 for g in gspo.values())
    for key, grad in gspo.items():
        np.testing.assert_allclose(grad, reference[key], rtol=1e-7, atol=1e-10)


def test_gspo_whole_sequence_clipped_gets_no_gradient() -> None:
    trainer = _trainer(targets=(False, False, True))
    randomize_lora(trainer, 3)
    datum, _ = _gspo_datum(trainer, [0.5, 0.6, 0.4], [1.0, 2.0, 0.5], [1.0, 1.0, 1.0])  # s ~ 1.65 > 1.2, A > 0
    result = trainer.forward_backward([datum], "gspo", None)
    assert result.metrics["clip_fraction:mean"] == 1.0
    assert all(not np.any(g) for g in trainer.gradients().values())


@pytest.mark.parametrize(("mask", "message"), [(None, "needs loss input 'sequence_ratio_mask'"),
                                               ([0.0, 0.0, 0.0], "sequence_ratio_mask marks no token")])
def test_gspo_needs_a_sequence_ratio_mask_marking_tokens(mask: list[float] | None, message: str) -> None:
    trainer = _trainer()
    datum, _ = _gspo_datum(trainer, [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], mask or [1.0, 1.0, 1.0])
    inputs = dict(datum.loss_inputs)
    if mask is None:
        del inputs["sequence_ratio_mask"]
    with pytest.raises(InvalidModelInput, match=message):
        trainer.forward([DatumArrays(tokens=datum.tokens, loss_inputs=inputs)], "gspo")


def test_gspo_learns_to_prefer_the_sequence_with_the_higher_advantage() -> None:
    trainer = LoraTrainer("tiny-byte", rank=4, seed=1, dtype=np.float64)
    rng = np.random.default_rng(30)
    good, bad = random_datum(rng, trainer.info.vocab_size, 6), random_datum(rng, trainer.info.vocab_size, 6)

    def sequence_logprob(datum: DatumArrays) -> float:
        return float(np.sum(trainer.forward([datum], "cross_entropy").outputs[0]["logprobs"]))

    before = sequence_logprob(good) - sequence_logprob(bad)
    for _ in range(15):
        batch = []
        for datum, advantage in ((good, 1.0), (bad, -1.0)):
            logp = trainer.forward([datum], "cross_entropy").outputs[0]["logprobs"].astype(np.float64)
            batch.append(DatumArrays(tokens=datum.tokens, loss_inputs={
                "target_tokens": datum.loss_inputs["target_tokens"], "logprobs": logp,
                "advantages": np.full(6, advantage), "sequence_ratio_mask": np.ones(6)}))
        trainer.forward_backward(batch, "gspo")
        trainer.optim_step(lr=2e-2)
    assert sequence_logprob(good) - sequence_logprob(bad) > before + 5.0


# ----------------------------------------------------------------------------------- 2-D (top-K) targets


def _top_k_datum(trainer: LoraTrainer, n: int, k: int, seed: int) -> DatumArrays:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, trainer.info.vocab_size, n)
    targets = rng.integers(0, trainer.info.vocab_size, (n, k))
    targets[1, 1] = targets[1, 0]  # the same token twice at one position: both terms count
    teacher = rng.dirichlet(np.ones(k), n)  # soft targets: the teacher's probabilities of its top-K tokens
    return DatumArrays(tokens=tokens, loss_inputs={"target_tokens": targets, "weights": teacher})


def test_top_k_cross_entropy_gradients() -> None:
    trainer = _trainer()
    # Ragged: K = 3 and K = 2 (each width goes through the model in its own micro-batch).
    _check_gradients(trainer, [_top_k_datum(trainer, 5, 3, 40), _top_k_datum(trainer, 3, 2, 41)], "cross_entropy")


def test_top_k_logprobs_are_each_columns_own_logprobs() -> None:
    trainer = _trainer()
    randomize_lora(trainer, 4)
    datum = _top_k_datum(trainer, 4, 3, 42)
    plain = random_datum(np.random.default_rng(43), trainer.info.vocab_size, 7)
    result = trainer.forward([plain, datum, plain], "cross_entropy")
    assert [out["logprobs"].shape for out in result.outputs] == [(7,), (4, 3), (7,)]
    assert result.outputs[1]["elementwise_loss"].shape == (4, 3)
    targets, weights = datum.loss_inputs["target_tokens"], datum.loss_inputs["weights"]
    expected = 0.0
    for column in range(3):
        single = DatumArrays(tokens=datum.tokens, loss_inputs={"target_tokens": targets[:, column],
                                                                 "weights": weights[:, column]})
        one = trainer.forward([single], "cross_entropy")
        np.testing.assert_allclose(result.outputs[1]["logprobs"][:, column], one.outputs[0]["logprobs"], rtol=1e-6)
        expected += one.metrics["loss:sum"]
    plain_loss = trainer.forward([plain], "cross_entropy").metrics["loss:sum"]
    assert result.metrics["loss:sum"] == pytest.approx(expected + 2 * plain_loss, rel=1e-9)


@pytest.mark.parametrize(("loss_fn", "inputs", "message"), [
    ("ppo", {"logprobs": np.zeros(4), "advantages": np.ones(4)}, "taken by cross_entropy only"),
    ("cross_entropy", {"weights": np.ones(4)}, r"expected \(4, 2\) like target_tokens"),
    ("cross_entropy", {"weights": np.ones((4, 3))}, r"expected \(4, 2\) like target_tokens"),
])
def test_two_d_inputs_that_do_not_fit_are_refused(loss_fn: str, inputs: dict[str, np.ndarray], message: str) -> None:
    trainer = _trainer()
    datum = DatumArrays(tokens=np.arange(4), loss_inputs={"target_tokens": np.ones((4, 2), dtype=np.int64), **inputs})
    with pytest.raises(InvalidModelInput, match=message):
        trainer.forward([datum], loss_fn)


# ------------------------------------------------------------------------- refused losses and settings


def test_stable_reinforce_is_refused_with_the_reason() -> None:
    trainer = _trainer()
    datum = random_datum(np.random.default_rng(50), trainer.info.vocab_size, 4,
                         logprobs=np.zeros(4), advantages=np.ones(4))
    with pytest.raises(InvalidModelInput, match=r"does not implement stable_reinforce: its objective is not published"):
        trainer.forward_backward([datum], "stable_reinforce")
    assert trainer.pending_backwards == 0


def test_text_settings_are_refused_naming_the_text() -> None:
    trainer = _trainer()
    datum = random_datum(np.random.default_rng(51), trainer.info.vocab_size, 4,
                         logprobs=np.zeros(4), advantages=np.ones(4))
    with pytest.raises(InvalidModelInput, match="must be a number, got the text 'tight'"):
        trainer.forward([datum], "ppo", {"clip_low_threshold": "tight"})


# ------------------------------------------------------------------------------------------------ AdamW


def test_optim_step_is_torch_adamw_with_global_norm_clipping() -> None:
    torch = pytest.importorskip("torch")
    trainer = LoraTrainer("tiny-byte", rank=2, dtype=np.float64)
    state = randomize_lora(trainer, 7)
    keys = [key for key in state if key.startswith("lora.")]
    params = [torch.tensor(state[key], dtype=torch.float64, requires_grad=True) for key in keys]
    lr, wd, clip = 3e-3, 0.1, 0.05
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-12, weight_decay=wd)
    rng = np.random.default_rng(7)
    clipped_steps = 0
    for _ in range(3):
        trainer.forward_backward([random_datum(rng, trainer.info.vocab_size, 9)], "cross_entropy")
        grads = trainer.gradients()
        norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
        factor = min(1.0, clip / norm)  # "clipped to this value": the global norm becomes grad_clip_norm exactly
        clipped_steps += factor < 1.0
        for key, param in zip(keys, params, strict=True):
            param.grad = torch.tensor(grads[key.removeprefix("lora.")] * factor)
        optimizer.step()
        trainer.optim_step(lr, 0.9, 0.95, 1e-12, weight_decay=wd, grad_clip_norm=clip)
    assert clipped_steps > 0
    after = trainer.state(with_optimizer=False)
    for key, param in zip(keys, params, strict=True):
        np.testing.assert_allclose(after[key], param.detach().numpy(), rtol=1e-9, atol=1e-12)
