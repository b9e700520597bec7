"""The service's auth endpoints, spoken through the HTTP layer (the one place that speaks HTTP):

* ``POST /api/v1/auth/token`` (body ``{}``): the request's credential exchanged for a short-lived JWT,
  answered as ``{"jwt": ...}``;
* ``GET /api/v1/auth/apikey/me``: the presented key's public metadata (``key_id``, ``name``, ``note``,
  ``details``): ``tinker-actors auth login`` checks a key with it, ``whoami`` shows it;
* ``DELETE /api/v1/auth/apikey/me``: revokes the presented key (and only it): ``logout`` of a
  ``generated`` key.

Each call authenticates with whatever token the given :class:`~tinker_actors.http.HttpLayer` sends.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tinker_actors.auth.store import KeyDetails
from tinker_actors.errors import AuthenticationError
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.types.auth_token_response import AuthTokenResponse  # here too: its old home

__all__ = ["API_KEY_ME_PATH", "AUTH_TOKEN_PATH", "ApiKeyInfo", "AuthTokenResponse", "delete_api_key",
           "exchange_token", "get_api_key_info"]

AUTH_TOKEN_PATH = "/api/v1/auth/token"
API_KEY_ME_PATH = "/api/v1/auth/apikey/me"


class ApiKeyInfo(BaseModel):
    """What ``GET auth/apikey/me`` says about a key (never the key itself)."""

    model_config = ConfigDict(extra="ignore")

    key_id: int | str
    name: str
    note: str = ""
    details: KeyDetails | None = None

    @property
    def email(self) -> str | None:
        return self.details.user_details.email if self.details is not None else None

    @property
    def organization(self) -> str | None:
        return self.details.org_details.name if self.details is not None else None


async def exchange_token(http: HttpLayer) -> str:
    """A JWT for the credential ``http`` sends. A credential the server refuses raises
    :class:`~tinker_actors.errors.AuthenticationError` (401) or the status error it answered."""
    answer = await http.request(Purpose.SESSION, "POST", AUTH_TOKEN_PATH, content=b"{}",
                                response_model=AuthTokenResponse, endpoint="auth_token")
    token = answer.data.jwt.get_secret_value()
    if not token.startswith("eyJ"):
        raise AuthenticationError(f"{AUTH_TOKEN_PATH} answered something that is not a JWT (not shown)",
                                  status_code=answer.status_code)
    return token


async def get_api_key_info(http: HttpLayer) -> ApiKeyInfo:
    """The metadata of the key ``http`` sends (401: the key is not valid)."""
    answer = await http.request(Purpose.SESSION, "GET", API_KEY_ME_PATH, response_model=ApiKeyInfo,
                                endpoint="auth_apikey_me")
    return answer.data


async def delete_api_key(http: HttpLayer) -> None:
    """Revoke the key ``http`` sends, on the server, everywhere."""
    await http.request(Purpose.SESSION, "DELETE", API_KEY_ME_PATH, endpoint="auth_apikey_delete")
