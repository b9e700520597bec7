"""Credentials: where they come from, the stored-credentials file, and the short-lived tokens they are
exchanged for (docs/accounts.md).

This package is imported by the configuration and the HTTP layer, so it exports only what depends on
neither: errors, the credentials file, the credential command and the token holder. The rest is imported
by module: :mod:`tinker_actors.auth.sources` (which credential a client uses),
:mod:`tinker_actors.auth.keeper` (the TokenKeeper actors), :mod:`tinker_actors.auth.client_auth` (what a
ServiceClient uses), :mod:`tinker_actors.auth.api` (the auth endpoints), :mod:`tinker_actors.auth.access`
(whether this process can use Tinker: the official ``tinker.auth`` helpers below, which import it when called).
"""

from tinker_actors.auth.command import run_credential_command
from tinker_actors.auth.errors import (
    CredentialCommandError,
    CredentialCommandRequiredError,
    CredentialError,
    StoredCredentialsError,
)
from tinker_actors.auth.store import CredentialsFile, StoredCredentials, StoredKey, default_credentials_path
from tinker_actors.auth.tokens import Token, TokenHolder

__all__ = [
    "CredentialCommandError",
    "CredentialCommandRequiredError",
    "CredentialError",
    "CredentialsFile",
    "StoredCredentials",
    "StoredCredentialsError",
    "StoredKey",
    "Token",
    "TokenHolder",
    "default_credentials_path",
    "get_tinker_token",
    "raise_if_tinker_not_accessible",
    "run_credential_command",
    "tinker_has_credentials",
]


# The official SDK 0.38's tinker.auth helpers. tinker_actors.auth.access needs the configuration, which imports
# this package: it is imported when one of them is called.

def get_tinker_token() -> str | None:
    """The API key this process's clients would send as it is (``TINKER_API_KEY``, else the stored default key
    when no ``TINKER_CREDENTIAL_CMD`` comes first), or None. Looks only at this machine: the credential command is
    never run (docs/accounts.md)."""
    from tinker_actors.auth.access import static_token

    return static_token()


def tinker_has_credentials() -> bool:
    """Whether this process's clients would find a credential (``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD`` or the
    stored default key). Looks only at this machine: a configured credential command counts without being run."""
    from tinker_actors.auth.access import has_credentials

    return has_credentials()


def raise_if_tinker_not_accessible() -> None:
    """Return when the service accepts this process's credential, after one ``get_server_capabilities`` that is
    neither retried nor paused; else raise a :class:`~tinker_actors.errors.TinkerError`: ``MissingApiKeyError`` (no
    credential), ``AuthenticationError`` (refused), ``BillingError`` (402: billing not set up),
    ``APIConnectionError`` (unreachable), ... Blocking (docs/accounts.md)."""
    from tinker_actors.auth.access import check_accessible

    check_accessible()
