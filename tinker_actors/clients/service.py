"""ServiceClient: one session with a Tinker service, and the ServiceSupervisor its clients live under.

::

    root supervisor
    └── service-N (rest_for_one)
        ├── service          ServiceClientActor: the session, the negotiated protocol and its flag refreshes
        └── clients (one_for_one)
            ├── training-K*  TrainingClientActor per model
            └── sampling-K*  SamplingClientActor per sampling session

``ServiceClient(...)`` settles which wire protocol it speaks (:mod:`tinker_actors.clients.protocol`,
``Config.protocol``: one round trip, so a wrong URL or key fails at once); every client then goes through
that protocol's codec. It creates **no session**: the session is created on the server by the first call that
needs one (a training or sampling client, ``session_id``, ``telemetry``), once, with the client's
``user_metadata``, ``Config.project_id`` (``TINKER_PROJECT_ID``) and ``Config.display_name``, and heartbeated
from then on until the server answers 410. A REST client needs none.

``with ServiceClient(...) as svc:`` (or ``svc.close(status)``) ends the session: heartbeats stop, the
clients stop, every pending future fails with :class:`ClientStoppedError`, and (protocol 0.38) the server is
told how it ended (``POST sessions/{id}/finish``: ``success``, ``errored`` or ``interrupted``, bounded by
``Config.timeouts.finish_session``; a failure is logged once and the close completes). Garbage collection
stops everything too, without telling the server (the session then expires there).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import structlog

from supervisors import ChildSpec, ExitKind, ExitReason, Restart, Strategy, SupervisedActor, Supervisor, Timer
from tinker_actors.auth.client_auth import ClientAuth
from tinker_actors.auth.sources import credential_source
from tinker_actors.call_style import refuse_blocking, warn_deprecated
from tinker_actors.clients.backcompat import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
from tinker_actors.clients.context import ClientContext
from tinker_actors.clients.from_state import FromState, check_request, from_state_settings, load_creating_model
from tinker_actors.clients.protocol import DynamicFlags, ProtocolProfile, fetch_dynamic_flags, negotiate
from tinker_actors.clients.rest import RestClient
from tinker_actors.clients.sample_checks import stability_setting
from tinker_actors.clients.sampling import RetryConfig, SamplingClient
from tinker_actors.clients.sdk_method import names_sdk_methods
from tinker_actors.clients.service_options import build_config
from tinker_actors.clients.session import EndSession, TrackSession
from tinker_actors.clients.training import TrainingClient, fetch_model_info
from tinker_actors.config import Config, RetryPolicy
from tinker_actors.console import console_for
from tinker_actors.errors import ActorCrashedError, ClientStoppedError, InvalidInputError, TinkerTimeoutError
from tinker_actors.futures import APIFuture, PollSettings, detached, fail, poll_future, resolve
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.logs import level_enabled
from tinker_actors.runtime import Runtime
from tinker_actors.runtime.ioloop import Outcome
from tinker_actors.telemetry import (
    SessionTelemetry,
    TelemetryWire,
    capture_exceptions,
    start_session_telemetry,
    start_sessionless_telemetry,
    stop_session_telemetry,
    telemetry_for,
)
from tinker_actors.training.chunking import ChunkLimits
from tinker_actors.training.loss_handles import CustomLossDefinitionError, LossHandle, PerDatumLossFn, trace_loss
from tinker_actors.types import (
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    CreateSessionResponse,
    CustomLossInputRank,
    GetInfoResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    LoraConfig,
    OptimizerConfig,
    ParsedCheckpointTinkerPath,
    SessionHeartbeatRequest,
    UntypedAPIFuture,
    WeightsInfoRequest,
    WeightsInfoResponse,
)
from tinker_actors.types.sessions import (
    SESSION_FINISH_STATUSES,
    CreateSessionInProjectRequest,
    FinishSessionReason,
    FinishSessionRequest,
    SessionFinishStatus,
)

__all__ = ["FlagsRefreshed", "Negotiate", "OpenSession", "RefreshFlags", "ServiceClient", "ServiceClientActor",
           "SessionInfo", "SessionOpened", "SessionOpening"]

log = structlog.get_logger("tinker_actors.protocol")
session_log = structlog.get_logger("tinker_actors.session")

T = TypeVar("T")
FutureT = TypeVar("FutureT", bound=APIFuture[Any])  # the class of future a client-creation call returns


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Ask: the session id this actor serves ("" while none was created)."""


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Ask: the future of the session id. The first ask creates the session on the server; later asks get the
    same future (a new attempt after a failed one). Answers at once: the network part runs in the IoLoop."""


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """``create_session`` ended (either way)."""

    outcome: Outcome[CreateSessionResponse]


@dataclass(frozen=True, slots=True)
class SessionOpening:
    """What the session is created with, besides the config (tags, project, display name)."""

    user_metadata: dict[str, Any] | None
    owner: weakref.ref[Any]
    """The ServiceClient: its heartbeats stop when it is garbage-collected."""


@dataclass(frozen=True, slots=True)
class Negotiate:
    """Ask: settle the protocol (once). Answers the IoLoop's future of the :class:`ProtocolProfile`, which
    is adopted by the clients' context before the future resolves."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The negotiation ended (either way): refreshes of the server's dynamic flags may start."""


@dataclass(frozen=True, slots=True)
class RefreshFlags:
    """Timer tick (tests may send it too): fetch the server's dynamic flags now."""


@dataclass(frozen=True, slots=True)
class FlagsRefreshed:
    """A refresh ended; ``flags`` is None when it failed (the last flags stay, as in the official SDK)."""

    flags: DynamicFlags | None


_REFRESH_RETRY = RetryPolicy(max_retries=0, deadline=None)  # the next tick is the retry
_CHECK_RETRY = RetryPolicy(max_retries=0, deadline=None)  # check_accessible wants the error, not a wait


