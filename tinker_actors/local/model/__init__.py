"""A real, tiny causal language model in numpy: what the embedded local service trains and samples.

Design
======

Base models (``registry.py``)
    ``tiny-byte`` (byte-level tokenizer: id = byte value, ``<|endoftext|>`` = 256, vocab 257) and
    ``tiny-bpe`` (byte-level BPE with 768 tokens trained on ``assets/corpus.txt``,
    ``<|endoftext|>`` = 0). Both tokenizers ship as ``tokenizers`` JSON files in
    ``tinker_actors/local/assets/`` (regenerate with ``scripts/train_tokenizer.py``). Aliases:
    the tokenizer ids ``tinker-actors/tiny-byte`` / ``tinker-actors/tiny-bpe``, ``tiny``/``byte`` and
    ``bpe``; names are case-insensitive. Context window 512 tokens.

Network (``transformer.py``)
    Decoder-only transformer: learned token and position embeddings, 2 pre-norm blocks of causal
    4-head self-attention and a GELU (tanh) MLP of width 4 x d_model, RMSNorm without gain, an untied
    unembedding; d_model 64. Row-vector convention (``y = x @ W``).

Frozen base weights (``weights.py``)
    Drawn from a numpy ``Generator`` seeded with SHA-256 of the model's canonical name, in float64,
    then cast: every process gets the same model, in float32 (default) or float64. The base model is
    random (there is no pretraining); the adapters are what learns. One frozen logit bias makes it
    behave like a pretrained model in the middle of a document: end-of-text gets -8
    (``END_OF_TEXT_LOGIT_OFFSET``), so the base model almost never ends text by itself (~1e-6 per token)
    and sampling, which stops at end-of-text unless ``stop=[]``, runs to ``max_tokens`` until training
    teaches it to end.

LoRA
    Adapters ``W + (alpha / rank) * A @ B`` with alpha fixed at 32 (``LORA_ALPHA``), A drawn from the
    LoRA seed (default 0; one generator per matrix), B zero. Targets: ``train_attn`` -> Wq, Wk, Wv, Wo
    of each layer; ``train_mlp`` -> W_in, W_out; ``train_unembed`` -> the unembedding. Embeddings and
    norms are never trained. Rank 1..256.

Gradients
    Written by hand (``transformer.backward``) and checked against central finite differences in
    float64 in ``tests/local/model``. Gradients of the summed loss accumulate over
    ``forward_backward`` calls until ``optim_step`` (Adam with decoupled weight decay and global-norm
    clipping, ``adam.py``; Tinker 0.6.3 defaults lr 1e-4, betas 0.9/0.95, eps 1e-12).

Losses (``losses.py``)
    ``cross_entropy``, ``importance_sampling``, ``ppo``, ``cispo``, ``dro`` as in WIRE-PROTOCOL §3.3,
    and 0.38's ``gspo`` (GSPO-token, over ``sequence_ratio_mask``); ``weights`` (ones when missing)
    multiply every loss. ``cross_entropy`` also takes ``[N, K]`` targets (top-K distillation).
    ``stable_reinforce`` is refused (its inputs and objective are not published). Outputs per datum
    ``logprobs`` and ``elementwise_loss`` (float32, the shape of ``target_tokens``); metrics ``loss:sum``
    (plus ``clip_fraction:mean`` for ppo/cispo/gspo).

Sampling (``sampler.py``)
    Adapters merged into the base matrices, KV-cache decoding; temperature, top_k, top_p, stop
    strings/ids (end-of-text stops unless ``stop=[]``), seed, prompt logprobs (optionally of the last N
    positions only), top-k prompt logprobs, top-k logprobs of the generated tokens, logprobs of chosen
    prompt tokens, alternative prompt tokens drawn in the prefill.

Prefix cache (``prefix_cache.py``)
    KV blocks of 16 prompt tokens keyed by a digest of the weights and the prefix, LRU within a byte
    bound: a prompt that starts like a recent one runs only its new tokens
    (``SampleOutput.prompt_cache_hit_tokens``).

Checkpoints (``checkpoint.py``)
    ``LoraTrainer.state()`` is a flat ``dict[str, np.ndarray]`` (``np.savez``-able, no pickle) with
    the LoRA config and base name, so a load checks compatibility and can rebuild the trainer
    (``LoraTrainer.from_state``) or a sampler (``Sampler(base, state)``).

Learning and speed
    With learning rates 2e-3..1e-2 (5e-3 is a good default) and rank 8..32, next-token cross-entropy on
    the shipped corpus falls from ~6.0 to ~2.6 nats/token (tiny-byte) and from ~7.1 to ~4.8
    (tiny-bpe) in 30 steps of 8 x 128 tokens, about a second on 2 cores. forward_backward on
    8 x 128 tokens takes about 30 ms (``bench/bench_local_model.py``). Memory stays bounded whatever
    the request: training runs in micro-batches of at most 8192 padded tokens (the loss is a sum, so
    results are the same), sampling decodes at most 256 sequences at a time. OpenBLAS's threads
    degrade badly when the 2 cores are also busy elsewhere; a process that runs the model next to
    other CPU work is steadier with ``OPENBLAS_NUM_THREADS=1`` (set before numpy is imported).

Errors are ``ValueError`` subclasses (``errors.py``): the caller's mistake, a user error on the wire.
"""

from tinker_actors.local.model.adam import AdamHyperparams
from tinker_actors.local.model.checkpoint import LoraConfig, has_optimizer_state, read_lora_config
from tinker_actors.local.model.errors import (
    ContextWindowExceeded,
    IncompatibleCheckpoint,
    InvalidModelInput,
    UnknownBaseModel,
)
from tinker_actors.local.model.losses import LOSS_CONFIG_DEFAULTS, LOSS_FUNCTIONS
from tinker_actors.local.model.prefix_cache import CacheStats, PrefixCache
from tinker_actors.local.model.registry import (
    ASSETS_DIR,
    BASE_MODELS,
    CORPUS_PATH,
    BaseModelInfo,
    get_base_model,
    load_tokenizer,
)
from tinker_actors.local.model.sampler import (
    DEFAULT_MAX_TOKENS,
    AltTokens,
    PromptTargets,
    SampledSequence,
    SampleOutput,
    Sampler,
    TopK,
)
from tinker_actors.local.model.trainer import DatumArrays, LoraTrainer, StepResult
from tinker_actors.local.model.weights import LORA_ALPHA, MAX_LORA_RANK

__all__ = [
    "ASSETS_DIR",
    "BASE_MODELS",
    "CORPUS_PATH",
    "DEFAULT_MAX_TOKENS",
    "LORA_ALPHA",
    "LOSS_CONFIG_DEFAULTS",
    "LOSS_FUNCTIONS",
    "MAX_LORA_RANK",
    "AdamHyperparams",
    "AltTokens",
    "BaseModelInfo",
    "CacheStats",
    "ContextWindowExceeded",
    "DatumArrays",
    "IncompatibleCheckpoint",
    "InvalidModelInput",
    "LoraConfig",
    "LoraTrainer",
    "PrefixCache",
    "PromptTargets",
    "SampleOutput",
    "SampledSequence",
    "Sampler",
    "StepResult",
    "TopK",
    "UnknownBaseModel",
    "get_base_model",
    "has_optimizer_state",
    "load_tokenizer",
    "read_lora_config",
]
