"""The sampler's prefix cache: keys and values (KV) of prompt prefixes already run, reused by later prompts.

A prompt that starts like a recent one (the same prompt sampled again, a shared system prompt, a long
context scored with several completions) runs only the tokens after the shared part; the number of
prompt tokens served from here is what a sample reports as ``prompt_cache_hit_tokens``.

How it is keyed
    Prompts are cut into blocks of ``block_tokens`` tokens (16 by default, as vLLM's paged KV cache). Block
    ``j`` of a prompt is keyed by a digest of the weights version and every token up to the end of that
    block (each key chains the previous one), so a block is found only after exactly the same prefix under
    exactly the same weights. A partial last block is never cached; a hit is a whole number of blocks.
    The weights version is a digest of the sampler's weights (``Sampler.weights_version``): new weights
    (another checkpoint, more training) never read KV computed by other weights, and
    :meth:`PrefixCache.invalidate` frees what an old version left.

Bounds
    Least recently used blocks are evicted first once the cache holds more than ``max_bytes`` of KV or
    ``max_blocks`` blocks. A hit refreshes its blocks from the last to the first, so a prompt's first
    blocks (shared by every prompt that continues it) outlive its last ones; eviction therefore cuts
    prefixes from their end and never leaves a block that no lookup can reach for long.

Thread-safe: samplers of the local service run on worker threads. Cached blocks are read-only arrays.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_BLOCK_TOKENS", "DEFAULT_MAX_BYTES", "CacheStats", "KVBlock", "PrefixCache"]

Array = npt.NDArray[Any]

DEFAULT_BLOCK_TOKENS = 16
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # about 64k prompt positions of the tiny models in float32


@dataclass(frozen=True, eq=False)
class KVBlock:
    """Keys and values of ``block_tokens`` consecutive prompt positions, per layer ``[heads, block, d_head]``."""

    keys: tuple[Array, ...]
    values: tuple[Array, ...]
    version: bytes
    nbytes: int


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made (or cleared)."""

    lookups: int
    hit_tokens: int
    """Prompt tokens served from the cache."""
    stored_blocks: int
    evicted_blocks: int
    blocks: int
    """Blocks held now."""
    bytes: int
    """KV bytes held now."""


class PrefixCache:
    """LRU store of prompt-prefix KV blocks (see the module docstring)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, block_tokens: int = DEFAULT_BLOCK_TOKENS,
                 max_blocks: int | None = None) -> None:
        for name, value in (("max_bytes", max_bytes), ("block_tokens", block_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PrefixCache {name} must be a positive integer, got {value!r}")
        if max_blocks is not None and (isinstance(max_blocks, bool) or not isinstance(max_blocks, int)
                                       or max_blocks < 1):
            raise ValueError(f"PrefixCache max_blocks must be a positive integer or None, got {max_blocks!r}")
        self.max_bytes = max_bytes
        self.block_tokens = block_tokens
        self.max_blocks = max_blocks
        self._lock = threading.Lock()
        self._blocks: OrderedDict[bytes, KVBlock] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._lookups = self._hit_tokens = self._stored = self._evicted = 0

    def block_keys(self, version: bytes, tokens: Sequence[int] | Array, blocks: int) -> list[bytes]:
        """The keys of the first ``blocks`` blocks of ``tokens`` under weights ``version``."""
        ids = np.asarray(tokens, dtype=np.int32)
        size = self.block_tokens
        keys: list[bytes] = []
        previous = version
        for block in range(blocks):
            previous = hashlib.blake2b(previous + ids[block * size:(block + 1) * size].tobytes(),
                                       digest_size=16).digest()
            keys.append(previous)
        return keys

    def lookup(self, version: bytes, tokens: Sequence[int] | Array, limit: int) -> list[KVBlock]:
        """The cached blocks that start ``tokens`` under ``version``, covering at most ``limit`` tokens, in order."""
        keys = self.block_keys(version, tokens, max(0, min(limit, len(tokens))) // self.block_tokens)
        found: list[KVBlock] = []
        with self._lock:
            self._lookups += 1
            for key in keys:
                block = self._blocks.get(key)
                if block is None:
                    break
                found.append(block)
            for key in reversed(keys[:len(found)]):  # the first block ends up the most recently used
                self._blocks.move_to_end(key)
            self._hit_tokens += len(found) * self.block_tokens
        return found

    def store(self, version: bytes, tokens: Sequence[int] | Array, keys: Sequence[Array],
              values: Sequence[Array], start_block: int = 0) -> int:
        """Cache the whole blocks of ``tokens`` from block ``start_block`` on, taken from a one-row KV cache
        (per layer ``[1, heads, positions >= len(tokens), d_head]``) that holds their keys and values; returns
        how many blocks were added."""
        size = self.block_tokens
        all_keys = self.block_keys(version, tokens, len(tokens) // size)
        added = 0
        for block in range(start_block, len(all_keys)):
            key = all_keys[block]
            with self._lock:
                if key in self._blocks:
                    continue
            span = slice(block * size, (block + 1) * size)
            block_keys = tuple(_frozen(layer[0, :, span]) for layer in keys)
            block_values = tuple(_frozen(layer[0, :, span]) for layer in values)
            nbytes = sum(a.nbytes for a in block_keys) + sum(a.nbytes for a in block_values)
            with self._lock:
                if key not in self._blocks:
                    self._blocks[key] = KVBlock(block_keys, block_values, version, nbytes)
                    self._bytes += nbytes
                    self._stored += 1
                    added += 1
        with self._lock:
            for key in reversed(all_keys):  # as after a hit: the first block is the most recently used
                if key in self._blocks:
                    self._blocks.move_to_end(key)
            self._evict_locked()
        return added

    def invalidate(self, version: bytes) -> int:
        """Drop every block computed by weights ``version`` (they can never be read again); returns how many."""
        with self._lock:
            stale = [key for key, block in self._blocks.items() if block.version == version]
            for key in stale:
                self._bytes -= self._blocks.pop(key).nbytes
            return len(stale)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0
            self._lookups = self._hit_tokens = self._stored = self._evicted = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(lookups=self._lookups, hit_tokens=self._hit_tokens, stored_blocks=self._stored,
                              evicted_blocks=self._evicted, blocks=len(self._blocks), bytes=self._bytes)

    def _evict_locked(self) -> None:
        while self._blocks and (self._bytes > self.max_bytes
                                or (self.max_blocks is not None and len(self._blocks) > self.max_blocks)):
            _, block = self._blocks.popitem(last=False)
            self._bytes -= block.nbytes
            self._evicted += 1

    def __repr__(self) -> str:
        stats = self.stats()
        return (f"PrefixCache(blocks={stats.blocks}, bytes={stats.bytes}, max_bytes={self.max_bytes}, "
                f"block_tokens={self.block_tokens})")


def _frozen(view: Array) -> Array:
    copy = np.array(view, copy=True, order="C")
    copy.setflags(write=False)
    return copy