class ServiceClientActor(SupervisedActor):
    """The session of one ServiceClient and the protocol it speaks; first child of its ServiceSupervisor.

    It negotiates the protocol once (in the IoLoop), keeps the server's dynamic flags fresh on a timer, at
    the interval the server gives, and creates the session when it is first asked for (:class:`OpenSession`):
    once created, the session is heartbeated (the runtime's SessionManager) and its telemetry starts. A
    restart resumes the timer; the profile and the session id live in the shared context, so they survive.
    """

    def __init__(self, context: ClientContext, opening: SessionOpening) -> None:
        super().__init__()
        self._context = context
        self._opening = opening
        self._timer: Timer | None = None
        self._refreshing = False
        self._session: concurrent.futures.Future[str] | None = None

    def on_init(self) -> None:
        self._schedule_refresh()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SessionInfo):
            return self._context.session_id
        if isinstance(message, Negotiate):
            return self._negotiate()
        if isinstance(message, OpenSession):
            return self._open_session()
        if isinstance(message, SessionOpened):
            self._session_opened(message.outcome)
        if isinstance(message, Negotiated):
            self._schedule_refresh()
        elif isinstance(message, RefreshFlags):
            self._refresh()
        elif isinstance(message, FlagsRefreshed):
            self._refreshed(message)
        return None

    def _negotiate(self) -> concurrent.futures.Future[ProtocolProfile]:
        context = self._context

        async def negotiated() -> ProtocolProfile:
            profile = await negotiate(context.http, context.config)
            context.use_profile(profile)  # before the caller hears of it: every request after uses it
            flags = profile.flags
            context.http.billing.use_server_limit(
                flags.billing_exception_max_pause_duration_sec if flags is not None else None)
            return profile

        future = context.submit(negotiated())
        actor = self.actor_ref
        future.add_done_callback(lambda _: _tell_quietly(actor, Negotiated()))
        return future

    def _open_session(self) -> concurrent.futures.Future[str]:
        context = self._context
        if context.session_id:
            return _done_future(context.session_id)
        pending = self._session
        if pending is not None and not (pending.done() and (pending.cancelled() or pending.exception() is not None)):
            return pending
        if context.closed:
            raise ClientStoppedError("the ServiceClient is closed")
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._session = future
        context.runtime.ioloop.submit_and_tell(_create_session(context, self._opening.user_metadata),
                                               self.actor_ref, SessionOpened)
        return future

    def _session_opened(self, outcome: Outcome[CreateSessionResponse]) -> None:
        future = self._session
        if future is None or future.done():
            return
        if not outcome.ok or outcome.value is None:
            future.set_exception(outcome.error or ClientStoppedError("create_session ended without an answer"))
            return
        context, config = self._context, self._context.config
        created = outcome.value
        session_id = created.session_id
        _log_server_messages(created, config)
        context.session_id = session_id
        profile = context.profile
        context.runtime.session_manager.tell(TrackSession(
            session_id, context.http, self._opening.owner, config.heartbeat_interval, config.heartbeat_warning_after,
            profile.codec.encode_json(SessionHeartbeatRequest(session_id=session_id))))
        start_session_telemetry(context.runtime, config, context.http, session_id, wire=_telemetry_wire(profile))
        if level_enabled(config.log_level, "info"):
            session_log.info("session.created", session_id=session_id, project_id=config.project_id,
                             display_name=config.display_name)
        future.set_result(session_id)

    def _schedule_refresh(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        interval = self._context.profile.refresh_interval(self._context.config)
        if interval is not None and not self._context.closed:
            self._timer = self.send_after(interval, RefreshFlags())

    def _refresh(self) -> None:
        profile = self._context.profile
        if self._refreshing or profile.dynamic is None or self._context.closed:
            return
        self._refreshing = True
        try:
            self._context.runtime.ioloop.submit_and_tell(
                fetch_dynamic_flags(self._context.http, profile.sdk_version, retry=_REFRESH_RETRY, missing_ok=False),
                self.actor_ref, _refreshed_message)
        except Exception:  # the IoLoop is stopping: so is this client
            self._refreshing = False

    def _refreshed(self, message: FlagsRefreshed) -> None:
        self._refreshing = False
        if message.flags is not None and message.flags != self._context.profile.dynamic:
            if level_enabled(self._context.config.log_level, "debug"):
                log.debug("protocol.flags_refreshed", flags=message.flags.model_dump())
            self._context.profile = self._context.profile.with_dynamic(message.flags)
        self._schedule_refresh()

    def on_terminate(self, reason: ExitReason) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._session is not None and not self._session.done():
            # Its answer would reach no one: the waiters learn now (a restarted actor creates it anew).
            error: Exception = ClientStoppedError("the ServiceClient is closed") \
                if reason.kind is ExitKind.NORMAL else ActorCrashedError(
                    f"the service actor {reason.kind.value} while the session was being created", cause=reason.error)
            self._session.set_exception(error)


def _telemetry_wire(profile: ProtocolProfile) -> TelemetryWire:
    """How this client's protocol writes a telemetry batch."""
    return TelemetryWire(encode=profile.codec.encode_json, sdk_version=profile.sdk_version,
                         sends_process_uuid=profile.sends_process_uuid)


async def _create_session(context: ClientContext, user_metadata: dict[str, Any] | None) -> CreateSessionResponse:
    """``create_session`` with the tags, the project and the display name of the config (those set only)."""
    config, profile = context.config, context.profile
    named = {name: value for name, value in (("project_id", config.project_id),
                                             ("display_name", config.display_name)) if value is not None}
    body = profile.codec.encode_json(CreateSessionInProjectRequest(
        tags=list(config.tags), user_metadata=user_metadata or {}, sdk_version=profile.sdk_version, **named))
    response = await context.http.request(Purpose.SESSION, "POST", "/api/v1/create_session", content=body,
                                          response_model=CreateSessionResponse, endpoint="create_session")
    return response.data


def _log_server_messages(created: CreateSessionResponse, config: Config) -> None:
    """What the server said about the session (an SDK too old, a project's limits, ...), at its level."""
    for level, text in (("info", created.info_message), ("warning", created.warning_message),
                        ("error", created.error_message)):
        if text and level_enabled(config.log_level, level):
            getattr(session_log, level)("session.server_message", session_id=created.session_id, message=text)


async def _shared_result(future: concurrent.futures.Future[T]) -> T:
    """Await a future other callers share (the session's): a cancelled caller must not cancel it for all."""
    return await asyncio.shield(asyncio.wrap_future(future))


def _done_future(value: T) -> concurrent.futures.Future[T]:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    future.set_result(value)
    return future


def _refreshed_message(outcome: Outcome[DynamicFlags]) -> FlagsRefreshed:
    return FlagsRefreshed(outcome.value if outcome.ok else None)


def _tell_quietly(actor: Any, message: Any) -> None:
    with contextlib.suppress(Exception):
        actor.tell(message)


# ---- the handle -----------------------------------------------------------------------------------

_service_ids = itertools.count()


@names_sdk_methods  # x-sdk-method on the wire (protocol 0.38)
@capture_exceptions
class ServiceClient:
    """The entry point, as in the official SDK: ``ServiceClient(base_url=..., api_key=...)``.

    ``ServiceClient(user_metadata, project_id, *, display_name=...)`` as the official SDK 0.38: the session is
    created with them on first use (``project_id`` falls back to ``TINKER_PROJECT_ID``; both are also
    :class:`Config` fields). Also takes the official SDK's ``timeout``, ``max_retries``, ``default_headers`` and
    ``default_query``, and any :class:`Config` field as a keyword override (applied on top of ``config=`` when
    both are given); see :mod:`tinker_actors.clients.service_options`. An unknown keyword raises
    :class:`~tinker_actors.clients.service_options.UnexpectedArgumentError` naming it.
    """

    _shared: ClassVar[dict[tuple[str, str], ServiceClient]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, user_metadata: dict[str, Any] | None = None, project_id: str | None = None, *,
                 display_name: str | None = None, api_key: str | None = None, base_url: str | None = None,
                 config: Config | None = None, chunk_limits: ChunkLimits | None = None, **overrides: Any) -> None:
        named = {name: value for name, value in (("project_id", project_id), ("display_name", display_name))
                 if value is not None}
        self._config = build_config(config, api_key=api_key, base_url=base_url, keywords={**overrides, **named})
        credential_source(self._config)  # no credential: a typed error before anything starts (docs/accounts.md)
        if user_metadata is not None and not isinstance(user_metadata, dict):
            raise InvalidInputError(f"user_metadata must be a dict, got {type(user_metadata).__name__}")
        self._runtime = Runtime.get()
        self._auth = ClientAuth(self._runtime, self._config)  # the credential, and the tokens requests send
        self._auth_closer = weakref.finalize(self, self._auth.close)
        http = HttpLayer(self._config, tokens=self._auth.tokens)
        self._context = ClientContext(self._config, http, self._runtime, PollSettings.from_config(self._config))
        self._chunk_limits = chunk_limits  # tightens the protocol's own limits (ProtocolProfile.chunk_limits_for)
        self._model_seq = itertools.count()
        self._sampling_seq = itertools.count()
        self._seq_lock = threading.Lock()
        self._sessionless_lock = threading.Lock()  # the session-less telemetry starts once
        self._closed = False
        self._custom_losses: dict[str, str] = {}  # LossHandle.key -> name: a session creates each loss once
        self._telemetry: SessionTelemetry | None = None
        name = f"service-{next(_service_ids)}"
        context = self._context
        opening = SessionOpening(dict(user_metadata) if user_metadata else None, weakref.ref(self))
        # The clients live under their own one_for_one supervisor: a crashed TrainingClientActor is restarted
        # alone (rest_for_one over the clients would also restart every client created after it, failing
        # their in-flight samples for nothing). If the clients crash too often it gives up; the service
        # supervisor then starts a fresh, empty one: old handles get typed errors, new clients work.
        self.supervisor: Supervisor = self._runtime.start_service_supervisor(
            [ChildSpec("service", lambda: ServiceClientActor.start(context, opening), restart=Restart.PERMANENT),
             Supervisor.child_spec("clients", (), strategy=Strategy.ONE_FOR_ONE, max_restarts=3, max_seconds=5.0,
                                   restart=Restart.PERMANENT, shutdown=20.0)], name=name)
        self._supervisor_name = name
        try:
            self._negotiate()  # no session yet: it is created by the first call that needs one
            profile = self._context.profile  # token exchange when the server enables it (pjwt_auth_enabled)
            self._auth.follow(exchange=profile.token_exchange, command_required=profile.credential_cmd_required,
                              http=http)
        except BaseException:
            self._teardown()
            raise
        self._finalizer = weakref.finalize(self, _close_after_collection, self._runtime, name, context)
        _note_exit_once()

    def _negotiate(self) -> None:
        """Settle the protocol through the service actor (the network part runs in the IoLoop)."""
        answer: concurrent.futures.Future[ProtocolProfile] = self.supervisor.child("service").ask(
            Negotiate(), timeout=10.0)
        self._wait(answer, "the protocol")

    @property
    def protocol(self) -> ProtocolProfile:
        """The wire protocol this client speaks (``.version``: ``"0.38"`` or ``"0.6.3"``) and the server's flags
        (docs/protocols.md)."""
        return self._context.profile

    @property
    def clients_supervisor(self) -> Supervisor:
        """The supervisor of this ServiceClient's training and sampling client actors (valid across restarts)."""
        return self.supervisor.supervisor("clients")

    @property
    def session_id(self) -> str:
        """This client's session on the server. Asking for it creates the session if no call has yet (a blocking
        wait, bounded as the other blocking calls are)."""
        session_id = self._context.session_id
        # Not cancelled on a timeout: other callers may share that future (the session is created anyway).
        return session_id if session_id else self._wait(self._session_future(), "the session", cancel=False)

    @property
    def has_session(self) -> bool:
        """Whether the session was created on the server (by a call that needed it); never creates it."""
        return bool(self._context.session_id)

    def _session_future(self) -> concurrent.futures.Future[str]:
        """The future of the session id, created on the server by the first caller (no wait here)."""
        if self._context.session_id:
            return _done_future(self._context.session_id)
        if self._closed:
            raise ClientStoppedError("the ServiceClient is closed")
        future: concurrent.futures.Future[str] = self.supervisor.child("service").ask(OpenSession(), timeout=10.0)
        return future

    @property
    def telemetry(self) -> SessionTelemetry:
        """This session's telemetry: ``log(...)``, ``flush()``, ``counters()`` (docs/telemetry.md). Telemetry
        belongs to a session: asking for it creates the session if no call has yet."""
        if self._telemetry is None:
            session_id = self.session_id
            self._telemetry = telemetry_for(session_id) or SessionTelemetry(session_id)
        return self._telemetry

    def get_telemetry(self) -> SessionTelemetry | None:
        """As in the official SDK: this session's telemetry, or None when telemetry is disabled (then no session
        is created for it)."""
        if not self._config.telemetry_enabled:
            return None
        telemetry = self.telemetry
        return telemetry if telemetry.enabled else None

    def _sessionless_telemetry(self) -> SessionTelemetry | None:
        """The telemetry of this client's calls made without a session, started once, by the first REST client
        made before the session exists (:class:`RestClient`); None when telemetry is off, the protocol has no
        session-less mode (0.6.3) or the client is closed (docs/telemetry.md)."""
        context = self._context
        if context.sessionless_telemetry is not None or self._closed or not self._config.telemetry_enabled \
                or not context.profile.sessionless_telemetry:
            return context.sessionless_telemetry
        with self._sessionless_lock:
            if context.sessionless_telemetry is None:
                context.sessionless_telemetry = start_sessionless_telemetry(
                    self._runtime, self._config, context.http, wire=_telemetry_wire(context.profile))
        return context.sessionless_telemetry

    @property
    def config(self) -> Config:
        return self._config

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @classmethod
    def shared(cls, *, base_url: str, api_key: str | None) -> ServiceClient:
        """One ServiceClient per (base URL, key) in this process: used by unpickled handles and by a
        :class:`RestClient` built on its own. It creates a session only if something asks for one. ``api_key``
        None: the credential the environment gives (``TINKER_CREDENTIAL_CMD``, the stored key)."""
        with cls._shared_lock:
            client = cls._shared.get((base_url, api_key or ""))
            if client is None or client._closed:
                client = cls(base_url=base_url, api_key=api_key)
                cls._shared[(base_url, api_key or "")] = client
            return client

    @classmethod
    def shared_for(cls, *, base_url: str | None, api_key: str | None) -> ServiceClient:
        """:meth:`shared` with the URL and key resolved as ``ServiceClient(...)`` resolves them (arguments, else
        the environment): what ``RestClient(base_url=..., api_key=...)`` runs over."""
        config = build_config(None, api_key=api_key, base_url=base_url, keywords={})
        credential_source(config)  # a typed error when there is no credential at all
        return cls.shared(base_url=config.base_url,
                          api_key=config.api_key.get_secret_value() if config.api_key is not None else None)

    def _reserve_sampling_seq(self) -> int:
        with self._seq_lock:
            return next(self._sampling_seq)

    def _reserve_model_seq(self) -> int:
        """A ``model_seq_id`` of the session, for a model recreated by a training client's recovery."""
        with self._seq_lock:
            return next(self._model_seq)

    # -- capabilities --

    def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        return self._wait(self._context.submit(self._get_server_capabilities()), "get_server_capabilities")

    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await asyncio.wrap_future(self._context.submit(self._get_server_capabilities()))

    async def _get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        response = await self._context.http.request(Purpose.TRAINING, "GET", "/api/v1/get_server_capabilities",
                                                    response_model=GetServerCapabilitiesResponse)
        return response.data

    def get_console_url(self) -> str:
        """This session's page in the service's web console, or the sessions page while no session exists (none is
        created for it). ``Config.console_url``; the hosted console for the hosted service. The local service has
        none: :class:`~tinker_actors.console.NoConsoleError`."""
        console = console_for(self._config)
        session_id = self._context.session_id
        return console.session(session_id) if session_id else console.sessions()

    def check_accessible(self) -> None:
        """One ``get_server_capabilities``, neither retried nor paused on a 402: returns when the service accepted
        this client's credential, else raises the typed error at once (``AuthenticationError``, ``BillingError``,
        ``APIConnectionError``, ...). What :func:`tinker_actors.auth.raise_if_tinker_not_accessible` runs."""
        async def ask_once() -> None:
            await self._context.http.request(Purpose.TRAINING, "GET", "/api/v1/get_server_capabilities",
                                             response_model=GetServerCapabilitiesResponse, retry=_CHECK_RETRY,
                                             billing_pause=False, endpoint="check_accessible")
        self._wait(self._context.submit(ask_once()), "check_accessible")

    # -- training clients --

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None,
                                    train_mlp: bool = True, train_attn: bool = True, train_unembed: bool = True,
                                    user_metadata: dict[str, str] | None = None,
                                    optimizer: OptimizerConfig | None = None) -> BackcompatTrainingClientFuture:
        """A future of a TrainingClient on a new LoRA model, returned at once, as in the official SDK 0.38:
        ``.result()`` it, or ``await`` it. Bad arguments raise here, before anything is sent; a refusal by the
        server is raised by the future. Using the future as the client, as code for the SDK 0.6.3 does, still
        works with a deprecation warning (:mod:`tinker_actors.clients.backcompat`). ``optimizer``: the optimizer
        the model keeps for life (protocol 0.38; None: AdamW, the only one built here; each step's settings
        come with ``optim_step``)."""
        return self._lora_training_client(base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata,
                                          optimizer, into=BackcompatTrainingClientFuture)

    def _placeholder_session(self) -> str:
        """A request is checked on the caller's thread before the session exists: it names the session once
        the session is there (``model_copy`` in the IoLoop)."""
        return self._context.session_id or "pending"

    async def create_lora_training_client_async(self, base_model: str, rank: int = 32, seed: int | None = None,
                                                train_mlp: bool = True, train_attn: bool = True,
                                                train_unembed: bool = True,
                                                user_metadata: dict[str, str] | None = None,
                                                optimizer: OptimizerConfig | None = None) -> TrainingClient:
        """Deprecated, as in the official SDK 0.38: ``await service.create_lora_training_client(...)``."""
        warn_deprecated("ServiceClient.create_lora_training_client_async()",
                        "use `await service_client.create_lora_training_client(...)`")
        client: TrainingClient = await self._lora_training_client(
            base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata, optimizer, into=APIFuture)
        return client

    def create_lora_training_client_future(self, base_model: str, rank: int = 32, seed: int | None = None,
                                           train_mlp: bool = True, train_attn: bool = True,
                                           train_unembed: bool = True, user_metadata: dict[str, str] | None = None,
                                           optimizer: OptimizerConfig | None = None) -> APIFuture[TrainingClient]:
        """:meth:`create_lora_training_client`'s future, as a plain :class:`APIFuture` (the name kept from before
        that call returned a future)."""
        return self._lora_training_client(base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata,
                                          optimizer, into=APIFuture)

    def _lora_training_client(self, base_model: str, rank: int, seed: int | None, train_mlp: bool, train_attn: bool,
                              train_unembed: bool, user_metadata: dict[str, str] | None,
                              optimizer: OptimizerConfig | None, *, into: type[FutureT]) -> FutureT:
        if not (train_mlp or train_attn or train_unembed):
            raise InvalidInputError("at least one of train_mlp, train_attn and train_unembed must be True")
        if not base_model:
            raise InvalidInputError("base_model must be a non-empty model name")
        try:
            lora = LoraConfig(rank=rank, seed=seed, train_unembed=train_unembed, train_mlp=train_mlp,
                              train_attn=train_attn)
        except ValueError as invalid:
            raise InvalidInputError(f"invalid LoRA settings: {invalid}") from None
        with self._seq_lock:
            model_seq = next(self._model_seq)
        # AdamW is the default: left unset then (0.6.3's body has no such field; 0.38's carries the default).
        kind = optimizer.get("type") if isinstance(optimizer, dict) else getattr(optimizer, "type", None)
        chosen = {} if optimizer is None or kind == "adamw" else {"optimizer_config": optimizer}
        try:
            request = CreateModelRequest(session_id=self._placeholder_session(), model_seq_id=model_seq,
                                         base_model=base_model, user_metadata=user_metadata, lora_config=lora,
                                         **chosen)
        except InvalidInputError:
            raise  # typed already (UnsupportedFeatureError for an optimizer not built)
        except ValueError as invalid:
            raise InvalidInputError(f"invalid create_lora_training_client arguments: {invalid}") from None
        session = self._session_future()  # the first client creates the session (in the IoLoop, below)
        raw = self._context.submit(self._create_model(session, request))
        # Detached: dropping the future does not stop the creation (as in the official SDK 0.38).
        future: APIFuture[tuple[str, GetInfoResponse | None]] = detached(raw)
        return future.map(lambda created: TrainingClient(self, created[0], base_model, info=created[1],
                                                         chunk_limits=self._chunk_limits), into=into)

    async def _create_model(self, session: concurrent.futures.Future[str], request: CreateModelRequest
                            ) -> tuple[str, GetInfoResponse | None]:
        """The new model's id, and its info when the protocol fetches it at creation (``info_on_create``)."""
        request = request.model_copy(update={"session_id": await _shared_result(session)})
        http = self._context.http
        codec = self._context.profile.codec
        submitted = await http.request(Purpose.TRAINING, "POST", "/api/v1/create_model",
                                       content=codec.encode_json(request), response_model=UntypedAPIFuture,
                                       endpoint="create_model")
        created = await poll_future(http, submitted.data.request_id, "CreateModel", CreateModelResponse.model_validate,
                                    settings=self._context.poll, codec=codec,
                                    response_budget=self._context.response_budget)
        if not self._context.profile.info_on_create:
            return created.model_id, None
        return created.model_id, await fetch_model_info(self._context, created.model_id)

    def create_training_client_from_state(self, path: str, base_model: str | dict[str, str] | None = None,
                                          user_metadata: dict[str, str] | None = None,
                                          weights_access_token: str | None = None,
                                          optimizer: OptimizerConfig | None = None
                                          ) -> BackcompatTrainingClientFuture:
        """A future of a TrainingClient on a new model holding the weights saved at ``path`` (a fresh optimizer:
        ``optimizer``, AdamW by default), returned at once as :meth:`create_lora_training_client`'s. Protocol 0.38:
        one load that creates the model; ``base_model`` overrides the checkpoint's (it must be compatible);
        ``weights_access_token`` reads a checkpoint of another account (docs/reference.md). A dict as the second
        positional argument is 0.6.3's ``user_metadata``."""
        settings = from_state_settings("create_training_client_from_state", path, base_model, user_metadata,
                                       weights_access_token, optimizer, optimizer=False)
        return self._from_state(settings, into=BackcompatTrainingClientFuture)

    def create_training_client_from_state_with_optimizer(self, path: str,
                                                         base_model: str | dict[str, str] | None = None,
                                                         user_metadata: dict[str, str] | None = None,
                                                         weights_access_token: str | None = None
                                                         ) -> BackcompatTrainingClientFuture:
        """As :meth:`create_training_client_from_state`, with the optimizer (and its state) saved at ``path``."""
        settings = from_state_settings("create_training_client_from_state_with_optimizer", path, base_model,
                                       user_metadata, weights_access_token, None, optimizer=True)
        return self._from_state(settings, into=BackcompatTrainingClientFuture)

    async def create_training_client_from_state_async(self, path: str,
                                                      base_model: str | dict[str, str] | None = None,
                                                      user_metadata: dict[str, str] | None = None,
                                                      weights_access_token: str | None = None,
                                                      optimizer: OptimizerConfig | None = None) -> TrainingClient:
        """Deprecated, as in the official SDK 0.38: ``await service.create_training_client_from_state(...)``."""
        warn_deprecated("ServiceClient.create_training_client_from_state_async()",
                        "use `await service_client.create_training_client_from_state(...)`")
        settings = from_state_settings("create_training_client_from_state", path, base_model, user_metadata,
                                       weights_access_token, optimizer, optimizer=False)
        client: TrainingClient = await self._from_state(settings, into=APIFuture)
        return client

    async def create_training_client_from_state_with_optimizer_async(
            self, path: str, base_model: str | dict[str, str] | None = None,
            user_metadata: dict[str, str] | None = None, weights_access_token: str | None = None) -> TrainingClient:
        """Deprecated, as in the official SDK 0.38:
        ``await service.create_training_client_from_state_with_optimizer(...)``."""
        warn_deprecated("ServiceClient.create_training_client_from_state_with_optimizer_async()",
                        "use `await service_client.create_training_client_from_state_with_optimizer(...)`")
        settings = from_state_settings("create_training_client_from_state_with_optimizer", path, base_model,
                                       user_metadata, weights_access_token, None, optimizer=True)
        client: TrainingClient = await self._from_state(settings, into=APIFuture)
        return client

    def _from_state(self, settings: FromState, *, into: type[FutureT]) -> FutureT:
        if self._context.profile.version == "0.38":
            check_request(settings)  # a setting the types refuse: typed, on the caller's thread, nothing sent
            with self._seq_lock:
                model_seq = next(self._model_seq)
            session = self._session_future()  # the first client creates the session (in the IoLoop, below)
            raw = self._context.submit(self._from_state_in_one_load(session, settings, model_seq))
        else:
            if settings.needs_038:
                raise InvalidInputError(
                    f"create_training_client_from_state: {', '.join(settings.needs_038)} need protocol 0.38 (its "
                    f"one-call load); this client speaks {self._context.profile.version} (nothing was sent)")
            raw = self._context.submit(self._from_state_steps(settings))
        return detached(raw).map(lambda client: client, into=into)

    async def _from_state_in_one_load(self, session: concurrent.futures.Future[str], settings: FromState,
                                      model_seq: int) -> TrainingClient:
        """In the IoLoop, protocol 0.38: the load that creates the model, then its info (as the official SDK)."""
        model_id = await load_creating_model(self._context, settings, await _shared_result(session), model_seq)
        info = await fetch_model_info(self._context, model_id)
        base_model = info.model_data.model_name or settings.base_model or ""
        return TrainingClient(self, model_id, base_model, info=info, chunk_limits=self._chunk_limits)

    async def _from_state_steps(self, settings: FromState) -> TrainingClient:
        """In the IoLoop, protocol 0.6.3: the checkpoint's base model and rank, a new model of that shape, the
        state loaded."""
        path = settings.path
        info = await self._weights_info(path)
        client = await self._client_for_weights(info, settings.user_metadata, settings.optimizer_config)
        await (client.load_state_with_optimizer(path) if settings.optimizer else client.load_state(path))
        return client

    def _client_for_weights(self, info: WeightsInfoResponse, user_metadata: dict[str, str] | None,
                            optimizer: OptimizerConfig | None = None) -> APIFuture[TrainingClient]:
        if not info.is_lora or info.lora_rank is None:
            raise InvalidInputError("only LoRA checkpoints can be loaded into a new training client")
        return self.create_lora_training_client_future(info.base_model, rank=info.lora_rank,
                                                       user_metadata=user_metadata, optimizer=optimizer)

    async def _weights_info(self, path: str) -> WeightsInfoResponse:
        ParsedCheckpointTinkerPath.from_tinker_path(path)
        response = await self._context.http.request(
            Purpose.TRAINING, "POST", "/api/v1/weights_info",
            content=self._context.profile.codec.encode_json(WeightsInfoRequest(tinker_path=path)),
            response_model=WeightsInfoResponse)
        return response.data

    # -- sampling clients --

    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None,
                               retry_config: RetryConfig | None = None,
                               record_stability_info: bool = False) -> BackcompatSamplingClientFuture:
        """A future of a SamplingClient on a new sampling session (of saved weights at ``model_path``, or of
        ``base_model``), returned at once as :meth:`create_lora_training_client`'s: ``.result()`` or ``await``
        it. Bad arguments raise here, before anything is sent. ``record_stability_info`` (protocol 0.38): every
        sample of the client has the server record stability information for its sequences, for
        ``stable_reinforce`` training (docs/guides/sampling-outputs.md); on 0.6.3 the future fails with
        :class:`~tinker_actors.errors.UnsupportedFeatureError` before the sampling session is created."""
        return self._sampling_client_future(model_path, base_model, retry_config, record_stability_info,
                                            into=BackcompatSamplingClientFuture)

    async def create_sampling_client_async(self, model_path: str | None = None, base_model: str | None = None,
                                           retry_config: RetryConfig | None = None,
                                           record_stability_info: bool = False) -> SamplingClient:
        """Deprecated, as in the official SDK 0.38: ``await service.create_sampling_client(...)``."""
        warn_deprecated("ServiceClient.create_sampling_client_async()",
                        "use `await service_client.create_sampling_client(...)`")
        client: SamplingClient = await self._sampling_client_future(model_path, base_model, retry_config,
                                                                    record_stability_info, into=APIFuture)
        return client

    def create_sampling_client_future(self, model_path: str | None = None, base_model: str | None = None,
                                      retry_config: RetryConfig | None = None,
                                      record_stability_info: bool = False) -> APIFuture[SamplingClient]:
        """:meth:`create_sampling_client`'s future, as a plain :class:`APIFuture` (the name kept from before that
        call returned a future)."""
        return self._sampling_client_future(model_path, base_model, retry_config, record_stability_info,
                                            into=APIFuture)

    def _sampling_client_future(self, model_path: str | None, base_model: str | None,
                                retry_config: RetryConfig | None, record_stability_info: bool = False, *,
                                into: type[FutureT]) -> FutureT:
        stability_setting(record_stability_info)  # a typed error now; the protocol is checked once negotiated
        request = self._sampling_session_request(model_path, base_model)
        session = self._session_future()  # the first client creates the session (in the IoLoop, below)
        raw = self._context.submit(self._open_sampling_session(session, request, record_stability_info))
        opened: APIFuture[tuple[str, str | None]] = detached(raw)
        return opened.map(lambda session: SamplingClient(self, session[0], base_model=session[1],
                                                         model_path=model_path, retry_config=retry_config,
                                                         record_stability_info=record_stability_info),
                          into=into)

    async def _open_sampling_session(self, session: concurrent.futures.Future[str],
                                     request: CreateSamplingSessionRequest,
                                     record_stability_info: bool = False) -> tuple[str, str | None]:
        """The new session's id and its base model (for saved weights, asked of the server with
        ``GET samplers/{id}`` as the official SDK 0.38 does; None if that fails)."""
        request = request.model_copy(update={"session_id": await _shared_result(session)})
        # Negotiated by now: a 0.6.3 server cannot record stability info, so no sampler is made for it.
        stability_setting(record_stability_info, self._context.profile.version)
        response = await self._create_sampling_session(request)
        base_model = request.base_model
        if base_model is None and request.model_path is not None:
            with contextlib.suppress(Exception):
                base_model = (await asyncio.wait_for(self._get_sampler(response.sampling_session_id), 30)).base_model
        return response.sampling_session_id, base_model

    async def _get_sampler(self, sampler_id: str) -> GetSamplerResponse:
        response = await self._context.http.request(
            Purpose.TRAINING, "GET", f"/api/v1/samplers/{quote(sampler_id, safe=':')}",
            response_model=GetSamplerResponse, endpoint="get_sampler")
        return response.data

    def _sampling_session_request(self, model_path: str | None, base_model: str | None
                                  ) -> CreateSamplingSessionRequest:
        if model_path is None and base_model is None:
            raise InvalidInputError("create_sampling_client needs model_path or base_model")
        if model_path is not None:
            ParsedCheckpointTinkerPath.from_tinker_path(model_path)
        return CreateSamplingSessionRequest(session_id=self._placeholder_session(),
                                            sampling_session_seq_id=self._reserve_sampling_seq(),
                                            base_model=base_model, model_path=model_path)

    async def _create_sampling_session(self, request: CreateSamplingSessionRequest) -> CreateSamplingSessionResponse:
        response = await self._context.http.request(
            Purpose.SESSION, "POST", "/api/v1/create_sampling_session",
            content=self._context.profile.codec.encode_json(request),
            response_model=CreateSamplingSessionResponse, endpoint="create_sampling_session")
        return response.data

    # -- custom losses (tinker_actors.training.loss_handles) --

    def create_custom_loss(self, fn: PerDatumLossFn, input_ranks: Mapping[str, CustomLossInputRank]
                           ) -> APIFuture[LossHandle]:
        """A future of a :class:`LossHandle` for ``TrainingClient.forward_backward_custom``, as in the official SDK
        0.38: ``fn(logprobs, *inputs) -> (loss, metrics)`` runs once per datum (losses summed; metrics keyed
        ``custom/<name>:sum|mean``), ``input_ranks`` gives each parameter's rank (0, 1 or 2). ``fn`` is traced with
        torch.fx and checked here: a broken rule raises :class:`CustomLossDefinitionError` (an
        ``InvalidInputError``), no torch :class:`TorchRequiredError`, before anything is sent. The handle belongs to
        this session (created if no call has yet); each loss is created once per session. It always runs on the
        client, even where a server announces ``custom_loss_server_side`` (docs/custom-loss.md)."""
        traced = trace_loss(fn, input_ranks)
        with self._seq_lock:
            earlier = self._custom_losses.get(traced.key)
            if earlier is not None:
                raise CustomLossDefinitionError(f"create_custom_loss: this session already created {earlier!r}, the "
                                                "same traced loss; reuse its LossHandle")
            self._custom_losses[traced.key] = traced.name
        created, lock = self._custom_losses, self._seq_lock
        try:
            session = self._session_future()
        except BaseException:
            with lock:
                created.pop(traced.key, None)
            raise
        handle: APIFuture[LossHandle] = APIFuture()
        target = handle.raw  # the callback must not hold the APIFuture, nor cancel the shared session future

        def made(opened: concurrent.futures.Future[str]) -> None:
            error = ClientStoppedError("the session was not created: the ServiceClient stopped") \
                if opened.cancelled() else opened.exception()
            if error is not None:
                with lock:  # no session, no loss: a later call may create it once one exists
                    created.pop(traced.key, None)
                fail(target, error)
            else:
                resolve(target, replace(traced, session_id=opened.result()))

        session.add_done_callback(made)
        return handle

    # -- REST --

    def create_rest_client(self) -> RestClient:
        """A REST client over this client's connections; it needs no session and creates none."""
        return RestClient(self)

    def copy_weights(self, path: str, *, ttl_seconds: int | None = None,
                     weights_access_token: str | None = None) -> APIFuture[str]:
        """Copy a checkpoint into this client's project (``project_id``, else ``TINKER_PROJECT_ID``), as the
        official SDK 0.38: ``RestClient.copy_weights`` with that destination. The future's value is the copy's path."""
        return RestClient(self).copy_weights(path, self._config.project_id, ttl_seconds=ttl_seconds,
                                             weights_access_token=weights_access_token)

    # -- lifecycle --

    def _wait_limit(self) -> float:
        return self._config.no_progress_timeout + self._config.timeouts.default

    def _wait(self, future: concurrent.futures.Future[T], what: str, *, cancel: bool = True) -> T:
        """Wait for ``future`` as a blocking call does: at most ``_wait_limit()``, extended while requests of this
        client are paused on a 402 (billing) until that pause is over or gives up (it is bounded and announced).
        On a timeout the future is cancelled if ``cancel``. Refused where blocking would wait on itself
        (:func:`~tinker_actors.call_style.refuse_blocking`)."""
        if not future.done():
            refuse_blocking(f"A blocking ServiceClient call (waiting for {what})",
                            "Make it from a thread of your own, or use its async form.")
        limit = self._wait_limit()
        deadline = time.monotonic() + limit
        while True:
            try:
                return future.result(max(deadline - time.monotonic(), 0.0))
            except concurrent.futures.TimeoutError:
                billing = self._context.http.billing
                gives_up_at = billing.gives_up_at()
                if billing.paused and gives_up_at is not None and gives_up_at + limit > deadline:
                    deadline = gives_up_at + limit
                    continue
                if cancel:
                    future.cancel()
                raise TinkerTimeoutError(f"no answer from {self._config.base_url} about {what} within "
                                         f"{limit:.0f} s") from None

    def circuit_states(self) -> dict[str, str]:
        """``{endpoint: closed | open | half_open}`` when ``Config.circuit_breaker`` is set (else empty)."""
        return self._context.http.circuit_states()

    def stats(self) -> dict[str, Any]:
        """Per-endpoint request counters and latency percentiles (FEATURES O3)."""
        return dict(self._context.http.stats())

    def close(self, status: SessionFinishStatus = "success", detail: str | None = None) -> APIFuture[None]:
        """End the session, as the official SDK 0.38's ``close(status, detail)``: heartbeats stop, the clients
        stop (pending futures fail with ClientStoppedError), and the server is told how the session ended
        (``"success"``, ``"errored"`` or ``"interrupted"``; protocol 0.38 only, and only if a session was
        created). Blocks at most ``Config.timeouts.finish_session`` for the server; a failed finish is logged
        once and the close completes. Returns a done future (``close(...).result()`` as in the official SDK).
        Closing again does nothing."""
        if status not in SESSION_FINISH_STATUSES:
            raise InvalidInputError(f"close(status=...) takes one of {', '.join(SESSION_FINISH_STATUSES)}, "
                                    f"got {status!r}")
        if detail is not None and not isinstance(detail, str):
            raise InvalidInputError(f"close(detail=...) takes a str or None, got {type(detail).__name__}")
        if not self._closed:
            self._closed = True
            self._finalizer.detach()
            _close_quietly(self._runtime, self._supervisor_name, self._context,
                           finish=FinishSessionRequest(reason=FinishSessionReason(type=status), detail=detail))
            self._auth_closer()
        return APIFuture(_done_future(None))

    def _teardown(self) -> None:
        _close_quietly(self._runtime, self._supervisor_name, self._context)
        self._auth_closer()

    def __enter__(self) -> ServiceClient:
        if self._closed:
            raise ClientStoppedError("the ServiceClient is closed")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # As the official SDK: no exception is a success, an Exception an error, anything else (Ctrl-C,
        # SystemExit) an interruption.
        status: SessionFinishStatus = "success" if exc_type is None else (
            "errored" if issubclass(exc_type, Exception) else "interrupted")
        self.close(status)

    def __repr__(self) -> str:
        return f"ServiceClient(base_url={self._config.base_url!r}, session_id={self._context.session_id or None!r})"


