"""ServiceClient: one session with a Tinker service, and the ServiceSupervisor its clients live under.

::

    root supervisor
    └── service-N (rest_for_one)
        ├── service          ServiceClientActor: the session, the negotiated protocol and its flag refreshes
        └── clients (one_for_one)
            ├── training-K*  TrainingClientActor per model
            └── sampling-K*  SamplingClientActor per sampling session

Before its session is created, a ServiceClient settles which wire protocol it speaks
(:mod:`tinker_actors.clients.protocol`, ``Config.protocol``); every client then goes through that
protocol's codec.

``with ServiceClient(...) as svc:`` (or ``svc.close()``) ends the session: heartbeats stop, the clients
stop and every pending future fails with :class:`ClientStoppedError`. Garbage collection does the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import structlog

from supervisors import ChildSpec, ExitReason, Restart, Strategy, SupervisedActor, Supervisor, Timer
from tinker_actors.auth.client_auth import ClientAuth
from tinker_actors.auth.sources import credential_source
from tinker_actors.clients.context import ClientContext
from tinker_actors.clients.protocol import DynamicFlags, ProtocolProfile, fetch_dynamic_flags, negotiate
from tinker_actors.clients.rest import RestClient
from tinker_actors.clients.sampling import RetryConfig, SamplingClient
from tinker_actors.clients.sdk_method import names_sdk_methods
from tinker_actors.clients.service_options import build_config
from tinker_actors.clients.session import EndSession, TrackSession
from tinker_actors.clients.training import TrainingClient, fetch_model_info
from tinker_actors.config import Config, RetryPolicy
from tinker_actors.errors import InvalidInputError, TinkerTimeoutError
from tinker_actors.futures import APIFuture, PollSettings, poll_future
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.logs import level_enabled
from tinker_actors.runtime import Runtime
from tinker_actors.runtime.ioloop import Outcome
from tinker_actors.telemetry import (
    SessionTelemetry,
    TelemetryWire,
    capture_exceptions,
    start_session_telemetry,
    stop_session_telemetry,
)
from tinker_actors.training.chunking import ChunkLimits
from tinker_actors.types import (
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    GetInfoResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    LoraConfig,
    ParsedCheckpointTinkerPath,
    SessionHeartbeatRequest,
    UntypedAPIFuture,
    WeightsInfoRequest,
    WeightsInfoResponse,
)

__all__ = ["FlagsRefreshed", "Negotiate", "RefreshFlags", "ServiceClient", "ServiceClientActor", "SessionInfo"]

log = structlog.get_logger("tinker_actors.protocol")


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Ask: the session id this actor serves."""


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


