"""The local service's data directory: training runs, checkpoints, sessions and samplers on disk.

Layout (every JSON file is written atomically: a temp file in the same directory, then a rename)::

    <data_dir>/sessions.json                           known session ids and their creation times
    <data_dir>/samplers/<sampler_id>.json              sampling sessions (+ .npz for ephemeral weights)
    <data_dir>/runs/<run_id>/run.json                  a training run's metadata

(ids are percent-encoded in file names: ``<session>:train:0`` is stored as ``<session>%3Atrain%3A0``).
    <data_dir>/runs/<run_id>/<kind>/<name>/arrays.npz  checkpoint arrays (kind: weights|sampler_weights)
    <data_dir>/runs/<run_id>/<kind>/<name>/checkpoint.json   its metadata; written last, so a
                                                       checkpoint exists only once it is complete
    <data_dir>/archives/<token>.tar                    short-lived download archives

Ids coming from requests are looked up in memory before they touch a path, and checkpoint names
are checked by :func:`check_name`, so no request can address a file outside the data directory.
A restarted service reads everything back with :meth:`Storage.load`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import ParsedCheckpointTinkerPath

__all__ = [
    "CheckpointKind",
    "CheckpointRecord",
    "InvalidNameError",
    "RunRecord",
    "SamplerRecord",
    "Storage",
    "check_name",
    "parse_tinker_path",
]

CheckpointKind = Literal["weights", "sampler_weights"]
Arrays = dict[str, npt.NDArray[Any]]

_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-+=@]{0,127}$")
_TINKER = "tinker://"


class InvalidNameError(ValueError):
    """A name or tinker path that cannot be stored (the service answers 400)."""


def check_name(name: str) -> str:
    """A checkpoint name becomes a directory name: letters, digits, ``_ - . + = @``; no ``/``, no ``..``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"invalid checkpoint name {name!r}: use 1-128 characters from letters, digits and '_-.+=@', "
            "not starting with '.', without '/' or '..'")
    return name


def parse_tinker_path(path: str) -> tuple[str, CheckpointKind, str]:
    """``tinker://<run>/<weights|sampler_weights>/<name>`` -> (run id, kind, name), with a storable name.

    The path grammar is the wire types' (one place knows it); the service adds its stricter name rule.
    """
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    except InvalidInputError as invalid:
        raise InvalidNameError(str(invalid)) from None
    check_name(parsed.name)
    return parsed.training_run_id, ("weights" if parsed.kind == "weights" else "sampler_weights"), parsed.name


def _file_name(identifier: str) -> str:
    """An id as one portable path segment (ids hold ``:``, which Windows forbids in names)."""
    return quote(identifier, safe="-_.")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
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
    model_owner: str
    created: datetime
    last_request_time: datetime
    user_metadata: dict[str, str] | None = None
    corrupted: bool = False

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
    run_id: str
    kind: CheckpointKind
    name: str
    time: datetime
    size_bytes: int
    with_optimizer: bool
    public: bool = False
    expires_at: datetime | None = None

    @property
    def checkpoint_id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def checkpoint_type(self) -> Literal["training", "sampler"]:
        return "training" if self.kind == "weights" else "sampler"

    @property
    def tinker_path(self) -> str:
        return f"{_TINKER}{self.run_id}/{self.kind}/{self.name}"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = _iso(self.time)
        data["expires_at"] = _iso(self.expires_at)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointRecord:
        values = dict(data)
        values["time"] = _parse_iso(values["time"])
        values["expires_at"] = _parse_iso(values.get("expires_at"))
        return cls(**values)


@dataclass(frozen=True)
class SamplerRecord:
    sampler_id: str
    session_id: str
    base_model: str
    model_path: str | None = None
    ephemeral_of: str | None = None  # run id whose weights were saved ephemerally for this sampler
    created: datetime = field(default_factory=_now)

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
class _Archive:
    path: Path
    expires: datetime


