"""LoraTrainer: forward / forward_backward / optim_step / state of one LoRA adapter set.

Not thread-safe: one owner (the local service's model actor) calls it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model import transformer
from tinker_actors.local.model.adam import AdamHyperparams, AdamState, adam_step
from tinker_actors.local.model.checkpoint import (
    LoraConfig,
    decode_adam,
    decode_params,
    encode_state,
    has_optimizer_state,
    param_key,
    read_lora_config,
)
from tinker_actors.local.model.errors import ContextWindowExceeded, IncompatibleCheckpoint, InvalidModelInput
from tinker_actors.local.model.losses import (
    OPTIONAL_INPUTS,
    REQUIRED_INPUTS,
    TWO_D_INPUTS,
    resolve_loss_config,
    token_loss,
)
from tinker_actors.local.model.registry import BaseModelInfo, get_base_model
from tinker_actors.local.model.weights import (
    LORA_ALPHA,
    MAX_LORA_RANK,
    LoraPair,
    base_weights,
    init_lora,
    lora_scale,
)

Array = npt.NDArray[Any]
IntArray = npt.NDArray[np.int64]

_KNOWN_INPUTS = frozenset(key for keys in (*REQUIRED_INPUTS.values(), *OPTIONAL_INPUTS.values()) for key in keys)


@dataclass(frozen=True, eq=False)
class DatumArrays:
    """One training example: model input ``tokens [N]`` and its ``loss_inputs`` (each ``[N]``; ``target_tokens``
    and ``weights`` may be ``[N, K]`` for ``cross_entropy``, K targets per position)."""

    tokens: npt.NDArray[np.integer[Any]]
    loss_inputs: Mapping[str, Array]

    @classmethod
    def next_token(
        cls, sequence: Sequence[int] | npt.NDArray[np.integer[Any]], weights: Sequence[float] | None = None
    ) -> DatumArrays:
        """Next-token prediction on `sequence`: input ``sequence[:-1]``, targets ``sequence[1:]``."""
        tokens = np.asarray(sequence, dtype=np.int64)
        inputs: dict[str, Array] = {"target_tokens": tokens[1:]}
        if weights is not None:
            inputs["weights"] = np.asarray(weights, dtype=np.float32)
        return cls(tokens=tokens[:-1], loss_inputs=inputs)


@dataclass(frozen=True, eq=False)
class StepResult:
    """Per-datum outputs (``logprobs`` and ``elementwise_loss``, float32, the shape of the datum's
    ``target_tokens``) and batch metrics."""

    outputs: list[dict[str, Array]]
    metrics: dict[str, float]


@dataclass(frozen=True, eq=False)
class _Datum:
    tokens: IntArray
    inputs: dict[str, Array]

    @property
    def width(self) -> int:
        """Target tokens per position: 1 for ``[N]`` targets, K for ``[N, K]``."""
        targets = self.inputs["target_tokens"]
        return 1 if targets.ndim == 1 else int(targets.shape[1])


@dataclass(eq=False)
class _MicroBatchResult:
    outputs: list[dict[str, Array]] = field(default_factory=list)
    loss_sum: float = 0.0
    clipped: int = 0
    counted: int = 0


# Padded tokens per micro-batch: bounds the memory of the saved activations (attention weights grow
# with the square of the length) whatever the size of the request. The loss is a sum over data, so
# splitting a batch changes nothing but peak memory.
MICRO_BATCH_TOKENS = 8192


def _micro_batches(data: list[_Datum]) -> list[list[_Datum]]:
    """Consecutive groups whose padded size (rows x longest) stays within MICRO_BATCH_TOKENS and whose
    data have as many targets per position (one targets array per group)."""
    groups: list[list[_Datum]] = []
    current: list[_Datum] = []
    longest = 0
    for datum in data:
        candidate = max(longest, len(datum.tokens))
        if current and (candidate * (len(current) + 1) > MICRO_BATCH_TOKENS or datum.width != current[0].width):
            groups.append(current)
            current, candidate = [], len(datum.tokens)
        current.append(datum)
        longest = candidate
    groups.append(current)
    return groups


class LoraTrainer:
    """A LoRA adapter set over a frozen base model, trained with hand-written gradients and Adam."""

    def __init__(
        self,
        base: str,
        rank: int,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        *,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        info = get_base_model(base)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_LORA_RANK:
            raise InvalidModelInput(f"LoRA rank must be an integer in [1, {MAX_LORA_RANK}], got {rank!r}")
        if not (train_mlp or train_attn or train_unembed):
            raise InvalidModelInput("at least one of train_mlp, train_attn, train_unembed must be true")
        self._dtype = np.dtype(dtype)
        if self._dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InvalidModelInput(f"dtype must be float32 or float64, got {self._dtype}")
        self._config = LoraConfig(
            base_name=info.name,
            rank=rank,
            seed=0 if seed is None else int(seed),
            train_mlp=bool(train_mlp),
            train_attn=bool(train_attn),
            train_unembed=bool(train_unembed),
        )
        self._lora = init_lora(info, self._config.targets(), rank, self._config.seed, self._dtype)
        self._weights = transformer.ModelWeights(
            base=base_weights(info, self._dtype.name), lora=self._lora, scale=lora_scale(rank)
        )
        self._grads = self._zero_grads()
        self._adam = AdamState()
        self._pending_backwards = 0

    @classmethod
    def from_state(cls, arrays: Mapping[str, Array], *, dtype: npt.DTypeLike = np.float32) -> LoraTrainer:
        """A trainer rebuilt from `state()` arrays (with the optimizer state when they hold it)."""
        config = read_lora_config(arrays)
        trainer = cls(
            config.base_name,
            config.rank,
            config.seed,
            config.train_mlp,
            config.train_attn,
            config.train_unembed,
            dtype=dtype,
        )
        trainer.load_state(arrays, with_optimizer=has_optimizer_state(arrays))
        return trainer

    # ------------------------------------------------------------------------------- properties

    @property
    def base_name(self) -> str:
        return self._config.base_name

    @property
    def info(self) -> BaseModelInfo:
        return self._config.info

    @property
    def lora_rank(self) -> int:
        return self._config.rank

    @property
    def lora_config(self) -> LoraConfig:
        return self._config

    @property
    def lora_alpha(self) -> float:
        return LORA_ALPHA

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def optimizer_step(self) -> int:
        """How many optim_step calls this adapter has been through."""
        return self._adam.step

    @property
    def pending_backwards(self) -> int:
        """forward_backward calls whose gradients wait for the next optim_step."""
        return self._pending_backwards

    # ----------------------------------------------------------------------------------- compute

    def forward(
        self, batch: Sequence[DatumArrays], loss_fn: str, loss_fn_config: Mapping[str, float | str] | None = None
    ) -> StepResult:
        """Loss outputs and metrics of `batch`; no gradient is kept."""
        return self._run(batch, loss_fn, loss_fn_config, with_grad=False)

    def forward_backward(
        self, batch: Sequence[DatumArrays], loss_fn: str, loss_fn_config: Mapping[str, float | str] | None = None
    ) -> StepResult:
        """Like forward, and adds the gradient of the summed loss to the pending gradients."""
        return self._run(batch, loss_fn, loss_fn_config, with_grad=True)

    def optim_step(
        self,
        lr: float = 1e-4,
        beta1: float = 0.9,
        beta2: float = 0.95,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
        grad_clip_norm: float = 0.0,
    ) -> dict[str, float]:
        """One Adam step on the pending gradients (see adam.py), which are then cleared."""
        hp = AdamHyperparams(lr, beta1, beta2, eps, weight_decay, grad_clip_norm)
        metrics = adam_step(self._flat(self._lora), self._flat(self._grads), self._adam, hp)
        self._clear_grads()
        return metrics

    def gradients(self) -> dict[str, Array]:
        """Copies of the pending gradients, keyed like the adapters (``<matrix>.a`` / ``.b``)."""
        return {key: value.copy() for key, value in self._flat(self._grads).items()}

    # ------------------------------------------------------------------------------------- state

    def state(self, with_optimizer: bool) -> dict[str, Array]:
        """Copies of the adapters (and optionally Adam's moments) plus the LoRA config (checkpoint.py)."""
        return encode_state(self._config, self._flat(self._lora), self._adam if with_optimizer else None)

    def load_state(self, arrays: Mapping[str, Array], with_optimizer: bool) -> None:
        """Replaces the adapters (and Adam's state, or resets it); pending gradients are dropped."""
        config = read_lora_config(arrays)
        mine = self._config
        if (config.base_name, config.rank, config.targets()) != (mine.base_name, mine.rank, mine.targets()):
            raise IncompatibleCheckpoint(
                f"LoRA state (base {config.base_name}, rank {config.rank}, targets mlp={config.train_mlp} "
                f"attn={config.train_attn} unembed={config.train_unembed}) does not match this model "
                f"(base {self.base_name}, rank {self.lora_rank}, targets mlp={self._config.train_mlp} "
                f"attn={self._config.train_attn} unembed={self._config.train_unembed})"
            )
        params = decode_params(arrays, self._config, self._dtype)
        adam = decode_adam(arrays, self._config, self._dtype) if with_optimizer else AdamState()
        for key, value in self._flat(self._lora).items():
            value[...] = params[key]
        self._adam = adam
        self._clear_grads()

    # ---------------------------------------------------------------------------------- internal

    def _run(
        self,
        batch: Sequence[DatumArrays],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None,
        with_grad: bool,
    ) -> StepResult:
        config = resolve_loss_config(loss_fn, loss_fn_config)
        if len(batch) == 0:
            raise InvalidModelInput("the batch has no datum")
        data = [self._validated(index, datum, loss_fn) for index, datum in enumerate(batch)]
        # Gradients go to a staging buffer first, so a call that fails half-way adds nothing.
        staged = self._zero_grads() if with_grad else None
        outputs: list[dict[str, Array]] = []
        loss_sum = 0.0
        clipped = counted = 0
        for group in _micro_batches(data):
            part = self._run_micro_batch(group, loss_fn, config, staged)
            outputs += part.outputs
            loss_sum += part.loss_sum
            clipped += part.clipped
            counted += part.counted
        if staged is not None:
            for name, pair in staged.items():
                self._grads[name].a += pair.a
                self._grads[name].b += pair.b
            self._pending_backwards += 1
        metrics = {"loss:sum": loss_sum}
        if counted:
            metrics["clip_fraction:mean"] = clipped / counted
        return StepResult(outputs=outputs, metrics=metrics)

    def _run_micro_batch(
        self,
        data: list[_Datum],
        loss_fn: str,
        config: Mapping[str, float],
        grads: Mapping[str, LoraPair] | None,
    ) -> _MicroBatchResult:
        longest = max(len(d.tokens) for d in data)
        width = data[0].width  # the same for the whole micro-batch (_micro_batches)
        tokens = np.zeros((len(data), longest), dtype=np.int64)
        targets = np.zeros((len(data), longest) if width == 1 else (len(data), longest, width), dtype=np.int64)
        for row, d in enumerate(data):
            tokens[row, : len(d.tokens)] = d.tokens
            targets[row, : len(d.tokens)] = d.inputs["target_tokens"]

        logprobs, trace = transformer.forward(self._weights, tokens, targets, keep_trace=grads is not None)
        d_logprobs = np.zeros_like(logprobs)  # padded positions keep a zero gradient
        result = _MicroBatchResult()
        for row, d in enumerate(data):
            n = len(d.tokens)
            terms = token_loss(loss_fn, logprobs[row, :n], d.inputs, config)
            d_logprobs[row, :n] = terms.d_logprobs
            result.loss_sum += float(np.sum(terms.elementwise, dtype=np.float64))
            if terms.clipped is not None:
                result.clipped += int(np.count_nonzero(terms.clipped))
                result.counted += n
            result.outputs.append(
                {
                    "logprobs": logprobs[row, :n].astype(np.float32),
                    "elementwise_loss": terms.elementwise.astype(np.float32),
                }
            )
        if not (math.isfinite(result.loss_sum) and np.all(np.isfinite(d_logprobs))):
            raise InvalidModelInput(
                f"{loss_fn} loss is not finite (check logprobs/advantages: exp(logp - q) may overflow)"
            )
        if grads is not None and trace is not None:
            transformer.backward(self._weights, trace, d_logprobs, grads)
        return result

    def _validated(self, index: int, datum: DatumArrays, loss_fn: str) -> _Datum:
        info = self.info
        where = f"datum {index}"
        tokens = _as_token_array(datum.tokens, f"{where}: model input", info.vocab_size)
        n = len(tokens)
        if n == 0:
            raise InvalidModelInput(f"{where}: model input is empty")
        if n > info.context_window:
            raise ContextWindowExceeded(
                f"{where}: model input has {n} tokens, more than the context window of "
                f"{info.name} ({info.context_window})"
            )
        inputs: dict[str, Array] = {}
        for key in REQUIRED_INPUTS[loss_fn]:
            if key not in datum.loss_inputs:
                raise InvalidModelInput(f"{where}: loss_fn {loss_fn} needs loss input {key!r}")
        for key, raw in datum.loss_inputs.items():
            if key not in _KNOWN_INPUTS:
                raise InvalidModelInput(f"{where}: unknown loss input {key!r}")
            if key not in REQUIRED_INPUTS[loss_fn] and key not in OPTIONAL_INPUTS[loss_fn]:
                continue  # valid for another loss (e.g. RL inputs under cross_entropy): unused here
            if key == "target_tokens":
                inputs[key] = _as_token_array(raw, f"{where}: target_tokens", info.vocab_size, two_d=True)
            else:
                inputs[key] = _as_float_array(raw, f"{where}: {key}")
        for key, value in inputs.items():
            expected = _expected_shape(key, loss_fn, n, inputs["target_tokens"].shape)
            if value.shape != expected:
                like = "like target_tokens" if expected != (n,) else "like the model input"
                hint = ("; 2-D [N, K] target_tokens and weights are taken by cross_entropy only"
                        if value.ndim == 2 and loss_fn not in TWO_D_INPUTS else "")
                raise InvalidModelInput(
                    f"{where}: loss input {key!r} has shape {tuple(value.shape)}, expected {expected} {like}{hint}"
                )
        return _Datum(tokens=tokens, inputs=inputs)

    def _zero_grads(self) -> dict[str, LoraPair]:
        return {name: LoraPair(a=np.zeros_like(p.a), b=np.zeros_like(p.b)) for name, p in self._lora.items()}

    def _clear_grads(self) -> None:
        for pair in self._grads.values():
            pair.a.fill(0.0)
            pair.b.fill(0.0)
        self._pending_backwards = 0

    @staticmethod
    def _flat(pairs: Mapping[str, LoraPair]) -> dict[str, Array]:
        flat = {}
        for name, pair in pairs.items():
            flat[param_key(name, "a")] = pair.a
            flat[param_key(name, "b")] = pair.b
        return flat


def _expected_shape(key: str, loss_fn: str, n: int, target_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(n,)``, or the targets' ``(n, K)`` for an input that may be 2-D under `loss_fn` when they are."""
    if len(target_shape) == 2 and key in TWO_D_INPUTS.get(loss_fn, ()):
        return target_shape
    return (n,)


def _as_token_array(raw: Any, what: str, vocab_size: int, *, two_d: bool = False) -> IntArray:
    array = np.asarray(raw)
    if not (array.ndim == 1 or (two_d and array.ndim == 2)):
        expected = "one- or two-dimensional" if two_d else "one-dimensional"
        raise InvalidModelInput(f"{what} must be {expected}, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        # Token ids may arrive as integral floats (JSON); anything fractional is a mistake.
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InvalidModelInput(f"{what} must hold integer token ids")
    elif not np.issubdtype(array.dtype, np.integer):
        raise InvalidModelInput(f"{what} must hold integer token ids, got dtype {array.dtype}")
    tokens = array.astype(np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = int(tokens[(tokens < 0) | (tokens >= vocab_size)][0])
        raise InvalidModelInput(f"{what} has token id {bad} outside the vocabulary [0, {vocab_size})")
    return tokens


def _as_float_array(raw: Any, what: str) -> Array:
    array = np.asarray(raw)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InvalidModelInput(f"{what} must hold numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InvalidModelInput(f"{what} holds a non-finite value (NaN or infinity)")
    return values
