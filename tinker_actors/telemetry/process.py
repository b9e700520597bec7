"""This process's id in telemetry batches (``process_uuid``, protocol 0.38).

One random UUID per process, shared by every session it opens, so the server can tell which sessions
ran side by side in one program. A forked child is another process and gets its own: the id is kept
together with the pid it was made in.
"""

from __future__ import annotations

import os
import threading
import uuid

__all__ = ["process_uuid"]

_lock = threading.Lock()
_made_in: tuple[int, str] | None = None  # (pid, uuid)


def process_uuid() -> str:
    """This process's telemetry id (made on first use)."""
    global _made_in
    pid = os.getpid()
    with _lock:
        if _made_in is None or _made_in[0] != pid:
            _made_in = (pid, str(uuid.uuid4()))
        return _made_in[1]
