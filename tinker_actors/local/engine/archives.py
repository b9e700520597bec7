"""Download archives of checkpoints: one tarball per checkpoint version, under a disk budget.

A checkpoint's archive endpoint answers a redirect to ``/local/v1/archives/<token>.tar``. Building a
tarball costs the checkpoint's size in disk writes, so it is built once per checkpoint *version* and
served to every request for that version; repeated requests get the same URL back (a new URL, for
the same file, once half of the old one's lifetime has passed, so a URL handed out always has at
least half its lifetime left). The file goes away with its version (a re-save or a delete), when its
last URL expires, or when newer archives need its room: the archives together never take more than
``budget_bytes``. Files are created with mode 0600 (mkstemp), like the checkpoints themselves.

Besides files on disk, an archive may hold members generated when it is built (the PEFT adapter of a
LoRA checkpoint): they are produced only when the tarball is built, never for a reused one.

Thread-safe: archives may be built on a worker thread while the service loop resolves downloads.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["ArchiveCache", "ArchiveTooLargeError", "estimated_tar_size"]

_BLOCK = 512
_TAR_RECORD = 20 * _BLOCK  # tarfile pads an archive to whole records


class ArchiveTooLargeError(Exception):
    """The archive does not fit in the disk budget even with every other archive evicted."""


Generated = Callable[[], Mapping[str, bytes]]
"""Members made when an archive is built: archive name -> contents."""


def estimated_tar_size(files: Mapping[str, Path | bytes]) -> int:
    """An upper bound of the size of an uncompressed tar of ``files`` (files on disk or contents; headers,
    padding, end blocks)."""
    total = 2 * _BLOCK
    for member in files.values():
        size = len(member) if isinstance(member, bytes) else member.stat().st_size
        total += _BLOCK + -(-size // _BLOCK) * _BLOCK
    return -(-total // _TAR_RECORD) * _TAR_RECORD


@dataclass
class _Entry:
    path: Path
    size: int
    last_used: datetime
    tokens: dict[str, datetime] = field(default_factory=dict)  # download token -> its expiry


def _now() -> datetime:
    return datetime.now(UTC)


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mode = 0o600  # as the checkpoint files beside it
    info.mtime = int(_now().timestamp())
    tar.addfile(info, io.BytesIO(data))


class ArchiveCache:
    """Tarballs keyed by checkpoint version (any string naming one version of one checkpoint)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._token_keys: dict[str, str] = {}

    def clear(self) -> None:
        """Forget every archive and remove the directory (at start: URLs do not survive a restart)."""
        with self._lock:
            self._entries.clear()
            self._token_keys.clear()
            shutil.rmtree(self._directory, ignore_errors=True)

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return sum(entry.size for entry in self._entries.values())

    @property
    def file_count(self) -> int:
        with self._lock:
            return len(self._entries)

    def token_for(self, key: str, files: dict[str, Path], *, lifetime: timedelta,
                  budget_bytes: int, generated: Generated | None = None) -> tuple[str, datetime]:
        """A download token for ``key``'s archive (built from ``files``: archive name -> file, followed by
        what ``generated`` makes, called only if the archive is built now) and its expiry. Raises
        :class:`ArchiveTooLargeError`, or ``FileNotFoundError`` if a file vanished."""
        with self._lock:
            self.sweep()
            now = _now()
            entry = self._entries.get(key)
            if entry is None:
                members: dict[str, Path | bytes] = dict(files)
                if generated is not None:
                    members.update(generated())
                entry = self._build(key, members, budget_bytes)
            entry.last_used = now
            if entry.tokens:
                token, expires = max(entry.tokens.items(), key=lambda item: item[1])
                if expires - now >= lifetime / 2:
                    return token, expires
            token = secrets.token_urlsafe(24)
            expires = now + lifetime
            entry.tokens[token] = expires
            self._token_keys[token] = key
            return token, expires

    def path(self, token: str) -> Path | None:
        """The archive file a live token names, or None (unknown, expired or evicted)."""
        with self._lock:
            self.sweep()
            key = self._token_keys.get(token)
            entry = self._entries.get(key) if key is not None else None
            return entry.path if entry is not None else None

    def drop(self, key: str) -> None:
        """Remove ``key``'s archive and its URLs (its checkpoint version is gone)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._discard(entry)

    def sweep(self) -> None:
        """Forget expired URLs; remove archives that no live URL names any more."""
        now = _now()
        with self._lock:
            for key, entry in list(self._entries.items()):
                for token, expires in list(entry.tokens.items()):
                    if expires <= now:
                        del entry.tokens[token]
                        self._token_keys.pop(token, None)
                if not entry.tokens:
                    del self._entries[key]
                    self._discard(entry)

    # ---- internals (called with the lock held) --------------------------------------------------
    def _build(self, key: str, files: Mapping[str, Path | bytes], budget_bytes: int) -> _Entry:
        estimate = estimated_tar_size(files)
        self._make_room(estimate, budget_bytes)
        self._directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._directory, prefix=".tmp-", suffix=".tar")  # mode 0600
        target = self._directory / f"{secrets.token_hex(16)}.tar"
        try:
            with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
                for arcname, member in files.items():
                    if isinstance(member, bytes):
                        _add_bytes(tar, arcname, member)
                    else:
                        tar.add(member, arcname=arcname)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        entry = _Entry(path=target, size=target.stat().st_size, last_used=_now())
        if entry.size > estimate:  # not expected (the estimate is an upper bound); stay within budget anyway
            try:
                self._make_room(entry.size, budget_bytes)
            except ArchiveTooLargeError:
                self._discard(entry)
                raise
        self._entries[key] = entry
        return entry

    def _make_room(self, needed: int, budget_bytes: int) -> None:
        if needed > budget_bytes:
            raise ArchiveTooLargeError(
                f"the archive would take {needed} bytes, more than the service's archive disk budget "
                f"({budget_bytes} bytes)")
        used = sum(entry.size for entry in self._entries.values())
        for key, entry in sorted(self._entries.items(), key=lambda item: item[1].last_used):
            if used + needed <= budget_bytes:
                break
            del self._entries[key]
            self._discard(entry)
            used -= entry.size

    def _discard(self, entry: _Entry) -> None:
        for token in entry.tokens:
            self._token_keys.pop(token, None)
        entry.tokens.clear()
        with contextlib.suppress(OSError):
            entry.path.unlink()
