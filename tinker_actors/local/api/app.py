"""Request dispatch: routing, the API key check, fault rules, and turning errors into answers.

Order for each request: route (404/405) -> ``X-API-Key``, a key or a token the service issued (401,
with the ``invalid_token`` signal for a refused token; else its user becomes the call's ``user``; 403 when an
admin endpoint is called by a user other than the admin) ->
count -> fault rules (not for admin endpoints) -> handler. The first two also run as the HTTP server's
admission check, once the headers are in: a request refused there is answered before its body is read. A handler's
:class:`ApiError` becomes ``{"error", "category"}`` with its status (the service's own absolute paths
replaced by placeholders); any other exception becomes a generic 500 and is logged: malformed input
never takes the service down, and no answer tells a client where the service keeps its files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from tinker_actors.local.api.admin_api import AdminApi
from tinker_actors.local.api.audit_api import AuditApi
from tinker_actors.local.api.auth_api import AuthApi
from tinker_actors.local.api.billing_api import BillingApi
from tinker_actors.local.api.copy_weights_api import CopyWeightsApi
from tinker_actors.local.api.exports_api import ExportsApi
from tinker_actors.local.api.model_faults_api import ModelFaultsApi
from tinker_actors.local.api.rest_api import RestApi
from tinker_actors.local.api.routes import Route, Router
from tinker_actors.local.api.sampling_api import SamplingApi
from tinker_actors.local.api.session_api import SessionApi
from tinker_actors.local.api.training_api import TrainingApi
from tinker_actors.local.engine.accounts import Accounts, Identity
from tinker_actors.local.engine.model_faults import lose_named_model
from tinker_actors.local.engine.state import ApiError, Call, ServiceState, error_body
from tinker_actors.local.engine.tokens import Authenticator, InvalidTokenError, TokenIssuer
from tinker_actors.local.engine.trace import RequestTracer
from tinker_actors.local.server.faults import MODEL_ACTIONS, FaultAction, FaultMatch
from tinker_actors.local.server.http_server import DROP_CONNECTION, DropConnection, HttpRequest, HttpResponse

__all__ = ["FUTURE_ENDPOINTS", "LocalApp", "PathRedactor"]

_log = logging.getLogger(__name__)

# Endpoints that answer with a future: a never_complete fault accepts them and never finishes them.
FUTURE_ENDPOINTS = frozenset({
    "create_model", "forward", "forward_backward", "optim_step", "save_weights",
    "save_weights_for_sampler", "load_weights", "unload_model", "asample",
})
_MALFORMED_JSON = b'{"request_id": "req-trunc'
# Admin endpoints every user may call: health (a liveness probe: "ok" and counts, nobody's data). The other
# admin endpoints act on or show every user's traffic, budgets and usage: only the admin calls them (403,
# not 404: their paths are documented, so hiding them protects nothing and would read as a version mismatch).
_EVERY_USERS_ADMIN_ENDPOINTS = frozenset({"admin_health"})


class LocalApp:
    """Answers one HTTP request at a time (many concurrently) against a :class:`ServiceState`."""

    def __init__(self, state: ServiceState, *, request_restart: Callable[[], None],
                 authenticator: Authenticator | None = None) -> None:
        self._state = state
        if authenticator is None:  # the configured keys (or any key), and tokens signed for this app only
            authenticator = Authenticator(Accounts(state.config.api_keys),
                                          TokenIssuer(state.config.token_lifetime_s))
        self._auth = authenticator
        self._request_restart = request_restart
        self._router = Router()
        self._tracer = RequestTracer(state)  # every answered request, per session (trace export)
        rest = RestApi(state)
        SessionApi(state).register(self._router)
        TrainingApi(state, user_of_credential=self._user_of_credential).register(self._router)
        SamplingApi(state).register(self._router)
        rest.register(self._router)
        ExportsApi(state, self._tracer).register(self._router)
        CopyWeightsApi(state, user_of_credential=self._user_of_credential).register(self._router)
        AuditApi(state, is_admin=lambda user: user == self._auth.accounts.admin).register(self._router)
        AuthApi(authenticator).register(self._router)
        AdminApi(state, rest).register(self._router)
        ModelFaultsApi(state, request_restart).register(self._router)
        BillingApi(state).register(self._router)
        self._forever = asyncio.Event()  # never set: what held requests wait on
        self._redactor = PathRedactor(state.config.data_dir)

    def _user_of_credential(self, credential: str) -> str | None:
        """The user an API key or token of this service belongs to (None: not one)."""
        try:
            accepted = self._auth.check(credential, count_accepted=False)
        except InvalidTokenError:
            return None
        return accepted.identity.user if accepted is not None else None

    @property
    def endpoints(self) -> list[str]:
        return self._router.endpoints()

    def admit(self, request: HttpRequest) -> HttpResponse | None:
        """The answer for a request refused on its headers alone (404, 405, 401), else None."""
        checked = self._check(request, count_accepted=False)  # an accepted one is counted once handled
        return checked if isinstance(checked, HttpResponse) else None

    async def handle(self, request: HttpRequest) -> HttpResponse | DropConnection:
        checked = self._check(request)
        if isinstance(checked, HttpResponse):
            return checked
        route, params, identity = checked
        call = Call(request=request, endpoint=route.endpoint, params=params)
        if identity is not None:
            call.user = identity.user
        started = self._tracer.clock()
        answer: HttpResponse | DropConnection | None = None  # None: cancelled before an answer
        try:
            answer = await self._dispatch(route, call)
            return answer
        finally:
            try:
                self._tracer.record(call, answer, started)
            except Exception:  # a trace must never cost a request its answer
                _log.exception("local service: tracing %s failed", route.endpoint)

    async def _dispatch(self, route: Route, call: Call) -> HttpResponse | DropConnection:
        request = call.request
        self._state.stats.received(route.endpoint)
        if not route.admin:
            fault = self._state.faults.check(route.endpoint, request.path, request.method,
                                             self._request_type(route, request))
            if fault is not None:
                self._state.stats.faulted(route.endpoint)
                return await self._apply_fault(fault, route, call)
        return await self._invoke(route, call)

    def _check(self, request: HttpRequest, *,
               count_accepted: bool = True) -> tuple[Route, dict[str, str], Identity | None] | HttpResponse:
        match = self._router.match(request.method, request.path)
        if match is None:
            return _error(404, f"no endpoint {request.method} {request.path}")
        route = match.route
        if route is None:
            return _error(405, f"method {request.method} is not allowed on {request.path}")
        if not route.auth:
            return route, match.params, None
        try:
            credential = self._auth.check(request.headers.get("x-api-key", ""), count_accepted=count_accepted)
        except InvalidTokenError as error:  # the signal (RFC 6750) on which SDKs get a fresh token and replay
            return _unauthorized(f"invalid token in X-API-Key: {error}", token=True)
        if credential is None:
            return _unauthorized("missing or invalid X-API-Key header", token=False)
        if route.admin and route.endpoint not in _EVERY_USERS_ADMIN_ENDPOINTS \
                and not self._auth.accounts.is_admin(credential.identity):
            return _error(403, f"{request.method} {request.path} is an admin endpoint: only the service's admin "
                               f"(user {self._auth.accounts.admin!r}) may call it; send the admin's API key "
                               "or a token issued for it")
        return route, match.params, credential.identity

    def _request_type(self, route: Route, request: HttpRequest) -> str | None:
        """For polls: the type of the polled future (so a rule can target, e.g., Sample futures only)."""
        if route.endpoint != "retrieve_future":
            return None
        try:
            request_id = json.loads(request.body).get("request_id")
        except (ValueError, AttributeError):
            return None
        return self._state.futures.request_type(request_id) if isinstance(request_id, str) else None

    async def _invoke(self, route: Route, call: Call) -> HttpResponse:
        try:
            return await route.handler(call)
        except ApiError as error:
            return _error(error.status, self._redactor.redact(error.message), error.category, error.headers)
        except Exception:
            _log.exception("local service: %s failed", route.endpoint)
            return _error(500, f"internal error in the local service while handling {route.endpoint}",
                          "server")

    async def _apply_fault(self, fault: FaultMatch, route: Route, call: Call) -> HttpResponse | DropConnection:
        rule = fault.rule
        if rule.delay_s > 0:
            await asyncio.sleep(rule.delay_s)
        action = rule.action
        if action is FaultAction.DELAY:
            return await self._invoke(route, call)
        if action is FaultAction.DROP:
            return DROP_CONNECTION
        if action is FaultAction.DROP_AFTER:
            await self._invoke(route, call)
            return DROP_CONNECTION
        if action is FaultAction.MALFORMED_JSON:
            return HttpResponse(200, _MALFORMED_JSON)
        if action is FaultAction.RESTART:
            self._request_restart()
            return DROP_CONNECTION
        if action in MODEL_ACTIONS:  # lose the model the request names, then serve the request
            lose_named_model(self._state, call, corrupt=action is FaultAction.CORRUPT_MODEL)
            return await self._invoke(route, call)
        if action is FaultAction.NEVER_COMPLETE:
            if route.endpoint in FUTURE_ENDPOINTS:
                call.never_complete = True
                return await self._invoke(route, call)
            await self._forever.wait()  # held until the connection is cut at shutdown
            return DROP_CONNECTION
        return _fault_status(rule.status, rule.body, rule.headers, rule.retry_after, rule.queue_state, call)


class PathRedactor:
    """Replaces the service's own absolute paths (data directory, code, Python, home, working
    directory) in an error message by placeholders: answers must not reveal the server's layout."""

    def __init__(self, data_dir: Path) -> None:
        roots: dict[str, str] = {}
        code = Path(__file__).resolve().parents[3]  # the checkout or site-packages holding tinker_actors
        for path in (sys.base_prefix, sys.prefix, str(code), str(Path.home()), os.getcwd()):
            roots[str(path)] = "<server path>"
        roots[str(data_dir)] = roots[str(data_dir.resolve())] = "<data_dir>"
        usable = sorted((root for root in roots if os.path.isabs(root) and len(root.rstrip("/\\")) > 1),
                        key=len, reverse=True)
        self._placeholders = roots
        # a root matches only as a whole path prefix: not followed by more of a file name
        self._pattern = re.compile("|".join(re.escape(root) + r"(?![\w.-])" for root in usable)) if usable else None

    def redact(self, message: str) -> str:
        if self._pattern is None:
            return message
        return self._pattern.sub(lambda found: self._placeholders[found.group(0)], message)


