"""The training features of 0.38 (FEATURES T11) as a user writes them, run by either SDK.

Usage: ``journey_training.py [tinker|tinker_actors]``. With ``tinker`` (the default) it runs under the
official tinker==0.38.0 SDK's interpreter (``.venv-tinker038``); with ``tinker_actors`` under ours. The
only difference is the import below: the rest is the same code, pointed at a local service by
``TINKER_BASE_URL`` / ``TINKER_API_KEY`` (and, for ours, ``TINKER_ACTORS_PROTOCOL``).

What it does, each call awaited before the next (so the requests arrive in a fixed order):
a model created with ``optimizer=AdamOptimizerConfig()``; GSPO steps on a fixed batch of two sampled
sequences (one rewarded, one not) with AdamW weight decay and gradient clipping, whose loss must fall;
top-K distillation with 2-D ``target_tokens`` / ``weights``, dense and as sparse CSR tensors (the same
loss); a text value in ``loss_fn_config``; and what is refused: ``stable_reinforce`` and a Dimuon model.
The last stdout line is ``{"steps": {name: "ok" | error}, "values": {...}}``; a refusal is a value
(``{"refused": type name, "message": text}``), not a failed step.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

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
PROMPT = list(b"the ")
GOOD = PROMPT + list(b"cat sat on the mat")
BAD = PROMPT + list(b"dog ran off a log")
TEXT = list(b"the quick brown fox jumps over the lazy dog. ")
TOP_K = 3
SOFT_ROWS = 5  # rows where the teacher spreads its probability over all K tokens (the others: one token)
GSPO_STEPS = 6
GSPO_CONFIG = {"clip_low_threshold": 0.5, "clip_high_threshold": 2.0}


def _done(value: Any) -> Any:
    return done(value, TIMEOUT_S)


def _policy_datum(sequence: list[int], sampler_logprobs: np.ndarray, advantage: float) -> types.Datum:
    """A GSPO datum: advantages and the sequence-ratio mask on the sampled (completion) positions only."""
    n = len(sequence) - 1
    sampled = np.arange(n) >= len(PROMPT) - 1
    return types.Datum(model_input=types.ModelInput.from_ints(sequence[:-1]), loss_fn_inputs={
        "target_tokens": np.asarray(sequence[1:], dtype=np.int64),
        "logprobs": sampler_logprobs.astype(np.float32),
        "advantages": np.where(sampled, advantage, 0.0).astype(np.float32),
        "sequence_ratio_mask": sampled.astype(np.float32),
    })


def _plain_datum(sequence: list[int]) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(sequence[:-1]),
                       loss_fn_inputs={"target_tokens": sequence[1:], "weights": [1.0] * (len(sequence) - 1)})


def gspo(journey: Journey, training: Any) -> None:
    def sample_logprobs() -> list[np.ndarray]:
        out = training.forward([_plain_datum(GOOD), _plain_datum(BAD)], "cross_entropy").result(timeout=TIMEOUT_S)
        return [np.asarray(o["logprobs"].tolist(), dtype=np.float64) for o in out.loss_fn_outputs]

    old = journey.step("sampler_logprobs", sample_logprobs)
    if old is None:
        return
    batch = [_policy_datum(GOOD, old[0], 1.0), _policy_datum(BAD, old[1], -1.0)]

    def steps() -> dict[str, Any]:
        losses, grad_norms = [], []
        for _ in range(GSPO_STEPS):
            out = training.forward_backward(batch, "gspo", GSPO_CONFIG).result(timeout=TIMEOUT_S)
            optim = training.optim_step(types.AdamParams(learning_rate=5e-4, weight_decay=0.01,
                                                         grad_clip_norm=0.5)).result(timeout=TIMEOUT_S)
            losses.append(out.metrics["loss:sum"])
            grad_norms.append((optim.metrics or {}).get("grad_norm:mean"))
        return {"losses": losses, "grad_norms": grad_norms,
                "clip_fraction": out.metrics.get("clip_fraction:mean")}

    journey.values["gspo"] = journey.step("gspo_steps", steps)
    new = journey.step("policy_logprobs_after", sample_logprobs)
    if new is not None:
        journey.values["preference_before"] = float(old[0].sum() - old[1].sum())
        journey.values["preference_after"] = float(new[0].sum() - new[1].sum())


def _top_k() -> tuple[np.ndarray, np.ndarray]:
    """Targets ``[N, K]`` (the true next token first) and a teacher's probabilities over them."""
    rng = np.random.default_rng(5)
    n = len(TEXT) - 1
    targets = np.zeros((n, TOP_K), dtype=np.int64)
    weights = np.zeros((n, TOP_K), dtype=np.float32)
    targets[:, 0] = TEXT[1:]
    weights[:, 0] = 1.0
    targets[:SOFT_ROWS, 1:] = rng.integers(97, 123, (SOFT_ROWS, TOP_K - 1))
    weights[:SOFT_ROWS] = rng.dirichlet(np.ones(TOP_K), SOFT_ROWS).astype(np.float32)
    return targets, weights


