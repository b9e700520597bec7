"""Downloading a signed URL (a checkpoint archive, an exported weights file) into a file.

A signed download URL is its own credential: it is fetched without the API key, on a plain connection
of its own, never through the API's pools. The caller's thread blocks while the body streams to disk
(a CLI command or a user's call, never an actor). Redirects are followed: storage services answer
downloads with them, and no key is sent to be leaked.

A download that stops moving is not a silent wait: once no byte has come for ``warn_after_s`` (30 s) one
``wait.stalled`` warning says what is downloaded from where (the origin only: the URL's path and query are
its secret), how long it has waited, what has arrived and when it gives up; at most one line every
``repeat_after_s`` (5 minutes) after that. It gives up ``timeout_s`` after the last byte (httpx's read
timeout), with the caller's error.
"""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tinker_actors.http.redirects import origin_of
from tinker_actors.logs import get_logger

__all__ = ["DOWNLOAD_TIMEOUT_S", "STALL_WARNING_S", "download_to_file"]

log = get_logger("tinker_actors.downloads")

DOWNLOAD_TIMEOUT_S = 60.0
"""The longest wait for a connection or for the next block of the body (not for the whole download)."""
STALL_WARNING_S = 30.0
"""Seconds without a byte before a download is announced as stalled."""
_REPEAT_AFTER_S = 300.0


def download_to_file(url: str, target: Path, *, timeout_s: float = DOWNLOAD_TIMEOUT_S, what: str = "download",
                     warn_after_s: float = STALL_WARNING_S) -> int:
    """GET ``url`` into ``target`` (created or replaced); the number of bytes written. ``what`` names the
    download in the stall warning (e.g. ``"checkpoint tinker://run/weights/final"``).

    Raises ``httpx.HTTPStatusError`` for an error answer and ``httpx.HTTPError`` for a transport failure.
    """
    size = 0
    with _StallAnnouncer(what, origin_of(httpx.URL(url)), warn_after_s=warn_after_s, gives_up_after_s=timeout_s) \
            as watch, httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response, \
            target.open("wb") as out:
        watch.answered(response.status_code, response.headers.get("content-length"))
        response.raise_for_status()
        for block in response.iter_bytes():
            out.write(block)
            size += len(block)
            watch.progress(size)
    return size


class _StallAnnouncer:
    """Watches one download from a thread of its own (the caller's thread is blocked in a read): one warning
    once nothing has moved for ``warn_after_s``, then at most one every ``_REPEAT_AFTER_S``."""

    def __init__(self, what: str, origin: str, *, warn_after_s: float, gives_up_after_s: float) -> None:
        self._what = what
        self._origin = origin
        self._warn_after = warn_after_s
        self._gives_up_after = gives_up_after_s
        self._lock = threading.Lock()
        self._started = self._last_progress = time.monotonic()
        self._received = 0
        self._answer = "no answer yet"
        self._last_warning: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="download-stall-watch", daemon=True)

    def __enter__(self) -> _StallAnnouncer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def answered(self, status: int, length: str | None) -> None:
        with self._lock:
            self._answer = f"HTTP {status}" + (f", {length} bytes announced" if length else "")
            self._last_progress = time.monotonic()

    def progress(self, received: int) -> None:
        with self._lock:
            self._received = received
            self._last_progress = time.monotonic()

    def _watch(self) -> None:
        wait = self._warn_after
        while not self._done.wait(wait):
            now = time.monotonic()
            event: dict[str, Any] | None = None
            with self._lock:
                stalled_for = now - self._last_progress
                due = stalled_for >= self._warn_after and (
                    self._last_warning is None or now - self._last_warning >= _REPEAT_AFTER_S)
                if due:
                    self._last_warning = now
                    event = self._event(now, stalled_for)
                wait = max(0.05, self._warn_after - stalled_for) if stalled_for < self._warn_after \
                    else self._warn_after
            if event is not None:
                log.warning("wait.stalled", **event)

    def _event(self, now: float, stalled_for: float) -> dict[str, Any]:
        remaining = max(0.0, self._gives_up_after - stalled_for)
        return {"request_type": "download", "what": self._what, "origin": self._origin,
                "waited": round(now - self._started, 1), "no_progress_for": round(stalled_for, 1),
                "received_bytes": self._received, "last_answer": self._answer, "gives_up_in": round(remaining, 1),
                "gives_up_at": datetime.datetime.fromtimestamp(time.time() + remaining, datetime.UTC)
                .isoformat(timespec="seconds")}
