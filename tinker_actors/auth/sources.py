"""Where a client's credential comes from, and how to get it: :func:`credential_source`.

The order (docs/accounts.md): ``api_key=``, ``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD``, the stored
default key (``~/.tinker/credentials.json``). :meth:`Config.from_env <tinker_actors.config.Config.from_env>`
reads the environment and the stored file into a Config (``api_key``, ``api_key_origin``,
``credential_cmd``); this module decides, from that Config and the server's flags, which one a client uses:

* a key (``tml-...``) or a JWT given as ``api_key``/``TINKER_API_KEY`` or stored, sent as it is (or
  exchanged for short-lived tokens when the server enables token exchange);
* else ``TINKER_CREDENTIAL_CMD``, run each time a credential is needed (its output may be short-lived);
* when the server enables token exchange and says ``credential_default_source: credential_cmd`` (the
  organisation requires dynamic credentials), the command even when a ``tml-`` key was given, as the
  official SDK does; a JWT given as the key is used as it is. Without the command:
  :class:`~tinker_actors.auth.errors.CredentialCommandRequiredError`.

An API key that is neither ``tml-`` nor a JWT falls back to the command when one is set, else it is an
:class:`~tinker_actors.config.InvalidApiKeyError` (as in the official SDK).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from pydantic import SecretStr

from tinker_actors.auth.command import CREDENTIAL_CMD_ENV, run_credential_command
from tinker_actors.auth.errors import CredentialCommandRequiredError
from tinker_actors.config import Config, InvalidApiKeyError, MissingApiKeyError, check_api_key_format

__all__ = ["CredentialKind", "CredentialSource", "credential_source"]

CredentialKind = Literal["argument", "environment", "stored", "command"]

_LABELS: dict[str, str] = {
    "argument": "api_key=",
    "environment": "TINKER_API_KEY",
    "stored": "the stored credentials (~/.tinker/credentials.json)",
    "command": CREDENTIAL_CMD_ENV,
}


@dataclass(frozen=True)
class CredentialSource:
    """One credential source: a key, or a command that prints one. Never shows or pickles the secret."""

    kind: CredentialKind
    secret: SecretStr = field(repr=False)
    """The key itself, or the command line."""
    command_timeout: float = 30.0

    @property
    def label(self) -> str:
        """How messages name this source (never its value)."""
        return _LABELS[self.kind]

    @property
    def is_command(self) -> bool:
        return self.kind == "command"

    @property
    def fingerprint(self) -> str:
        """A digest that tells sources apart (one token keeper each) without revealing them."""
        return hashlib.sha256(f"{self.kind == 'command'}\0{self.secret.get_secret_value()}".encode()).hexdigest()

    async def credential(self) -> str:
        """The credential: the key, or what the command prints now (run in the caller's event loop)."""
        if self.is_command:
            return await run_credential_command(self.secret.get_secret_value(), self.command_timeout)
        return self.secret.get_secret_value()

    def static_value(self) -> str | None:
        """The key when this source is one (None for a command)."""
        return None if self.is_command else self.secret.get_secret_value()

    def __reduce__(self) -> NoReturn:
        raise TypeError("a CredentialSource holds a credential and is never pickled")


def credential_source(config: Config, *, command_required: bool = False) -> CredentialSource:
    """The source a client of ``config`` uses (see the module docstring). ``command_required``: the server
    said the organisation requires dynamic credentials (with token exchange on).

    Raises :class:`MissingApiKeyError`, :class:`InvalidApiKeyError` or
    :class:`CredentialCommandRequiredError`, none of which quotes a credential.
    """
    key = config.api_key.get_secret_value() if config.api_key is not None else ""
    command = config.credential_cmd.get_secret_value().strip() if config.credential_cmd is not None else ""
    timeout = config.auth.credential_cmd_timeout
    if key.startswith("eyJ"):  # a JWT is already a dynamic credential: used even when a command is required
        return CredentialSource(config.api_key_origin, SecretStr(key), timeout)
    if command_required:
        if not command:
            raise CredentialCommandRequiredError(
                f"Your organization requires dynamic credentials: set {CREDENTIAL_CMD_ENV} to a command that "
                "prints a valid credential (an API key alone is not accepted by this server).")
        return CredentialSource("command", SecretStr(command), timeout)
    if key:
        try:
            config.require_api_key()
        except InvalidApiKeyError:
            if not command:
                raise
            return CredentialSource("command", SecretStr(command), timeout)
        return CredentialSource(config.api_key_origin, SecretStr(key), timeout)
    if command:
        return CredentialSource("command", SecretStr(command), timeout)
    raise MissingApiKeyError()


def check_static_key(source: CredentialSource) -> str:
    """The key of a key source, checked for its shape (``tml-`` or a JWT)."""
    value = source.static_value()
    if value is None:
        raise ValueError("a command source has no static key")
    return check_api_key_format(value, f"the API key from {source.label}")
