"""Auth endpoints: token exchange and "who am I", as the official 0.38 SDK and CLI call them, and an admin
view of the service's accounts.

* ``POST /api/v1/auth/token`` answers ``{"jwt": ...}``, a short-lived token for the request's credential
  (what an SDK does when ``client/config`` says ``pjwt_auth_enabled``);
* ``GET /api/v1/auth/apikey/me`` answers the key's public metadata (``key_id``, ``name``, ``note``,
  ``details``), the shape ``tinker auth login`` reads;
* ``DELETE /api/v1/auth/apikey/me`` revokes the key presented (only that one) for as long as this service
  object lives: later requests with it, or with tokens issued for it, are refused with 401;
* ``GET|PATCH /local/v1/auth`` (admin): the token lifetime, the users (never their keys) and what the
  credential check has seen.
"""

from __future__ import annotations

import json
from typing import Any

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.accounts import Identity
from tinker_actors.local.engine.state import ApiError, Call
from tinker_actors.local.engine.tokens import Authenticator, Credential, InvalidTokenError
from tinker_actors.local.server.http_server import HttpResponse

__all__ = ["LOCAL_ORGANIZATION", "AuthApi"]

LOCAL_ORGANIZATION = "tinker-actors local service"


def _json(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(data).encode())


class AuthApi:
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    def register(self, router: Router) -> None:
        router.add("POST", "/api/v1/auth/token", "auth_token", self.token)
        router.add("GET", "/api/v1/auth/apikey/me", "auth_whoami", self.whoami)
        router.add("DELETE", "/api/v1/auth/apikey/me", "auth_revoke_key", self.revoke)
        router.add("GET", "/local/v1/auth", "admin_auth", self.settings, admin=True)
        router.add("PATCH", "/local/v1/auth", "admin_update_auth", self.update_settings, admin=True)

    async def token(self, call: Call) -> HttpResponse:
        return _json({"jwt": self._auth.issue(self._credential(call))})

    async def whoami(self, call: Call) -> HttpResponse:
        identity = self._credential(call).identity
        return _json(_key_metadata(identity))

    async def revoke(self, call: Call) -> HttpResponse:
        credential = self._credential(call)
        if credential.is_token:
            raise ApiError(400, "present the API key itself to revoke it, not a token issued for it")
        self._auth.accounts.revoke(credential.identity.key_id)
        return _json({"revoked": True, "key_id": credential.identity.key_id})

    async def settings(self, call: Call) -> HttpResponse:
        return _json(self._snapshot())

    async def update_settings(self, call: Call) -> HttpResponse:
        body = call.json()
        if not isinstance(body, dict) or set(body) - {"token_lifetime_s"}:
            raise ApiError(400, 'the body is {"token_lifetime_s": seconds}')
        if "token_lifetime_s" in body:
            try:
                self._auth.tokens.lifetime_s = body["token_lifetime_s"]
            except InvalidInputError as error:
                raise ApiError(400, str(error)) from None
        return _json(self._snapshot())

    def _snapshot(self) -> dict[str, Any]:
        accounts = self._auth.accounts
        return {"token_lifetime_s": self._auth.tokens.lifetime_s, "any_key": accounts.open,
                "users": accounts.users(), "counts": self._auth.counts()}

    def _credential(self, call: Call) -> Credential:
        """The request's credential, already accepted (and counted) by the dispatcher."""
        try:
            credential = self._auth.check(call.request.headers.get("x-api-key", ""), count_accepted=False)
        except InvalidTokenError as error:  # revoked between admission and here
            raise ApiError(401, str(error)) from None
        if credential is None:
            raise ApiError(401, "missing or invalid X-API-Key header")
        return credential


def _key_metadata(identity: Identity) -> dict[str, Any]:
    """What ``GET auth/apikey/me`` answers: the official CLI's ``SelfApiKeyResponse`` fields."""
    return {
        "key_id": identity.key_id,
        "name": identity.user,
        "note": f"API key of user {identity.user!r} in the local service",
        "details": {"org_details": {"name": LOCAL_ORGANIZATION},
                    "user_details": {"email": f"{identity.user}@localhost"}},
    }
