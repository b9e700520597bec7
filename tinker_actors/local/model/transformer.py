"""The transformer's math: a training forward that keeps its activations, the hand-written backward
pass to the LoRA adapters, and incremental decoding with a KV cache for the sampler.

Layer ``l`` (pre-norm):  ``x = x + Wo(attn(Wq h, Wk h, Wv h))`` with ``h = rms(x)``, then
``x = x + W_out(gelu(W_in rms(x)))``; finally ``logits = unembed(rms(x))``. Every ``W`` above is a
"linear" of ``weights.py`` (base matrix plus optional LoRA adapter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model.weights import (
    ATTN_MATRICES,
    MLP_MATRICES,
    UNEMBED,
    BaseWeights,
    LoraPair,
    layer_matrix,
)

Array = npt.NDArray[Any]
IntArray = npt.NDArray[np.int64]

RMS_EPS = 1e-6
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """What one forward pass uses: frozen base weights plus the adapters in effect (maybe none)."""

    base: BaseWeights
    lora: Mapping[str, LoraPair]
    scale: float


# ----------------------------------------------------------------------------------------- pieces


def rms_norm(x: Array) -> tuple[Array, Array]:
    """``x / rms(x)`` over the last axis, and ``1 / rms(x)`` (kept for the backward pass)."""
    inv = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS)
    return x * inv, inv


def rms_norm_backward(d_normed: Array, normed: Array, inv: Array) -> Array:
    d_x: Array = (d_normed - normed * np.mean(d_normed * normed, axis=-1, keepdims=True)) * inv
    return d_x


def gelu(u: Array) -> tuple[Array, Array]:
    """The tanh approximation of GELU, and the tanh term (kept for the backward pass)."""
    t = np.tanh(_GELU_C * (u + _GELU_K * u * u * u))
    return 0.5 * u * (1.0 + t), t


def gelu_backward(d_out: Array, u: Array, t: Array) -> Array:
    slope = 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_K * u * u)
    return d_out * slope


def softmax_inplace(scores: Array) -> Array:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def linear(weights: ModelWeights, name: str, x: Array) -> Array:
    y: Array = x @ weights.base.matrices[name]
    pair = weights.lora.get(name)
    if pair is not None:
        y += weights.scale * ((x @ pair.a) @ pair.b)
    return y


def linear_backward(
    weights: ModelWeights,
    name: str,
    x: Array,
    d_y: Array,
    grads: Mapping[str, LoraPair],
    need_dx: bool = True,
) -> Array | None:
    """Adds this layer's adapter gradients to `grads` and returns the gradient of its input."""
    pair = weights.lora.get(name)
    d_y_bt: Array | None = None
    if pair is not None:
        grad = grads[name]
        d_y_bt = d_y @ pair.b.T  # [M, r]
        grad.b += weights.scale * ((x @ pair.a).T @ d_y)
        grad.a += weights.scale * (x.T @ d_y_bt)
    if not need_dx:
        return None
    d_x: Array = d_y @ weights.base.matrices[name].T
    if pair is not None and d_y_bt is not None:
        d_x += weights.scale * (d_y_bt @ pair.a.T)
    return d_x


def _split_heads(x: Array, batch: int, seq: int, n_heads: int) -> Array:
    return x.reshape(batch, seq, n_heads, -1).transpose(0, 2, 1, 3)


def _merge_heads(x: Array) -> Array:
    batch, n_heads, seq, d_head = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch * seq, n_heads * d_head)


def _causal_mask(n_queries: int, n_keys: int, first_query_pos: int, dtype: np.dtype[Any]) -> Array:
    """Additive mask: 0 where query i (at absolute position first_query_pos + i) may see key j."""
    query_pos = first_query_pos + np.arange(n_queries)[:, None]
    hidden = np.arange(n_keys)[None, :] > query_pos
    return np.where(hidden, -np.inf, 0.0).astype(dtype)


def _layer_names(layer: int) -> dict[str, str]:
    """Short matrix name ("wq", "w_in", ...) -> full name of that matrix in `layer`."""
    return {
        **{m: layer_matrix(layer, "attn", m) for m in ATTN_MATRICES},
        **{m: layer_matrix(layer, "mlp", m) for m in MLP_MATRICES},
    }


def _embed(weights: ModelWeights, tokens: IntArray, first_pos: int) -> Array:
    seq = tokens.shape[1]
    x: Array = weights.base.embed[tokens] + weights.base.positions[first_pos : first_pos + seq]
    return x


# ------------------------------------------------------------------------------------ training


@dataclass(eq=False)
class _LayerTrace:
    attn_normed: Array
    attn_inv: Array
    q: Array
    k: Array
    v: Array
    probs: Array
    heads: Array
    mlp_normed: Array
    mlp_inv: Array
    pre_gelu: Array
    gelu_t: Array
    gelu_out: Array


