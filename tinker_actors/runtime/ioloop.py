"""The IoLoop: one daemon thread running asyncio, where all network I/O of the SDK lives.

Actors never block on the network (ARCHITECTURE.md, rule 1). They hand a coroutine to the loop and
get its completion back as an ordinary message (:meth:`IoLoop.submit_and_tell`), so their mailbox
keeps moving and ``stop()`` is always honoured. Everything here is on the sampling hot path
(thousands of submissions per second), so it stays a thin layer over
``asyncio.run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pykka import ActorDeadError, ActorRef

from tinker_actors.call_style import mark_io_loop_thread
from tinker_actors.errors import ClientStoppedError

__all__ = ["Handle", "IoLoop", "IoLoopStoppedError", "Outcome"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class IoLoopStoppedError(ClientStoppedError):
    """Work was submitted to an IoLoop that is not running (never started, or stopped)."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """How a submitted coroutine ended: a value, or an exception (``CancelledError`` if cancelled)."""

    value: T | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, asyncio.CancelledError | concurrent.futures.CancelledError)

    def unwrap(self) -> T:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # a coroutine may legitimately return None

    @classmethod
    def of(cls, future: concurrent.futures.Future[T]) -> Outcome[T]:
        """Read a *done* future without raising."""
        if future.cancelled():
            return cls(error=concurrent.futures.CancelledError())
        error = future.exception()
        if error is not None:
            return cls(error=error)
        return cls(value=future.result())


class Handle:
    """A submitted coroutine whose outcome will be told to an actor; ``cancel()`` is thread-safe."""

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self.future = future

    def cancel(self) -> bool:
        """Cancel the coroutine; the actor is still told (with a cancelled :class:`Outcome`)."""
        return self.future.cancel()

    def done(self) -> bool:
        return self.future.done()


class IoLoop:
    """One asyncio loop in one daemon thread. ``start()`` and ``stop()`` are idempotent."""

    def __init__(self, name: str = "tinker-ioloop") -> None:
        self._name = name
        # Reentrant: scheduling allocates, an allocation can start a garbage collection, and a finalizer run by it
        # on this same thread may submit too (a dropped client's teardown); a plain Lock would deadlock there.
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._stopped = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                if self._stopped.is_set():
                    raise IoLoopStoppedError(f"IoLoop {self._name!r} was stopped; create a new one")
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
            self._loop, self._thread = loop, thread
            thread.start()
            ready.wait()
            self._accepting = True

    def stop(self, timeout: float) -> bool:
        """Cancel every pending task, stop the loop and join its thread within ``timeout`` s.

        Futures of cancelled work resolve as cancelled. Returns False if the thread did not finish
        in time (a coroutine that blocks the loop): it is a daemon thread and is left behind.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            was_accepting, self._accepting = self._accepting, False
        if loop is None or thread is None:
            return True
        if was_accepting:
            loop.call_soon_threadsafe(loop.stop)
        if thread is threading.current_thread():
            return True  # called from a coroutine: the loop winds down after this callback
        thread.join(timeout)
        if thread.is_alive():
            logger.error("IoLoop %r did not stop within %g s; abandoning its thread", self._name, timeout)
            return False
        return True

    @property
    def running(self) -> bool:
        return self._accepting

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise IoLoopStoppedError(f"IoLoop {self._name!r} was never started")
        return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()

    # ---- submitting work --------------------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T], *,
               context: contextvars.Context | None = None) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; thread-safe. Raises :class:`IoLoopStoppedError` when stopped.

        With ``context`` the task runs in that ``contextvars`` context (a caller's trace span and
        structlog context vars then reach the HTTP layer); otherwise in the loop's own.
        """
        with self._lock:
            if not self._accepting or self._loop is None:
                coro.close()  # never awaited: close it so Python does not warn
                raise IoLoopStoppedError(f"IoLoop {self._name!r} is not running")
            # Inside the lock, so stop() cannot slip between the check and the scheduling: every
            # accepted coroutine is scheduled before the loop's stop callback, and is cancelled by it.
            if context is None:
                return asyncio.run_coroutine_threadsafe(coro, self._loop)
            return _submit_in_context(self._loop, coro, context)

    def submit_and_tell(self, coro: Coroutine[Any, Any, T], actor_ref: ActorRef[Any],
                        make_message: Callable[[Outcome[T]], Any]) -> Handle:
        """Run ``coro`` and ``tell`` ``actor_ref`` ``make_message(outcome)`` when it ends.

        The tell happens on the loop thread; a dead actor is ignored, and an exception from
        ``make_message`` is logged, never raised into the loop.
        """
        future = self.submit(coro)

        def deliver(done: concurrent.futures.Future[T]) -> None:
            try:
                actor_ref.tell(make_message(Outcome.of(done)))
            except ActorDeadError:
                pass
            except Exception:
                logger.exception("IoLoop: building or sending the completion for %s failed", actor_ref)

        future.add_done_callback(deliver)
        return Handle(future)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the loop thread soon; thread-safe."""
        with self._lock:
            if not self._accepting or self._loop is None:
                raise IoLoopStoppedError(f"IoLoop {self._name!r} is not running")
            self._loop.call_soon_threadsafe(fn)

    # ---- the thread -------------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        mark_io_loop_thread(self._name)  # a blocking call made here would wait on this loop: refused (call_style)
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            self._cancel_everything(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            logger.exception("IoLoop %r failed while stopping", self._name)
        finally:
            loop.close()
            self._stopped.set()

    @staticmethod
    def _cancel_everything(loop: asyncio.AbstractEventLoop) -> None:
        # Callbacks queued before stop() may still create tasks: run one more turn first, then
        # cancel until no task is left (a task may spawn another while it handles cancellation).
        loop.run_until_complete(asyncio.sleep(0))
        for _ in range(10):
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        logger.warning("IoLoop: tasks kept spawning tasks while being cancelled")


def _submit_in_context(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T],
                       context: contextvars.Context) -> concurrent.futures.Future[T]:
    """``run_coroutine_threadsafe`` whose task runs in ``context`` (same cancellation semantics)."""
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def copy_outcome(task: asyncio.Task[T]) -> None:
        if result.cancelled():
            return
        if task.cancelled():
            result.cancel()
        elif task.exception() is not None:
            result.set_exception(task.exception())
        else:
            result.set_result(task.result())

    def start() -> None:
        # ``result`` stays pending while the task runs (no set_running_or_notify_cancel): a running future
        # cannot be cancelled, and cancelling ``result`` must cancel the task, as run_coroutine_threadsafe does.
        if result.cancelled():
            coro.close()
            return
        task = loop.create_task(coro, context=context)
        task.add_done_callback(copy_outcome)
        result.add_done_callback(lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None)

    loop.call_soon_threadsafe(start)
    return result
