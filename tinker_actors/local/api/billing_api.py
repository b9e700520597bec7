"""Billing endpoints, and the budget gate and usage charges the training and sampling endpoints call.

The official 0.38 SDK's reads (``AdminClient.get_billing_usage`` and
``get_current_checkpoint_storage_usage``):

* ``GET /api/v1/billing/usage/events?starting_on=&ending_before=``: the caller's usage in UTC hours
  (both bounds aligned to an hour, at most 14 days apart, the start not in the future), one row per
  hour, usage kind, base model and session, by hour then most tokens first. No prices here: costs and
  rates are null.
* ``GET /api/v1/billing/usage/checkpoints/current[?project_id=]``: the caller's stored checkpoints
  (count and bytes, as the data directory holds them), one row per project of their sessions.

Each user sees their own usage only (a user is their own organization here). The admin endpoints under
``/local/v1/billing`` set and top up budgets and list recent per-request events; like the other admin
endpoints they need an accepted API key and are never subject to fault rules.

The gate (:func:`refuse_if_spent`) runs when a ``forward_backward``, ``forward`` or ``asample``
submission is about to be accepted (after its checks and after a repeat of an accepted request got its
original future): a user whose budget is spent gets HTTP 402 with ``{"error": "billing: ...",
"category": "user"}``, which the official SDK answers by pausing and retrying. Nothing is queued for a
refused request and it takes no ``seq_id``; work accepted earlier is never refused, and is charged when
it finishes (:func:`charge_training`, :func:`charge_sampling`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.billing import InvalidBudgetError, UsageBucket, UsageEvent
from tinker_actors.local.engine.state import ApiError, Call, ServiceState
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import EncodedTextChunk, ForwardBackwardInput

__all__ = ["BillingApi", "charge_sampling", "charge_training", "refuse_if_spent", "training_tokens"]

_MAX_WINDOW = timedelta(days=14)
_BYTES_PER_GIGABYTE = 1_000_000_000
_DEFAULT_EVENTS_LIMIT = 1000


def _json(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(data).encode())


# ---- the gate and the charges (called by the training and sampling endpoints) --------------------
def refuse_if_spent(state: ServiceState, call: Call) -> None:
    """Refuse the caller's new work with 402 when their budget is spent."""
    account = state.billing.refusal(call.user)
    if account is not None:
        raise ApiError(402, f"billing: the token budget of user {account.user!r} is spent "
                            f"(balance {account.budget} tokens, {account.used} used); new training and sampling "
                            "requests are refused until it is topped up (POST /local/v1/billing/users/<user>/top-up, "
                            "or: tinker-actors local billing top-up)")


def training_tokens(data: ForwardBackwardInput) -> int:
    """The tokens a forward(_backward) is billed for: the datums' input tokens."""
    return sum(chunk.length for datum in data.data for chunk in datum.model_input.chunks
               if isinstance(chunk, EncodedTextChunk))


def charge_training(state: ServiceState, call: Call, *, tokens: int, base_model: str, session_id: str,
                    model_id: str) -> Callable[[], None]:
    """What to run (on the service loop) when the forward(_backward) of ``call`` has finished."""
    user = call.user

    def charge() -> None:
        state.billing.charge(UsageEvent(datetime.now(UTC), user, "training", tokens, _model_name(state, base_model),
                                        session_id or None, model_id))

    return charge


def charge_sampling(state: ServiceState, user: str, *, prompt_tokens: int, sampled_tokens: int, base_model: str,
                    session_id: str, model_id: str) -> None:
    """Charge a finished sample: its prompt (once, however many samples) and every generated token."""
    now = datetime.now(UTC)
    name = _model_name(state, base_model)
    state.billing.charge(UsageEvent(now, user, "sampling_prefill", prompt_tokens, name, session_id or None, model_id))
    state.billing.charge(UsageEvent(now, user, "sampling_sample", sampled_tokens, name, session_id or None, model_id))


def _model_name(state: ServiceState, base_model: str) -> str:
    try:
        return state.backend.describe(base_model).name
    except ValueError:
        return base_model


# ---- query parameters ---------------------------------------------------------------------------
def _hour_param(call: Call, name: str) -> datetime:
    text = call.request.query.get(name)
    if not text:
        raise ApiError(400, f"{call.endpoint}: the query parameter {name} is required (an RFC 3339 time "
                            "aligned to a UTC hour, e.g. 2026-07-13T00:00:00Z)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{call.endpoint}: {name} is not an RFC 3339 time: {text[:64]!r}") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment.minute or moment.second or moment.microsecond:
        raise ApiError(400, f"{call.endpoint}: {name} must be aligned to a UTC hour boundary, got {text[:64]!r}")
    return moment


def _window(call: Call) -> tuple[datetime, datetime]:
    starting_on, ending_before = _hour_param(call, "starting_on"), _hour_param(call, "ending_before")
    if ending_before <= starting_on:
        raise ApiError(400, f"{call.endpoint}: ending_before must be after starting_on")
    if ending_before - starting_on > _MAX_WINDOW:
        raise ApiError(400, f"{call.endpoint}: ending_before may be at most 14 days after starting_on")
    if starting_on > datetime.now(UTC):
        raise ApiError(400, f"{call.endpoint}: starting_on must not be in the future")
    return starting_on, ending_before


