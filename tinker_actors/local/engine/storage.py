"""The local service's data directory: training runs, checkpoints, sessions and samplers on disk.

Layout (every file is written atomically: a ``.tmp-*`` file in the same directory, then a rename;
files are created with mode 0600)::

    <data_dir>/sessions.json                           known sessions: owner, creation time, project,
                                                       display name, metadata, how their client finished them
    <data_dir>/samplers/<sampler_id>.json              sampling sessions (+ .npz for ephemeral weights)
    <data_dir>/runs/<run_id>/run.json                  a training run's metadata
    <data_dir>/runs/<run_id>/<kind>/<name>/<version>/arrays.npz       one version of a checkpoint
    <data_dir>/runs/<run_id>/<kind>/<name>/<version>/checkpoint.json  its metadata; written last, so
                                                       a version exists only once it is complete
    <data_dir>/runs/<run_id>/external_weights/<name>/<version>/files/...  exported weights: files, no arrays
    <data_dir>/archives/<random>.tar                   download archives (see ``archives.py``): a checkpoint's
                                                       files; a training or sampler checkpoint's also hold
                                                       its PEFT adapter (``external_export.py``)
    <data_dir>/audit/<YYYY-MM-DD>.jsonl                the audit log (see ``audit.py``)

(ids are percent-encoded in file names: ``<session>:train:0`` is stored as ``<session>%3Atrain%3A0``;
``kind`` is ``weights``, ``sampler_weights`` or ``external_weights``.)

A copy of a checkpoint (``copy_checkpoint``, 0.38's ``copy_weights``) hard-links the source version's
files into a version of its own (no bytes are duplicated; a copy falls back to copying the bytes where
the file system cannot link): deleting either leaves the other whole.

Versions make saves and deletions safe to interleave. Every save writes a new version directory
(``v<time_ns>-<random>``) and, once it is complete, swaps the in-memory pointer to it and removes the
version it replaced; TTL expiry and deletion remove exactly the version they looked at, and only if it
is still the current one (compare-and-delete under the storage lock). So an expiry that runs while the
same name is saved again can only remove the old version, never the new one's arrays. At start the
newest complete version of each name wins; incomplete versions and leftover ``.tmp-*`` files (a
killed save) are removed. Data directories of earlier releases (files directly in ``<name>/``) are
read as a version of their own.

Ids coming from requests are looked up in memory before they touch a path, and checkpoint names
are checked by :func:`check_name`, so no request can address a file outside the data directory.
Messages of the errors raised here name checkpoints by their tinker path, never by a file path.
A restarted service reads everything back with :meth:`Storage.load`.

Every change to a checkpoint (created, read by a load or a sampler, deleted, expired, copied) is written to
the audit log :attr:`Storage.audit` with who did it.

Tenants: runs, sessions and samplers carry their owner (the user whose key created them); a
checkpoint belongs to its run's owner. Records written before owners were recorded belong to
:data:`DEFAULT_OWNER`, the user of the single-user mode. The lookups that take a ``user`` answer
None for another user's record exactly as for an unknown id; only published checkpoints (and the
runs holding them) are readable by everyone, and changed only by their owner.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.engine.accounts import DEFAULT_USER
from tinker_actors.local.engine.archives import ArchiveCache, ArchiveTooLargeError
from tinker_actors.local.engine.audit import AuditLog
from tinker_actors.local.engine.external_export import export_files
from tinker_actors.types import ParsedCheckpointTinkerPath

__all__ = [
    "DEFAULT_OWNER",
    "DEFAULT_PROJECT",
    "ArchiveTooLargeError",
    "CheckpointKind",
    "CheckpointKindError",
    "CheckpointMissingError",
    "CheckpointRecord",
    "CheckpointUnreadableError",
    "FinishReason",
    "InvalidNameError",
    "RunRecord",
    "SamplerRecord",
    "SessionRecord",
    "Storage",
    "check_name",
    "parse_tinker_path",
]

CheckpointKind = Literal["weights", "sampler_weights", "external_weights"]
# The user of the single-user mode, and the owner of records older versions wrote.
DEFAULT_OWNER = DEFAULT_USER
# How a client may say it finished its session (``POST /sessions/{id}/finish``, 0.38's ``close(status)``).
FinishReason = Literal["success", "errored", "interrupted"]
# The project a session is in until one is assigned (the official service always has one to show).
DEFAULT_PROJECT = "local"
Arrays = dict[str, npt.NDArray[Any]]

_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-+=@]{0,127}$")
_VERSION = re.compile(r"^v[0-9]{20}-[0-9a-f]{8}$")
_TINKER = "tinker://"
_ARRAYS = "arrays.npz"
_META = "checkpoint.json"
_TMP_PREFIX = ".tmp-"
_FILES = "files"  # an external weights version's files
_KINDS: tuple[CheckpointKind, ...] = ("weights", "sampler_weights", "external_weights")
_TYPES: dict[CheckpointKind, Literal["training", "sampler", "external"]] = {
    "weights": "training", "sampler_weights": "sampler", "external_weights": "external"}
# The actor of what the service does by itself (an expiry).
SYSTEM_ACTOR = "system"


class InvalidNameError(ValueError):
    """A name or tinker path that cannot be stored (the service answers 400)."""


class CheckpointMissingError(ValueError):
    """The checkpoint was deleted (or expired) before its files could be read."""


class CheckpointKindError(ValueError):
    """The checkpoint is of a kind the operation cannot use (external weights cannot be loaded)."""


class CheckpointUnreadableError(RuntimeError):
    """The checkpoint's files exist but cannot be read (a disk problem, not the caller's mistake)."""


def check_name(name: str) -> str:
    """A checkpoint name becomes a directory name: letters, digits, ``_ - . + = @``; no ``/``, no ``..``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"invalid checkpoint name {name!r}: use 1-128 characters from letters, digits and '_-.+=@', "
            "not starting with '.', without '/' or '..'")
    return name


