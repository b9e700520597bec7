"""Admin endpoints to lose models on purpose, over HTTP (``tinker_actors.local.engine.model_faults``).

* ``GET /local/v1/models``: the models in the service's memory (the caller's), with their status
  (``creating``, ``ready``, ``corrupted``, ``lost``, ``unloaded``) and optimizer step;
* ``POST /local/v1/models/{model_id}/drop``: forget the model (404 if there is no such ready model);
* ``POST /local/v1/models/{model_id}/corrupt``: break it;
* ``POST /local/v1/restart``: restart the service (answered first): every loaded model is lost, runs,
  checkpoints and sessions are kept.

Like every admin endpoint they need the API key and are never subject to fault rules. A user can only
drop or corrupt their own models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.model_faults import corrupt_model, drop_model, model_states
from tinker_actors.local.engine.state import ApiError, Call, ServiceState
from tinker_actors.local.server.http_server import HttpResponse

__all__ = ["ModelFaultsApi"]

_RESTART_DELAY_S = 0.1


def _json(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(data).encode())


class ModelFaultsApi:
    def __init__(self, state: ServiceState, request_restart: Callable[[], None]) -> None:
        self._state = state
        self._request_restart = request_restart

    def register(self, router: Router) -> None:
        router.add("GET", "/local/v1/models", "admin_models", self.models, admin=True)
        router.add("POST", "/local/v1/models/{model_id}/drop", "admin_drop_model", self.drop, admin=True)
        router.add("POST", "/local/v1/models/{model_id}/corrupt", "admin_corrupt_model", self.corrupt, admin=True)
        router.add("POST", "/local/v1/restart", "admin_restart", self.restart, admin=True)

    async def models(self, call: Call) -> HttpResponse:
        return _json({"models": [model.to_json() for model in await model_states(self._state, call.user)]})

    async def drop(self, call: Call) -> HttpResponse:
        model_id = self._own_model(call)
        if not drop_model(self._state, model_id):
            raise ApiError(404, f"model {model_id!r} is not a ready model of this service")
        return _json({"dropped": model_id})

    async def corrupt(self, call: Call) -> HttpResponse:
        model_id = self._own_model(call)
        if not corrupt_model(self._state, model_id):
            raise ApiError(404, f"model {model_id!r} is not a ready, unbroken model of this service")
        return _json({"corrupted": model_id})

    async def restart(self, call: Call) -> HttpResponse:
        # A moment later, from another thread: this answer must go out before the service stops.
        asyncio.get_running_loop().call_later(_RESTART_DELAY_S, self._request_restart)
        return _json({"restarting": True}, status=202)

    def _own_model(self, call: Call) -> str:
        model_id = call.params["model_id"]
        slot = self._state.models.get(model_id)
        if slot is None or slot.owner != call.user:
            raise ApiError(404, f"unknown model_id {model_id!r}")
        return model_id