class Storage:
    """Runs, checkpoints, sessions and samplers, kept in memory and mirrored to ``root``.

    Thread-safe: model operations write checkpoint files from worker threads while the service loop
    answers REST calls.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.RLock()
        self._runs: dict[str, RunRecord] = {}
        self._checkpoints: dict[tuple[str, str], CheckpointRecord] = {}
        self._sessions: dict[str, datetime] = {}
        self._samplers: dict[str, SamplerRecord] = {}
        self._archives: dict[str, _Archive] = {}

    # ---- loading -----------------------------------------------------------------------------
    def load(self) -> None:
        """Read the data directory (a fresh one is created). Unreadable entries are skipped."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            sessions_file = self.root / "sessions.json"
            if sessions_file.exists():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    raw = json.loads(sessions_file.read_text())
                    self._sessions = {sid: _parse_iso(t) or _now() for sid, t in raw.items()}
            for run_file in sorted((self.root / "runs").glob("*/run.json")):
                with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                    run = RunRecord.from_json(json.loads(run_file.read_text()))
                    self._runs[run.run_id] = run
            for meta in sorted((self.root / "runs").glob("*/*/*/checkpoint.json")):
                with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                    record = CheckpointRecord.from_json(json.loads(meta.read_text()))
                    if record.run_id in self._runs and (meta.parent / "arrays.npz").exists():
                        self._checkpoints[(record.run_id, record.checkpoint_id)] = record
            for sampler_file in sorted((self.root / "samplers").glob("*.json")):
                with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                    sampler = SamplerRecord.from_json(json.loads(sampler_file.read_text()))
                    self._samplers[sampler.sampler_id] = sampler
            shutil.rmtree(self.root / "archives", ignore_errors=True)

    # ---- sessions ----------------------------------------------------------------------------
    def add_session(self, session_id: str) -> None:
        with self._lock:
            self._sessions[session_id] = _now()
            write_json_atomic(self.root / "sessions.json",
                              {sid: _iso(t) for sid, t in self._sessions.items()})

    def sessions(self) -> list[str]:
        with self._lock:
            return sorted(self._sessions, key=lambda sid: self._sessions[sid], reverse=True)

    def has_session(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._sessions

    # ---- runs --------------------------------------------------------------------------------
    def _run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / _file_name(run_id)

    def add_run(self, run: RunRecord) -> None:
        with self._lock:
            self._runs[run.run_id] = run
            write_json_atomic(self._run_dir(run.run_id) / "run.json", run.to_json())

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def runs(self) -> list[RunRecord]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: (r.created, r.run_id))

    def runs_of_session(self, session_id: str) -> list[str]:
        return [r.run_id for r in self.runs() if r.session_id == session_id]

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
    def _checkpoint_dir(self, run_id: str, kind: CheckpointKind, name: str) -> Path:
        return self._run_dir(run_id) / kind / name

    def write_checkpoint(self, run_id: str, kind: CheckpointKind, name: str, arrays: Arrays,
                         *, with_optimizer: bool) -> CheckpointRecord:
        """Write the arrays, then the metadata (which makes the checkpoint visible). Same name: replaced."""
        check_name(name)
        with self._lock:
            if run_id not in self._runs:
                raise KeyError(f"unknown training run {run_id!r}")
            self.expire()
        directory = self._checkpoint_dir(run_id, kind, name)
        size = write_arrays_atomic(directory / "arrays.npz", arrays)
        record = CheckpointRecord(run_id=run_id, kind=kind, name=name, time=_now(), size_bytes=size,
                                  with_optimizer=with_optimizer)
        with self._lock:
            write_json_atomic(directory / "checkpoint.json", record.to_json())
            self._checkpoints[(run_id, record.checkpoint_id)] = record
            run = self._runs[run_id]
            self._runs[run_id] = replace(run, last_request_time=record.time)
            write_json_atomic(self._run_dir(run_id) / "run.json", self._runs[run_id].to_json())
        return record

    def read_checkpoint(self, record: CheckpointRecord) -> Arrays:
        return read_arrays(self._checkpoint_dir(record.run_id, record.kind, record.name) / "arrays.npz")

    def checkpoint(self, run_id: str, checkpoint_id: str) -> CheckpointRecord | None:
        with self._lock:
            self.expire()
            return self._checkpoints.get((run_id, checkpoint_id))

    def checkpoint_by_path(self, tinker_path: str) -> CheckpointRecord | None:
        run_id, kind, name = parse_tinker_path(tinker_path)
        return self.checkpoint(run_id, f"{kind}/{name}")

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

    def delete_checkpoint(self, record: CheckpointRecord) -> None:
        with self._lock:
            self._checkpoints.pop((record.run_id, record.checkpoint_id), None)
            directory = self._checkpoint_dir(record.run_id, record.kind, record.name)
            # Remove the metadata first: a half-deleted checkpoint is then simply absent.
            with contextlib.suppress(OSError):
                (directory / "checkpoint.json").unlink()
            shutil.rmtree(directory, ignore_errors=True)

    def update_checkpoint(self, record: CheckpointRecord) -> None:
        with self._lock:
            directory = self._checkpoint_dir(record.run_id, record.kind, record.name)
            write_json_atomic(directory / "checkpoint.json", record.to_json())
            self._checkpoints[(record.run_id, record.checkpoint_id)] = record

    def set_ttl(self, record: CheckpointRecord, ttl_seconds: int | None) -> CheckpointRecord:
        expires = _now() + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None
        updated = replace(record, expires_at=expires)
        self.update_checkpoint(updated)
        return updated

    def expire(self) -> None:
        """Delete checkpoints whose time-to-live has passed."""
        now = _now()
        with self._lock:
            expired = [c for c in self._checkpoints.values() if c.expired(now)]
            for record in expired:
                self.delete_checkpoint(record)

    # ---- archives ----------------------------------------------------------------------------
    def make_archive(self, record: CheckpointRecord, lifetime: timedelta) -> tuple[str, datetime]:
        """Tar the checkpoint's files; returns (download token, expiry)."""
        token = secrets.token_urlsafe(24)
        directory = self._checkpoint_dir(record.run_id, record.kind, record.name)
        target = self.root / "archives" / f"{token}.tar"
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for file_name in ("arrays.npz", "checkpoint.json"):
                tar.add(directory / file_name, arcname=file_name)
        target.write_bytes(buffer.getvalue())
        expires = _now() + lifetime
        with self._lock:
            self._drop_old_archives()
            self._archives[token] = _Archive(target, expires)
        return token, expires

    def archive_path(self, token: str) -> Path | None:
        with self._lock:
            self._drop_old_archives()
            archive = self._archives.get(token)
            return archive.path if archive is not None else None

    def _drop_old_archives(self) -> None:
        now = _now()
        for token, archive in list(self._archives.items()):
            if archive.expires <= now:
                del self._archives[token]
                with contextlib.suppress(OSError):
                    archive.path.unlink()

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
        return read_arrays(path) if path.exists() else None

    def samplers_of_session(self, session_id: str) -> list[str]:
        with self._lock:
            records = [s for s in self._samplers.values() if s.session_id == session_id]
        return [s.sampler_id for s in sorted(records, key=lambda s: (s.created, s.sampler_id))]
