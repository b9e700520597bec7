"""LocalService: the embedded Tinker-compatible service, run on a background thread.

::

    with LocalService() as svc:              # temp data dir, free port, any API key accepted
        client = ServiceClient(base_url=svc.base_url, api_key=svc.api_key)
        svc.faults.add(FaultRule(endpoint="asample", status=503, times=2))
        svc.protocol.update_flags({"proto_compress_fwdbwd": True})   # what client/config answers

    LocalService(api_keys={"alice": "tml-a", "bob": "tml-b"})   # two users; or api_key_file="keys.txt"
    LocalService(protocol_flags={"pjwt_auth_enabled": True}, token_lifetime=60)   # SDKs exchange keys for JWTs

It serves both wire protocols at once, chosen per request as the client asks: 0.6.3's JSON and 0.38's
protobuf forward_backward requests and results (see ``docs/local-service.md``, "Protocols").

The service runs its own asyncio loop on a daemon thread; model math runs on a small worker pool,
so polls and heartbeats are answered while a model computes. :meth:`LocalService.restart` stops
everything (in-memory models and futures are lost, as in a real crash) and starts again on the
same port with the same data directory, so runs and checkpoints survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.api.app import LocalApp
from tinker_actors.local.config import (
    DEFAULT_MAX_BODY_BYTES,
    LocalServiceConfig,
    UnsafeBindError,
    bind_refusal,
    remote_bind_warning,
)
from tinker_actors.local.engine.accounts import Accounts, configured_keys
from tinker_actors.local.engine.backend import Backend, ZeroWorkBackend
from tinker_actors.local.engine.billing import BillingLedger
from tinker_actors.local.engine.model_faults import ModelFaults
from tinker_actors.local.engine.protocol_flags import DEFAULT_INLINE_RESULT_BYTES, ProtocolSettings
from tinker_actors.local.engine.state import ServiceState
from tinker_actors.local.engine.stats import RequestStats, TelemetryLog
from tinker_actors.local.engine.storage import Storage
from tinker_actors.local.engine.tokens import DEFAULT_TOKEN_LIFETIME_S, Authenticator, TokenIssuer
from tinker_actors.local.engine.work_limits import WorkLimits
from tinker_actors.local.server.faults import FaultRegistry
from tinker_actors.local.server.http_server import DEFAULT_LIMITS, HttpServer
from tinker_actors.local.server.wire_log import WireLog

__all__ = ["DEFAULT_API_KEY", "LocalService"]

_log = logging.getLogger(__name__)

# What `svc.api_key` returns when no key is configured (then any non-empty key is accepted).
DEFAULT_API_KEY = "tml-local-service"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


def _default_backend(zero_work: bool) -> Backend:
    if zero_work:
        return ZeroWorkBackend()
    from tinker_actors.local.engine.numpy_backend import NumpyBackend  # numpy model: imported only when used

    return NumpyBackend()


class LocalService:
    """Start with :meth:`start` (or ``with``); stop with :meth:`stop`. Thread-safe controls."""

    def __init__(self, data_dir: str | Path | None = None, port: int = 0, api_key: str | None = None, *,
                 host: str = "127.0.0.1", zero_work: bool = False, long_poll_s: float = 30.0,
                 session_timeout_s: float = 300.0, result_ttl_s: float = 3600.0, gap_timeout_s: float = 5.0,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_header_bytes: int = DEFAULT_LIMITS.max_header_bytes,
                 header_timeout_s: float = DEFAULT_LIMITS.header_timeout_s,
                 body_timeout_s: float = DEFAULT_LIMITS.body_timeout_s,
                 idle_timeout_s: float = DEFAULT_LIMITS.idle_timeout_s,
                 send_timeout_s: float = DEFAULT_LIMITS.send_timeout_s,
                 max_connections: int = DEFAULT_LIMITS.max_connections, allow_remote: bool = False,
                 workers: int = 2, max_pending_samples: int | None = None, archive_lifetime_s: float = 900.0,
                 fault_seed: int = 0, work_limits: WorkLimits | None = None, public_url: str | None = None,
                 backend: Backend | None = None, protocol_flags: Mapping[str, Any] | None = None,
                 inline_result_bytes: int = DEFAULT_INLINE_RESULT_BYTES,
                 api_keys: Sequence[str] | Mapping[str, str] | None = None,
                 api_key_file: str | os.PathLike[str] | None = None,
                 token_lifetime: float = DEFAULT_TOKEN_LIFETIME_S,
                 billing: Mapping[str, int | None] | None = None) -> None:
        # Who may call, and as which user; the signing secret of tokens. Both outlive restarts (as do
        # revocations), so a restart does not log anyone out.
        keys = configured_keys(api_key, api_keys, api_key_file)
        self._accounts = Accounts(keys)
        self._auth = Authenticator(self._accounts, TokenIssuer(token_lifetime))
        refusal = bind_refusal(host, has_api_key=bool(keys), allow_remote=allow_remote)
        if refusal is not None:  # before anything is created or bound
            raise UnsafeBindError(refusal)
        # The flags newer SDKs read from client/config and client/dynamic_config ({}: their defaults), and
        # the size from which a finished result is announced by its size first. Checked before anything
        # is created; changeable while running (svc.protocol, the admin endpoints, the CLI).
        protocol = ProtocolSettings(protocol_flags, inline_result_bytes=inline_result_bytes)
        # Token budgets per user ({"alice": 10_000, "*": 1_000}; None: everyone unlimited) and the usage they pay
        # for (svc.billing, the admin endpoints, the CLI); kept in <data_dir>/billing.json.
        ledger = BillingLedger(billing)
        self._owns_data_dir = data_dir is None
        root = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="tinker-local-"))
        self.config = LocalServiceConfig(
            data_dir=root, host=host, port=port, api_key=next(iter(keys.values()), None), api_keys=keys,
            token_lifetime_s=token_lifetime,
            zero_work=zero_work, long_poll_s=long_poll_s, session_timeout_s=session_timeout_s,
            result_ttl_s=result_ttl_s, gap_timeout_s=gap_timeout_s, max_body_bytes=max_body_bytes,
            max_header_bytes=max_header_bytes, header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s,
            idle_timeout_s=idle_timeout_s, send_timeout_s=send_timeout_s, max_connections=max_connections,
            allow_remote=allow_remote, workers=workers, max_pending_samples=max_pending_samples,
            archive_lifetime_s=archive_lifetime_s, fault_seed=fault_seed,
            work_limits=work_limits if work_limits is not None else WorkLimits(), public_url=public_url)
        try:
            self._http_limits = self.config.http_limits()  # validated now, not on the service thread
        except InvalidInputError:
            if self._owns_data_dir:
                shutil.rmtree(root, ignore_errors=True)
            raise
        self._backend = backend if backend is not None else _default_backend(zero_work)
        # These outlive restarts: rules stay armed, counts keep counting.
        self._model_faults = ModelFaults()  # drop/corrupt a model at once: svc.faults.drop_model(...)
        self.faults = FaultRegistry(seed=fault_seed, models=self._model_faults)
        self.stats = RequestStats()
        self.telemetry = TelemetryLog()
        self.protocol = protocol
        self.billing = ledger
        self.wire_log = WireLog()  # records what clients send, only while a test captures
        self._control = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._port: int | None = None
        self._restarts = 0

    def __repr__(self) -> str:  # never shows the API key
        state = "running" if self.running else "stopped"
        return f"LocalService({state}, base_url={self._base_url_or_none()!r}, data_dir={str(self.data_dir)!r})"

    # ---- properties --------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the local service has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def _base_url_or_none(self) -> str | None:
        return self.base_url if self._port is not None else None

    @property
    def api_key(self) -> str:
        """The key clients should send (user ``"default"``'s, or the first configured, or a placeholder an
        any-key service accepts)."""
        keys = self._accounts.keys()
        return keys.get("default", next(iter(keys.values()), DEFAULT_API_KEY))

    @property
    def api_keys(self) -> dict[str, str]:
        """User name -> key (``{"default": <placeholder>}`` when any key is accepted)."""
        return self._accounts.keys() or {"default": DEFAULT_API_KEY}

    @property
    def token_lifetime(self) -> float:
        """Seconds a token from ``POST /api/v1/auth/token`` lives (settable while running; tokens already
        issued keep theirs)."""
        return self._auth.tokens.lifetime_s

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        self._auth.tokens.lifetime_s = seconds

    def issue_token(self, user: str = "default") -> str:
        """A token for ``user``'s key, as ``POST /api/v1/auth/token`` would answer it (for tests)."""
        keys = self.api_keys
        if user not in keys:
            raise InvalidInputError(f"no user {user!r} in this service (users: {sorted(keys)})")
        credential = self._auth.check(keys[user], count_accepted=False)
        if credential is None:
            raise InvalidInputError(f"the key of user {user!r} has been revoked")
        return self._auth.issue(credential)

    def auth_counts(self) -> dict[str, int]:
        """What the credential check has seen (as ``GET /local/v1/auth``, ``counts``): ``keys_accepted``,
        ``tokens_accepted``, ``refused``, ``tokens_refused``, ``tokens_issued``."""
        return self._auth.counts()

    @property
    def running(self) -> bool:
        """Listening and serving (false while a restart is in progress)."""
        return self._thread is not None and self._thread.is_alive() and self._started.is_set() \
            and self._start_error is None

    @property
    def restarts(self) -> int:
        return self._restarts

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LocalService:
        with self._control:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._started.clear()
            self._start_error = None
            port = self._port if self._port is not None else self.config.port
            warning = remote_bind_warning(self.config.host, has_api_key=not self._accounts.open)
            if warning is not None:
                _log.warning("%s", warning)
            self._thread = threading.Thread(target=self._thread_main, args=(port,),
                                            name="tinker-local-service", daemon=True)
            self._thread.start()
            if not self._started.wait(_START_TIMEOUT_S):
                raise RuntimeError("the local service did not start in time")
            if self._start_error is not None:
                self._thread.join(_STOP_TIMEOUT_S)
                self._thread = None
                raise RuntimeError(f"the local service failed to start: {self._start_error}") from self._start_error
            return self

    def stop(self) -> None:
        """Stop serving (open connections are cut). A temporary data dir is removed."""
        self._halt()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        with self._control:
            self._halt()
            self._restarts += 1
            self.start()

    def _halt(self) -> None:
        with self._control:
            thread, loop, stop_event = self._thread, self._loop, self._stop_event
            if thread is None:
                return
            self._started.clear()
            if loop is not None and stop_event is not None:
                with contextlib.suppress(RuntimeError):  # the loop may already be closed
                    loop.call_soon_threadsafe(stop_event.set)
            thread.join(_STOP_TIMEOUT_S)
            self._thread = None

    def _restart_in_background(self) -> None:
        """For the ``restart`` fault: the loop cannot stop itself from inside a request."""
        threading.Thread(target=self.restart, name="tinker-local-restart", daemon=True).start()

    # ---- Python accessors for tests ------------------------------------------------------------
    def request_counts(self) -> dict[str, Any]:
        """Per-endpoint and per-(id, seq_id) counts (as ``GET /local/v1/requests``)."""
        return self.stats.snapshot()

    def telemetry_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.telemetry.snapshot()["events"]
        return events

    # ---- the service thread --------------------------------------------------------------------
    def _thread_main(self, port: int) -> None:
        try:
            asyncio.run(self._serve(port))
        except BaseException as error:  # reported to start(); never escapes the thread
            if not self._started.is_set():
                self._start_error = error
                self._started.set()
            else:
                _log.exception("local service stopped with an error")

    async def _serve(self, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        storage = Storage(self.data_dir)
        storage.load()
        self.billing.open(self.data_dir / "billing.json")
        state = ServiceState(self.config, storage, self._backend, self.faults, self.stats, self.telemetry,
                             self.protocol, billing=self.billing)
        self._model_faults.attach(state, self._loop)
        app = LocalApp(state, request_restart=self._restart_in_background, authenticator=self._auth)
        server = HttpServer(self.wire_log.wrap(app.handle), host=self.config.host, port=port,
                            limits=self._http_limits, admit=self.wire_log.wrap_admission(app.admit))
        try:
            await server.start()
            self._port = server.port
            state.bound_port = server.port  # for absolute URLs (archive redirects)
            self._started.set()
            housekeeping = asyncio.get_running_loop().create_task(self._housekeeping(state))
            await self._stop_event.wait()
            housekeeping.cancel()
        finally:
            self._model_faults.detach(state)  # the loaded models are lost: their runs say so (corrupted)
            await server.close()
            for slot in state.models.values():
                await slot.sequencer.close()
            for task in list(state.tasks):
                task.cancel()
            if state.tasks:
                await asyncio.gather(*state.tasks, return_exceptions=True)
            storage.flush_runs()
            self.billing.close()
            state.shutdown()
            self._loop = None

    async def _housekeeping(self, state: ServiceState) -> None:
        interval = max(0.05, min(1.0, self.config.session_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                state.expire_sessions()
                state.futures.expire()
                state.storage.expire()
                state.billing.flush()
            except Exception:
                _log.exception("local service: housekeeping failed")
