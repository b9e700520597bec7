"""Admin endpoints under ``/local/v1/``: fault rules, protocol flags, received telemetry, request counts, health.

They need the API key like every other endpoint, and fault rules never apply to them (so a test
can always clear the faults it added). Only archive downloads (``/local/v1/archives/<token>.tar``)
are key-less: their URL is the secret, and it expires.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.api.rest_api import RestApi
from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.inflight import inflight_of
from tinker_actors.local.engine.sample_work import sample_work_of
from tinker_actors.local.engine.state import ApiError, Call, ServiceState
from tinker_actors.local.server.faults import FaultRule
from tinker_actors.local.server.http_server import HttpResponse

__all__ = ["AdminApi"]


def _json(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(data).encode())


class AdminApi:
    def __init__(self, state: ServiceState, rest: RestApi) -> None:
        self._state = state
        self._rest = rest

    def register(self, router: Router) -> None:
        router.add("GET", "/local/v1/health", "admin_health", self.health, admin=True)
        router.add("GET", "/local/v1/faults", "admin_list_faults", self.list_faults, admin=True)
        router.add("POST", "/local/v1/faults", "admin_add_fault", self.add_fault, admin=True)
        router.add("DELETE", "/local/v1/faults", "admin_clear_faults", self.clear_faults, admin=True)
        router.add("DELETE", "/local/v1/faults/{rule_id}", "admin_remove_fault", self.remove_fault, admin=True)
        router.add("GET", "/local/v1/protocol", "admin_protocol", self.protocol, admin=True)
        router.add("PATCH", "/local/v1/protocol", "admin_update_protocol", self.update_protocol, admin=True)
        router.add("PUT", "/local/v1/protocol", "admin_set_protocol", self.set_protocol, admin=True)
        router.add("DELETE", "/local/v1/protocol", "admin_clear_protocol", self.clear_protocol, admin=True)
        router.add("GET", "/local/v1/telemetry", "admin_telemetry", self.telemetry, admin=True)
        router.add("GET", "/local/v1/requests", "admin_requests", self.requests, admin=True)
        router.add("GET", "/local/v1/archives/{file}", "archive_download", self._rest.download,
                   auth=False, admin=True)

    async def health(self, call: Call) -> HttpResponse:
        state = self._state
        return _json({
            "status": "ok",
            "zero_work": state.config.zero_work,
            "live_sessions": state.sessions.live_count,
            "models": sum(1 for slot in state.models.values() if slot.gone is None),
            "pending_futures": state.futures.pending_count,
            "base_models": [m.name for m in state.backend.base_models()],
            # what the engine keeps for live sessions (freed when a session ends): a growing number is a leak
            "loaded_samplers": len(state.samplers),
            "inflight_weights": len(inflight_of(state)),
            "completion_queues": sample_work_of(state).queue_count,
        })

    async def list_faults(self, call: Call) -> HttpResponse:
        return _json({"rules": self._state.faults.list_rules()})

    async def add_fault(self, call: Call) -> HttpResponse:
        try:
            rule = FaultRule.model_validate(call.json())
        except pydantic.ValidationError as error:
            raise ApiError(400, f"invalid fault rule: {error}") from error
        return _json({"id": self._state.faults.add(rule)}, status=201)

    async def clear_faults(self, call: Call) -> HttpResponse:
        self._state.faults.clear()
        return _json({"cleared": True})

    async def remove_fault(self, call: Call) -> HttpResponse:
        try:
            rule_id = int(call.params["rule_id"])
        except ValueError as error:
            raise ApiError(400, "a fault rule id is an integer") from error
        if not self._state.faults.remove(rule_id):
            raise ApiError(404, f"no fault rule {rule_id}")
        return _json({"removed": rule_id})

    # ---- protocol flags: {"flags": {name: value}, "inline_result_bytes": n} ---------------------------
    async def protocol(self, call: Call) -> HttpResponse:
        return _json(self._state.protocol.snapshot())

    async def update_protocol(self, call: Call) -> HttpResponse:
        """Set the flags given (a ``null`` value puts one back to its default), keep the others."""
        return self._change_protocol(call, replace=False)

    async def set_protocol(self, call: Call) -> HttpResponse:
        """Replace every flag by those given (``{"flags": {}}``: all defaults)."""
        return self._change_protocol(call, replace=True)

    async def clear_protocol(self, call: Call) -> HttpResponse:
        self._state.protocol.clear_flags()
        return _json(self._state.protocol.snapshot())

    def _change_protocol(self, call: Call, *, replace: bool) -> HttpResponse:
        body = call.json()
        unknown = set(body) - {"flags", "inline_result_bytes"} if isinstance(body, dict) else None
        if unknown is None or unknown or not isinstance(body.get("flags", {}), dict):
            raise ApiError(400, 'the body is {"flags": {name: value, ...}, "inline_result_bytes": n} '
                                "(both optional)")
        protocol = self._state.protocol
        inline = body.get("inline_result_bytes", protocol.inline_result_bytes)
        if isinstance(inline, bool) or not isinstance(inline, int) or inline < 0:  # checked before any change
            raise ApiError(400, f"inline_result_bytes is a number of bytes (0 or more), got {inline!r}")
        try:
            if replace:
                protocol.set_flags(body.get("flags", {}))
            elif "flags" in body:
                protocol.update_flags(body["flags"])
        except InvalidInputError as error:
            raise ApiError(400, str(error)) from None
        protocol.inline_result_bytes = inline
        return _json(protocol.snapshot())

    async def telemetry(self, call: Call) -> HttpResponse:
        return _json(self._state.telemetry.snapshot())

    async def requests(self, call: Call) -> HttpResponse:
        return _json(self._state.stats.snapshot())
