"""A training client's durable state: what must survive a crash of its actor (ARCHITECTURE §2.5).

The ledger belongs to the TrainingClient handle and its child spec, not to an actor incarnation: a
restarted TrainingClientActor reads the model id and the next seq id from it, and the requests the server
had accepted keep polling and resolving their callers' futures. Every operation passes the *send gate*
(:meth:`begin_send`) exactly once, under the lock, so a request is either sent once or never (an
optim_step is never replayed).
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinker_actors.recovery.watch import ModelWatch

__all__ = ["TrainingLedger"]


@dataclass
class TrainingLedger:
    model_id: str
    base_model: str
    next_seq_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _abandoned: set[int] = field(default_factory=set, repr=False)
    _sending: set[int] = field(default_factory=set, repr=False)
    accepted: dict[int, str] = field(default_factory=dict, repr=False)
    """op id -> request id, for requests the server acknowledged and that are still being polled."""
    last_sent: concurrent.futures.Future[None] | None = field(default=None, repr=False)
    """The send turn of the newest op: a restarted actor chains after it, so sends stay in order."""
    _last_op_id: int = 0
    _poisoned_up_to: int = 0
    watch: ModelWatch | None = field(default=None, repr=False)
    """Step bookkeeping and the recovery gate, once periodic checkpoints or recovery are enabled."""

    def move_to(self, model_id: str, next_seq_id: int) -> None:
        """Recovery recreated the model: later requests go to ``model_id``, numbered from ``next_seq_id``."""
        with self._lock:
            self.model_id = model_id
            self.next_seq_id = next_seq_id

    def assign_op_id(self) -> int:
        """Op ids follow the actor's mailbox order, which is the send order."""
        with self._lock:
            self._last_op_id += 1
            return self._last_op_id

    def send_failed(self) -> None:
        """A send failed for good: every op queued behind it so far must not be sent (order contract)."""
        with self._lock:
            self._poisoned_up_to = self._last_op_id

    def queued_behind_failure(self, op_id: int) -> bool:
        with self._lock:
            return op_id <= self._poisoned_up_to

    def begin_send(self, op_id: int) -> int | None:
        """Reserve the next seq id for ``op_id`` and mark it as sent; ``None`` if it was abandoned."""
        with self._lock:
            if op_id in self._abandoned:
                return None
            self._sending.add(op_id)
            seq_id = self.next_seq_id
            self.next_seq_id += 1
            return seq_id

    def abandon_unsent(self, op_ids: list[int]) -> list[int]:
        """Mark ops that have not begun sending as abandoned; return those (they must fail NotSent)."""
        with self._lock:
            unsent = [op_id for op_id in op_ids if op_id not in self._sending]
            self._abandoned.update(unsent)
            return unsent

    def record_accepted(self, op_id: int, request_id: str) -> None:
        with self._lock:
            self.accepted[op_id] = request_id

    def finished(self, op_id: int) -> None:
        with self._lock:
            self.accepted.pop(op_id, None)
            self._sending.discard(op_id)
            self._abandoned.discard(op_id)

    def accepted_requests(self) -> dict[int, str]:
        with self._lock:
            return dict(self.accepted)
