"""Tokenizers: ``get_tokenizer`` and ``TokenizerHandle``, kept importable from here.

The implementation lives in :mod:`tinker_actors.tokenizers` (Hub fetch, chat templates, the handle).
"""

from __future__ import annotations

from tinker_actors.tokenizers import TokenizerHandle, get_tokenizer

__all__ = ["TokenizerHandle", "get_tokenizer"]
