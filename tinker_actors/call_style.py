"""The call style of the official SDK 0.38 in one place: its deprecation warnings, and the blocking-call guard.

**Deprecations.** 0.38 keeps the older forms working and warns about them with a :class:`FutureWarning`
(the category Python shows to end users by default). Here every such warning is a
:class:`DeprecatedCallWarning` (a ``FutureWarning``), says what to write instead, points at the user's own
line (not at a line of this package), and is given once per form and process: a training loop that uses a
deprecated form a thousand times hears of it once. A warning filter that turns it into an error (``-W
error``) still raises on every use, since such a use was never warned of.

**Blocking where it would wait on itself.** Every request runs on the I/O loop's thread
(:class:`~tinker_actors.runtime.IoLoop`), and each client's state lives in its actor's thread. A blocking
call (``APIFuture.result()`` on a pending future, a call that waits for the server) made in one of those
threads stops the very thread that has to produce the answer: it could only end by timing out, or never.
:func:`refuse_blocking` turns that into a :class:`BlockingCallError` (a ``RuntimeError``, as 0.38 raises)
naming the call and what to do instead. This happens when a done callback, which runs where the future
was resolved (usually the I/O loop), waits for another result. Blocking anywhere else is allowed, also from
the caller's own asyncio code (it then stops that loop, not ours).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from types import FrameType

from supervisors import current_actor
from tinker_actors.errors import TinkerError

__all__ = [
    "BlockingCallError",
    "DeprecatedCallWarning",
    "forget_warnings",
    "mark_io_loop_thread",
    "refuse_blocking",
    "warn_deprecated",
]


class DeprecatedCallWarning(FutureWarning):
    """A call form that the official SDK 0.38 deprecated: it still works; the message says what replaces it."""


class BlockingCallError(TinkerError, RuntimeError):
    """A blocking call was made in a thread that has to produce its answer (the I/O loop, a client's actor)."""


# ---- deprecation warnings -------------------------------------------------------------------------

_warned: set[str] = set()
_warned_lock = threading.Lock()
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # as the frames of its modules name their files


def warn_deprecated(form: str, replacement: str) -> None:
    """Warn once per process that ``form`` is deprecated, and what to do instead (``replacement``: an imperative
    clause, "use `await ...`").

    ``form`` names what the caller wrote (``"ServiceClient.create_lora_training_client_async()"``), and is
    also the key of "once"."""
    with _warned_lock:
        if form in _warned:
            return
    # Outside the lock: a filter may turn the warning into an error, and then it counts as not given.
    warnings.warn(f"{form} is deprecated, as in the official tinker SDK 0.38, and still works for now. Instead, "
                  f"{replacement}.", DeprecatedCallWarning, stacklevel=_callers_level())
    with _warned_lock:
        _warned.add(form)


def forget_warnings() -> None:
    """Give every deprecation warning again on its next use (for tests)."""
    with _warned_lock:
        _warned.clear()


def _callers_level() -> int:
    """The ``stacklevel`` of the first frame outside this package: the user's line that used the form."""
    frame: FrameType | None = sys._getframe(1)  # warn_deprecated, whose warnings.warn call is stacklevel 1
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


# ---- blocking calls -------------------------------------------------------------------------------

_this_thread = threading.local()


def mark_io_loop_thread(name: str) -> None:
    """Called by an I/O loop in its own thread: a blocking call here would wait on this loop itself."""
    _this_thread.io_loop = name


def refuse_blocking(call: str, instead: str) -> None:
    """Raise :class:`BlockingCallError` if blocking here would stop the thread that has to answer ``call``.

    ``call`` names the blocking call (``"APIFuture.result()"``), ``instead`` what to do instead. Call it only
    when the call is about to wait (a finished future's result never waits, so it may be read anywhere)."""
    loop: str | None = getattr(_this_thread, "io_loop", None)
    if loop is not None:
        where = (f"on the tinker-actors I/O loop thread ({loop!r}), where every request runs: it would wait "
                 "for that very loop, which cannot answer while it waits")
    else:
        actor = current_actor()
        if actor is None:
            return
        where = (f"in the thread of the actor {type(actor).__name__}, which has to handle the messages its "
                 "answer may need: it would wait on itself")
    raise BlockingCallError(f"{call} waits for an answer, and was called {where}. This happens in a done "
                            f"callback, for instance. {instead}")
