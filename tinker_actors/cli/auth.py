"""``tinker-actors auth login | logout | status | whoami``: the official CLI's ``tinker auth`` commands.

They share the stored-credentials file with the official CLI (``~/.tinker/credentials.json``, see
:mod:`tinker_actors.auth.store`): a key stored by ``tinker auth login`` is used here, and the other way round.

* ``login`` reads an API key (a hidden prompt on a terminal, else one line of stdin), checks it with
  ``GET /api/v1/auth/apikey/me`` and stores it as the default credential. Refused when one is stored already.
* ``logout`` removes the default credential; a ``generated`` key (minted for an older CLI) is also deleted on
  the server (``DELETE /api/v1/auth/apikey/me``), a ``manual`` one stays valid (delete it in the console).
* ``status`` says where the credential comes from (never what it is) and whether the service accepts it
  (``GET /api/v1/get_server_capabilities``, no retries).
* ``whoami`` shows the key's user and organisation (``GET /api/v1/auth/apikey/me``).

Every command takes ``--base-url`` (else ``TINKER_BASE_URL``) and ``-f/--format table|json``. Errors print
``Error: <message>`` on stderr and exit 1; no output ever contains a credential.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tinker_actors.auth.api import ApiKeyInfo, delete_api_key, get_api_key_info
from tinker_actors.auth.sources import credential_source
from tinker_actors.auth.store import CredentialsFile, StoredKey
from tinker_actors.config import Config, RetryPolicy, check_api_key_format
from tinker_actors.errors import TinkerError
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.types import GetServerCapabilitiesResponse

__all__ = ["add_auth_commands", "run_auth_command"]

T = TypeVar("T")

# A CLI answers quickly or says why: a few retries, bounded.
_CLI_RETRY = RetryPolicy(max_retries=2, base_delay=0.2, max_delay=1.0, deadline=30.0)


class _CliError(Exception):
    """A failure to report as ``Error: message`` (and ``details`` below it)."""

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def add_auth_commands(commands: Any) -> None:
    auth = commands.add_parser("auth", help="log in and out, and see which credential is used")
    sub = auth.add_subparsers(dest="action", required=True)
    sub.add_parser("login", help="check an API key and store it as the default credential")
    sub.add_parser("logout", help="remove the stored default credential")
    sub.add_parser("status", help="where the credential comes from, and whether the service accepts it")
    sub.add_parser("whoami", help="the user and organisation of the credential in use")
    for parser in sub.choices.values():
        parser.add_argument("--base-url", default=None, help="service URL (default: TINKER_BASE_URL)")
        parser.add_argument("-f", "--format", choices=("table", "json"), default="table")


def run_auth_command(args: argparse.Namespace, *, read_key: Callable[[], str] | None = None) -> int:
    """Run ``tinker-actors auth <action>``; ``read_key`` replaces the prompt (tests)."""
    handlers: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "login": lambda a: _login(a, read_key or _prompt_key),
        "logout": _logout,
        "status": _status,
        "whoami": _whoami,
    }
    try:
        result = handlers[args.action](args)
    except _CliError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        if error.details:
            print(error.details, file=sys.stderr)
        return 1
    except (TinkerError, OSError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    _print(result, args.format)
    return 1 if result.get("ok") is False else 0


# ---- the commands ---------------------------------------------------------------------------------

def _login(args: argparse.Namespace, read_key: Callable[[], str]) -> dict[str, Any]:
    store = CredentialsFile()
    if store.default_entry() is not None:
        raise _CliError("Already logged in", "Run 'tinker-actors auth logout' before logging in again.")
    key = read_key().strip()
    if not key:
        raise _CliError("The API key must not be empty")
    config = _config(args.base_url, api_key=check_api_key_format(key, "the pasted API key"))
    try:
        info = _run(config, get_api_key_info)
    except TinkerError as error:
        raise _CliError("Could not validate the API key", str(error)) from None
    store.store(str(info.key_id), StoredKey(type="manual", key=key, name=info.name, note=info.note or None,
                                            details=info.details))
    return {"message": f"Logged in as {info.email or 'unknown'} ({info.organization or 'unknown organization'}). "
                       f"Stored API key '{info.name}' as the default credential.",
            "key_id": str(info.key_id), "name": info.name, "email": info.email, "organization": info.organization,
            "credentials_file": str(store.path)}


def _logout(args: argparse.Namespace) -> dict[str, Any]:
    store = CredentialsFile()
    entry = store.default_entry()
    if entry is None:
        raise _CliError("No default credential is stored",
                        "There is nothing to log out from. Run 'tinker-actors auth login' to log in.")
    key_id, record = entry
    delete_error: TinkerError | None = None
    if record.type == "generated":
        try:
            _run(_config(args.base_url, api_key=record.key.get_secret_value()), delete_api_key)
        except TinkerError as error:
            delete_error = error
    store.remove(key_id)  # also clears the default, which named it
    if delete_error is not None:
        raise _CliError("Could not delete the API key on the server",
                        f"Removed the local credential.\nAPI key name: {record.name}\nAPI key ID: {key_id}\n"
                        f"Delete it in the Tinker console. ({delete_error})")
    if record.type == "generated":
        message = f"Removed credential '{record.name}' and deleted its API key on the server."
    else:
        message = (f"Removed credential '{record.name}'. The API key is still active: delete it in the Tinker "
                   f"console (API key ID {key_id}) if it should no longer work.")
    return {"message": message, "key_id": key_id, "name": record.name, "deleted_on_server": record.type == "generated"}


def _status(args: argparse.Namespace) -> dict[str, Any]:
    config = Config.from_env(base_url=args.base_url)
    try:
        source = credential_source(config)
    except TinkerError as error:
        return {"ok": False, "credentials_available": False, "source": None, "accessible": False,
                "base_url": config.base_url, "error": str(error)}
    result: dict[str, Any] = {"credentials_available": True, "source": source.label, "base_url": config.base_url}

    async def capabilities(http: HttpLayer) -> GetServerCapabilitiesResponse:
        answer = await http.request(Purpose.SESSION, "GET", "/api/v1/get_server_capabilities",
                                    response_model=GetServerCapabilitiesResponse,
                                    retry=RetryPolicy.disabled(deadline=30.0))
        return answer.data

    try:
        asyncio.run(_with_credential(config, source.credential, capabilities))
    except TinkerError as error:
        return {**result, "ok": False, "accessible": False, "error": str(error)}
    return {**result, "accessible": True}


def _whoami(args: argparse.Namespace) -> dict[str, Any]:
    config = Config.from_env(base_url=args.base_url)
    source = credential_source(config)
    info: ApiKeyInfo = asyncio.run(_with_credential(config, source.credential, get_api_key_info))
    return {"key_id": str(info.key_id), "name": info.name, "email": info.email, "organization": info.organization,
            "note": info.note, "source": source.label}


# ---- helpers --------------------------------------------------------------------------------------

def _config(base_url: str | None, *, api_key: str) -> Config:
    return Config.from_env(base_url=base_url, api_key=api_key, retry=_CLI_RETRY, telemetry_enabled=False)


def _run(config: Config, call: Callable[[HttpLayer], Awaitable[T]]) -> T:
    async def main() -> T:
        async with HttpLayer(config) as http:
            return await call(http)
    return asyncio.run(main())


async def _with_credential(config: Config, credential: Callable[[], Awaitable[str]],
                           call: Callable[[HttpLayer], Awaitable[T]]) -> T:
    """``call`` with an HTTP layer that sends the credential (a command runs here, in this event loop)."""
    value = await credential()
    async with HttpLayer(config.replace(api_key=value, retry=_CLI_RETRY)) as http:
        return await call(http)


def _prompt_key() -> str:
    if sys.stdin.isatty():
        print("Create an API key in the Tinker console, then paste it here.", file=sys.stderr)
        return getpass.getpass("Paste your API key: ")
    return sys.stdin.readline()


_LABELS = {"message": None, "ok": None, "credentials_file": "Credentials file", "key_id": "API key ID",
           "name": "API key name", "email": "Email", "organization": "Organization", "note": "Note",
           "source": "Credential source", "credentials_available": "Credentials available",
           "accessible": "Tinker accessible", "base_url": "Service", "error": "Error",
           "deleted_on_server": "Deleted on the server"}


def _print(result: dict[str, Any], output: str) -> None:
    if output == "json":
        print(json.dumps({key: value for key, value in result.items() if key != "ok"}, indent=2))
        return
    if "message" in result:
        print(result["message"])
        return
    for key, value in result.items():
        label = _LABELS.get(key, key)
        if label is None:
            continue
        shown = ("yes" if value else "no") if isinstance(value, bool) else ("-" if value is None else value)
        print(f"{label}: {shown}")