_exiting = False
_exit_hook_registered = False
_exit_hook_lock = threading.Lock()


def _note_exit_once() -> None:
    """Register, once and after the first client's finalizer (atexit runs hooks last-in first-out), a hook that
    marks interpreter exit before weakref runs the remaining finalizers."""
    global _exit_hook_registered
    with _exit_hook_lock:
        if not _exit_hook_registered:
            atexit.register(_mark_exiting)
            _exit_hook_registered = True


def _mark_exiting() -> None:
    global _exiting
    _exiting = True


def _close_after_collection(runtime: Runtime, supervisor_name: str, context: ClientContext) -> None:
    """The finalizer of a ServiceClient nobody holds any more.

    Garbage collection runs it on whichever thread allocated at that moment: an actor's own thread (whose stop the
    teardown waits for) or one inside a lock the teardown needs. The teardown waits, so it runs on a thread of its
    own; at interpreter exit it runs in place, where a daemon thread would be cut short.
    """
    if not _exiting:
        try:
            threading.Thread(target=_close_quietly, args=(runtime, supervisor_name, context),
                             name="tinker-service-teardown", daemon=True).start()
            return
        except RuntimeError:  # no new threads at this point of shutdown
            pass
    _close_quietly(runtime, supervisor_name, context)


def _close_quietly(runtime: Runtime, supervisor_name: str, context: ClientContext, *,
                   finish: FinishSessionRequest | None = None) -> None:
    """Stop everything of one ServiceClient, whatever state it is in; with ``finish``, also tell the server how
    its session ended (after the clients and the telemetry stopped, before the connections close)."""
    if context.closed:
        return
    session_id = context.session_id
    try:
        if session_id:
            runtime.session_manager.tell(EndSession(session_id))
    except Exception:
        pass
    with contextlib.suppress(Exception):
        runtime.stop_service_supervisor(supervisor_name, timeout=15.0)
    # After the clients (their last errors are reported), before the HTTP layer closes.
    with contextlib.suppress(Exception):
        stop_session_telemetry(runtime, session_id)
    sessionless = context.sessionless_telemetry
    if sessionless is not None:
        with contextlib.suppress(Exception):
            stop_session_telemetry(runtime, sessionless.session_id)
    if finish is not None and session_id and context.profile.finishes_sessions:
        _finish_session(runtime, context, session_id, finish)
    try:
        if runtime.ioloop.running:
            runtime.ioloop.submit(context.http.aclose()).result(5.0)
    except Exception:
        pass
    context.closed = True


