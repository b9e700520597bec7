"""TrainingClient: a handle, and the supervised actor that owns one server-side model.

Order is a contract (ARCHITECTURE §2.3): the actor takes operations in mailbox order and chains their
*sends* in the IoLoop (each POST waits for the previous one to be acknowledged), while results are
awaited concurrently. Seq ids are reserved at send time from the :class:`TrainingLedger`, which outlives
the actor, so a restarted actor continues after the highest seq id ever sent and never sends twice.

What a caller sees on each failure is in docs/concepts/failures.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from supervisors import ChildSpec, ExitKind, ExitReason, NamedRef, Restart, SupervisedActor
from tinker_actors.call_style import warn_deprecated
from tinker_actors.clients.checkpoint_options import save_options
from tinker_actors.clients.context import ClientContext
from tinker_actors.clients.ledger import TrainingLedger
from tinker_actors.clients.queue_state import ClientQueueLog, QueueState, QueueStateObserver
from tinker_actors.clients.sdk_method import names_sdk_methods
from tinker_actors.errors import (
    ClientStoppedError,
    CrashedBeforeSendError,
    InvalidInputError,
    NotSentError,
    PartialBatchError,
    TinkerError,
)
from tinker_actors.futures import (
    APIFuture,
    QueueStateLog,
    ResultReader,
    abandoned,
    fail,
    on_abandoned,
    poll_future,
    resolve,
)
from tinker_actors.http import Purpose
from tinker_actors.telemetry.capture import capture_exceptions
from tinker_actors.training import grad_norms as _grad_norms  # also fills the runtime slot
from tinker_actors.training.chunking import ChunkLimits, combine_outputs, empty_output, split_batch
from tinker_actors.training.custom_loss import TrainingPort, forward_backward_custom
from tinker_actors.types import (
    AdamParams,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    GetInfoRequest,
    GetInfoResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    OptimStepRequest,
    OptimStepResponse,
    ParsedCheckpointTinkerPath,
    SamplingClientKind,
    SaveWeightsExternalRequest,
    SaveWeightsExternalResponse,
    SaveWeightsExternalResponseInternal,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
    UnloadModelRequest,
    UnloadModelResponse,
    UntypedAPIFuture,
    validate_checkpoint_name,
)
from tinker_actors.types.datum import datum_list
from tinker_actors.types.training import adam_params_of, check_loss
from tinker_actors.wire import CONTENT_TYPE_JSON, ClientCodec, EncodedBody, EncodedRequest, PreparedRequest

if TYPE_CHECKING:
    from tinker_actors.clients.backcompat import BackcompatSamplingClientFuture
    from tinker_actors.clients.sampling import SamplingClient
    from tinker_actors.clients.service import ServiceClient
    from tinker_actors.recovery.policy import RecoveryPolicy, RecoveryStatus
    from tinker_actors.recovery.port import ClientPort
    from tinker_actors.telemetry import SessionTelemetry
    from tinker_actors.training.checkpoint_policy import CheckpointPolicy, CheckpointStatus

__all__ = ["OpFinished", "SubmitOp", "TrainingClient", "TrainingClientActor", "TrainingOp", "fetch_model_info"]

FutureT = TypeVar("FutureT", bound=APIFuture[Any])  # the class of future a sampling-client call returns


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TrainingOp:
    """One request to send in order: how to write it once its seq id is known, and how to read its result.

    The request's body is encoded when the op is made (in the caller's thread, where bad input raises a typed
    error before anything is queued) except for its seq id, which ``build`` adds at send time.
    """

    kind: str
    request_type: str
    build: Callable[[int], EncodedRequest] | None
    """The request for a seq id; ``None`` when ``prepare`` makes it."""
    read: Callable[[Any], Any] | ResultReader[Any]
    """Reads the result: a JSON result's parser, or the codec's reader of a protocol-dependent one."""
    future: concurrent.futures.Future[Any]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    """The caller's contextvars (trace span, log context, the public method), captured in the caller's thread."""
    ready: concurrent.futures.Future[Any] | None = None
    """If set, the op keeps its place in the send chain but takes its seq id only once this resolves (the
    backward of forward_backward_custom waits here for its client-side gradient); if it fails, the op and
    every op queued behind it are not sent."""
    prepare: Callable[[], Callable[[int], EncodedRequest]] | None = None
    """Makes ``build`` once ``ready`` resolved and before a seq id is taken, in a worker thread (the backward
    of forward_backward_custom is encoded from its gradient): if it fails, nothing is sent."""
    size: int = 0
    """The body's size when it counts against the server's forward_backward dispatch byte budget."""
    offload: bool = False
    """``build`` is heavy (compression): it runs in a worker thread, not the event loop."""
    model_id: str = ""
    """The model its request names. If recovery recreated the model since, it is re-targeted before it is sent."""
    retarget: Callable[[str], Callable[[int], EncodedRequest]] | None = None
    """The same request for another model (recovery, docs/guides/recovery.md); None: it cannot be re-targeted."""
    poisons: bool = True
    """If its send fails for good, the ops queued behind it are not sent (order contract). A periodic checkpoint
    does not: its failure is reported, and training goes on."""


@dataclass(frozen=True, slots=True)
class SubmitOp:
    op: TrainingOp


@dataclass(frozen=True, slots=True)
class OpFinished:
    op_id: int
    step: int | None = None
    """Set when the op was an optim_step that succeeded while steps are counted (its step number)."""


@dataclass(frozen=True, slots=True)
class InFlightCount:
    """Ask: how many operations this actor is tracking."""


# ---- the actor ------------------------------------------------------------------------------------

@dataclass
class _InFlight:
    op: TrainingOp
    task: concurrent.futures.Future[None]


class TrainingClientActor(SupervisedActor):
    """Owns the in-flight table and the send-turn chain of one model. Never blocks on the network."""

    expected_errors = (TinkerError,)

    def __init__(self, context: ClientContext, ledger: TrainingLedger, queue_log: QueueStateLog) -> None:
        super().__init__()
        self._context = context
        self._ledger = ledger
        self._in_flight: dict[int, _InFlight] = {}
        self._queue_log = queue_log  # the handle's: its debounce outlives restarts of this actor

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SubmitOp):
            self._submit(message.op)
        elif isinstance(message, OpFinished):
            self._in_flight.pop(message.op_id, None)
            watch = self._ledger.watch
            if message.step is not None and watch is not None:
                watch.step_completed(message.step)  # feeds the periodic checkpoint policy
        elif isinstance(message, InFlightCount):
            return len(self._in_flight)
        return None

    def _submit(self, op: TrainingOp) -> None:
        if op.future.done():  # cancelled before it reached us
            return
        op_id = self._ledger.assign_op_id()
        watch = self._ledger.watch
        if watch is not None:
            watch.submitted(op_id, op.kind)  # step numbers follow the mailbox order, as op ids do
        sent: concurrent.futures.Future[None] = concurrent.futures.Future()
        previous, self._ledger.last_sent = self._ledger.last_sent, sent
        task = self._context.submit(self._run(op_id, op, previous, sent), context=op.context)
        self._in_flight[op_id] = _InFlight(op, task)
        op.future.add_done_callback(lambda f: self._caller_gave_up(op_id, task) if f.cancelled() else None)
        on_abandoned(op.future, lambda: self._caller_abandoned(op_id, task))

    def _caller_gave_up(self, op_id: int, task: concurrent.futures.Future[None]) -> None:
        """The caller cancelled (any thread). Stop what is safe to stop, nothing else.

        An op still waiting for its turn is abandoned at the send gate; its coroutine still runs, in order,
        and settles its place in the chain (a task cancelled before it starts would never run its
        ``finally`` and would leave every later op waiting). An op being polled stops polling.
        """
        if not self._ledger.abandon_unsent([op_id]) and op_id in self._ledger.accepted_requests():
            task.cancel()

    def _caller_abandoned(self, op_id: int, task: concurrent.futures.Future[None]) -> None:
        """Nobody holds the op's APIFuture anymore (any thread). It is still sent (the caller asked for its
        effect on the model); only polling for a result nobody will read stops. Takes no lock: it may run from
        the garbage collector, in a thread that holds the ledger's lock."""
        if op_id in self._ledger.accepted:  # one dict lookup: atomic
            task.cancel()

    async def _run(self, op_id: int, op: TrainingOp, previous: concurrent.futures.Future[None] | None,
                   sent: concurrent.futures.Future[None]) -> None:
        ledger, http = self._ledger, self._context.http
        watch = ledger.watch  # recovery's gate and the step bookkeeping, when enabled (docs/guides/recovery.md)
        succeeded = False
        try:
            if previous is not None:
                try:
                    await asyncio.wrap_future(previous)
                except BaseException as earlier:
                    if ledger.queued_behind_failure(op_id):
                        raise NotSentError(f"{op.kind} was not sent: an earlier request of this training client "
                                           f"failed before it ({earlier})") from None
            build = op.build
            if op.ready is not None or op.prepare is not None:
                try:
                    if op.ready is not None:
                        await asyncio.wrap_future(op.ready)
                    if op.prepare is not None:
                        build = await asyncio.to_thread(op.prepare)
                except BaseException:
                    ledger.send_failed()
                    raise
            assert build is not None, "a TrainingOp has build or prepare"
            while True:  # more than once only when recovery holds the op and sends it to a recreated model
                if watch is not None:
                    build = await watch.before_send(op_id, op, build)
                seq_id = ledger.begin_send(op_id)
                if seq_id is None:
                    raise NotSentError(f"{op.kind} was not sent: its training client stopped first")
                if watch is not None:
                    watch.sending(op_id)
                submitted_at = asyncio.get_running_loop().time()
                try:
                    accepted = await self._send(op, build, seq_id)
                except BaseException as error:
                    if watch is not None and await watch.lost(op_id, op, error, accepted=False):
                        continue
                    if op.poisons:
                        ledger.send_failed()
                    raise
                if watch is not None:
                    watch.accepted(op_id)
                _set(sent, None)
                if op.future.done() or abandoned(op.future):  # nobody waits for its result anymore
                    if watch is not None:
                        watch.succeeded(op_id)  # it will run: counted as run
                    return
                ledger.record_accepted(op_id, accepted.request_id)
                context = self._context
                try:
                    result = await poll_future(http, accepted.request_id, op.request_type, op.read,
                                               settings=context.poll, observer=self._queue_log, outcome=op.future,
                                               submitted_at=submitted_at, codec=context.profile.codec,
                                               response_budget=context.response_budget)
                except BaseException as error:
                    if watch is not None and await watch.lost(op_id, op, error, accepted=True):
                        continue
                    raise
                break
            resolve(op.future, result)
            if watch is not None:
                watch.succeeded(op_id, result)
            succeeded = True
        except asyncio.CancelledError:
            fail(op.future, ClientStoppedError(f"{op.kind} was cancelled"))
            raise
        except BaseException as error:
            fail(op.future, error if isinstance(error, TinkerError) else
                 ClientStoppedError(f"{op.kind} failed unexpectedly: {error!r}"))
        finally:
            if not sent.done():
                _set_error(sent, NotSentError(f"{op.kind} was not sent"))
            ledger.finished(op_id)
            step = watch.op_ended(op_id, succeeded) if watch is not None else None
            with contextlib.suppress(Exception):
                self.actor_ref.tell(OpFinished(op_id, step))

    async def _send(self, op: TrainingOp, build: Callable[[int], EncodedRequest], seq_id: int) -> UntypedAPIFuture:
        """POST the op's request (under the dispatch byte budget when it counts); the server's future."""
        request = await asyncio.to_thread(build, seq_id) if op.offload else build(seq_id)
        budget = self._context.dispatch_budget if op.size else None
        if budget is not None:
            await budget.acquire(op.size)
        try:
            response = await self._context.http.request(
                Purpose.TRAINING, "POST", request.path, content=request.body.content,
                headers=request.body.headers(), response_model=UntypedAPIFuture, endpoint=op.kind)
        finally:
            if budget is not None:
                budget.release(op.size)
        return response.data

    def on_terminate(self, reason: ExitReason) -> None:
        # Unsent requests fail now and can never be sent (the send gate refuses them); their coroutines are
        # not cancelled, so each still settles its place in the send chain, in order. Accepted ones: after a
        # crash they keep polling (the supervisor restarts us and their callers still get results); on a
        # stop they fail and their polling is cancelled.
        unsent = set(self._ledger.abandon_unsent(list(self._in_flight)))
        accepted = self._ledger.accepted_requests()
        crashed = reason.kind is ExitKind.CRASHED
        for op_id, entry in self._in_flight.items():
            if op_id in unsent:
                fail(entry.op.future, _not_sent_error(entry.op.kind, reason))
            elif not crashed:
                fail(entry.op.future, ClientStoppedError(f"{entry.op.kind}: the training client was closed"))
                if op_id in accepted:
                    entry.task.cancel()
        self._in_flight.clear()

    def on_undelivered(self, message: Any, reason: ExitReason) -> None:
        # A call queued behind the end of this incarnation never got an op id: it was never sent.
        if isinstance(message, SubmitOp):
            fail(message.op.future, _not_sent_error(message.op.kind, reason))


