"""Tokenizers (FEATURES D4): resolved per model, cached, offline for the local service's models.

A tokenizer id is resolved, in order, to: a tokenizer shipped with the local service (``tiny-bpe``,
``tinker-actors/tiny-bpe``, ...), a file path to a ``tokenizer.json``, or a tokenizer already in the
HuggingFace cache (``tokenizers`` loads it offline). Nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tinker_actors.errors import InvalidInputError

__all__ = ["TokenizerHandle", "get_tokenizer"]


@dataclass(frozen=True)
class TokenizerHandle:
    """A thin wrapper with the two calls training code needs, and the raw ``tokenizers.Tokenizer``."""

    tokenizer: Tokenizer
    add_special_tokens: bool = True

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        special = self.add_special_tokens if add_special_tokens is None else add_special_tokens
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=special).ids
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return text

    @property
    def vocab_size(self) -> int:
        size: int = self.tokenizer.get_vocab_size()
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


@functools.lru_cache(maxsize=32)
def _load(tokenizer_id: str) -> Tokenizer:
    try:
        from tinker_actors.local.model import load_tokenizer

        loaded: Tokenizer = load_tokenizer(tokenizer_id)
        return loaded
    except (ImportError, ValueError, KeyError, OSError):
        pass
    path = Path(tokenizer_id)
    if path.is_file():
        return Tokenizer.from_file(str(path))
    if (path / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    snapshots = hub / f"models--{tokenizer_id.replace('/', '--')}" / "snapshots"
    for candidate in sorted(snapshots.glob("*/tokenizer.json")) if snapshots.is_dir() else []:
        return Tokenizer.from_file(str(candidate))
    raise InvalidInputError(
        f"no tokenizer found for {tokenizer_id!r}: not shipped with tinker-actors, not a file, and not in the "
        "local HuggingFace cache (nothing is downloaded at run time)")


def get_tokenizer(tokenizer_id: str, *, add_special_tokens: bool = True) -> TokenizerHandle:
    return TokenizerHandle(_load(tokenizer_id), add_special_tokens)