class ServiceClientActor(SupervisedActor):
    """The session of one ServiceClient and the protocol it speaks; first child of its ServiceSupervisor.

    It negotiates the protocol once (in the IoLoop) and keeps the server's dynamic flags fresh on a
    timer, at the interval the server gives. A restart resumes the timer; the profile lives in the
    shared context, so it survives.
    """

    def __init__(self, context: ClientContext) -> None:
        super().__init__()
        self._context = context
        self._timer: Timer | None = None
        self._refreshing = False

    def on_init(self) -> None:
        self._schedule_refresh()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SessionInfo):
            return self._context.session_id
        if isinstance(message, Negotiate):
            return self._negotiate()
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
            return profile

        future = context.submit(negotiated())
        actor = self.actor_ref
        future.add_done_callback(lambda _: _tell_quietly(actor, Negotiated()))
        return future

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

    Also takes the official SDK's ``timeout``, ``max_retries``, ``default_headers`` and ``default_query``,
    and any :class:`Config` field as a keyword override (applied on top of ``config=`` when both are given);
    see :mod:`tinker_actors.clients.service_options`. An unknown keyword raises
    :class:`~tinker_actors.clients.service_options.UnexpectedArgumentError` naming it.
    """

    _shared: ClassVar[dict[tuple[str, str], ServiceClient]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, user_metadata: dict[str, Any] | None = None, *, api_key: str | None = None,
                 base_url: str | None = None, config: Config | None = None,
                 chunk_limits: ChunkLimits | None = None, **overrides: Any) -> None:
        self._config = build_config(config, api_key=api_key, base_url=base_url, keywords=overrides)
        credential_source(self._config)  # no credential: a typed error before anything starts (docs/accounts.md)
        self._runtime = Runtime.get()
        self._auth = ClientAuth(self._runtime, self._config)  # the credential, and the tokens requests send
        self._auth_closer = weakref.finalize(self, self._auth.close)
        http = HttpLayer(self._config, tokens=self._auth.tokens)
        self._context = ClientContext(self._config, http, self._runtime, PollSettings.from_config(self._config))
        self._chunk_limits = chunk_limits  # tightens the protocol's own limits (ProtocolProfile.chunk_limits_for)
        self._model_seq = itertools.count()
        self._sampling_seq = itertools.count()
        self._seq_lock = threading.Lock()
        self._closed = False
        self._telemetry = SessionTelemetry("")
        name = f"service-{next(_service_ids)}"
        context = self._context
        # The clients live under their own one_for_one supervisor: a crashed TrainingClientActor is restarted
        # alone (rest_for_one over the clients would also restart every client created after it, failing
        # their in-flight samples for nothing). If the clients crash too often it gives up; the service
        # supervisor then starts a fresh, empty one: old handles get typed errors, new clients work.
        self.supervisor: Supervisor = self._runtime.start_service_supervisor(
            [ChildSpec("service", lambda: ServiceClientActor.start(context), restart=Restart.PERMANENT),
             Supervisor.child_spec("clients", (), strategy=Strategy.ONE_FOR_ONE, max_restarts=3, max_seconds=5.0,
                                   restart=Restart.PERMANENT, shutdown=20.0)], name=name)
        self._supervisor_name = name
        try:
            self._negotiate()
            profile = self._context.profile  # token exchange when the server enables it (pjwt_auth_enabled)
            self._auth.follow(exchange=profile.token_exchange, command_required=profile.credential_cmd_required,
                              http=http)
            session = self._context.call(self._create_session(user_metadata))
        except BaseException:
            self._teardown()
            raise
        self._context.session_id = session.session_id
        self._runtime.session_manager.tell(TrackSession(
            session.session_id, http, weakref.ref(self), self._config.heartbeat_interval,
            self._config.heartbeat_warning_after,
            self._context.profile.codec.encode_json(SessionHeartbeatRequest(session_id=session.session_id))))
        profile = self._context.profile
        self._telemetry = start_session_telemetry(
            self._runtime, self._config, http, session.session_id,
            wire=TelemetryWire(encode=profile.codec.encode_json, sdk_version=profile.sdk_version,
                               sends_process_uuid=profile.sends_process_uuid))
        self._finalizer = weakref.finalize(self, _close_quietly, self._runtime, name, session.session_id, context)

    def _negotiate(self) -> None:
        """Settle the protocol through the service actor (the network part runs in the IoLoop)."""
        limit = self._wait_limit()
        answer: concurrent.futures.Future[ProtocolProfile] = self.supervisor.child("service").ask(
            Negotiate(), timeout=10.0)
        try:
            answer.result(limit)
        except concurrent.futures.TimeoutError:
            answer.cancel()
            raise TinkerTimeoutError(f"no answer from {self._config.base_url} about the protocol within "
                                     f"{limit:.0f} s") from None

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
        return self._context.session_id

    @property
    def telemetry(self) -> SessionTelemetry:
        """This session's telemetry: ``log(...)``, ``flush()``, ``counters()`` (docs/telemetry.md)."""
        return self._telemetry

    def get_telemetry(self) -> SessionTelemetry | None:
        """As in the official SDK: this session's telemetry, or None when telemetry is disabled."""
        return self._telemetry if self._telemetry.enabled else None

    @property
    def config(self) -> Config:
        return self._config

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @classmethod
    def shared(cls, *, base_url: str, api_key: str | None) -> ServiceClient:
        """One ServiceClient per (base URL, key) in this process: used by unpickled handles. ``api_key`` None:
        the credential the environment gives (``TINKER_CREDENTIAL_CMD``, the stored key)."""
        with cls._shared_lock:
            client = cls._shared.get((base_url, api_key or ""))
            if client is None or client._closed:
                client = cls(base_url=base_url, api_key=api_key)
                cls._shared[(base_url, api_key or "")] = client
            return client

    async def _create_session(self, user_metadata: dict[str, Any] | None) -> CreateSessionResponse:
        profile = self._context.profile
        body = profile.codec.encode_json(CreateSessionRequest(
            tags=list(self._config.tags), user_metadata=user_metadata or {}, sdk_version=profile.sdk_version))
        response = await self._context.http.request(Purpose.SESSION, "POST", "/api/v1/create_session", content=body,
                                                    response_model=CreateSessionResponse, endpoint="create_session")
        return response.data

    def _reserve_sampling_seq(self) -> int:
        with self._seq_lock:
            return next(self._sampling_seq)

    # -- capabilities --

    def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        return self._context.call(self._get_server_capabilities())

    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await asyncio.wrap_future(self._context.submit(self._get_server_capabilities()))

    async def _get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        response = await self._context.http.request(Purpose.TRAINING, "GET", "/api/v1/get_server_capabilities",
                                                    response_model=GetServerCapabilitiesResponse)
        return response.data

    # -- training clients --

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None,
                                    train_mlp: bool = True, train_attn: bool = True, train_unembed: bool = True,
                                    user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return self.create_lora_training_client_future(base_model, rank, seed, train_mlp, train_attn, train_unembed,
                                                       user_metadata).result(self._wait_limit())

    async def create_lora_training_client_async(self, base_model: str, rank: int = 32, seed: int | None = None,
                                                train_mlp: bool = True, train_attn: bool = True,
                                                train_unembed: bool = True,
                                                user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return await self.create_lora_training_client_future(base_model, rank, seed, train_mlp, train_attn,
                                                             train_unembed, user_metadata)

    def create_lora_training_client_future(self, base_model: str, rank: int = 32, seed: int | None = None,
                                           train_mlp: bool = True, train_attn: bool = True,
                                           train_unembed: bool = True, user_metadata: dict[str, str] | None = None
                                           ) -> APIFuture[TrainingClient]:
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
        request = CreateModelRequest(session_id=self.session_id, model_seq_id=model_seq, base_model=base_model,
                                     user_metadata=user_metadata, lora_config=lora)
        raw = self._context.submit(self._create_model(request))
        future: APIFuture[tuple[str, GetInfoResponse | None]] = APIFuture(raw, on_cancel=raw.cancel)
        return future.map(lambda created: TrainingClient(self, created[0], base_model, info=created[1],
                                                         chunk_limits=self._chunk_limits))

    async def _create_model(self, request: CreateModelRequest) -> tuple[str, GetInfoResponse | None]:
        """The new model's id, and its info when the protocol fetches it at creation (``info_on_create``)."""
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

    def create_training_client_from_state(self, path: str, user_metadata: dict[str, str] | None = None
                                          ) -> TrainingClient:
        return self._from_state(path, user_metadata, optimizer=False)

    def create_training_client_from_state_with_optimizer(self, path: str,
                                                         user_metadata: dict[str, str] | None = None
                                                         ) -> TrainingClient:
        return self._from_state(path, user_metadata, optimizer=True)

    async def create_training_client_from_state_async(self, path: str, user_metadata: dict[str, str] | None = None
                                                      ) -> TrainingClient:
        return await self._from_state_async(path, user_metadata, optimizer=False)

    async def create_training_client_from_state_with_optimizer_async(
            self, path: str, user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return await self._from_state_async(path, user_metadata, optimizer=True)

    def _from_state(self, path: str, user_metadata: dict[str, str] | None, *, optimizer: bool) -> TrainingClient:
        info = self._context.call(self._weights_info(path))
        client = self._client_for_weights(info, user_metadata).result(self._wait_limit())
        (client.load_state_with_optimizer(path) if optimizer else client.load_state(path)).result(self._wait_limit())
        return client

    async def _from_state_async(self, path: str, user_metadata: dict[str, str] | None, *,
                                optimizer: bool) -> TrainingClient:
        info = await asyncio.wrap_future(self._context.submit(self._weights_info(path)))
        client = await self._client_for_weights(info, user_metadata)
        await (client.load_state_with_optimizer(path) if optimizer else client.load_state(path))
        return client

    def _client_for_weights(self, info: WeightsInfoResponse, user_metadata: dict[str, str] | None
                            ) -> APIFuture[TrainingClient]:
        if not info.is_lora or info.lora_rank is None:
            raise InvalidInputError("only LoRA checkpoints can be loaded into a new training client")
        return self.create_lora_training_client_future(info.base_model, rank=info.lora_rank,
                                                       user_metadata=user_metadata)

    async def _weights_info(self, path: str) -> WeightsInfoResponse:
        ParsedCheckpointTinkerPath.from_tinker_path(path)
        response = await self._context.http.request(
            Purpose.TRAINING, "POST", "/api/v1/weights_info",
            content=self._context.profile.codec.encode_json(WeightsInfoRequest(tinker_path=path)),
            response_model=WeightsInfoResponse)
        return response.data

    # -- sampling clients --

    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None,
                               retry_config: RetryConfig | None = None) -> SamplingClient:
        # The private form: the public future's telemetry watcher would race this call's own report of the
        # same error and could win with a traceback that does not name this call.
        return self._sampling_client_future(model_path, base_model, retry_config).result(self._wait_limit())

    async def create_sampling_client_async(self, model_path: str | None = None, base_model: str | None = None,
                                           retry_config: RetryConfig | None = None) -> SamplingClient:
        return await self._sampling_client_future(model_path, base_model, retry_config)

    def create_sampling_client_future(self, model_path: str | None = None, base_model: str | None = None,
                                      retry_config: RetryConfig | None = None) -> APIFuture[SamplingClient]:
        """A future of a SamplingClient on a new sampling session (bad arguments raise at once)."""
        return self._sampling_client_future(model_path, base_model, retry_config)

    def _sampling_client_future(self, model_path: str | None, base_model: str | None,
                                retry_config: RetryConfig | None) -> APIFuture[SamplingClient]:
        request = self._sampling_session_request(model_path, base_model)
        raw = self._context.submit(self._open_sampling_session(request))
        opened: APIFuture[tuple[str, str | None]] = APIFuture(raw, on_cancel=raw.cancel)
        return opened.map(lambda session: SamplingClient(self, session[0], base_model=session[1],
                                                         model_path=model_path, retry_config=retry_config))

    async def _open_sampling_session(self, request: CreateSamplingSessionRequest) -> tuple[str, str | None]:
        """The new session's id and its base model (for saved weights, asked of the server with
        ``GET samplers/{id}`` as the official SDK 0.38 does; None if that fails)."""
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
        return CreateSamplingSessionRequest(session_id=self.session_id,
                                            sampling_session_seq_id=self._reserve_sampling_seq(),
                                            base_model=base_model, model_path=model_path)

    async def _create_sampling_session(self, request: CreateSamplingSessionRequest) -> CreateSamplingSessionResponse:
        response = await self._context.http.request(
            Purpose.SESSION, "POST", "/api/v1/create_sampling_session",
            content=self._context.profile.codec.encode_json(request),
            response_model=CreateSamplingSessionResponse, endpoint="create_sampling_session")
        return response.data

    # -- REST --

    def create_rest_client(self) -> RestClient:
        return RestClient(self)

    # -- lifecycle --

    def _wait_limit(self) -> float:
        return self._config.no_progress_timeout + self._config.timeouts.default

    def circuit_states(self) -> dict[str, str]:
        """``{endpoint: closed | open | half_open}`` when ``Config.circuit_breaker`` is set (else empty)."""
        return self._context.http.circuit_states()

    def stats(self) -> dict[str, Any]:
        """Per-endpoint request counters and latency percentiles (FEATURES O3)."""
        return dict(self._context.http.stats())

    def close(self) -> None:
        """End the session: heartbeats stop, clients stop, pending futures fail with ClientStoppedError."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._teardown()

    def _teardown(self) -> None:
        _close_quietly(self._runtime, self._supervisor_name, self._context.session_id, self._context)
        self._auth_closer()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServiceClient(base_url={self._config.base_url!r}, session_id={self.session_id!r})"


def _close_quietly(runtime: Runtime, supervisor_name: str, session_id: str, context: ClientContext) -> None:
    if context.closed:
        return
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
    try:
        if runtime.ioloop.running:
            runtime.ioloop.submit(context.http.aclose()).result(5.0)
    except Exception:
        pass
    context.closed = True