def _not_sent_error(kind: str, reason: ExitReason) -> NotSentError:
    message = f"{kind} was not sent: its training client actor {reason.kind.value}"
    if reason.kind is ExitKind.CRASHED:
        return CrashedBeforeSendError(message, cause=reason.error)
    return NotSentError(message)


def _set(future: concurrent.futures.Future[None], value: None) -> None:
    if not future.done():
        future.set_result(value)


def _set_error(future: concurrent.futures.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


async def fetch_model_info(context: ClientContext, model_id: str) -> GetInfoResponse:
    """``POST get_info`` for one model (run in the IoLoop)."""
    response = await context.http.request(
        Purpose.TRAINING, "POST", "/api/v1/get_info",
        content=context.profile.codec.encode_json(GetInfoRequest(model_id=model_id)),
        response_model=GetInfoResponse, endpoint="get_info")
    return response.data


# ---- the handle -----------------------------------------------------------------------------------

_client_ids = itertools.count()


def _check_sampler_kind(kind: object, protocol: str) -> None:
    """``kind`` must be a SamplingClientKind, and ``inflight`` needs protocol 0.38 (0.6.3 would save a snapshot)."""
    if kind not in ("snapshot", "inflight"):
        raise InvalidInputError(f"kind is 'snapshot' or 'inflight', got {kind!r}")
    if kind == "inflight" and protocol != "0.38":
        raise InvalidInputError(f"kind='inflight' samplers need protocol 0.38; this client speaks {protocol}")


@names_sdk_methods  # x-sdk-method on the wire (protocol 0.38)
@capture_exceptions  # errors reach the session's telemetry once, and the caller unchanged
class TrainingClient(QueueStateObserver):
    """Train one LoRA model. Methods return :class:`APIFuture` at once; ``*_async`` twins return the same
    future from a coroutine (so async code awaits twice, as with the official SDK)."""

    def __init__(self, service: ServiceClient, model_id: str, base_model: str, *,
                 chunk_limits: ChunkLimits | None = None, info: GetInfoResponse | None = None) -> None:
        self._service = service
        self._context = service._context
        self._ledger = TrainingLedger(model_id=model_id, base_model=base_model)
        self._chunk_limits = chunk_limits
        self._info = info  # fetched at creation (ProtocolProfile.info_on_create) or on the first get_info()
        child_id = f"training-{next(_client_ids)}"
        context, ledger, queue_log = self._context, self._ledger, ClientQueueLog(f"training of {model_id}", self)
        spec = ChildSpec(child_id, lambda: TrainingClientActor.start(context, ledger, queue_log),
                         restart=Restart.TRANSIENT)
        self._actor: NamedRef = service.clients_supervisor.start_child(spec, timeout=10.0)
        self._child_id = child_id

    # -- plumbing --

    def _op(self, kind: str, request_type: str, build: Callable[[int], EncodedRequest] | None,
            read: Callable[[Any], Any] | ResultReader[Any], *, ready: concurrent.futures.Future[Any] | None = None,
            prepare: Callable[[], Callable[[int], EncodedRequest]] | None = None, size: int = 0,
            offload: bool = False, model_id: str = "",
            retarget: Callable[[str], Callable[[int], EncodedRequest]] | None = None,
            poisons: bool = True) -> APIFuture[Any]:
        future: APIFuture[Any] = APIFuture()
        try:
            self._actor.tell(SubmitOp(TrainingOp(kind, request_type, build, read, future.raw, ready=ready,
                                                 prepare=prepare, size=size, offload=offload, model_id=model_id,
                                                 retarget=retarget, poisons=poisons)))
        except Exception as error:
            fail(future.raw, ClientStoppedError(f"{kind}: the training client is not running ({error})"))
        return future

    def _json_op(self, kind: str, path: str, request_type: str, request: Callable[[int], BaseModel],
                 parse: Callable[[Any], Any], *, model_id: str, poisons: bool = True) -> APIFuture[Any]:
        """An op whose request is JSON (``request(seq_id)``, naming ``model_id`` in its ``model_id``), encoded by
        the protocol's rules at send time."""
        codec = self._context.profile.codec

        def build(seq_id: int) -> EncodedRequest:
            return EncodedRequest(path, EncodedBody(codec.encode_json(request(seq_id)), CONTENT_TYPE_JSON))

        def retarget(target: str) -> Callable[[int], EncodedRequest]:
            return lambda seq_id: EncodedRequest(path, EncodedBody(
                codec.encode_json(request(seq_id).model_copy(update={"model_id": target})), CONTENT_TYPE_JSON))

        return self._op(kind, request_type, build, parse, model_id=model_id, retarget=retarget, poisons=poisons)

    def _fwd_reader(self) -> ResultReader[ForwardBackwardOutput]:
        codec = self._context.profile.codec
        return ResultReader(codec.decode_forward_backward_output, codec.result_accept)

    @property
    def model_id(self) -> str:
        """The server-side model this client trains (a new one after a recovery: docs/guides/recovery.md)."""
        return self._ledger.model_id

    @property
    def actor(self) -> NamedRef:
        """The stable name of this client's actor (follows restarts)."""
        return self._actor

    @property
    def ledger(self) -> TrainingLedger:
        return self._ledger

    # -- training --

    def forward_backward(self, data: Sequence[Datum], loss_fn: str,
                         loss_fn_config: Mapping[str, float | str] | None = None) -> APIFuture[ForwardBackwardOutput]:
        return self._fwd(data, loss_fn, loss_fn_config, backward=True)

    def forward(self, data: Sequence[Datum], loss_fn: str,
                loss_fn_config: Mapping[str, float | str] | None = None) -> APIFuture[ForwardBackwardOutput]:
        return self._fwd(data, loss_fn, loss_fn_config, backward=False)

    def _fwd(self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float | str] | None, *,
             backward: bool) -> APIFuture[ForwardBackwardOutput]:
        kind = "forward_backward" if backward else "forward"
        batch = datum_list(data, kind)  # typed errors before anything is queued (docs/concepts/failures.md)
        config = dict(loss_fn_config) if isinstance(loss_fn_config, Mapping) else loss_fn_config
        check_loss(loss_fn, config, kind)
        if not batch:
            # As the official SDK: nothing is sent, the output is empty, and the next optim_step runs as usual
            # (an RL step whose advantages are all zero trains on no datum).
            empty: APIFuture[ForwardBackwardOutput] = APIFuture()
            resolve(empty.raw, empty_output())
            return empty
        profile = self._context.profile
        model_id = self.model_id
        prepared: list[PreparedRequest] = []
        inputs: list[ForwardBackwardInput] = []
        # Every chunk is validated and encoded before anything is queued: bad input is a typed error here and
        # nothing is sent (docs/concepts/failures.md). Only the seq id is added at send time.
        for chunk in split_batch(batch, profile.chunk_limits_for(self._chunk_limits)):
            try:
                fb_input = ForwardBackwardInput(data=chunk, loss_fn=loss_fn, loss_fn_config=config)
            except ValueError as invalid:
                raise InvalidInputError(f"invalid forward_backward input: {invalid}") from None
            prepared.append(profile.codec.prepare_forward_backward(
                model_id, fb_input, forward_only=not backward, compress=profile.compress_forward_backward))
            inputs.append(fb_input)
        reader = self._fwd_reader()
        watch = self._ledger.watch
        # Only with recovery on, each chunk's input is kept until it ran, to be encoded again for a recreated model.
        recovering = watch is not None and watch.recovery_enabled
        futures = [self._op(kind, "ForwardBackward" if backward else "Forward", request.request, reader,
                            size=request.size, offload=request.compress is not None, model_id=model_id,
                            retarget=_fwd_retarget(profile.codec, fb_input, backward, profile.compress_forward_backward)
                            if recovering else None)
                   for request, fb_input in zip(prepared, inputs, strict=True)]
        # Even one chunk is combined: its metrics are reduced as the official SDK reduces them.
        return _gather(futures, combine_outputs)

    def optim_step(self, optim_params: AdamParams | None = None, *,
                   adam_params: AdamParams | None = None) -> APIFuture[OptimStepResponse]:
        """One step of the model's optimizer (AdamW: decoupled ``weight_decay``, the gradients' global norm
        clipped to ``grad_clip_norm`` first). ``optim_params`` is 0.38's name, ``adam_params`` the older one:
        give one of them."""
        if optim_params is not None and adam_params is not None:
            raise InvalidInputError("optim_step takes an AdamParams as optim_params or as adam_params, not both")
        adam_params = adam_params_of(optim_params if adam_params is None else adam_params)  # typed error now
        model_id = self.model_id
        return self._json_op("optim_step", "/api/v1/optim_step", "OptimStep",
                             lambda seq: OptimStepRequest(adam_params=adam_params, model_id=model_id, seq_id=seq),
                             OptimStepResponse.model_validate, model_id=model_id)

    def save_state(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                   user_metadata: dict[str, str] | None = None) -> APIFuture[SaveWeightsResponse]:
        """Save the weights and optimizer state as ``tinker://<model>/weights/<name>``. Protocol 0.38 also takes
        ``ttl_seconds`` (the checkpoint is deleted that long after the save; the official service takes 1 hour to
        10 years, None: never), ``overwrite`` (replace a checkpoint of that name, metadata included; without it
        the save fails if the name is used) and ``user_metadata`` (string pairs kept with the checkpoint, shown
        by listings). On protocol 0.6.3 these are refused before anything is sent."""
        validate_checkpoint_name(name)
        options = save_options(self._context.profile.version, "save_state", ttl_seconds=ttl_seconds,
                               user_metadata=user_metadata, overwrite=overwrite)
        model_id = self.model_id
        return self._json_op("save_weights", "/api/v1/save_weights", "SaveWeights",
                             lambda seq: SaveWeightsRequest(model_id=model_id, path=name, seq_id=seq, **options),
                             SaveWeightsResponse.model_validate, model_id=model_id)

    def _load(self, path: str, optimizer: bool) -> APIFuture[LoadWeightsResponse]:
        ParsedCheckpointTinkerPath.from_tinker_path(path)
        model_id = self.model_id
        return self._json_op("load_weights", "/api/v1/load_weights", "LoadWeights",
                             lambda seq: LoadWeightsRequest(model_id=model_id, path=path, optimizer=optimizer,
                                                            seq_id=seq),
                             LoadWeightsResponse.model_validate, model_id=model_id)

    def load_state(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self._load(path, False)

    def load_state_with_optimizer(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self._load(path, True)

    def save_weights_for_sampler(self, name: str, ttl_seconds: int | None = None,
                                 user_metadata: dict[str, str] | None = None) -> APIFuture[SaveWeightsResponse]:
        """Save sampler weights as ``tinker://<model>/sampler_weights/<name>``; ``ttl_seconds`` and
        ``user_metadata`` as :meth:`save_state`'s (protocol 0.38; a used name is replaced)."""
        validate_checkpoint_name(name)
        options = save_options(self._context.profile.version, "save_weights_for_sampler", ttl_seconds=ttl_seconds,
                               user_metadata=user_metadata)
        model_id = self.model_id

        def parse(payload: Any) -> SaveWeightsResponse:
            internal = SaveWeightsForSamplerResponseInternal.model_validate(payload)
            if internal.path is None:
                raise InvalidInputError("the server returned no path for a named sampler save")
            return SaveWeightsResponse(path=internal.path)

        return self._json_op("save_weights_for_sampler", "/api/v1/save_weights_for_sampler", "SaveWeightsForSampler",
                             lambda seq: SaveWeightsForSamplerRequest(model_id=model_id, path=name, seq_id=seq,
                                                                      **options),
                             parse, model_id=model_id)

    def save_weights_external(self, name: str, ttl_seconds: int | None = None,
                              age_encryption_recipients: list[str] | None = None
                              ) -> APIFuture[SaveWeightsExternalResponse]:
        """Export the weights for use outside the service (protocol 0.38): the future answers the path
        ``tinker://<model>/external_weights/<name>``, whose files ``RestClient.get_external_weights_urls(path)``
        gives as download URLs (they expire). ``ttl_seconds`` as :meth:`save_state`'s; with
        ``age_encryption_recipients`` (at most 10 ``age1...`` or SSH public keys) the service encrypts every
        file to them (the local service cannot, and refuses it)."""
        validate_checkpoint_name(name)
        if self._context.profile.version != "0.38":
            raise InvalidInputError(f"save_weights_external needs protocol 0.38; this client speaks "
                                    f"{self._context.profile.version}")
        options = save_options("0.38", "save_weights_external", ttl_seconds=ttl_seconds)
        if age_encryption_recipients is not None:
            if (not isinstance(age_encryption_recipients, list | tuple) or len(age_encryption_recipients) > 10
                    or not all(isinstance(r, str) and r for r in age_encryption_recipients)):
                raise InvalidInputError("save_weights_external: age_encryption_recipients must be a list of at most "
                                        "10 non-empty age or SSH public keys")
            options["age_encryption_recipients"] = list(age_encryption_recipients)
        model_id = self.model_id

        def parse(payload: Any) -> SaveWeightsExternalResponse:
            internal = SaveWeightsExternalResponseInternal.model_validate(payload)
            if internal.path is None:
                raise InvalidInputError("the server returned no path for save_weights_external")
            return SaveWeightsExternalResponse(path=internal.path)

        return self._json_op("save_weights_external", "/api/v1/save_weights_external", "SaveWeightsExternal",
                             lambda seq: SaveWeightsExternalRequest(model_id=model_id, path=name, seq_id=seq,
                                                                    **options),
                             parse, model_id=model_id)

    def save_weights_and_get_sampling_client(self, name: str | None = None, retry_config: Any = None, *,
                                             kind: SamplingClientKind = "snapshot"
                                             ) -> BackcompatSamplingClientFuture:
        """Save ephemeral sampler weights; returns at once a future of a SamplingClient on them, as in the
        official SDK 0.38 (``.result()`` or ``await`` it; using it as the client still works, deprecated).
        ``name`` has no effect (deprecated there too). ``kind="inflight"`` (protocol 0.38): the client samples
        with this model's latest weights, following later training steps (docs/guides/async_rl.md)."""
        from tinker_actors.clients.backcompat import BackcompatSamplingClientFuture

        if name is not None:
            warn_deprecated("TrainingClient.save_weights_and_get_sampling_client(name=...)",
                            "leave the name out: it has no effect (for a named checkpoint, save_weights_for_sampler"
                            "(name), then create_sampling_client(path))")
        return self._sampling_client_after_save(retry_config, into=BackcompatSamplingClientFuture, kind=kind)

    def save_weights_and_get_sampling_client_future(self, retry_config: Any = None) -> APIFuture[SamplingClient]:
        """:meth:`save_weights_and_get_sampling_client`'s future, as a plain :class:`APIFuture` (the name kept
        from before that call returned a future)."""
        return self._sampling_client_after_save(retry_config, into=APIFuture)

    def _sampling_client_after_save(self, retry_config: Any, *, into: type[FutureT],
                                    kind: SamplingClientKind = "snapshot") -> FutureT:
        from tinker_actors.clients.sampling import SamplingClient

        _check_sampler_kind(kind, self._context.profile.version)
        model_id = self.model_id
        sampling_seq = self._service._reserve_sampling_seq()
        raw = self._json_op("save_weights_for_sampler", "/api/v1/save_weights_for_sampler", "SaveWeightsForSampler",
                            lambda seq: SaveWeightsForSamplerRequest(model_id=model_id, kind=kind,
                                                                     sampling_session_seq_id=sampling_seq, seq_id=seq),
                            SaveWeightsForSamplerResponseInternal.model_validate, model_id=model_id)

        def to_client(response: SaveWeightsForSamplerResponseInternal) -> SamplingClient:
            if response.sampling_session_id is None:
                raise InvalidInputError("the server returned no sampling_session_id for an ephemeral save")
            return SamplingClient(self._service, response.sampling_session_id, base_model=self._ledger.base_model,
                                  retry_config=retry_config)

        return raw.map(to_client, into=into)

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None,
                                                         retry_config: Any = None) -> SamplingClient:
        """Deprecated, as in the official SDK 0.38: ``await training.save_weights_and_get_sampling_client()``."""
        warn_deprecated("TrainingClient.save_weights_and_get_sampling_client_async()",
                        "use `await training_client.save_weights_and_get_sampling_client()`")
        client: SamplingClient = await self._sampling_client_after_save(retry_config, into=APIFuture)
        return client

    def create_sampling_client(self, model_path: str, retry_config: Any = None) -> BackcompatSamplingClientFuture:
        """A future of a SamplingClient on the weights saved at ``model_path``, returned at once
        (``ServiceClient.create_sampling_client``'s)."""
        return self._service.create_sampling_client(model_path=model_path, retry_config=retry_config)

    async def create_sampling_client_async(self, model_path: str, retry_config: Any = None) -> SamplingClient:
        """Deprecated, as in the official SDK 0.38: ``await training.create_sampling_client(path)``."""
        warn_deprecated("TrainingClient.create_sampling_client_async()",
                        "use `await training_client.create_sampling_client(path)`")
        client: SamplingClient = await self._service.create_sampling_client(model_path=model_path,
                                                                            retry_config=retry_config)
        return client

    def save_weights_and_get_sampling_client_submit(self, retry_config: Any = None) -> APIFuture[SamplingClient]:
        """The official SDK's name for :meth:`save_weights_and_get_sampling_client_future`."""
        return self.save_weights_and_get_sampling_client_future(retry_config)

    # -- telemetry and queue state (as in the official SDK) --

    def get_telemetry(self) -> SessionTelemetry | None:
        """The session's telemetry (``ServiceClient.telemetry``), or None when telemetry is disabled."""
        return self._service.get_telemetry()

    def on_queue_state_change(self, queue_state: QueueState) -> None:
        """Called with each queue state a poll of this client's requests reports; does nothing by default
        (paused states are logged anyway). Override it, or assign a quick, non-blocking callable to it."""

    # -- info --

    def get_info(self) -> GetInfoResponse:
        if self._info is None:
            self._info = self._context.call(self._get_info())
        return self._info

    async def get_info_async(self) -> GetInfoResponse:
        if self._info is None:
            self._info = await asyncio.wrap_future(self._context.submit(self._get_info()))
        return self._info

    async def _get_info(self) -> GetInfoResponse:
        return await fetch_model_info(self._context, self.model_id)

    def get_tokenizer(self, *, add_special_tokens: bool = True) -> Any:
        from tinker_actors.tokenizer import get_tokenizer

        info = self.get_info()  # the server's tokenizer id wins; else the Hub repo follows from the model name
        return get_tokenizer(info.model_data.model_name or self._ledger.base_model,
                             tokenizer_id=info.model_data.tokenizer_id, add_special_tokens=add_special_tokens)

    def unload_model(self, timeout: float | None = None) -> UnloadModelResponse:
        """Unload the model on the server and stop this client (docs/concepts/failures.md, "Close").

        The actor stops first, so nothing of this client is sent after the unload: requests not yet sent
        fail with NotSentError, those in flight with ClientStoppedError. Then ``unload_model`` is sent and
        its result awaited (at most ``timeout`` seconds; by default the no-progress bound).
        """
        self._service.clients_supervisor.terminate_child(self._child_id, timeout=10.0)
        self._stop_helpers()
        return self._context.call(self._unload(), timeout=timeout)

    async def unload_model_async(self, timeout: float | None = None) -> UnloadModelResponse:
        # Stopping the actor waits for it (up to 10 s): in a worker thread, not on the caller's event loop.
        await asyncio.to_thread(self._service.clients_supervisor.terminate_child, self._child_id, timeout=10.0)
        await asyncio.to_thread(self._stop_helpers)
        return await asyncio.wait_for(asyncio.wrap_future(self._context.submit(self._unload())), timeout)

    def _stop_helpers(self) -> None:
        """Stop the periodic checkpoint and recovery actors, if this client has them."""
        if self._ledger.watch is not None:
            from tinker_actors.recovery.port import stop_children

            stop_children(self._client_port(), timeout=10.0)

    async def _unload(self) -> UnloadModelResponse:
        http, codec = self._context.http, self._context.profile.codec
        submitted = await http.request(Purpose.TRAINING, "POST", "/api/v1/unload_model",
                                       content=codec.encode_json(UnloadModelRequest(model_id=self.model_id)),
                                       response_model=UntypedAPIFuture, endpoint="unload_model")
        return await poll_future(http, submitted.data.request_id, "UnloadModel", UnloadModelResponse.model_validate,
                                 settings=self._context.poll, codec=codec,
                                 response_budget=self._context.response_budget)

    # -- async twins (each returns the APIFuture, as the official SDK does) --

    async def forward_backward_async(self, data: Sequence[Datum], loss_fn: str,
                                     loss_fn_config: Mapping[str, float | str] | None = None
                                     ) -> APIFuture[ForwardBackwardOutput]:
        return self.forward_backward(data, loss_fn, loss_fn_config)

    async def forward_async(self, data: Sequence[Datum], loss_fn: str,
                            loss_fn_config: Mapping[str, float | str] | None = None
                            ) -> APIFuture[ForwardBackwardOutput]:
        return self.forward(data, loss_fn, loss_fn_config)

    async def optim_step_async(self, optim_params: AdamParams | None = None, *,
                               adam_params: AdamParams | None = None) -> APIFuture[OptimStepResponse]:
        return self.optim_step(optim_params, adam_params=adam_params)

    async def save_state_async(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                               user_metadata: dict[str, str] | None = None) -> APIFuture[SaveWeightsResponse]:
        return self.save_state(name, ttl_seconds=ttl_seconds, overwrite=overwrite, user_metadata=user_metadata)

    async def load_state_async(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self.load_state(path)

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self.load_state_with_optimizer(path)

    async def save_weights_for_sampler_async(self, name: str, ttl_seconds: int | None = None,
                                             user_metadata: dict[str, str] | None = None
                                             ) -> APIFuture[SaveWeightsResponse]:
        return self.save_weights_for_sampler(name, ttl_seconds=ttl_seconds, user_metadata=user_metadata)

    async def save_weights_external_async(self, name: str, ttl_seconds: int | None = None,
                                          age_encryption_recipients: list[str] | None = None
                                          ) -> APIFuture[SaveWeightsExternalResponse]:
        return self.save_weights_external(name, ttl_seconds=ttl_seconds,
                                          age_encryption_recipients=age_encryption_recipients)

    def __repr__(self) -> str:
        return f"TrainingClient(model_id={self.model_id!r})"

    # -- custom losses and gradient norms (logic in tinker_actors.training.custom_loss / grad_norms) --

    def forward_backward_custom(self, data: Sequence[Datum], loss_fn: Any, *, regularizers: Sequence[Any] = (),
                                parallel: bool = True) -> APIFuture[ForwardBackwardOutput]:
        """Train on ``loss_fn(data, logprobs)`` plus weighted regularizers (docs/custom-loss.md); never blocks."""
        return forward_backward_custom(self._custom_loss_port(), data, loss_fn, regularizers=regularizers,
                                       parallel=parallel)

    def _custom_loss_port(self) -> TrainingPort:
        runtime = self._context.runtime
        return TrainingPort(model_id=self.model_id, session_id=self._context.session_id or None,
                            chunk_limits=self._context.profile.chunk_limits_for(self._chunk_limits),
                            forward=lambda data: self.forward(data, "cross_entropy"),
                            backward_when_ready=self._backward_when_ready,
                            report_norms=lambda report: _grad_norms.report(runtime, report))

    def _backward_when_ready(self, ready: concurrent.futures.Future[Any],
                             inputs: list[Callable[[], ForwardBackwardInput]]) -> APIFuture[ForwardBackwardOutput]:
        profile, model_id, reader = self._context.profile, self.model_id, self._fwd_reader()

        def for_model(make_input: Callable[[], ForwardBackwardInput]
                      ) -> Callable[[str], Callable[[int], EncodedRequest]]:
            # Encoded once the gradient exists, before the seq id is taken (then added, and compressed if asked);
            # for another model if recovery recreated it meanwhile.
            return lambda target: profile.codec.prepare_forward_backward(
                target, make_input(), compress=profile.compress_forward_backward).request

        def preparer(encode: Callable[[str], Callable[[int], EncodedRequest]]
                     ) -> Callable[[], Callable[[int], EncodedRequest]]:
            return lambda: encode(model_id)

        parts = [self._op("forward_backward", "ForwardBackward", None, reader, ready=ready,
                          prepare=preparer(for_model(make_input)), offload=profile.compress_forward_backward,
                          model_id=model_id, retarget=for_model(make_input))
                 for make_input in inputs]
        return _gather(parts, combine_outputs)

    async def forward_backward_custom_async(self, data: Sequence[Datum], loss_fn: Any, *,
                                            regularizers: Sequence[Any] = (), parallel: bool = True
                                            ) -> APIFuture[ForwardBackwardOutput]:
        return self.forward_backward_custom(data, loss_fn, regularizers=regularizers, parallel=parallel)

    def grad_norm_history(self, last: int | None = None) -> list[Any]:
        """This model's recent custom-loss gradient norms (GradNormRecord, oldest first)."""
        from tinker_actors.training import grad_norms

        return grad_norms.history(self._context.runtime, self.model_id, last)

    def grad_norm_summary(self) -> Any:
        """Running statistics of this model's gradient norms (GradNormSummary, or None before any step)."""
        from tinker_actors.training import grad_norms

        return grad_norms.summary(self._context.runtime, self.model_id)

    # -- periodic checkpoints and recovery (logic in tinker_actors.training.checkpoint_policy and
    #    tinker_actors.recovery; docs/guides/recovery.md) --

    def enable_periodic_checkpoints(self, policy: CheckpointPolicy) -> None:
        """Save a checkpoint every N steps and/or T seconds, keep the last K (docs/guides/recovery.md). Saves take
        their place among this client's calls; a failed one is reported, never raised into training."""
        from tinker_actors.training.checkpoint_policy import enable_periodic_checkpoints

        enable_periodic_checkpoints(self._client_port(), policy)

    def checkpoint_status(self) -> CheckpointStatus | None:
        """What the periodic checkpoint policy did: kept checkpoints, failures (None if none is enabled)."""
        from tinker_actors.training.checkpoint_policy import checkpoint_status

        return checkpoint_status(self._client_port())

    def enable_recovery(self, policy: RecoveryPolicy | None = None) -> None:
        """If the service loses this client's model, recreate it from the last checkpoint and go on (opt-in;
        docs/guides/recovery.md). Calling it again replaces the policy."""
        from tinker_actors.recovery.policy import RecoveryPolicy as Policy
        from tinker_actors.recovery.port import enable_recovery

        if policy is not None and not isinstance(policy, Policy):
            raise InvalidInputError(f"expected a RecoveryPolicy, got {type(policy).__name__}")
        enable_recovery(self._client_port(), policy if policy is not None else Policy())

    def recovery_status(self) -> RecoveryStatus:
        """The recoveries so far (each a RecoveryReport), whether one runs now, the usable checkpoints."""
        from tinker_actors.recovery.port import recovery_status

        return recovery_status(self._client_port())

    def _client_port(self) -> ClientPort:
        from tinker_actors.clients.rest import RestClient
        from tinker_actors.recovery.port import ClientPort

        service = self._service
        return ClientPort(context=self._context, ledger=self._ledger, supervisor=service.clients_supervisor,
                          child_id=self._child_id, base_model=self._ledger.base_model,
                          reserve_model_seq=service._reserve_model_seq, save_state=self._periodic_save,
                          rest=lambda: RestClient(service))

    def _periodic_save(self, name: str) -> APIFuture[SaveWeightsResponse]:
        """``save_state`` for the checkpoint policy: if it fails, the calls queued behind it are still sent. Its
        names are the policy's own, so a name saved again (after a rollback) replaces the old checkpoint."""
        model_id = self.model_id
        options = {"overwrite": True} if self._context.profile.version == "0.38" else {}
        return self._json_op("save_weights", "/api/v1/save_weights", "SaveWeights",
                             lambda seq: SaveWeightsRequest(model_id=model_id, path=name, seq_id=seq, **options),
                             SaveWeightsResponse.model_validate, model_id=model_id, poisons=False)


def _fwd_retarget(codec: ClientCodec, fb_input: ForwardBackwardInput, backward: bool,
                  compress: bool) -> Callable[[str], Callable[[int], EncodedRequest]]:
    """A forward(_backward) chunk encoded anew for another model (recovery re-targets it)."""
    return lambda model_id: codec.prepare_forward_backward(model_id, fb_input, forward_only=not backward,
                                                           compress=compress).request


def _gather(futures: list[APIFuture[Any]], combine: Callable[[list[Any]], Any]) -> APIFuture[Any]:
    """One future for the chunks of a batch (T10, docs/concepts/failures.md).

    It waits for every chunk. All succeeded: the combined output. None ran: the first chunk's error. Some
    ran and some did not: :class:`PartialBatchError`, saying exactly which chunks were applied.
    """
    combined: APIFuture[Any] = APIFuture(on_cancel=lambda: [f.cancel() for f in futures])
    # The callbacks hold the thread-safe futures only: the chunks' APIFutures stay collectable once the caller
    # drops the combined one (their polling then stops).
    raws, target = [future.raw for future in futures], combined.raw
    remaining = [len(raws)]
    lock = threading.Lock()

    def on_done(_: concurrent.futures.Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        outputs: dict[int, Any] = {}
        errors: dict[int, BaseException] = {}
        for index, raw in enumerate(raws):
            error = ClientStoppedError("cancelled") if raw.cancelled() else raw.exception()
            if error is None:
                outputs[index] = raw.result()
            else:
                errors[index] = error
        if not errors:
            try:
                resolve(target, combine([outputs[index] for index in range(len(raws))]))
            except Exception as error:
                fail(target, error)
        elif not outputs:
            fail(target, errors[min(errors)])
        else:
            fail(target, PartialBatchError(
                f"{len(outputs)} of {len(raws)} chunks ran on the server; chunks {sorted(errors)} did not "
                f"(first error: {errors[min(errors)]})", applied_chunks=sorted(outputs),
                failed_chunks=sorted(errors), outputs=outputs, errors=errors))

    for raw in raws:
        raw.add_done_callback(on_done)
    return combined
