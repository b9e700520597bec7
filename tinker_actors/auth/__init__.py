"""Credentials: where they come from, the stored-credentials file, and the short-lived tokens they are
exchanged for (docs/accounts.md).

This package is imported by the configuration and the HTTP layer, so it exports only what depends on
neither: errors, the credentials file, the credential command and the token holder. The rest is imported
by module: :mod:`tinker_actors.auth.sources` (which credential a client uses),
:mod:`tinker_actors.auth.keeper` (the TokenKeeper actors), :mod:`tinker_actors.auth.client_auth` (what a
ServiceClient uses), :mod:`tinker_actors.auth.api` (the auth endpoints).
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
    "run_credential_command",
]
