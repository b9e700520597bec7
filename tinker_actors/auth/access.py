"""Whether this process can use Tinker: the official SDK 0.38's ``tinker.auth`` helpers, built on the credential
order of :mod:`tinker_actors.auth.sources` (``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD``, the stored default key;
these helpers take no ``api_key=``, as the official ones).

* :func:`static_token`: the API key a client of this environment would send as it is, or None (never runs
  the credential command);
* :func:`has_credentials`: whether a client of this environment would find a credential (a configured
  command counts without being run);
* :func:`check_accessible`: one ``get_server_capabilities`` with that credential, neither retried nor paused,
  raising a typed :class:`~tinker_actors.errors.TinkerError` when the service does not accept it.

``tinker_actors.auth`` exposes them under the official names (``get_tinker_token``, ``tinker_has_credentials``,
``raise_if_tinker_not_accessible``). No message here quotes a credential.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinker_actors.auth.command import CREDENTIAL_CMD_ENV
from tinker_actors.auth.sources import CredentialSource, credential_source
from tinker_actors.config import Config
from tinker_actors.errors import TinkerError

__all__ = ["check_accessible", "has_credentials", "static_token"]

_API_KEY_ENV = "TINKER_API_KEY"


def _local_source() -> CredentialSource | None:
    """The credential source a client of this environment would use, or None. Only the credential settings are
    read (a malformed ``TINKER_BASE_URL`` is no concern here); no credential, a malformed key or an unreadable
    credentials file is None, as in the official SDK."""
    env = {name: os.environ[name] for name in (_API_KEY_ENV, CREDENTIAL_CMD_ENV) if os.environ.get(name)}
    env["HOME"] = os.environ.get("HOME") or str(Path.home())
    try:
        return credential_source(Config.from_env(env))
    except (TinkerError, ValueError, OSError):  # MissingApiKeyError, InvalidApiKeyError, StoredCredentialsError...
        return None


def static_token() -> str | None:
    """The key (``tml-...`` or a JWT) from ``TINKER_API_KEY`` or the stored default key that a client built from
    this environment would use, or None: no such key, a malformed one, an unreadable credentials file, or a
    ``TINKER_CREDENTIAL_CMD`` that comes first (the command is never run here)."""
    source = _local_source()
    return source.static_value() if source is not None else None


def has_credentials() -> bool:
    """Whether a client built from this environment finds a credential (the command is not run)."""
    return _local_source() is not None


def check_accessible() -> None:
    """Return when the service (``TINKER_BASE_URL``) accepts this environment's credential, after one request that
    is not retried; else raise a :class:`~tinker_actors.errors.TinkerError`: ``MissingApiKeyError`` (no credential),
    ``InvalidApiKeyError``, ``CredentialCommandError``, ``AuthenticationError`` (401), ``BillingError`` (402),
    ``APIConnectionError`` (unreachable), or the status error the service answered."""
    from tinker_actors.clients.service import ServiceClient  # the clients import this package (a cycle at import)

    try:
        with ServiceClient(max_retries=0) as client:
            client.check_accessible()
    except TinkerError:
        raise
    except Exception as error:  # an OSError or ValueError of credential resolution: the documented TinkerError
        raise TinkerError(f"Tinker is not accessible: {type(error).__name__}") from error
