"""SamplingClient: a picklable handle, and the supervised actor that owns one sampling session.

The hot path: ``sample()`` tells the actor, which records the request in its in-flight table and submits
one coroutine to the IoLoop (no thread per request; thousands of concurrent samples share the loop).
Beyond twice ``max_connections`` started samples, the actor keeps further requests in a FIFO and starts
them as others finish, so a pending sample costs ~2 KB instead of a task and coroutine each.
The coroutine does the whole life of a sample: wait for a concurrency slot (``RetryConfig.max_connections``)
and for any shared 429 backoff, POST ``asample``, poll its future, retry what is retryable (429 waits for
the shared backoff; connection errors, 5xx and 410 resubmit with a new seq id and backoff), and give up
with :class:`NoProgressError` once ``progress_timeout`` passes with no sample of this client finishing (stuck
detection: ``RetryConfig.enable_stuck_detection`` and the server's ``sample_enable_stuck_detection``; without it,
once the sample has waited ``Config.pending_timeout``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import itertools
import random
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pykka import ActorDeadError, ActorRef

from supervisors import ChildSpec, ExitKind, ExitReason, NamedRef, Restart, SupervisedActor, TerminateChild
from tinker_actors.auth.sources import credential_source
from tinker_actors.call_style import warn_deprecated
from tinker_actors.clients.batched_polls import CLONE_SEQ_IDS, SessionPoller
from tinker_actors.clients.cancellation import SampleCancels
from tinker_actors.clients.context import ClientContext
from tinker_actors.clients.queue_state import ClientQueueLog, QueueState, QueueStateObserver
from tinker_actors.clients.sample_checks import sample_outputs_asked, stability_setting
from tinker_actors.clients.sdk_method import names_sdk_methods
from tinker_actors.config import Config, MissingApiKeyError, RetryPolicy
from tinker_actors.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    BillingError,
    ClientStoppedError,
    CrashedBeforeSendError,
    FutureExpiredError,
    InvalidInputError,
    NoProgressError,
    NotSentError,
    TinkerError,
)
from tinker_actors.fanout.fork_guard import fork_generation, refuse_if_forked
from tinker_actors.fanout.handles import SamplerHandle
from tinker_actors.fanout.seq_blocks import SeqIds
from tinker_actors.futures import APIFuture, QueueStateLog, ResultReader, fail, on_abandoned, poll_future, resolve
from tinker_actors.http import Purpose
from tinker_actors.http.budget import ByteBudget
from tinker_actors.http.headers import IDEMPOTENCY_KEY, new_idempotency_key
from tinker_actors.telemetry.capture import capture_exceptions
from tinker_actors.types import (
    ModelInput,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    TensorData,
    UntypedAPIFuture,
)
from tinker_actors.types._base import problems_of
from tinker_actors.waits import StallWatch

if TYPE_CHECKING:
    from tinker_actors.clients.service import ServiceClient
    from tinker_actors.telemetry import SessionTelemetry

__all__ = ["RetryConfig", "SampleOp", "SamplingClient", "SamplingClientActor"]


class RetryConfig(BaseModel):
    """Sampling retries and backpressure (FEATURES S3/S4; the seed's gap 6)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_connections: int = Field(256, ge=1, description="samples in flight at once for this client")
    progress_timeout: float = Field(600.0, gt=0, description=(
        "fail in-flight samples when none finished this long; the clock runs only while a sample is in flight"))
    enable_stuck_detection: bool = Field(True, description=(
        "whether progress_timeout fails samples ('stuck'); off (or the server's sample_enable_stuck_detection "
        "false): the clock only announces the stall, and each request keeps its own bounds "
        "(Config.no_progress_timeout, Config.pending_timeout)"))
    retry_delay_base: float = Field(0.5, ge=0)
    retry_delay_max: float = Field(10.0, ge=0)
    jitter_factor: float = Field(0.25, ge=0, le=1)
    max_retries: int = Field(10, ge=0, description="resubmissions of one sample after retryable failures")
    enable_retry_logic: bool = True
    rate_limit_backoff: float = Field(1.0, ge=0, description="shared wait after a 429 without Retry-After")
    max_bytes_in_flight: int = Field(64 * 1024 * 1024, ge=1, description="request bytes on the wire at once")
    retryable_exceptions: tuple[type[BaseException], ...] = Field(
        (), description="extra exception types to resubmit on (the official SDK's field; ours retries typed "
                        "connection, 5xx, 408/409 and 410 errors already)")

    def delay(self, attempt: int) -> float:
        nominal = min(self.retry_delay_base * 2 ** min(attempt, 30), self.retry_delay_max)
        return max(0.0, float(nominal) * (1 + random.uniform(-self.jitter_factor, self.jitter_factor)))


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SampleOp:
    body: SampleRequest
    future: concurrent.futures.Future[SampleResponse]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


@dataclass(frozen=True, slots=True)
class SampleFinished:
    op_id: int


@dataclass(frozen=True, slots=True)
class HandleDropped:
    """The actor's SamplingClient was garbage-collected: stop once no sample of it is pending."""


# ---- the actor ------------------------------------------------------------------------------------

class _RateLimit:
    """The 429 backoff shared by every sampling client of one API key on one service (S4)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0


# Keyed by (base URL, a digest of the API key). Touched only from the IoLoop thread: no lock needed.
_rate_limits: dict[tuple[str, str], _RateLimit] = {}


def _rate_limit_for(context: ClientContext) -> _RateLimit:
    digest = credential_source(context.config).fingerprint[:16]  # a key, or TINKER_CREDENTIAL_CMD
    return _rate_limits.setdefault((context.config.base_url, digest), _RateLimit())


class _Backpressure:
    """Loop-side state of one client's samples: concurrency slots, byte budget, the key's shared 429 backoff,
    and the no-progress clock (``RetryConfig.progress_timeout``), which also announces a stall.

    The server's flags (protocol 0.38) cap the concurrency and the byte budget: the tighter of them and the
    client's ``RetryConfig`` applies. Stuck detection (the clock failing samples) needs both
    ``RetryConfig.enable_stuck_detection`` and the server's ``sample_enable_stuck_detection``; without it the
    clock has no limit and only announces, and each sample is bounded on its own by ``Config.pending_timeout`` (a
    sample answered 429 for ever still ends).
    """

    def __init__(self, config: RetryConfig, context: ClientContext, session: str) -> None:
        profile = context.profile
        self.slots = asyncio.Semaphore(_tighter(config.max_connections, profile.max_concurrent_samples))
        self.bytes = ByteBudget(_tighter(config.max_bytes_in_flight, profile.sample_bytes_in_flight))
        self.rate_limit = _rate_limit_for(context)
        self.stuck_detection = config.enable_stuck_detection and profile.sample_stuck_detection
        self._pending_timeout = context.config.pending_timeout
        # Runs only while a sample is in flight (begin/end), so a client left idle never times out.
        self.progress = StallWatch("Sample", context.poll.warnings,
                                   limit=config.progress_timeout if self.stuck_detection else None,
                                   labels={"sampling_session_id": session}, start=False)

    def left(self, now: float, started: float) -> float:
        """Seconds left to a sample that began at ``started``: until the clock fails it, or without stuck
        detection until ``Config.pending_timeout`` after it began."""
        end = self.progress.at() if self.stuck_detection else started + self._pending_timeout
        return max(end - now, 0.0)

    def exceeded(self, waited: float) -> NoProgressError:
        """The error of a sample that ran out of :meth:`left` after ``waited`` seconds."""
        if self.stuck_detection:
            return self.progress.exceeded()
        return NoProgressError(f"Sample: no result after {waited:.0f} s (Config.pending_timeout "
                               f"{self._pending_timeout:g} s; stuck detection is off; last answer: "
                               f"{self.progress.last_answer})")


class HandleLife:
    """Whether a SamplingClient still exists, shared by its finalizer and every incarnation of its actor (a
    restart must not forget that the handle is gone). Plain attribute writes: the finalizer takes no lock."""

    __slots__ = ("actor", "dropped")

    def __init__(self) -> None:
        self.dropped = False
        self.actor: ActorRef[Any] | None = None  # the current incarnation, which the finalizer has told


class SamplingClientActor(SupervisedActor):
    expected_errors = (TinkerError,)

    def __init__(self, context: ClientContext, sampling_session_id: str, retry_config: RetryConfig,
                 seq_ids: SeqIds, queue_log: QueueStateLog, life: HandleLife | None = None) -> None:
        super().__init__()
        self._life = life if life is not None else HandleLife()
        self._retiring = False
        self._context = context
        self._session = sampling_session_id
        self._retry = retry_config
        self._seq_ids = seq_ids  # outlives the actor: a restart continues the numbering
        self._op_ids = itertools.count(1)
        self._in_flight: dict[int, tuple[SampleOp, concurrent.futures.Future[None]]] = {}
        # Samples beyond this many wait here as bare SampleOps, in order: a started sample costs a task,
        # a coroutine and a thread-safe future (~3 KB), so 10,000 pending samples must not all be started.
        # Twice the wire limit keeps the semaphore below fed while some samples sit in a retry backoff.
        self._waiting: collections.deque[SampleOp] = collections.deque()
        self._max_started = 2 * retry_config.max_connections
        self._pressure: _Backpressure | None = None
        self._queue_log = queue_log  # the handle's: its debounce outlives restarts of this actor
        self._pollers: dict[int, SessionPoller] = {}  # clone -> its batched poll (sample_use_retrieve_futures)
        self._cancels = SampleCancels(context.http, lambda: context.profile.dynamic)  # sample_cancel_enabled

    def on_init(self) -> None:
        self._life.actor = self.actor_ref
        if self._life.dropped:  # dropped while this actor restarted: told, so samples queued before go first
            self.actor_ref.tell(HandleDropped())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SampleOp):
            # Nobody holds its APIFuture anymore: a sample has no side effects, so nothing is worth doing.
            on_abandoned(message.future, message.future.cancel)
            if len(self._in_flight) < self._max_started:
                self._start(message)
            else:
                self._waiting.append(message)
        elif isinstance(message, SampleFinished):
            self._in_flight.pop(message.op_id, None)
            while self._waiting and len(self._in_flight) < self._max_started:
                self._start(self._waiting.popleft())
            self._retire_if_unused()
        elif isinstance(message, HandleDropped):
            self._retire_if_unused()
        return None

    def _retire_if_unused(self) -> None:
        """Once the handle is gone and none of its samples is pending, have the supervisor stop this child and
        forget it: a client per weights version must not leave a thread behind each."""
        if not self._life.dropped or self._in_flight or self._waiting or self._retiring:
            return
        self._retiring = True
        parent = self._link.parent  # the supervisor's own ref: a tell that never waits, even while it stops
        if parent is not None:
            with contextlib.suppress(ActorDeadError):  # stopped with its ServiceClient already
                # With a reply future, "no such child" (close() got there first) is an answer, not a crash.
                parent.tell(TerminateChild(self.child_id, concurrent.futures.Future()))

    def _start(self, message: SampleOp) -> None:
        if message.future.done():  # its caller cancelled (or dropped) it while it waited
            return
        op_id = next(self._op_ids)
        task = self._context.submit(self._run(op_id, message), context=message.context)
        self._in_flight[op_id] = (message, task)
        message.future.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)

    async def _run(self, op_id: int, op: SampleOp) -> None:
        try:
            resolve(op.future, await self._sample(op.body, op.future))
        except asyncio.CancelledError:
            fail(op.future, ClientStoppedError("the sample was cancelled"))
            raise
        except TinkerError as error:
            fail(op.future, error)
        except Exception as error:
            fail(op.future, ClientStoppedError(f"sampling failed unexpectedly: {error!r}"))
        finally:
            with contextlib.suppress(Exception):
                self.actor_ref.tell(SampleFinished(op_id))

    async def _sample(self, request: SampleRequest, outcome: concurrent.futures.Future[Any]) -> SampleResponse:
        loop = asyncio.get_running_loop()
        if self._pressure is None:
            self._pressure = _Backpressure(self._retry, self._context, self._session)
        pressure, config, context = self._pressure, self._retry, self._context
        if not self._seq_ids.ready:  # a clone: its own block of seq ids, settled once before its first sample
            await self._seq_ids.settle(context, self._session)
        http, codec = context.http, context.profile.codec
        # The server may ask for no resubmissions (0.38's sample_no_retries); 429 backpressure still waits.
        retries = config.enable_retry_logic and context.profile.sample_retries
        reader = ResultReader(codec.decode_sample_response, codec.result_accept)
        clock = pressure.progress  # every wait below ends by clock.at(): no sample of this client finished since
        deadline = clock if pressure.stuck_detection else None  # else the poll's own bounds, and left() below
        started = loop.time()

        def left() -> float:
            return pressure.left(loop.time(), started)

        attempt = 0
        clock.begin()
        try:
            while True:
                async with pressure.slots:
                    if outcome.done():  # failed while it waited for its slot (the client closing): never sent
                        raise ClientStoppedError("the sample ended before it was sent")
                    wait = pressure.rate_limit.until - loop.time()
                    if wait > 0:
                        await asyncio.sleep(min(wait, left()))
                    if not left():
                        raise pressure.exceeded(loop.time() - started)
                    seq_id = next(self._seq_ids)
                    body = codec.encode_json(request.model_copy(update={"seq_id": seq_id}))
                    # Until the server names the request, its idempotency key is what identifies it (in logs too).
                    request_id = new_idempotency_key()
                    try:
                        async with pressure.bytes.hold(len(body)):
                            submission = asyncio.ensure_future(http.request(
                                Purpose.SAMPLING, "POST", "/api/v1/asample", content=body,
                                response_model=UntypedAPIFuture, retry=_NO_RETRY,
                                headers={**_BACKPRESSURE, IDEMPOTENCY_KEY: request_id},
                                timeout=min(self._context.config.timeouts.default, max(left(), 0.05)),
                                endpoint="asample", on_pause=lambda error: _billing_paused(clock, error)))
                            try:
                                submitted = await asyncio.shield(submission)
                            except asyncio.CancelledError:
                                # Cancelled while its POST is out: the server may be queuing it already. The
                                # POST goes on (bounded by its timeout) so that the server learns, by the id it
                                # answers, that nobody waits for this sample.
                                submission.add_done_callback(self._cancel_once_accepted)
                                raise
                        request_id = submitted.data.request_id
                        try:
                            await self._announced(request_id, seq_id, left())
                            result = await poll_future(http, request_id, "Sample", reader, settings=context.poll,
                                                       observer=self._queue_log, submitted_at=loop.time(),
                                                       watch=clock, deadline=deadline, codec=codec,
                                                       response_budget=context.response_budget)
                        except asyncio.CancelledError:
                            self._cancels.cancel(request_id)  # nobody waits for it: the server may stop the work
                            raise
                        clock.progress()
                        return _with_sequence_ids(result, submitted.data.sample_sequence_ids, request_id)
                    except (APIConnectionError, APIStatusError) as error:
                        if isinstance(error, NoProgressError) or not retries:
                            raise
                        status = getattr(error, "status_code", None)
                        clock.answer(_condition(error), request_id=request_id, status=status, error=error.message)
                        if status == 429:
                            retry_after = _retry_after(error)
                            pressure.rate_limit.until = max(pressure.rate_limit.until,
                                                            loop.time() + (retry_after or config.rate_limit_backoff))
                            continue  # backpressure is not a failure: it does not count as an attempt
                        if not (isinstance(error, APIConnectionError | FutureExpiredError) or error.retryable):
                            raise
                        if attempt >= config.max_retries:
                            raise
                    except config.retryable_exceptions:
                        if attempt >= config.max_retries:
                            raise
                await asyncio.sleep(min(config.delay(attempt), left()))
                attempt += 1
        finally:
            clock.end()

    def _cancel_once_accepted(self, submission: asyncio.Future[Any]) -> None:
        """A sample cancelled during its POST: name it to ``cancel_future`` once the server answered its id."""
        if submission.cancelled() or submission.exception() is not None:
            return  # not accepted: nothing runs on the server
        self._cancels.cancel(submission.result().data.request_id)

    async def _announced(self, request_id: str, seq_id: int, within: float) -> None:
        """With batched polls on (``sample_use_retrieve_futures``), wait until the session's poller reports the
        sample finished, or ``within`` passed (then the caller's own poll takes over)."""
        flags = self._context.profile.flags
        if flags is None or not flags.sample_use_retrieve_futures:
            return
        clone = seq_id // CLONE_SEQ_IDS
        poller = self._pollers.get(clone)
        if poller is None:
            poller = self._pollers[clone] = SessionPoller(
                self._context.http, self._context.profile.codec, self._session, clone,
                request_timeout=self._context.poll.request_timeout)
        await poller.wait_for(request_id, within)

    def on_terminate(self, reason: ExitReason) -> None:
        for op, _ in self._in_flight.values():
            # Started samples may or may not have run on the server; sampling has no side effects, so the
            # error says it is safe to sample again (retryable) without claiming it was never sent.
            fail(op.future, ClientStoppedError(
                f"the sampling client actor {reason.kind.value} while this sample was in flight", retryable=True))
        # Cancelled only once every future failed: a cancelled sample frees its slot on the I/O loop, and the
        # sample waiting for that slot must find its own future already failed, not send its request.
        for _, task in self._in_flight.values():
            task.cancel()
        self._in_flight.clear()
        while self._waiting:
            fail(self._waiting.popleft().future, _not_sent(reason))

    def on_undelivered(self, message: Any, reason: ExitReason) -> None:
        # A sample queued behind the end of this incarnation was never started: it was never sent.
        if isinstance(message, SampleOp):
            fail(message.future, _not_sent(reason))


def _not_sent(reason: ExitReason) -> NotSentError:
    message = f"the sample was not sent: its sampling client actor {reason.kind.value}"
    if reason.kind is ExitKind.CRASHED:
        return CrashedBeforeSendError(message, cause=reason.error)
    return NotSentError(message)


_NO_RETRY = RetryPolicy(max_retries=0, deadline=None)  # sampling does its own retrying, above
_BACKPRESSURE = {"X-Tinker-Sampling-Backpressure": "1"}


def _billing_paused(clock: StallWatch, error: BillingError) -> None:
    """A 402 holds the sample: the billing pause bounds it (``Config.billing_pause``), not progress_timeout."""
    clock.answer("HTTP 402 (billing pause)", status=402, error=error.message)
    clock.progress()


def _tighter(ours: int, servers: int | None) -> int:
    return ours if servers is None else min(ours, servers)


def _condition(error: APIStatusError | APIConnectionError) -> str:
    """How a failed attempt reads in a stall warning."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status:
        return f"HTTP {status}"
    return "timeout" if isinstance(error, APITimeoutError) else "connection error"


def _with_sequence_ids(response: SampleResponse, ids: list[str] | None, request_id: str) -> SampleResponse:
    """The sequences named as the sample's future named them (protocol 0.38: the result does not repeat them)."""
    if ids is None:
        return response
    if len(ids) != len(response.sequences):
        raise APIResponseValidationError(f"sample {request_id}: its future named {len(ids)} sequences, its result "
                                         f"has {len(response.sequences)}", status_code=200)
    sequences = [sequence.model_copy(update={"sequence_id": sequence_id})
                 for sequence, sequence_id in zip(response.sequences, ids, strict=True)]
    return response.model_copy(update={"sequences": sequences})


def _retry_after(error: APIStatusError | APIConnectionError) -> float | None:
    response = getattr(error, "response", None)
    if response is None:
        return None
    raw = response.headers.get("retry-after")
    try:
        return float(raw) if raw is not None and 0 < float(raw) <= 60 else None
    except ValueError:
        return None


# ---- the handle -----------------------------------------------------------------------------------

_client_ids = itertools.count()


class _SessionOwner:
    """The ServiceClient that created a sampling session, held by every live handle of that session here."""

    __slots__ = ("__weakref__", "service")

    def __init__(self, service: ServiceClient) -> None:
        self.service = service


# The owner of each sampling session with a live handle in this process, by (base URL, session id): a handle
# unpickled in the process that made it (copy.deepcopy, a thread pool that pickles, Ray's local mode)
# re-attaches through it, without looking for credentials. An entry goes with the session's last handle, so a
# long run that makes a sampling client per weights version does not grow it.
_owners: weakref.WeakValueDictionary[tuple[str, str], _SessionOwner] = weakref.WeakValueDictionary()


@names_sdk_methods  # x-sdk-method on the wire (protocol 0.38)
@capture_exceptions  # errors reach the session's telemetry once, and the caller unchanged
class SamplingClient(QueueStateObserver):
    """Sample from a base model or saved weights.

    Picklable, without credentials: the pickle holds the base URL, the sampling session id, the model and
    the retry settings, never the API key. The process that unpickles it re-attaches to the same sampling
    session with its own credentials: the ServiceClient that created the session if it lives in that
    process, else ``TINKER_API_KEY`` from that process's environment. Without either, the first
    ``sample()`` raises :class:`~tinker_actors.config.MissingApiKeyError` (unpickling itself never fails).

    ``record_stability_info`` (protocol 0.38, set when the client is created): every sample of this client asks
    the server to record stability information for its sequences, which ``stable_reinforce`` training reads
    through the provenance spans that name them (``Datum.with_provenance``; docs/guides/sampling-outputs.md).
    Pickles and sampler handles keep it, as the official SDK's do.
    """

    def __init__(self, service: ServiceClient, sampling_session_id: str, *, base_model: str | None = None,
                 model_path: str | None = None, retry_config: RetryConfig | None = None,
                 first_seq_id: int | None = 0, record_stability_info: bool = False) -> None:
        self.sampling_session_id = sampling_session_id
        self.base_model = base_model
        self.model_path = model_path
        self.retry_config = retry_config or RetryConfig()
        self.record_stability_info = stability_setting(record_stability_info)
        self._base_url = service.config.base_url
        self._attach_lock = threading.Lock()
        self._born = fork_generation()
        self._attach(service, first_seq_id)

    @staticmethod
    def create(service: ServiceClient, *, model_path: str | None = None, base_model: str | None = None,
               sampling_session_id: str | None = None, retry_config: RetryConfig | None = None,
               record_stability_info: bool = False) -> APIFuture[SamplingClient]:
        """The official SDK's factory: a future of a client on a new sampling session (of ``model_path`` or
        ``base_model``), or on an existing one (``sampling_session_id``, e.g. from another process).

        Takes the ServiceClient where the official SDK takes its internal ``holder``.
        """
        from tinker_actors.clients.service import ServiceClient

        if not isinstance(service, ServiceClient):
            raise InvalidInputError("SamplingClient.create takes the ServiceClient (where the official SDK takes "
                                    f"its internal holder), got {type(service).__name__}")
        if sampling_session_id is None:
            return service.create_sampling_client_future(model_path=model_path, base_model=base_model,
                                                         retry_config=retry_config,
                                                         record_stability_info=record_stability_info)
        # Others may sample on this session too: a clone numbers its samples in a block of its own.
        client = SamplingClient(service, sampling_session_id, base_model=base_model, model_path=model_path,
                                retry_config=retry_config, first_seq_id=None,
                                record_stability_info=record_stability_info)
        future: APIFuture[SamplingClient] = APIFuture()
        resolve(future.raw, client)
        return future

    def _attach(self, service: ServiceClient, first_seq_id: int | None) -> NamedRef:
        """Start this handle's actor. ``first_seq_id`` None: a clone, whose block of seq ids is settled before
        its first sample (tinker_actors.fanout.seq_blocks)."""
        self._service: ServiceClient | None = service
        self._context: ClientContext | None = service._context
        self._seq_ids = SeqIds(first_seq_id)
        child_id = self._child_id = f"sampling-{next(_client_ids)}"
        context, config, seq_ids, session = service._context, self.retry_config, self._seq_ids, self.sampling_session_id
        queue_log = ClientQueueLog(f"sampler {session}", self)
        life = HandleLife()
        spec = ChildSpec(child_id, lambda: SamplingClientActor.start(context, session, config, seq_ids, queue_log,
                                                                     life),
                         restart=Restart.TRANSIENT)
        self._actor: NamedRef | None = service.clients_supervisor.start_child(spec, timeout=10.0)
        owner = _owners.get((self._base_url, session))
        if owner is None or owner.service._closed:
            owner = _owners[(self._base_url, session)] = _SessionOwner(service)
        self._session_owner = owner  # keeps the entry while this handle lives
        # Dropping this handle stops its actor once its pending samples are done. Not at interpreter exit:
        # closing the ServiceClient (or the process ending) stops every actor anyway.
        self._on_drop = weakref.finalize(self, _handle_dropped, life, context.runtime.ioloop.loop)
        self._on_drop.atexit = False
        return self._actor

    def _attached_actor(self) -> NamedRef:
        """The actor of an unpickled handle that could not attach yet: attach now, or raise the typed reason."""
        with self._attach_lock:
            if self._actor is None:
                # Another process may sample on the same session: its seq ids must not collide with ours, or
                # the server's de-duplication by (session, seq_id) would hand one process the other's result.
                service = _service_for(self._base_url, self.sampling_session_id)
                refuse_if_forked(service.runtime.fork_generation, "The ServiceClient this SamplingClient attaches to")
                return self._attach(service, None)
            return self._actor

    @property
    def actor(self) -> NamedRef:
        return self._actor if self._actor is not None else self._attached_actor()

    def sample(self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams,
               include_prompt_logprobs: bool = False, topk_prompt_logprobs: int = 0, topk_sample_logprobs: int = 0,
               target_prompt_logprobs: TensorData | None = None, prompt_alt_tokens_k: int = 0,
               prompt_logprobs_last_n: int | None = None) -> APIFuture[SampleResponse]:
        """Sample ``num_samples`` sequences after ``prompt``. The last four settings are protocol 0.38's
        (refused with :class:`~tinker_actors.errors.UnsupportedFeatureError` on 0.6.3): the top-k logprobs of each
        sampled token, the logprobs of chosen token ids at prompt positions (an int64 ``[len(prompt) - 1, K]``
        tensor, -1 where nothing is asked; dense or sparse), ``k`` alternative tokens drawn at every prompt
        position after the first, and scoring only the last N prompt tokens (docs/guides/sampling-outputs.md).
        A client created with ``record_stability_info=True`` asks for it in every request."""
        asked = sample_outputs_asked(target_prompt_logprobs, prompt_alt_tokens_k, prompt_logprobs_last_n,
                                     include_prompt_logprobs)
        # 0.38's settings only when asked for: a set field is sent by 0.6.3's encoding (only the fields set)
        added = {name: value for name, value, default in (
            ("topk_sample_logprobs", topk_sample_logprobs, 0), ("target_prompt_logprobs", target_prompt_logprobs, None),
            ("prompt_alt_tokens_k", prompt_alt_tokens_k, 0), ("prompt_logprobs_last_n", prompt_logprobs_last_n, None),
        ) if value is not default and value != default}
        if self.record_stability_info:
            added["record_stability_info"] = True
        try:
            request = SampleRequest(num_samples=num_samples, prompt=prompt, sampling_params=sampling_params,
                                    sampling_session_id=self.sampling_session_id, seq_id=0,
                                    prompt_logprobs=include_prompt_logprobs, topk_prompt_logprobs=topk_prompt_logprobs,
                                    **added)
        except ValueError as invalid:
            if isinstance(invalid, InvalidInputError):
                raise
            problems = problems_of(invalid) if isinstance(invalid, pydantic.ValidationError) else str(invalid)
            raise InvalidInputError(f"invalid sample request: {problems}") from None
        refuse_if_forked(self._born, "This SamplingClient")  # its actor's thread is not in a forked child
        actor = self._actor if self._actor is not None else self._attached_actor()
        future: APIFuture[SampleResponse] = APIFuture()
        try:
            actor.tell(SampleOp(request, future.raw))
        except Exception as error:
            fail(future.raw, ClientStoppedError(f"the sampling client is not running ({error})"))
        return future.map(asked.check) if asked is not None else future

    async def sample_async(self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams,
                           include_prompt_logprobs: bool = False, topk_prompt_logprobs: int = 0,
                           topk_sample_logprobs: int = 0, target_prompt_logprobs: TensorData | None = None,
                           prompt_alt_tokens_k: int = 0, prompt_logprobs_last_n: int | None = None) -> SampleResponse:
        return await self.sample(prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs,
                                 topk_sample_logprobs, target_prompt_logprobs, prompt_alt_tokens_k,
                                 prompt_logprobs_last_n)

    def compute_logprobs(self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
                         ) -> APIFuture[list[float | None]]:
        """Logprob of every prompt token under the model (the first is None: it has no context); with
        ``prompt_logprobs_last_n`` (protocol 0.38) only the last N are scored, the others None, and the server
        may serve the prefix before them from its prefix cache."""
        return self.sample(prompt, 1, SamplingParams(max_tokens=1), include_prompt_logprobs=True,
                           prompt_logprobs_last_n=prompt_logprobs_last_n).map(
            lambda response: list(response.prompt_logprobs or []))

    async def compute_logprobs_async(self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
                                     ) -> list[float | None]:
        return await self.compute_logprobs(prompt, prompt_logprobs_last_n)

    def get_tokenizer(self, *, add_special_tokens: bool = True) -> Any:
        from tinker_actors.tokenizer import get_tokenizer

        return get_tokenizer(self.get_base_model(), add_special_tokens=add_special_tokens)

    def get_base_model(self) -> str:
        """The name of the base model this client samples (``"Qwen/Qwen3-8B"``), also for saved weights and for a
        training client's sampler. Known from the client's creation, as in the official SDK 0.38; a client that
        was not told it (one made from a sampling session id, or whose creation could not learn it) asks the
        server once (``GET samplers/{id}``), a blocking call bounded as the others are."""
        if self.base_model is None:
            context = self._attached_context()
            self.base_model = context.call(self._fetched_base_model())
        return self.base_model

    async def get_base_model_async(self) -> str:
        """Deprecated, as in the official SDK 0.38: :meth:`get_base_model` answers without a request."""
        warn_deprecated("SamplingClient.get_base_model_async()",
                        "use `sampling_client.get_base_model()`: it answers from the client")
        if self.base_model is None:
            context = self._attached_context()
            self.base_model = await asyncio.wrap_future(context.submit(self._fetched_base_model()))
        return self.base_model

    async def _fetched_base_model(self) -> str:
        """The base model, as the server's record of this sampler names it (in the IoLoop)."""
        service = self._service
        if service is None or service._closed:
            raise ClientStoppedError("the ServiceClient of this sampling client is closed")
        return (await service._get_sampler(self.sampling_session_id)).base_model

    def get_telemetry(self) -> SessionTelemetry | None:
        """The session's telemetry (``ServiceClient.telemetry``), or None when telemetry is disabled."""
        return self._service.get_telemetry() if self._service is not None else None

    def get_sampler_handle(self) -> str:
        """A string naming this sampler, without credentials, to give to other processes instead of a pickle:
        :meth:`from_sampler_handle` makes a new client of the same sampling session from it (docs/guides/ray.md)."""
        return SamplerHandle(self._base_url, self.sampling_session_id, self.base_model, self.model_path,
                             self.record_stability_info).encode()

    @staticmethod
    def from_sampler_handle(handle: str, *, api_key: str | None = None) -> SamplingClient:
        """A new client of the sampling session ``handle`` names (any process, any number of times).

        It authenticates with this process's own credentials: ``api_key`` if given, else the ServiceClient that
        created the session when it lives in this process, else the environment's (``TINKER_API_KEY``, ...).
        Each such client numbers its samples in its own block of seq ids (``join_sampling_session``).
        """
        described = SamplerHandle.decode(handle)
        if api_key is not None:
            from tinker_actors.clients.service import ServiceClient

            service = ServiceClient.shared(base_url=described.base_url, api_key=api_key)
        else:
            service = _service_for(described.base_url, described.sampling_session_id)
        refuse_if_forked(service.runtime.fork_generation, "The ServiceClient this SamplingClient attaches to")
        return SamplingClient(service, described.sampling_session_id, base_model=described.base_model,
                              model_path=described.model_path, first_seq_id=None,
                              record_stability_info=described.record_stability_info)

    def backoff_remaining(self) -> float:
        """Seconds this process's samples for this client's service and key still hold back after a 429 (0: none).

        With :meth:`back_off`, lets several processes share one backoff (tinker_actors.fanout.ray_pool)."""
        context = self._attached_context()

        async def remaining() -> float:
            return max(0.0, _rate_limit_for(context).until - asyncio.get_running_loop().time())

        return context.call(remaining(), timeout=10.0)

    def back_off(self, seconds: float) -> None:
        """Hold back this process's samples for this client's service and key for ``seconds`` more, as a 429 with
        ``Retry-After: seconds`` would (a backoff another process saw). Never shortens a running backoff."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 <= seconds <= 3600:
            raise InvalidInputError(f"back_off takes seconds between 0 and 3600, got {seconds!r}")
        context = self._attached_context()

        async def extend() -> None:
            limit = _rate_limit_for(context)
            limit.until = max(limit.until, asyncio.get_running_loop().time() + float(seconds))

        context.submit(extend())

    def close(self) -> None:
        """Stop this client's actor and free its thread; samples still in flight fail with ClientStoppedError, later
        ones too. For long runs that make a client per weights version (the worker of tinker_actors.fanout.ray_pool)."""
        service, actor = self._service, self._actor
        if actor is not None:
            self._on_drop.detach()  # nothing left to stop when this handle goes
        if service is not None and actor is not None and not service._closed:
            with contextlib.suppress(Exception):  # already stopped with its ServiceClient
                service.clients_supervisor.terminate_child(self._child_id, timeout=10.0)

    def _attached_context(self) -> ClientContext:
        refuse_if_forked(self._born, "This SamplingClient")
        if self._context is None:
            self._attached_actor()
        assert self._context is not None
        return self._context

    def on_queue_state_change(self, queue_state: QueueState) -> None:
        """Called with each queue state a poll of this client's samples reports; does nothing by default
        (paused states are logged anyway). Override it, or assign a quick, non-blocking callable to it."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Never the API key: a pickle is bytes anyone may log, store or ship to a cluster. The process that
        # unpickles takes its own credentials (see the class docstring and docs/guides/fan_out.md).
        return (_rebuild_sampling_client, (self._base_url, self.sampling_session_id, self.base_model,
                                           self.model_path, self.retry_config, self.record_stability_info))

    def __repr__(self) -> str:
        return f"SamplingClient(sampling_session_id={self.sampling_session_id!r})"


def _handle_dropped(life: HandleLife, loop: asyncio.AbstractEventLoop) -> None:
    """A SamplingClient's finalizer. The garbage collector runs it on any thread, in the middle of any code
    (an actor's, the IoLoop's, one holding a lock), so it takes no lock and never waits: it marks the handle
    gone and has the IoLoop tell the actor (``call_soon_threadsafe`` only appends to a deque and wakes the loop)."""
    life.dropped = True
    with contextlib.suppress(RuntimeError):  # the loop is closed: the ServiceClient stopped every actor
        loop.call_soon_threadsafe(_tell_dropped, life)


def _tell_dropped(life: HandleLife) -> None:
    actor = life.actor
    if actor is not None:  # else it has not started yet, and sees ``dropped`` when it does
        with contextlib.suppress(ActorDeadError):  # stopped already; a restarted incarnation sees ``dropped``
            actor.tell(HandleDropped())


def _service_for(base_url: str, sampling_session_id: str) -> ServiceClient:
    """The ServiceClient an unpickled handle attaches through, with this process's own credentials.

    The live ServiceClient that created the session, if it is in this process; else the process's shared
    client for ``base_url`` and the credential of its environment (``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD``,
    the stored key: docs/accounts.md).
    """
    from tinker_actors.clients.service import ServiceClient

    owner = _owners.get((base_url, sampling_session_id))
    if owner is not None and not owner.service._closed:
        return owner.service
    config = Config.from_env(base_url=base_url)
    try:
        credential_source(config)
    except MissingApiKeyError:
        raise MissingApiKeyError(
            f"No API key for the unpickled SamplingClient of sampling session {sampling_session_id}: a pickled "
            f"SamplingClient never carries the key. Set TINKER_API_KEY in the environment of this process "
            f"(for worker processes: in their environment before they start).") from None
    return ServiceClient.shared(base_url=base_url,
                                api_key=config.api_key.get_secret_value() if config.api_key is not None else None)


def _rebuild_sampling_client(base_url: str, sampling_session_id: str, base_model: str | None,
                             model_path: str | None, retry_config: RetryConfig,
                             record_stability_info: bool = False) -> SamplingClient:
    """Unpickle a handle. Attaches now if this process has credentials; else the first use says why it cannot.

    Never raises: an error while unpickling the arguments of a pool's task would kill the worker and surface
    as an opaque BrokenProcessPool, where the first ``sample()`` can raise a typed error instead.
    """
    client = SamplingClient.__new__(SamplingClient)
    client.sampling_session_id = sampling_session_id
    client.base_model = base_model
    client.model_path = model_path
    client.retry_config = retry_config
    client.record_stability_info = record_stability_info
    client._base_url = base_url
    client._attach_lock = threading.Lock()
    client._born = fork_generation()
    client._service, client._context, client._actor = None, None, None
    # No key, service unreachable, a bad environment...: the first use tries again and raises what it meets.
    with contextlib.suppress(Exception):
        client._attached_actor()
    return client