def _event_row(bucket: UsageBucket, project_id: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"type": bucket.kind, "token_count": bucket.tokens}
    if bucket.kind == "sampling_prefill":
        info["cached"] = False  # the local service has no prefill cache
    return {"bucket_start": bucket.hour.isoformat(), "bucket_end": (bucket.hour + timedelta(hours=1)).isoformat(),
            "base_model": bucket.base_model, "user_id": bucket.user, "user_name": bucket.user,
            "session_id": bucket.session_id, "project_id": project_id, "estimated_cost_usd": None,
            "effective_rate_usd_per_million_tokens": None, "effective_rate_usd_per_gigabyte_month": None,
            "event_info": info}


class BillingApi:
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def register(self, router: Router) -> None:
        router.add("GET", "/api/v1/billing/usage/events", "billing_usage_events", self.usage_events)
        router.add("GET", "/api/v1/billing/usage/checkpoints/current", "billing_checkpoint_storage",
                   self.checkpoint_storage)
        router.add("GET", "/local/v1/billing", "admin_billing", self.accounts, admin=True)
        router.add("GET", "/local/v1/billing/events", "admin_billing_events", self.events, admin=True)
        router.add("GET", "/local/v1/billing/users/{user}", "admin_billing_account", self.account, admin=True)
        router.add("PUT", "/local/v1/billing/users/{user}", "admin_billing_set", self.set_budget, admin=True)
        router.add("POST", "/local/v1/billing/users/{user}/top-up", "admin_billing_top_up", self.top_up,
                   admin=True)

    # ---- the official SDK's reads ------------------------------------------------------------
    async def usage_events(self, call: Call) -> HttpResponse:
        starting_on, ending_before = _window(call)
        storage = self._state.storage
        rows: list[dict[str, Any]] = []
        sessions: dict[str, dict[str, Any]] = {}
        for bucket in self._state.billing.usage(call.user, starting_on, ending_before):
            record = storage.session(bucket.session_id) if bucket.session_id else None
            rows.append(_event_row(bucket, record.project if record is not None else None))
            if bucket.session_id:
                sessions[bucket.session_id] = {"user_metadata": record.user_metadata if record is not None else None}
        return _json({"data": rows, "sessions": sessions, "cost_data_through": None})

    async def checkpoint_storage(self, call: Call) -> HttpResponse:
        wanted = call.request.query.get("project_id") or None
        storage = self._state.storage
        groups: dict[str | None, list[int]] = {}  # project -> [count, bytes]
        for run in storage.runs(call.user):
            project = storage.session_project(run.session_id)
            if wanted is not None and project != wanted:
                continue
            for record in storage.checkpoints(run.run_id):
                group = groups.setdefault(project, [0, 0])
                group[0] += 1
                group[1] += record.size_bytes
        data = [{"project_id": project, "org_user_urn": call.user, "user_email": None, "user_name": call.user,
                 "checkpoint_count": count, "size_bytes": size, "size_gigabytes": size / _BYTES_PER_GIGABYTE,
                 "estimated_monthly_cost_usd": None}
                for project, (count, size) in sorted(groups.items(), key=lambda item: item[0] or "")]
        return _json({"effective_rate_usd_per_gigabyte_month": None, "data": data})

    # ---- admin -------------------------------------------------------------------------------
    async def accounts(self, call: Call) -> HttpResponse:
        billing = self._state.billing
        return _json({"default_budget": billing.default_budget,
                      "accounts": [account.to_json() for account in billing.accounts()]})

    async def account(self, call: Call) -> HttpResponse:
        return _json(self._state.billing.account(call.params["user"]).to_json())

    async def set_budget(self, call: Call) -> HttpResponse:
        """``{"budget": tokens}`` sets the balance; ``{"budget": null}``: unlimited."""
        body = call.json()
        if not isinstance(body, dict) or set(body) != {"budget"}:
            raise ApiError(400, 'the body is {"budget": tokens} (null: unlimited)')
        try:
            account = self._state.billing.set_budget(call.params["user"], body["budget"])
        except InvalidBudgetError as error:
            raise ApiError(400, str(error)) from None
        return _json(account.to_json())

    async def top_up(self, call: Call) -> HttpResponse:
        """``{"tokens": n}`` adds n tokens to the balance (an unlimited user stays unlimited)."""
        body = call.json()
        if not isinstance(body, dict) or set(body) != {"tokens"}:
            raise ApiError(400, 'the body is {"tokens": n}')
        try:
            account = self._state.billing.top_up(call.params["user"], body["tokens"])
        except InvalidBudgetError as error:
            raise ApiError(400, str(error)) from None
        return _json(account.to_json())

    async def events(self, call: Call) -> HttpResponse:
        """The most recent per-request events, oldest first (``?user=`` one user's, ``?limit=`` at most n)."""
        query = call.request.query
        try:
            limit = int(query.get("limit", _DEFAULT_EVENTS_LIMIT))
        except ValueError:
            raise ApiError(400, "limit is a whole number") from None
        if limit < 0:
            raise ApiError(400, "limit is a whole number (0 or more)")
        events = self._state.billing.recent_events(query.get("user") or None, limit)
        return _json({"events": [event.to_json() for event in events]})
