"""The service's state and the helpers every endpoint module shares.

One :class:`ServiceState` per running service, owned by the service's event loop: handlers and
operations run on that loop and touch it without locks. Only model math (and checkpoint file I/O)
runs on worker threads, through :meth:`ServiceState.run_blocking`; a model's operations are
serialised by its sequencer, so a trainer is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic

from tinker_actors.errors import UnsupportedFeatureError
from tinker_actors.local.config import LocalServiceConfig
from tinker_actors.local.engine.backend import Backend, LoraSpec, SamplerEngine, Trainer
from tinker_actors.local.engine.billing import BillingLedger
from tinker_actors.local.engine.future_store import FutureStore
from tinker_actors.local.engine.protocol_flags import ProtocolSettings
from tinker_actors.local.engine.sequencer import ModelSequencer
from tinker_actors.local.engine.sessions import SessionRegistry
from tinker_actors.local.engine.stats import RequestStats, TelemetryLog
from tinker_actors.local.engine.storage import DEFAULT_OWNER, FinishReason, InvalidNameError, SamplerRecord, Storage
from tinker_actors.local.server.faults import FaultRegistry
from tinker_actors.local.server.http_server import HttpRequest, HttpResponse
from tinker_actors.types import encode_json
from tinker_actors.types.unsupported import feature_in_words

__all__ = [
    "PARSE_INLINE_BYTES",
    "ApiError",
    "Call",
    "ModelSlot",
    "SamplerSlot",
    "ServiceState",
    "classify_error",
    "error_body",
    "ok",
    "validation_message",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

_ENGINE_CACHE_SIZE = 64
PARSE_INLINE_BYTES = 256 * 1024


class ApiError(Exception):
    """Answer ``status`` with ``{"error": message, "category": category}`` (a synchronous refusal)."""

    def __init__(self, status: int, message: str, category: str = "user",
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.headers = headers or []


def error_body(message: str, category: str) -> bytes:
    return json.dumps({"error": message, "category": category}).encode()


def ok(model: pydantic.BaseModel, status: int = 200) -> HttpResponse:
    return HttpResponse(status=status, body=encode_json(model))


def classify_error(error: BaseException) -> tuple[str, str]:
    """(message, category) of an operation's failure: the caller's mistakes are ``user`` errors.

    An ``OSError``'s message leaves out its file name (a path inside the data directory).
    """
    if isinstance(error, ValueError | KeyError | IndexError | InvalidNameError | pydantic.ValidationError):
        text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        return str(text), "user"
    if isinstance(error, OverflowError):  # a number from the request too big for an array
        return f"a number in the request is out of range ({error})", "user"
    if isinstance(error, OSError):
        return f"storage error in the local service: {error.strerror or type(error).__name__}", "server"
    return f"internal error in the local service: {type(error).__name__}: {error}", "server"


def validation_message(what: str, error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors()[:8]:
        location = ".".join(str(part) for part in item["loc"]) or "body"
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, UnsupportedFeatureError):  # the shared types refuse it: so does this server
            problems.append(f"{location}: {cause.feature} asks for {feature_in_words(cause.feature)}, which "
                            "the local service does not implement")
        else:
            problems.append(f"{location}: {item['msg']}")
    return f"invalid {what} request: " + "; ".join(problems)


@dataclass
class Call:
    """One request routed to an endpoint, with its path parameters."""

    request: HttpRequest
    endpoint: str
    params: dict[str, str]
    user: str = "default"
    """Who made the request: the user its credential belongs to (one user, "default", unless the service is
    configured with several keys). Every record a request creates carries it; every lookup filters by it."""
    never_complete: bool = False  # set by a fault: the submission's future must never finish
    # The top-level fields of a body that is not JSON (a protobuf forward_backward), once decoded: what
    # raw_field reads for it.
    decoded: dict[str, Any] | None = field(default=None, repr=False)
    _parsed: tuple[Any] | None = field(default=None, repr=False)  # the body's JSON, once decoded

    def json(self) -> Any:
        """The body's JSON (decoded once; later calls return the same object, not to be changed)."""
        if self._parsed is None:
            if not self.request.body:
                raise ApiError(400, f"{self.endpoint}: the request has no JSON body")
            try:
                self._parsed = (json.loads(self.request.body),)
            except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
                raise ApiError(400, f"{self.endpoint}: the body is not valid JSON ({error})") from error
        return self._parsed[0]

    def decoded_fields(self) -> dict[str, Any] | None:
        """The body's top-level fields if they were already decoded (JSON a handler parsed, or a decoded
        protobuf); None otherwise. Never parses: free for observers such as the request trace."""
        if self.decoded is not None:
            return self.decoded
        parsed = self._parsed[0] if self._parsed is not None else None
        return parsed if isinstance(parsed, dict) else None

    def raw_field(self, name: str) -> Any:
        """A top-level field of the body exactly as sent (before pydantic's coercions), or None."""
        if self.decoded is not None:
            return self.decoded.get(name)
        data = self.json()
        return data.get(name) if isinstance(data, dict) else None

    def parse(self, model: type[M]) -> M:
        """Validate the body as ``model``: a 400 with the field errors when it does not fit."""
        data = self.json()
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as error:
            raise ApiError(400, validation_message(self.endpoint, error)) from error

    async def parse_async(self, model: type[M]) -> M:
        """:meth:`parse`, on a worker thread for big bodies (megabytes of tokens), so that the
        service loop keeps answering polls and heartbeats meanwhile."""
        if len(self.request.body) < PARSE_INLINE_BYTES:
            return self.parse(model)
        return await asyncio.to_thread(self.parse, model)


