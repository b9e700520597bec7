"""The base models the local service offers, and their shipped tokenizers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tinker_actors.local.model.errors import UnknownBaseModel

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
CORPUS_PATH = ASSETS_DIR / "corpus.txt"
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class BaseModelInfo:
    """Everything fixed about a base model: its tokenizer and its transformer shape."""

    name: str
    tokenizer_id: str
    tokenizer_path: Path
    vocab_size: int
    context_window: int
    arch: str
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    eos_token_id: int
    aliases: tuple[str, ...] = ()

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


def _info(name: str, *, vocab_size: int, eos_token_id: int, d_model: int, aliases: tuple[str, ...]) -> BaseModelInfo:
    n_layers, n_heads, context_window = 2, 4, 512
    return BaseModelInfo(
        name=name,
        tokenizer_id=f"tinker-actors/{name}",
        tokenizer_path=ASSETS_DIR / f"{name}.json",
        vocab_size=vocab_size,
        context_window=context_window,
        arch=(
            f"decoder-only transformer: {n_layers} layers, d_model {d_model}, {n_heads} heads, "
            f"MLP {4 * d_model} (GELU), pre-RMSNorm, learned positions, untied unembedding; "
            "numpy, frozen base weights seeded from the model name, LoRA adapters"
        ),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_mlp=4 * d_model,
        eos_token_id=eos_token_id,
        aliases=aliases,
    )


BASE_MODELS: dict[str, BaseModelInfo] = {
    info.name: info
    for info in (
        _info("tiny-byte", vocab_size=257, eos_token_id=256, d_model=64, aliases=("tiny", "byte")),
        _info("tiny-bpe", vocab_size=768, eos_token_id=0, d_model=64, aliases=("bpe",)),
    )
}

_LOOKUP: dict[str, BaseModelInfo] = {}
for _model in BASE_MODELS.values():
    for _key in (_model.name, _model.tokenizer_id, *_model.aliases):
        _LOOKUP[_key.lower()] = _model


def get_base_model(name: str) -> BaseModelInfo:
    """The model called `name` (its canonical name, its tokenizer id or an alias; case-insensitive)."""
    info = _LOOKUP.get(name.strip().lower()) if isinstance(name, str) else None
    if info is None:
        raise UnknownBaseModel(
            f"unknown base model {name!r}; the local service provides: {', '.join(sorted(BASE_MODELS))}"
        )
    return info


@functools.cache
def _load_tokenizer_file(path: Path) -> Any:
    return Tokenizer.from_file(str(path))


def load_tokenizer(name_or_tokenizer_id: str) -> Tokenizer:
    """The shipped tokenizer of a base model (loaded once, then cached; read-only use is thread-safe)."""
    tokenizer: Tokenizer = _load_tokenizer_file(get_base_model(name_or_tokenizer_id).tokenizer_path)
    return tokenizer