@dataclass(eq=False)
class ForwardTrace:
    """Activations of a training forward pass, enough to run the backward pass."""

    batch: int
    seq: int
    layers: list[_LayerTrace] = field(default_factory=list)
    final_normed: Array | None = None
    final_inv: Array | None = None
    vocab_probs: Array | None = None
    targets: IntArray | None = None


def forward(
    weights: ModelWeights, tokens: IntArray, targets: IntArray, keep_trace: bool
) -> tuple[Array, ForwardTrace | None]:
    """Log-probability of each target token, ``[B, T]``, for inputs ``tokens [B, T]``.

    ``targets`` is ``[B, T]`` (one target per position) or ``[B, T, K]`` (K targets per position, e.g. a
    teacher's top-K tokens); the log-probabilities have the shape of ``targets``.

    Causal attention means right-padding a shorter sequence cannot change its real positions, so a
    ragged batch is padded to ``T`` and the padded positions are simply ignored by the caller.
    """
    info = weights.base.info
    batch, seq = tokens.shape
    rows = batch * seq
    dtype = weights.base.dtype
    scale = 1.0 / math.sqrt(info.d_head)
    mask = _causal_mask(seq, seq, 0, dtype)
    trace = ForwardTrace(batch=batch, seq=seq) if keep_trace else None

    x = _embed(weights, tokens, 0).reshape(rows, info.d_model)
    for layer in range(info.n_layers):
        names = _layer_names(layer)
        h, h_inv = rms_norm(x)
        q = _split_heads(linear(weights, names["wq"], h), batch, seq, info.n_heads)
        k = _split_heads(linear(weights, names["wk"], h), batch, seq, info.n_heads)
        v = _split_heads(linear(weights, names["wv"], h), batch, seq, info.n_heads)
        probs = softmax_inplace((q @ k.transpose(0, 1, 3, 2)) * scale + mask)
        heads = _merge_heads(probs @ v)
        x = x + linear(weights, names["wo"], heads)

        m, m_inv = rms_norm(x)
        pre_gelu = linear(weights, names["w_in"], m)
        gelu_out, gelu_t = gelu(pre_gelu)
        x = x + linear(weights, names["w_out"], gelu_out)
        if trace is not None:
            trace.layers.append(
                _LayerTrace(h, h_inv, q, k, v, probs, heads, m, m_inv, pre_gelu, gelu_t, gelu_out)
            )

    final, final_inv = rms_norm(x)
    logits = _with_bias(weights, linear(weights, UNEMBED, final))
    logits -= logits.max(axis=1, keepdims=True)
    flat_targets = targets.reshape(rows, -1)  # [rows, K]: K target tokens per position (K = 1 for [B, T])
    target_logits = np.take_along_axis(logits, flat_targets, axis=1)
    np.exp(logits, out=logits)
    total = logits.sum(axis=1)
    logprobs = (target_logits - np.log(total)[:, None]).reshape(targets.shape)
    if trace is not None:
        logits /= total[:, None]
        trace.final_normed, trace.final_inv = final, final_inv
        trace.vocab_probs, trace.targets = logits, flat_targets
    return logprobs, trace


def backward(
    weights: ModelWeights, trace: ForwardTrace, d_logprobs: Array, grads: Mapping[str, LoraPair]
) -> None:
    """Adds d(loss)/d(adapter) to `grads`, given ``d_logprobs = d(loss)/d(target logprob)`` (the shape of the
    forward's targets)."""
    info = weights.base.info
    assert trace.vocab_probs is not None and trace.targets is not None
    assert trace.final_normed is not None and trace.final_inv is not None
    batch, seq = trace.batch, trace.seq
    rows = batch * seq
    scale = 1.0 / math.sqrt(info.d_head)
    g = d_logprobs.reshape(rows, -1).astype(weights.base.dtype, copy=False)  # [rows, K], like trace.targets

    # d logp[t] / d logits = onehot(t) - softmax, summed over the K targets of a position
    d_logits = trace.vocab_probs * (-g.sum(axis=1))[:, None]
    row_index = np.arange(rows)
    for k in range(g.shape[1]):  # one column at a time: a position may list the same token twice
        d_logits[row_index, trace.targets[:, k]] += g[:, k]
    lowest = _lowest_adapted_layer(weights)
    d_final = linear_backward(weights, UNEMBED, trace.final_normed, d_logits, grads, need_dx=lowest is not None)
    if d_final is None or lowest is None:
        return
    d_x = rms_norm_backward(d_final, trace.final_normed, trace.final_inv)

    for layer in range(info.n_layers - 1, lowest - 1, -1):
        t = trace.layers[layer]
        names = _layer_names(layer)
        # MLP block: x_out = x_mid + W_out(gelu(W_in(rms(x_mid))))
        d_gelu_out = linear_backward(weights, names["w_out"], t.gelu_out, d_x, grads)
        assert d_gelu_out is not None
        d_pre = gelu_backward(d_gelu_out, t.pre_gelu, t.gelu_t)
        d_m = linear_backward(weights, names["w_in"], t.mlp_normed, d_pre, grads)
        assert d_m is not None
        d_x = d_x + rms_norm_backward(d_m, t.mlp_normed, t.mlp_inv)
        if layer == lowest and not any(names[m] in weights.lora for m in ATTN_MATRICES):
            break  # nothing below this point has an adapter

        # attention block: x_mid = x_in + Wo(softmax(q k^T * scale) v)
        d_heads = linear_backward(weights, names["wo"], t.heads, d_x, grads)
        assert d_heads is not None
        d_o = _split_heads(d_heads, batch, seq, info.n_heads)
        d_probs = d_o @ t.v.transpose(0, 1, 3, 2)
        d_v = t.probs.transpose(0, 1, 3, 2) @ d_o
        d_scores = t.probs * (d_probs - np.sum(d_probs * t.probs, axis=-1, keepdims=True))
        d_q = (d_scores @ t.k) * scale
        d_k = (d_scores.transpose(0, 1, 3, 2) @ t.q) * scale
        need_dx = layer > lowest  # the embeddings are frozen: nothing below the lowest adapter
        d_h = None
        for matrix, d_out in (("wq", d_q), ("wk", d_k), ("wv", d_v)):
            d_part = linear_backward(weights, names[matrix], t.attn_normed, _merge_heads(d_out), grads, need_dx)
            if d_part is not None:
                d_h = d_part if d_h is None else d_h + d_part
        if d_h is not None:
            d_x = d_x + rms_norm_backward(d_h, t.attn_normed, t.attn_inv)


