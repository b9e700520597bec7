"""``AuthTokenResponse``: the answer of ``POST /api/v1/auth/token``, a short-lived JWT for the credential sent.

The token is a secret: it is a :class:`~pydantic.SecretStr` (``jwt.get_secret_value()``), never in a repr, an
error or a pickle.
"""

from __future__ import annotations

from typing import NoReturn

from pydantic import ConfigDict, SecretStr

from tinker_actors.types._base import ResponseModel

__all__ = ["AuthTokenResponse"]


class AuthTokenResponse(ResponseModel):
    """The answer of ``auth/token``. The token is a secret: never in a repr."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    jwt: SecretStr
    """The short-lived JWT (``get_secret_value()`` gives it)."""

    def __reduce__(self) -> NoReturn:
        raise TypeError("an AuthTokenResponse holds a token and is never pickled")