def parse_tinker_path(path: str) -> tuple[str, CheckpointKind, str]:
    """``tinker://<run>/<weights|sampler_weights|external_weights>/<name>`` -> (run id, kind, name), with a
    storable name.

    The path grammar is the wire types' (one place knows it); the service adds its stricter name rule.
    """
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    except InvalidInputError as invalid:
        raise InvalidNameError(str(invalid)) from None
    check_name(parsed.name)
    kind = next(k for k in _KINDS if k == parsed.kind)
    return parsed.training_run_id, kind, parsed.name


def _file_name(identifier: str) -> str:
    """An id as one portable path segment (ids hold ``:``, which Windows forbids in names)."""
    return quote(identifier, safe="-_.")


def _new_version() -> str:
    """A fresh version directory name; names sort in creation order (within one clock)."""
    return f"v{time.time_ns():020d}-{secrets.token_hex(4)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_arrays_atomic(path: Path, arrays: Arrays) -> int:
    """Write ``arrays`` as an ``.npz`` (temp file + rename); returns the size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path.stat().st_size


def read_arrays(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    session_id: str
    base_model: str
    lora_rank: int
    seed: int | None
    train_mlp: bool
    train_attn: bool
    train_unembed: bool
    model_owner: str  # what TrainingRun.model_owner shows: the owner's name (older versions wrote "local")
    created: datetime
    last_request_time: datetime
    user_metadata: dict[str, str] | None = None
    corrupted: bool = False
    owner: str = DEFAULT_OWNER  # the user the run belongs to (absent from older versions' files)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created"] = _iso(self.created)
        data["last_request_time"] = _iso(self.last_request_time)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        values = dict(data)
        values["created"] = _parse_iso(values["created"])
        values["last_request_time"] = _parse_iso(values["last_request_time"])
        return cls(**values)


@dataclass(frozen=True)
class CheckpointRecord:
    """One version of a checkpoint. ``version`` names its directory ("" for an earlier release's
    layout, where the files sit directly in the checkpoint's directory)."""

    run_id: str
    kind: CheckpointKind
    name: str
    time: datetime
    size_bytes: int
    with_optimizer: bool
    public: bool = False
    expires_at: datetime | None = None
    version: str = ""
    user_metadata: dict[str, str] | None = None
    files: tuple[str, ...] = ()  # external weights: the files' paths under the checkpoint (none for the others)

    @property
    def checkpoint_id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def checkpoint_type(self) -> Literal["training", "sampler", "external"]:
        return _TYPES[self.kind]

    @property
    def tinker_path(self) -> str:
        return f"{_TINKER}{self.run_id}/{self.kind}/{self.name}"

    @property
    def version_key(self) -> str:
        """Names this version of this checkpoint among all versions of all checkpoints."""
        return f"{self.tinker_path}#{self.version}"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = _iso(self.time)
        data["expires_at"] = _iso(self.expires_at)
        data["files"] = list(self.files)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointRecord:
        values = dict(data)
        values["time"] = _parse_iso(values["time"])
        values["expires_at"] = _parse_iso(values.get("expires_at"))
        values["files"] = tuple(str(f) for f in values.get("files") or ())
        return cls(**values)


@dataclass(frozen=True)
class SamplerRecord:
    sampler_id: str
    session_id: str
    base_model: str
    model_path: str | None = None
    ephemeral_of: str | None = None  # run id whose weights were saved ephemerally for this sampler
    created: datetime = field(default_factory=_now)
    owner: str = DEFAULT_OWNER  # the user the sampling session belongs to (absent from older versions' files)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created"] = _iso(self.created)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SamplerRecord:
        values = dict(data)
        values["created"] = _parse_iso(values["created"]) or _now()
        return cls(**values)


@dataclass(frozen=True)
class SessionRecord:
    """A session as remembered across restarts (its liveness is :class:`SessionRegistry`'s, in memory).

    ``project_id`` None: the session is in no project (assigned later with ``PUT /sessions/{id}/project``;
    never cleared). ``finish_reason`` is set once its client finished it (the first finish wins)."""

    session_id: str
    created: datetime
    owner: str = DEFAULT_OWNER
    project_id: str | None = None
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    finish_reason: FinishReason | None = None
    finish_detail: str | None = None

    @property
    def project(self) -> str:
        """The project shown and filtered on: the assigned one, else :data:`DEFAULT_PROJECT`."""
        return self.project_id if self.project_id is not None else DEFAULT_PROJECT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["session_id"]
        data["created"] = _iso(self.created)
        return data

    @classmethod
    def from_json(cls, session_id: str, data: object) -> SessionRecord:
        """From ``sessions.json``; older versions stored only the creation time (the session is the default user's)."""
        if isinstance(data, str):
            return cls(session_id=session_id, created=_parse_iso(data) or _now())
        if not isinstance(data, dict):
            raise TypeError("a session entry is an object")
        values = dict(data)
        values["created"] = _parse_iso(values.get("created")) or _now()
        if values.get("finish_reason") not in (None, *get_args(FinishReason)):
            raise ValueError(f"unknown finish reason {values['finish_reason']!r}")
        return cls(session_id=session_id, **values)


class Storage:
    """Runs, checkpoints, sessions and samplers, kept in memory and mirrored to ``root``.

    Thread-safe: model operations write checkpoint files from worker threads while the service loop
    answers REST calls. Big files are written outside the lock; what makes them visible (the
    metadata file and the in-memory pointer) changes under it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.RLock()
        self._runs: dict[str, RunRecord] = {}
        self._checkpoints: dict[tuple[str, str], CheckpointRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._samplers: dict[str, SamplerRecord] = {}
        self._archives = ArchiveCache(root / "archives")
        self.audit = AuditLog(root / "audit")
        # The earliest expiry among the checkpoints (None: none expires): lookups scan for expired
        # checkpoints only once it has passed, so thousands of checkpoints cost nothing per lookup.
        self._next_expiry: datetime | None = None

    # ---- loading -----------------------------------------------------------------------------
    def load(self) -> None:
        """Read the data directory (a fresh one is created). Unreadable entries are skipped; leftovers
        of interrupted writes are removed."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_temp_files()
            sessions_file = self.root / "sessions.json"
            if sessions_file.exists():
                with contextlib.suppress(ValueError, OSError, TypeError, AttributeError):
                    raw = json.loads(sessions_file.read_text())
                    for sid, entry in raw.items():
                        with contextlib.suppress(ValueError, TypeError):
                            self._sessions[sid] = SessionRecord.from_json(sid, entry)
            for run_file in sorted((self.root / "runs").glob("*/run.json")):
                with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                    run = RunRecord.from_json(json.loads(run_file.read_text()))
                    self._runs[run.run_id] = run
            for kind in _KINDS:
                for name_dir in sorted((self.root / "runs").glob(f"*/{kind}/*")):
                    if name_dir.is_dir():
                        self._load_checkpoint(name_dir)
            for sampler_file in sorted((self.root / "samplers").glob("*.json")):
                with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                    sampler = SamplerRecord.from_json(json.loads(sampler_file.read_text()))
                    self._samplers[sampler.sampler_id] = sampler
            self._archives.clear()

    def _remove_temp_files(self) -> None:
        """Temp files of writes that were killed midway (only in the directories this class writes)."""
        candidates = [*self.root.glob(f"{_TMP_PREFIX}*"), *(self.root / "samplers").glob(f"{_TMP_PREFIX}*"),
                      *(self.root / "runs").rglob(f"{_TMP_PREFIX}*")]
        for path in candidates:
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    path.unlink()

    def _load_checkpoint(self, name_dir: Path) -> None:
        """Keep the newest complete version of one checkpoint name; remove the others."""
        versions: list[CheckpointRecord] = []
        legacy = self._read_version(name_dir, "")
        if legacy is not None:
            versions.append(legacy)
        for version_dir in sorted(name_dir.iterdir()):
            if not (_VERSION.match(version_dir.name) and version_dir.is_dir()):
                continue
            record = self._read_version(version_dir, version_dir.name)
            if record is None:
                shutil.rmtree(version_dir, ignore_errors=True)  # incomplete: its save never finished
            else:
                versions.append(record)
        if not versions:
            return
        newest = max(versions, key=lambda record: record.version)
        if newest.run_id not in self._runs:
            return
        self._checkpoints[(newest.run_id, newest.checkpoint_id)] = newest
        self._note_expiry(newest.expires_at)
        for record in versions:
            if record is not newest:
                self._remove_files(record)

    @staticmethod
    def _read_version(directory: Path, version: str) -> CheckpointRecord | None:
        meta = directory / _META
        if not meta.is_file():
            return None
        try:
            record = CheckpointRecord.from_json(json.loads(meta.read_text()))
        except (ValueError, OSError, TypeError, KeyError):
            return None
        name_dir = directory.parent if version else directory
        if record.kind not in _KINDS or record.name != name_dir.name:
            return None
        complete = (all((directory / _FILES / f).is_file() for f in record.files) if record.kind == "external_weights"
                    else (directory / _ARRAYS).is_file())
        return replace(record, version=version) if complete else None

    # ---- sessions ----------------------------------------------------------------------------
    def add_session(self, record: SessionRecord) -> None:
        with self._lock:
            self._sessions[record.session_id] = record
            self._write_sessions()

    def _write_sessions(self) -> None:
        write_json_atomic(self.root / "sessions.json",
                          {sid: record.to_json() for sid, record in self._sessions.items()})

    def sessions(self, user: str | None = None) -> list[SessionRecord]:
        """Newest first; only ``user``'s when given."""
        with self._lock:
            records = [r for r in self._sessions.values() if user is None or r.owner == user]
        return sorted(records, key=lambda r: (r.created, r.session_id), reverse=True)

    def session(self, session_id: str, user: str | None = None) -> SessionRecord | None:
        """The session; None if unknown or (with ``user``) another user's."""
        with self._lock:
            record = self._sessions.get(session_id)
        return record if record is not None and (user is None or record.owner == user) else None

    def update_session(self, session_id: str,
                       change: Callable[[SessionRecord], SessionRecord]) -> SessionRecord | None:
        """Apply ``change`` to the session and store the result (None if the session is unknown)."""
        with self._lock:
            current = self._sessions.get(session_id)
            if current is None:
                return None
            updated = replace(change(current), session_id=current.session_id, owner=current.owner)
            self._sessions[session_id] = updated
            self._write_sessions()
            return updated

    def session_project(self, session_id: str) -> str:
        """The project of a run's session (:data:`DEFAULT_PROJECT` for a session not known here)."""
        record = self.session(session_id)
        return record.project if record is not None else DEFAULT_PROJECT

    # ---- runs --------------------------------------------------------------------------------
    def _run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / _file_name(run_id)

    def add_run(self, run: RunRecord) -> None:
        with self._lock:
            self._runs[run.run_id] = run
            write_json_atomic(self._run_dir(run.run_id) / "run.json", run.to_json())

    def run(self, run_id: str, user: str | None = None) -> RunRecord | None:
        """The run; None if unknown or (with ``user``) another user's."""
        with self._lock:
            run = self._runs.get(run_id)
        return run if run is not None and (user is None or run.owner == user) else None

    def runs(self, user: str | None = None) -> list[RunRecord]:
        """Oldest first; only ``user``'s when given."""
        with self._lock:
            runs = [r for r in self._runs.values() if user is None or r.owner == user]
        return sorted(runs, key=lambda r: (r.created, r.run_id))

    def runs_of_session(self, session_id: str) -> list[str]:
        return [r.run_id for r in self.runs() if r.session_id == session_id]

    def published_run_ids(self) -> set[str]:
        """The runs holding at least one published checkpoint (readable by every user)."""
        return {c.run_id for c in self.checkpoints() if c.public}

    def touch_run(self, run_id: str) -> None:
        """Note activity (``last_request_time``); persisted with the next checkpoint or at shutdown."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                self._runs[run_id] = replace(run, last_request_time=_now())

    def flush_runs(self) -> None:
        with self._lock:
            for run in self._runs.values():
                with contextlib.suppress(OSError):
                    write_json_atomic(self._run_dir(run.run_id) / "run.json", run.to_json())

    # ---- checkpoints -------------------------------------------------------------------------
    def _name_dir(self, run_id: str, kind: CheckpointKind, name: str) -> Path:
        return self._run_dir(run_id) / kind / name

    def _version_dir(self, record: CheckpointRecord) -> Path:
        name_dir = self._name_dir(record.run_id, record.kind, record.name)
        return name_dir / record.version if record.version else name_dir

    def write_checkpoint(self, run_id: str, kind: CheckpointKind, name: str, arrays: Arrays,
                         *, with_optimizer: bool, ttl_seconds: int | None = None,
                         user_metadata: Mapping[str, str] | None = None) -> CheckpointRecord:
        """Write a new version (arrays, then the metadata that completes it), then make it current.

        The version it replaces, if any, is removed; a fresh version is private, expires ``ttl_seconds``
        from now (None: never) and keeps ``user_metadata``.
        """
        if kind == "external_weights":
            raise CheckpointKindError("external weights are files: write them with write_external_weights")
        return self._write_version(
            run_id, kind, name, lambda directory: write_arrays_atomic(directory / _ARRAYS, arrays),
            with_optimizer=with_optimizer, ttl_seconds=ttl_seconds, user_metadata=user_metadata)

    def write_external_weights(self, run_id: str, name: str, files: Mapping[str, bytes], *,
                               ttl_seconds: int | None = None,
                               user_metadata: Mapping[str, str] | None = None) -> CheckpointRecord:
        """A new version of ``tinker://<run>/external_weights/<name>``: ``files`` (relative path -> bytes, e.g.
        ``adapter_config.json``) for use outside the service, served by signed URLs."""
        paths = {_relative_file(path): data for path, data in files.items()}
        if not paths:
            raise InvalidNameError("external weights need at least one file")

        def write(directory: Path) -> int:
            size = 0
            for relative, data in paths.items():
                target = directory / _FILES / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_TMP_PREFIX)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, target)
                size += len(data)
            return size

        return self._write_version(run_id, "external_weights", name, write, with_optimizer=False,
                                   ttl_seconds=ttl_seconds, user_metadata=user_metadata, files=tuple(sorted(paths)))

    def _write_version(self, run_id: str, kind: CheckpointKind, name: str, write: Callable[[Path], int], *,
                       with_optimizer: bool, ttl_seconds: int | None, user_metadata: Mapping[str, str] | None,
                       files: tuple[str, ...] = ()) -> CheckpointRecord:
        check_name(name)
        version = _new_version()
        with self._lock:
            if run_id not in self._runs:
                raise KeyError(f"unknown training run {run_id!r}")
            self.expire()
            directory = self._name_dir(run_id, kind, name) / version
            directory.mkdir(parents=True)  # under the lock: never races the removal of an empty name dir
        try:
            size = write(directory)
            now = _now()
            record = CheckpointRecord(
                run_id=run_id, kind=kind, name=name, time=now, size_bytes=size, with_optimizer=with_optimizer,
                version=version, expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None,
                user_metadata=dict(user_metadata) if user_metadata else None, files=files)
            self._commit(record, directory)
        except BaseException:
            with self._lock:
                current = self._checkpoints.get((run_id, f"{kind}/{name}"))
                if current is None or current.version != version:
                    shutil.rmtree(directory, ignore_errors=True)  # never committed
            raise
        self.audit.record("checkpoint_create", actor=self._runs[run_id].owner, owner=self._runs[run_id].owner,
                          tinker_path=record.tinker_path, training_run_id=run_id,
                          checkpoint_type=record.checkpoint_type, size_bytes=size, expires_at=_iso(record.expires_at))
        return record

    def _commit(self, record: CheckpointRecord, directory: Path) -> None:
        """Make a complete version the current one (its metadata written last), replacing the previous."""
        with self._lock:
            write_json_atomic(directory / _META, record.to_json())
            key = (record.run_id, record.checkpoint_id)
            replaced = self._checkpoints.get(key)
            self._checkpoints[key] = record
            self._note_expiry(record.expires_at)
            if replaced is not None:
                self._remove_files(replaced)
            run = self._runs[record.run_id]
            self._runs[record.run_id] = replace(run, last_request_time=record.time)
            write_json_atomic(self._run_dir(record.run_id) / "run.json", self._runs[record.run_id].to_json())

    def copy_checkpoint(self, source: CheckpointRecord, destination: RunRecord, *, actor: str,
                        ttl_seconds: int | None = None) -> CheckpointRecord:
        """Copy the current version of ``source`` into the run ``destination`` (added if new), under the same
        kind and name: its files are hard-linked (copied where links are impossible), its metadata kept; the
        copy is private and expires ``ttl_seconds`` from now (the source's expiry is not inherited).
        :class:`CheckpointMissingError` if the source is gone."""
        with self._lock:
            current = self._checkpoints.get((source.run_id, source.checkpoint_id))
            if current is None:
                raise CheckpointMissingError(f"checkpoint {source.tinker_path} no longer exists")
            if destination.run_id not in self._runs:
                self.add_run(destination)
            origin = self._version_dir(current)
            version = _new_version()
            directory = self._name_dir(destination.run_id, current.kind, current.name) / version
            directory.mkdir(parents=True)
            # Linked under the lock: the source version cannot be removed halfway (its files stay
            # reachable through the links once they exist).
            try:
                relatives = ([f"{_FILES}/{f}" for f in current.files] if current.kind == "external_weights"
                             else [_ARRAYS])
                for relative in relatives:
                    target = directory / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(origin / relative, target)
                    except OSError:
                        shutil.copyfile(origin / relative, target)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
        now = _now()
        record = replace(current, run_id=destination.run_id, time=now, public=False, version=version,
                         expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None)
        try:
            self._commit(record, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.audit.record("checkpoint_copy", actor=actor, owner=destination.owner, tinker_path=record.tinker_path,
                          training_run_id=record.run_id, checkpoint_type=record.checkpoint_type,
                          source_path=current.tinker_path, size_bytes=record.size_bytes,
                          expires_at=_iso(record.expires_at))
        return record

    def external_files(self, record: CheckpointRecord) -> dict[str, Path]:
        """The files of an external weights version (relative path -> file); empty for other kinds."""
        if record.kind != "external_weights":
            return {}
        directory = self._version_dir(record) / _FILES
        return {relative: directory / relative for relative in record.files}

    def read_checkpoint(self, record: CheckpointRecord, *, reader: str | None = None,
                        purpose: str | None = None) -> Arrays:
        """The arrays of ``record``'s checkpoint. If that version was replaced meanwhile, the current
        version is read; if the checkpoint is gone, :class:`CheckpointMissingError`. A ``reader`` (the user
        for whom it is read, and why: ``purpose``) is written to the audit log."""
        if record.kind == "external_weights":
            raise CheckpointKindError(f"checkpoint {record.tinker_path} holds external weights (files for use "
                                      "outside the service): they cannot be loaded or sampled from")
        if reader is not None:
            self.audit_read(record, reader, purpose)
        for _ in range(3):
            try:
                return read_arrays(self._version_dir(record) / _ARRAYS)
            except FileNotFoundError:
                current = self.checkpoint(record.run_id, record.checkpoint_id)
                if current is None or current.version == record.version:
                    break
                record = current
            except OSError as error:
                raise CheckpointUnreadableError(
                    f"checkpoint {record.tinker_path} could not be read: {error.strerror or 'I/O error'}"
                ) from None
            except ValueError as error:  # a damaged .npz
                raise CheckpointUnreadableError(
                    f"checkpoint {record.tinker_path} is damaged and could not be read ({type(error).__name__})"
                ) from None
        raise CheckpointMissingError(f"checkpoint {record.tinker_path} no longer exists")

    def checkpoint(self, run_id: str, checkpoint_id: str) -> CheckpointRecord | None:
        with self._lock:
            self.expire()
            return self._checkpoints.get((run_id, checkpoint_id))

    def checkpoint_by_path(self, tinker_path: str, reader: str | None = None) -> CheckpointRecord | None:
        """The checkpoint ``tinker_path`` names; with ``reader``, None unless that user may read it."""
        run_id, kind, name = parse_tinker_path(tinker_path)
        if reader is None:
            return self.checkpoint(run_id, f"{kind}/{name}")
        return self.checkpoint_for(reader, run_id, f"{kind}/{name}")

    def checkpoint_for(self, user: str, run_id: str, checkpoint_id: str, *,
                       change: bool = False) -> CheckpointRecord | None:
        """The checkpoint if ``user`` may read it (owner, or published) or, with ``change``, change it
        (owner only); None otherwise, as for an unknown checkpoint."""
        record = self.checkpoint(run_id, checkpoint_id)
        if record is None:
            return None
        if self.run(run_id, user) is not None or (record.public and not change):
            return record
        return None

    def checkpoints(self, run_id: str | None = None) -> list[CheckpointRecord]:
        """Newest first; only ``run_id``'s when given."""
        with self._lock:
            self.expire()
            records = [c for c in self._checkpoints.values() if run_id is None or c.run_id == run_id]
        return sorted(records, key=lambda c: (c.time, c.checkpoint_id), reverse=True)

    def last_checkpoint(self, run_id: str, kind: CheckpointKind) -> CheckpointRecord | None:
        for record in self.checkpoints(run_id):
            if record.kind == kind:
                return record
        return None

    def audit_read(self, record: CheckpointRecord, reader: str, purpose: str | None) -> None:
        """Write a read of ``record`` by ``reader`` to the audit log."""
        run = self.run(record.run_id)
        self.audit.record("checkpoint_read", actor=reader, owner=run.owner if run is not None else None,
                          tinker_path=record.tinker_path, training_run_id=record.run_id,
                          checkpoint_type=record.checkpoint_type, purpose=purpose)

    def delete_checkpoint(self, record: CheckpointRecord, *, actor: str | None = None,
                          event: str = "checkpoint_delete") -> bool:
        """Delete ``record``'s version if it is still the current one (compare-and-delete); a newer
        version saved meanwhile is kept. Returns whether the checkpoint was deleted (then ``event`` goes to
        the audit log, with ``actor``: by default the run's owner)."""
        with self._lock:
            key = (record.run_id, record.checkpoint_id)
            current = self._checkpoints.get(key)
            if current is None or current.version != record.version:
                return False
            del self._checkpoints[key]
            self._remove_files(current)
            run = self._runs.get(record.run_id)
        owner = run.owner if run is not None else None
        self.audit.record(event, actor=actor or owner, owner=owner, tinker_path=current.tinker_path,
                          training_run_id=current.run_id, checkpoint_type=current.checkpoint_type,
                          size_bytes=current.size_bytes)
        return True

    def modify_checkpoint(self, run_id: str, checkpoint_id: str,
                          change: Callable[[CheckpointRecord], CheckpointRecord]) -> CheckpointRecord | None:
        """Apply ``change`` to the current version and store the result, atomically (a save that
        commits meanwhile cannot be overwritten by the old version). None if there is no checkpoint;
        an exception raised by ``change`` leaves everything as it was."""
        with self._lock:
            self.expire()
            current = self._checkpoints.get((run_id, checkpoint_id))
            if current is None:
                return None
            updated = replace(change(current), run_id=current.run_id, kind=current.kind, name=current.name,
                              version=current.version, files=current.files)
            write_json_atomic(self._version_dir(updated) / _META, updated.to_json())
            self._checkpoints[(run_id, checkpoint_id)] = updated
            self._note_expiry(updated.expires_at)
            return updated

    def update_checkpoint(self, record: CheckpointRecord) -> bool:
        """Store ``record`` if its version is still the current one; False if it was replaced or deleted."""
        def same_version(current: CheckpointRecord) -> CheckpointRecord:
            if current.version != record.version:
                raise _Replaced
            return record

        try:
            return self.modify_checkpoint(record.run_id, record.checkpoint_id, same_version) is not None
        except _Replaced:
            return False

    def set_ttl(self, record: CheckpointRecord, ttl_seconds: int | None) -> CheckpointRecord | None:
        """Set (or with None clear) the time-to-live of the checkpoint ``record`` names."""
        expires = _now() + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None
        return self.modify_checkpoint(record.run_id, record.checkpoint_id,
                                      lambda current: replace(current, expires_at=expires))

    def expire(self) -> None:
        """Delete checkpoints whose time-to-live has passed (each exactly in the version that expired).
        Free until the earliest expiry has passed: only then are the checkpoints scanned."""
        now = _now()
        with self._lock:
            if self._next_expiry is None or self._next_expiry > now:
                return
            for record in [c for c in self._checkpoints.values() if c.expired(now)]:
                self.delete_checkpoint(record, actor=SYSTEM_ACTOR, event="checkpoint_expire")
            self._next_expiry = min((c.expires_at for c in self._checkpoints.values() if c.expires_at is not None),
                                    default=None)

    def _note_expiry(self, expires_at: datetime | None) -> None:
        """A checkpoint now expires at ``expires_at``: the next scan may have to come earlier."""
        if expires_at is not None and (self._next_expiry is None or expires_at < self._next_expiry):
            self._next_expiry = expires_at

    def _remove_files(self, record: CheckpointRecord) -> None:
        """Remove one version's files (metadata first: a half-removed version is simply incomplete),
        then its archive: an archive being built meanwhile either fails (files gone) or is dropped."""
        directory = self._version_dir(record)
        with contextlib.suppress(OSError):
            (directory / _META).unlink()
        if record.version:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                (directory / _ARRAYS).unlink()
        with contextlib.suppress(OSError):
            self._name_dir(record.run_id, record.kind, record.name).rmdir()  # only if now empty
        self._archives.drop(record.version_key)

    # ---- archives ----------------------------------------------------------------------------
    def archive(self, run_id: str, checkpoint_id: str, *, lifetime: timedelta,
                budget_bytes: int) -> tuple[str, datetime] | None:
        """(download token, expiry) of the current version's archive; None if there is no checkpoint.

        Raises :class:`ArchiveTooLargeError` when the archive cannot fit in ``budget_bytes``.
        """
        for _ in range(3):
            record = self.checkpoint(run_id, checkpoint_id)
            if record is None:
                return None
            directory = self._version_dir(record)
            files = {_ARRAYS: directory / _ARRAYS, _META: directory / _META}
            adapter = None
            if record.kind == "external_weights":  # the files themselves, under their own paths
                files = self.external_files(record) | {_META: directory / _META}
            else:  # with the weights as a PEFT adapter, as people merge them outside Tinker
                adapter = functools.partial(self._adapter_files, record, directory / _ARRAYS)
            try:
                return self._archives.token_for(record.version_key, files, lifetime=lifetime,
                                                budget_bytes=budget_bytes, generated=adapter)
            except FileNotFoundError:
                continue  # replaced or deleted while being archived: look again
        return None

    def _adapter_files(self, record: CheckpointRecord, arrays_file: Path) -> dict[str, bytes]:
        """The LoRA weights of a training or sampler checkpoint as the PEFT adapter ``save_weights_external``
        writes (the same bytes for the same weights); none for a state without weights."""
        run = self._runs.get(record.run_id)
        if run is None:
            return {}
        state = {key: value for key, value in read_arrays(arrays_file).items() if not key.startswith("adam.")}
        try:
            return export_files(state, base_model=run.base_model, rank=run.lora_rank, train_mlp=run.train_mlp,
                                train_attn=run.train_attn, train_unembed=run.train_unembed)
        except ValueError:  # nothing to export (no weight arrays): the archive holds the files only
            return {}

    def archive_path(self, token: str) -> Path | None:
        return self._archives.path(token)

    @property
    def archives(self) -> ArchiveCache:
        return self._archives

    # ---- samplers ----------------------------------------------------------------------------
    def add_sampler(self, sampler: SamplerRecord, arrays: Arrays | None = None) -> None:
        with self._lock:
            if arrays is not None:
                write_arrays_atomic(self._sampler_file(sampler.sampler_id, ".npz"), arrays)
            write_json_atomic(self._sampler_file(sampler.sampler_id, ".json"), sampler.to_json())
            self._samplers[sampler.sampler_id] = sampler

    def _sampler_file(self, sampler_id: str, suffix: str) -> Path:
        return self.root / "samplers" / f"{_file_name(sampler_id)}{suffix}"

    def sampler(self, sampler_id: str) -> SamplerRecord | None:
        with self._lock:
            return self._samplers.get(sampler_id)

    def sampler_arrays(self, sampler_id: str) -> Arrays | None:
        path = self._sampler_file(sampler_id, ".npz")
        try:
            return read_arrays(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise CheckpointUnreadableError(
                f"the weights of sampling session {sampler_id} could not be read ({type(error).__name__})"
            ) from None

    def sampler_of(self, sampler_id: str, user: str) -> SamplerRecord | None:
        """The sampling session if it is ``user``'s; None otherwise, as for an unknown id."""
        record = self.sampler(sampler_id)
        return record if record is not None and record.owner == user else None

    def samplers_of_session(self, session_id: str) -> list[str]:
        with self._lock:
            records = [s for s in self._samplers.values() if s.session_id == session_id]
        return [s.sampler_id for s in sorted(records, key=lambda s: (s.created, s.sampler_id))]


def _relative_file(path: str) -> str:
    """A file path inside an external weights checkpoint: relative, ``/``-separated, without ``.``/``..`` parts."""
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or any(part in ("", ".", "..") or "\\" in part or part.startswith(_TMP_PREFIX) for part in parts) \
            or len(path) > 512:
        raise InvalidNameError(f"invalid file path {path!r} in external weights: use a relative path of names "
                               "separated by '/', without '.' or '..'")
    return path


class _Replaced(Exception):
    """update_checkpoint: the version to update is no longer the current one."""