def _lowest_adapted_layer(weights: ModelWeights) -> int | None:
    layers = [int(name.split(".")[1]) for name in weights.lora if name != UNEMBED]
    return min(layers) if layers else None


# ------------------------------------------------------------------------------------ decoding


@dataclass(eq=False)
class KVCache:
    """Keys and values of the positions decoded so far, per layer ``[rows, heads, capacity, d_head]``."""

    keys: list[Array]
    values: list[Array]
    length: int = 0

    @classmethod
    def empty(cls, weights: ModelWeights, rows: int, capacity: int) -> KVCache:
        info = weights.base.info
        shape = (rows, info.n_heads, capacity, info.d_head)
        dtype = weights.base.dtype
        return cls(
            keys=[np.zeros(shape, dtype) for _ in range(info.n_layers)],
            values=[np.zeros(shape, dtype) for _ in range(info.n_layers)],
        )

    def repeat_rows(self, count: int) -> KVCache:
        """A cache for `count` copies of a one-row cache (one prompt, many samples)."""
        return KVCache(
            keys=[np.repeat(k, count, axis=0) for k in self.keys],
            values=[np.repeat(v, count, axis=0) for v in self.values],
            length=self.length,
        )


def decode(weights: ModelWeights, tokens: IntArray, cache: KVCache, all_positions: bool) -> Array:
    """Feeds ``tokens [rows, t]`` after the cached positions; returns logits ``[rows, t or 1, V]``.

    With ``all_positions`` False only the last position's logits are computed (plain generation).
    """
    info = weights.base.info
    rows, seq = tokens.shape
    start = cache.length
    end = start + seq
    if end > cache.keys[0].shape[2]:
        raise ValueError(f"KV cache capacity {cache.keys[0].shape[2]} exceeded ({end} positions)")
    scale = 1.0 / math.sqrt(info.d_head)
    mask = _causal_mask(seq, end, start, weights.base.dtype)

    x = _embed(weights, tokens, start).reshape(rows * seq, info.d_model)
    for layer in range(info.n_layers):
        names = _layer_names(layer)
        h, _ = rms_norm(x)
        q = _split_heads(linear(weights, names["wq"], h), rows, seq, info.n_heads)
        cache.keys[layer][:, :, start:end] = _split_heads(linear(weights, names["wk"], h), rows, seq, info.n_heads)
        cache.values[layer][:, :, start:end] = _split_heads(
            linear(weights, names["wv"], h), rows, seq, info.n_heads
        )
        keys = cache.keys[layer][:, :, :end]
        values = cache.values[layer][:, :, :end]
        probs = softmax_inplace((q @ keys.transpose(0, 1, 3, 2)) * scale + mask)
        x = x + linear(weights, names["wo"], _merge_heads(probs @ values))
        m, _ = rms_norm(x)
        x = x + linear(weights, names["w_out"], gelu(linear(weights, names["w_in"], m))[0])
    cache.length = end

    per_row = x.reshape(rows, seq, info.d_model)
    if not all_positions:
        per_row = per_row[:, -1:]
    final, _ = rms_norm(per_row)
    return _with_bias(weights, linear(weights, UNEMBED, final))


def _with_bias(weights: ModelWeights, logits: Array) -> Array:
    """The base model's frozen logit bias added in place (it has no gradient: nothing trains it)."""
    if weights.base.logit_bias is not None:
        logits += weights.base.logit_bias
    return logits
