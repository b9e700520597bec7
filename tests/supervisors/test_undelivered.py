"""No message is lost silently when an actor ends (supervisors.inbox): queued tells reach ``on_undelivered``,
queued asks fail as in pykka, and a message sent after the end is refused like one sent to a dead actor."""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass
from typing import Any

import pykka
import pytest

from supervisors import ChildLink, ExitKind, ExitReason, SupervisedActor
from supervisors.actor import offering
from supervisors.inbox import WAKE, ClosableInbox
from tests.supervisors.actors import ReportCollector


@dataclass(frozen=True)
class Work:
    """A tell that carries its reply, as the SDK's client actors are sent calls."""

    reply: concurrent.futures.Future[str]


class Held(SupervisedActor):
    """Handles Work; holds its first message until released, so later ones queue behind it."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered, self.release = entered, release
        self.undelivered: list[tuple[Any, ExitKind]] = []

    def on_receive(self, message: Any) -> Any:
        if message == "hold":
            self.entered.set()
            self.release.wait(5.0)
        elif message == "crash":
            raise RuntimeError("crashed on purpose")
        elif isinstance(message, Work):
            message.reply.set_result("handled")
        return None

    def on_undelivered(self, message: Any, reason: ExitReason) -> None:
        self.undelivered.append((message, reason.kind))
        if isinstance(message, Work):
            message.reply.set_exception(RuntimeError(f"not handled: {reason.kind.value}"))


def _start() -> tuple[pykka.ActorRef[Any], Held, threading.Event, threading.Event, pykka.ActorRef[Any]]:
    parent = ReportCollector.start()
    entered, release = threading.Event(), threading.Event()
    link = ChildLink(parent, "held")
    with offering(link):
        ref = Held.start(entered, release)
    assert link.started.wait(2.0) and isinstance(link.actor, Held)
    return ref, link.actor, entered, release, parent


@pytest.mark.parametrize("ending", ["crash", "stop"])
def test_tells_queued_behind_the_end_reach_on_undelivered(ending: str) -> None:
    ref, actor, entered, release, parent = _start()
    ref.tell("hold")
    assert entered.wait(2.0)
    if ending == "crash":
        ref.tell("crash")
    else:
        stopping = ref.stop(block=False)
    behind = [Work(concurrent.futures.Future()) for _ in range(3)]
    for work in behind:
        ref.tell(work)
    asked = ref.ask(Work(concurrent.futures.Future()), block=False)
    release.set()
    expected = ExitKind.CRASHED if ending == "crash" else ExitKind.NORMAL
    for work in behind:  # every reply answered, in order, none handled by the ended actor
        with pytest.raises(RuntimeError, match=f"not handled: {expected.value}"):
            work.reply.result(timeout=5)
    assert [kind for _, kind in actor.undelivered] == [expected] * 3
    with pytest.raises(pykka.ActorDeadError, match="stopped before handling"):
        asked.get(timeout=5)
    if ending == "stop":
        stopping.get(timeout=5)
    parent.stop(timeout=2.0)


def test_a_message_sent_after_the_end_is_refused_as_to_a_dead_actor() -> None:
    inbox = ClosableInbox()
    assert inbox.close("<actor>") == [] and inbox.closed
    with pytest.raises(pykka.ActorDeadError, match="<actor> not found"):
        inbox.put(pykka._envelope.Envelope("tell"))
    reply = pykka.ThreadingFuture[Any]()
    inbox.put(pykka._envelope.Envelope("ask", reply_to=reply))  # an ask's reply fails instead
    with pytest.raises(pykka.ActorDeadError):
        reply.get(timeout=1)
    assert inbox.close("<actor>") == []  # only the first close drains


def test_close_and_concurrent_puts_lose_nothing() -> None:
    """Every put either lands before the close (and is drained) or is refused: none is left in the queue."""
    inbox = ClosableInbox()
    refused: list[int] = []
    start = threading.Barrier(5)

    def sender(base: int) -> None:
        start.wait()
        for n in range(base, base + 2000):
            try:
                inbox.put(pykka._envelope.Envelope(n))
            except pykka.ActorDeadError:
                refused.append(n)

    threads = [threading.Thread(target=sender, args=(i * 10_000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    drained = [envelope.message for envelope in inbox.close("<actor>")]
    for thread in threads:
        thread.join()
    assert inbox.get_nowait().message is WAKE and inbox.empty()  # only the wake-up call for a waiting thread
    assert sorted(drained + refused) == sorted(n for i in range(4) for n in range(i * 10_000, i * 10_000 + 2000))


def test_killing_an_abandoned_actor_answers_its_queue_at_once() -> None:
    ref, actor, entered, release, parent = _start()
    ref.tell("hold")
    assert entered.wait(2.0)
    work = Work(concurrent.futures.Future())
    ref.tell(work)
    actor._link.kill()  # the handler is still stuck: the queued work must not wait for it
    with pytest.raises(RuntimeError, match="not handled: killed"):
        work.reply.result(timeout=2)
    release.set()
    assert actor._link.exited.wait(2.0)
    parent.stop(timeout=2.0)