def _finish_session(runtime: Runtime, context: ClientContext, session_id: str, finish: FinishSessionRequest) -> None:
    """``POST sessions/{id}/finish``, bounded by ``Config.timeouts.finish_session``; a failure is logged (once:
    a client closes once) and swallowed: the close goes on, and the server expires the session."""
    config = context.config
    bound = config.timeouts.finish_session

    async def finish_it() -> None:
        # No billing pause here: a close must not wait an hour. A couple of quick retries, all within the bound.
        await context.http.request(
            Purpose.SESSION, "POST", f"/api/v1/sessions/{quote(session_id, safe='')}/finish",
            content=context.profile.codec.encode_json(finish), timeout=bound, endpoint="finish_session",
            retry=RetryPolicy(max_retries=2, base_delay=0.2, max_delay=1.0, deadline=bound), billing_pause=False)

    try:
        future = runtime.ioloop.submit(finish_it())
    except Exception as error:  # the IoLoop is stopping
        _finish_failed(config, session_id, error)
        return
    try:
        future.result(bound + 1.0)
    except concurrent.futures.TimeoutError:
        future.cancel()
        _finish_failed(config, session_id, TinkerTimeoutError(f"no answer within {bound:.0f} s"))
    except Exception as error:
        _finish_failed(config, session_id, error)


def _finish_failed(config: Config, session_id: str, error: BaseException) -> None:
    if level_enabled(config.log_level, "warning"):
        session_log.warning("session.finish_failed", session_id=session_id, error=str(error),
                            hint="the client closed anyway; the server ends the session when its heartbeats stop")