def _error(status: int, message: str, category: str = "user",
           headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, error_body(message, category), headers=list(headers or []))


def _unauthorized(message: str, *, token: bool) -> HttpResponse:
    """401, with ``detail`` too (what the official CLI's auth commands print) and, for a refused token,
    ``WWW-Authenticate: Bearer error="invalid_token"`` (what tells an SDK to get a fresh token)."""
    body = json.dumps({"error": message, "category": "user", "detail": message}).encode()
    headers = [("WWW-Authenticate", 'Bearer error="invalid_token"')] if token else []
    return HttpResponse(401, body, headers=headers)


def _fault_status(status: int, body: dict[str, object] | str | None, headers: dict[str, str],
                  retry_after: float | None, queue_state: str, call: Call) -> HttpResponse:
    out_headers = list(headers.items())
    if retry_after is not None:
        value = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        out_headers.append(("Retry-After", value))
    if isinstance(body, str):
        return HttpResponse(status, body.encode(), headers=out_headers)
    if body is None:
        if status == 408:
            request_id = ""
            try:
                parsed = json.loads(call.request.body or b"{}")
                if isinstance(parsed, dict):
                    request_id = str(parsed.get("request_id", ""))
            except ValueError:
                pass
            body = {"type": "try_again", "request_id": request_id, "queue_state": queue_state}
        else:
            category = "user" if 400 <= status < 500 and status not in (408, 410, 429) else "server"
            body = {"error": f"injected fault: HTTP {status} on {call.endpoint}", "category": category}
    return HttpResponse(status, json.dumps(body).encode(), headers=out_headers)
