"""Typed errors of credential resolution: a command that failed, a stored-credentials file that cannot be
read, a credential the organisation does not allow.

None of them ever quotes a credential: messages name where the credential came from
(``TINKER_CREDENTIAL_CMD``, ``~/.tinker/credentials.json``), never its value. A credential the server
rejects is an :class:`~tinker_actors.errors.AuthenticationError` (HTTP 401), not one of these.
"""

from __future__ import annotations

from tinker_actors.errors import ErrorCategory, TinkerError

__all__ = [
    "CredentialCommandError",
    "CredentialCommandRequiredError",
    "CredentialError",
    "StoredCredentialsError",
]


class CredentialError(TinkerError):
    """No usable credential could be obtained from the source that was configured."""

    default_category = ErrorCategory.USER


class CredentialCommandError(CredentialError):
    """``TINKER_CREDENTIAL_CMD`` failed: it exited non-zero, ran past its timeout, printed nothing, printed
    something that is not a credential, or printed an expired JWT. The message says which; it quotes
    neither the command nor what it printed on stdout (see :mod:`tinker_actors.auth.command` for what of
    its stderr is shown)."""


class CredentialCommandRequiredError(CredentialError):
    """The server requires dynamic credentials (``credential_default_source: credential_cmd``) but
    ``TINKER_CREDENTIAL_CMD`` is not set."""


class StoredCredentialsError(CredentialError):
    """The stored-credentials file (``~/.tinker/credentials.json``) cannot be read or written."""