@dataclass
class ModelSlot:
    """A training client's model: created asynchronously, then used in ``seq_id`` order.

    ``ready`` is set once creation finished: then either ``trainer`` is there or ``gone`` says why
    not (creation failed, unload_model, session expiry).
    """

    model_id: str
    session_id: str
    base_model: str
    lora: LoraSpec
    sequencer: ModelSequencer
    owner: str = DEFAULT_OWNER  # the user whose session created it: nobody else may use it
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    trainer: Trainer | None = None
    gone: str | None = None

    def release(self, reason: str) -> None:
        """Free the model (its trainer); later operations fail with ``reason``."""
        self.trainer = None
        self.gone = reason
        self.ready.set()


@dataclass
class SamplerSlot:
    """A sampling session; its engine is built on first use and may be evicted from memory."""

    record: SamplerRecord
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq_id -> (attempt token, request_id)
    building: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class EndedSession:
    """A session that ended, with the models and the (loaded) sampling sessions it had."""

    session_id: str
    model_ids: tuple[str, ...]
    sampler_ids: tuple[str, ...]


class ServiceState:
    """Everything one running service knows. Created on, and used from, the service loop."""

    def __init__(self, config: LocalServiceConfig, storage: Storage, backend: Backend,
                 faults: FaultRegistry, stats: RequestStats, telemetry: TelemetryLog,
                 protocol: ProtocolSettings | None = None, billing: BillingLedger | None = None) -> None:
        self.config = config
        self.storage = storage
        self.backend = backend
        self.faults = faults
        self.stats = stats
        self.telemetry = telemetry
        self.protocol = protocol if protocol is not None else ProtocolSettings()
        self.billing = billing if billing is not None else BillingLedger()  # budgets and usage per user
        self.futures = FutureStore(result_ttl_s=config.result_ttl_s)
        self.sessions = SessionRegistry(storage, timeout_s=config.session_timeout_s)
        self.models: dict[str, ModelSlot] = {}
        self.model_requests: dict[tuple[str, int], str] = {}  # (session, model_seq_id) -> request id
        self.samplers: dict[str, SamplerSlot] = {}
        self.expired_sessions: set[str] = set()
        # Told when a session ends (expired or finished), after its models and samplers are released: the
        # engine's other parts (inflight samplers, completion queues) free what they keep for them.
        self.session_end_listeners: list[Callable[[EndedSession], None]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._engines: OrderedDict[str, SamplerEngine] = OrderedDict()
        self.pending_samples = 0
        self.bound_port: int | None = None  # set by the service once it listens
        self._data_dir_texts = sorted({str(config.data_dir), str(config.data_dir.resolve())}, key=len, reverse=True)
        self._executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="tinker-local-model")

    @property
    def public_base_url(self) -> str:
        """Where clients reach this service: the configured ``public_url``, else the bound address.
        Absolute URLs the service hands out start with it (never with a request's ``Host`` header)."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        host = self.config.host
        port = self.bound_port if self.bound_port is not None else self.config.port
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def classify(self, error: BaseException) -> tuple[str, str]:
        """:func:`classify_error`, with the data directory's path taken out of the message."""
        message, category = classify_error(error)
        return self.redact(message), category

    def redact(self, text: str) -> str:
        """``text`` without the absolute path of the data directory (clients need not know it)."""
        for path in self._data_dir_texts:
            text = text.replace(path, "<data_dir>")
        return text

    async def run_blocking(self, work: Callable[[], T]) -> T:
        """Run model work on a worker thread (or inline for an instant backend)."""
        if self.backend.instant:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def expire_sessions(self) -> list[str]:
        """Expire silent sessions: their models and samplers are released."""
        expired = self.sessions.expire()
        for session_id in expired:
            self._end_session(session_id, f"session {session_id} expired (no heartbeat); the model was unloaded")
        return expired

    def finish_session(self, session_id: str, reason: FinishReason = "success", detail: str | None = None) -> bool:
        """End a session its client closed (``POST /sessions/{id}/finish``); False if it is not live."""
        if not self.sessions.finish(session_id, reason, detail):
            return False
        self._end_session(session_id, f"session {session_id} was finished by its client; the model was unloaded")
        return True

    def _end_session(self, session_id: str, reason: str) -> None:
        self.expired_sessions.add(session_id)
        models = [model_id for model_id, slot in self.models.items() if slot.session_id == session_id]
        for model_id in models:
            slot = self.models[model_id]
            if slot.gone is None:
                slot.release(reason)
        samplers = [sid for sid, s in self.samplers.items() if s.record.session_id == session_id]
        for sampler_id in samplers:
            del self.samplers[sampler_id]
            self.drop_engine(sampler_id)
        ended = EndedSession(session_id, tuple(models), tuple(samplers))
        for listener in self.session_end_listeners:
            listener(ended)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- sampler engines (a small LRU: ephemeral samplers can be many) ------------------------
    def cached_engine(self, sampler_id: str) -> SamplerEngine | None:
        engine = self._engines.get(sampler_id)
        if engine is not None:
            self._engines.move_to_end(sampler_id)
        return engine

    def cache_engine(self, sampler_id: str, engine: SamplerEngine) -> None:
        self._engines[sampler_id] = engine
        self._engines.move_to_end(sampler_id)
        while len(self._engines) > _ENGINE_CACHE_SIZE:
            self._engines.popitem(last=False)

    def drop_engine(self, sampler_id: str) -> None:
        self._engines.pop(sampler_id, None)

    def sampler_slot(self, sampler_id: str) -> SamplerSlot | None:
        slot = self.samplers.get(sampler_id)
        if slot is None:
            record = self.storage.sampler(sampler_id)
            if record is None or record.session_id in self.expired_sessions \
                    or self.sessions.finished(record.session_id):
                return None
            slot = self.samplers[sampler_id] = SamplerSlot(record)
        return slot