def _csr(dense: np.ndarray) -> types.TensorData:
    """``dense`` as a sparse CSR TensorData: the non-zero entries, their columns, and row pointers."""
    rows, cols = np.nonzero(dense)
    crow = np.searchsorted(rows, np.arange(dense.shape[0] + 1)).tolist()
    dtype = "int64" if dense.dtype.kind == "i" else "float32"
    return types.TensorData(data=dense[rows, cols].tolist(), dtype=dtype, shape=list(dense.shape),
                            sparse_crow_indices=crow, sparse_col_indices=cols.tolist())


def distillation(journey: Journey, training: Any) -> None:
    targets, weights = _top_k()
    model_input = types.ModelInput.from_ints(TEXT[:-1])

    def dense() -> dict[str, Any]:
        datum = types.Datum(model_input=model_input, loss_fn_inputs={"target_tokens": targets, "weights": weights})
        out = training.forward([datum], "cross_entropy").result(timeout=TIMEOUT_S)
        logprobs = out.loss_fn_outputs[0]["logprobs"]
        return {"loss": out.metrics["loss:sum"], "logprobs_shape": list(np.asarray(logprobs.tolist()).shape),
                "logprobs": np.asarray(logprobs.tolist()).round(5).tolist()}

    def sparse() -> dict[str, Any]:
        datum = types.Datum(model_input=model_input,
                            loss_fn_inputs={"target_tokens": _csr(targets), "weights": _csr(weights)})
        out = training.forward([datum], "cross_entropy").result(timeout=TIMEOUT_S)
        return {"loss": out.metrics["loss:sum"],
                "logprobs_shape": list(np.asarray(out.loss_fn_outputs[0]["logprobs"].tolist()).shape)}

    journey.values["top_k_dense"] = journey.step("top_k_dense", dense)
    journey.values["top_k_sparse"] = journey.step("top_k_sparse", sparse)


def main() -> None:
    journey = Journey()
    service = tinker.ServiceClient()
    training = journey.step("create_with_adamw", lambda: _done(service.create_lora_training_client(
        base_model="tiny-byte", rank=8, seed=11, optimizer=types.AdamOptimizerConfig())))
    if training is not None:
        gspo(journey, training)
        distillation(journey, training)
        text_datum = _policy_datum(GOOD, np.zeros(len(GOOD) - 1), 1.0)
        journey.refusal("text_loss_setting", lambda: training.forward(
            [text_datum], "ppo", {"clip_low_threshold": "tight"}).result(timeout=TIMEOUT_S))
        journey.refusal("stable_reinforce", lambda: training.forward_backward(
            [text_datum], "stable_reinforce").result(timeout=TIMEOUT_S))
    journey.refusal("create_with_dimuon", lambda: _done(service.create_lora_training_client(
        base_model="tiny-byte", rank=8, optimizer=types.DimuonOptimizerConfig())))
    journey.report()


if __name__ == "__main__":
    main()
