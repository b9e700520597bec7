"""``POST /api/v1/copy_weights`` (0.38's ``RestClient.copy_weights`` / ``ServiceClient.copy_weights``).

The body names the source (``source_path``, either kind of weights, or external weights) and where the
copy goes: ``destination_project_id`` (a new training run in a new session of that project; the session
is born finished, since nothing runs in it) or ``session_id`` and ``model_seq_id`` (the run
``<session>:train:<seq>`` of one of the caller's sessions, a slot no model uses yet). The copy keeps the
source's kind and name, shares its files (hard links: no bytes duplicated), is private, and expires
``ttl_seconds`` from now (the source's expiry is not inherited). It belongs to a run no model is loaded
in, so nothing trains it; load it into a new model (``create_training_client_from_state``) to go on.

The source must be readable by the caller (their own, or published) or by the user whose credential
(API key or token of this service) comes as ``weights_access_token`` (the ``X-Tinker-Weights-Access-Token``
header, as the official SDK sends it, or the body field); otherwise 404 as for an unknown checkpoint.

A request repeated with the same ``X-Idempotency-Key`` (the official SDK keeps one key across its retries)
answers the first copy's path instead of copying again.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.state import ApiError, Call, ServiceState, ok
from tinker_actors.local.engine.storage import (
    CheckpointMissingError,
    CheckpointRecord,
    InvalidNameError,
    RunRecord,
    SessionRecord,
)
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import CopyWeightsRequest, CopyWeightsResponse

__all__ = ["CopyWeightsApi"]

_MAX_IDEMPOTENCY_KEYS = 10_000


class CopyWeightsApi:
    def __init__(self, state: ServiceState, *, user_of_credential: Callable[[str], str | None]) -> None:
        """``user_of_credential``: the user a credential (API key or token) belongs to, or None."""
        self._state = state
        self._user_of_credential = user_of_credential
        self._answered: OrderedDict[tuple[str, str], str] = OrderedDict()  # (user, idempotency key) -> path

    def register(self, router: Router) -> None:
        router.add("POST", "/api/v1/copy_weights", "copy_weights", self.copy_weights)

    async def copy_weights(self, call: Call) -> HttpResponse:
        request = call.parse(CopyWeightsRequest)
        key = call.request.headers.get("x-idempotency-key")
        if key and (call.user, key) in self._answered:
            return ok(CopyWeightsResponse(tinker_path=self._answered[(call.user, key)]))
        ttl = request.ttl_seconds
        limit = self._state.config.work_limits.max_ttl_seconds
        if ttl is not None and not 0 <= ttl <= limit:
            raise ApiError(400, f"ttl_seconds must be between 0 and {limit} (null: no expiry), got {ttl}")
        source = self._source(call, request)
        destination = self._destination(call, request, source)
        try:
            copy = self._state.storage.copy_checkpoint(source, destination, actor=call.user, ttl_seconds=ttl)
        except CheckpointMissingError:
            raise ApiError(404, f"checkpoint {request.source_path} not found") from None
        if key:
            self._answered[(call.user, key)] = copy.tinker_path
            while len(self._answered) > _MAX_IDEMPOTENCY_KEYS:
                self._answered.popitem(last=False)
        return ok(CopyWeightsResponse(tinker_path=copy.tinker_path))

    def _source(self, call: Call, request: CopyWeightsRequest) -> CheckpointRecord:
        storage = self._state.storage
        token = call.request.headers.get("x-tinker-weights-access-token") or request.weights_access_token
        try:
            record = storage.checkpoint_by_path(request.source_path, call.user)
            if record is None and token:
                other = self._user_of_credential(token)
                record = storage.checkpoint_by_path(request.source_path, other) if other is not None else None
        except InvalidNameError as error:
            raise ApiError(400, str(error)) from error
        if record is None or storage.run(record.run_id) is None:
            raise ApiError(404, f"checkpoint {request.source_path} not found")
        return record

    def _destination(self, call: Call, request: CopyWeightsRequest, source: CheckpointRecord) -> RunRecord:
        """The run that will hold the copy (not stored yet if new)."""
        state, user = self._state, call.user
        if request.session_id is not None:
            if request.model_seq_id is None:
                raise ApiError(400, "copy_weights: session_id needs model_seq_id (the training run slot)")
            if state.storage.session(request.session_id, user) is None:
                raise ApiError(404, f"session {request.session_id!r} not found")
            run_id = f"{request.session_id}:train:{request.model_seq_id}"
            if run_id in state.models or state.storage.run(run_id) is not None:
                raise ApiError(400, f"copy_weights: training run slot {request.model_seq_id} of session "
                                    f"{request.session_id!r} is already used")
            session_id = request.session_id
        else:
            if request.model_seq_id is not None:
                raise ApiError(400, "copy_weights: model_seq_id goes with session_id")
            if not request.destination_project_id:
                raise ApiError(400, "copy_weights needs destination_project_id, or session_id and model_seq_id")
            session_id = str(uuid.uuid4())
            state.storage.add_session(SessionRecord(
                session_id=session_id, created=datetime.now(UTC), owner=user,
                project_id=request.destination_project_id, display_name=f"copy of {source.tinker_path}",
                finish_reason="success", finish_detail="holds a copy of weights (copy_weights)"))
            run_id = f"{session_id}:train:0"
        origin = state.storage.run(source.run_id)
        if origin is None:  # deleted meanwhile
            raise ApiError(404, f"checkpoint {source.tinker_path} not found")
        now = datetime.now(UTC)
        return RunRecord(run_id=run_id, session_id=session_id, base_model=origin.base_model,
                         lora_rank=origin.lora_rank, seed=origin.seed, train_mlp=origin.train_mlp,
                         train_attn=origin.train_attn, train_unembed=origin.train_unembed, model_owner=user,
                         created=now, last_request_time=now, owner=user)
