"""Encoding ahead: a chunk of a forward_backward batch written by a worker thread while the chunks before it
are sent (docs/performance.md).

One worker for the process, so chunks are written in the order they were handed over and two big batches
do not fight over the interpreter in more threads than that. Only a chunk whose encoding cannot fail is
handed over (``ClientCodec.prepares_without_error``): bad input still raises in the caller's thread, before
anything of its batch is sent.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["EncodeAhead"]

T = TypeVar("T")

_lock = threading.Lock()
_worker: concurrent.futures.ThreadPoolExecutor | None = None
_worker_pid = 0  # a child made by fork has no worker thread: it starts its own


class EncodeAhead(Generic[T]):
    """One encoding, run by the worker once started: by :meth:`start` as soon as the chunk before it went out
    (started earlier, it would slow that chunk's own last steps down: one interpreter), at the latest when
    its own turn to be sent comes. Started once, whoever asks first."""

    def __init__(self, encode: Callable[[], T]) -> None:
        self._encode = encode
        self._started: concurrent.futures.Future[T] | None = None
        self._lock = threading.Lock()

    def start(self) -> concurrent.futures.Future[T]:
        """The encoding's future (started now if it was not)."""
        with self._lock:
            if self._started is None:
                self._started = _submit(self._encode)
            return self._started


def _submit(encode: Callable[[], T]) -> concurrent.futures.Future[T]:
    """``encode()`` run by the encoding worker; at interpreter shutdown, when no worker may start, run now."""
    global _worker, _worker_pid
    with _lock:
        if _worker is None or _worker_pid != os.getpid():
            _worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinker-encode")
            _worker_pid = os.getpid()
        worker = _worker
    try:
        return worker.submit(encode)
    except RuntimeError:  # the interpreter is shutting down
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            done.set_result(encode())
        except BaseException as error:
            done.set_exception(error)
        return done
