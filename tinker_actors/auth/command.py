"""Running ``TINKER_CREDENTIAL_CMD``: a shell command that prints a credential on stdout.

The command runs as an asyncio subprocess (in the IoLoop: no actor and no request waits on a blocked
thread), in its own process group, with a timeout (``Config.auth.credential_cmd_timeout``, 30 s by
default); on timeout the whole group is killed. Its stdout, stripped, is the credential: a Tinker key
(``tml-...``) or a JWT (``eyJ...``, which must not have expired). Anything else is a
:class:`CredentialCommandError` saying what went wrong:

* exit status not 0, timeout, nothing printed, something printed that is not a credential, an expired JWT.

What is never shown: the command line (it may hold a secret of its own) and stdout (it is, or was meant to
be, the credential). What is shown of stderr: only when the command exited non-zero, its last
:data:`STDERR_SHOWN` characters, with every word shaped like a credential (starting ``tml-`` or ``eyJ``)
and every word of 8 characters or more that also appeared on stdout replaced by ``**********``. A command
that failed produced no credential to protect, but it may still have echoed one it read (a cached key, a
refresh token) on stderr; those shapes are what the redaction catches. Its diagnostics ("token expired",
"not logged in") are what tells the user what to fix, so they are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time

import jwt

from tinker_actors.auth.errors import CredentialCommandError
from tinker_actors.logs import REDACTED

__all__ = ["CREDENTIAL_CMD_ENV", "STDERR_SHOWN", "check_credential", "run_credential_command"]

CREDENTIAL_CMD_ENV = "TINKER_CREDENTIAL_CMD"
STDERR_SHOWN = 500
_CREDENTIAL_SHAPE = re.compile(r"(?:tml-|eyJ)[^\s\"',;]*")
_SHORTEST_SECRET = 8
_OUTPUT_LIMIT = 1 << 20  # a credential is a few kB; more than this is not one


def check_credential(credential: str, source: str, now: float | None = None) -> str:
    """``credential`` if it is a ``tml-`` key or a JWT that has not expired, else
    :class:`CredentialCommandError` naming ``source`` (never quoting the credential)."""
    if not credential.startswith(("tml-", "eyJ")):
        raise CredentialCommandError(
            f"{source} printed something that is not a Tinker credential: a credential is a Tinker API key "
            "(starting 'tml-') or a JWT (starting 'eyJ'). What it printed is not shown.")
    if credential.startswith("eyJ"):
        try:
            claims = jwt.decode(credential, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise CredentialCommandError(f"{source} printed a malformed JWT (it cannot be decoded; not shown).") \
                from None
        expiry = claims.get("exp")
        if isinstance(expiry, int | float) and expiry <= (time.time() if now is None else now):
            raise CredentialCommandError(f"{source} printed an expired JWT: make it print a fresh credential.")
    return credential


async def run_credential_command(command: str, timeout: float, *, source: str = CREDENTIAL_CMD_ENV) -> str:
    """Run ``command`` (through the shell) and return the credential it printed; see the module docstring."""
    try:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=_OUTPUT_LIMIT)
    except OSError as error:
        raise CredentialCommandError(f"{source} could not be started: {error.strerror or type(error).__name__}") \
            from None
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        _kill_group(process)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5.0)
        raise CredentialCommandError(
            f"{source} did not finish within {timeout:g} s and was stopped (the timeout is "
            "Config.auth.credential_cmd_timeout).") from None
    except BaseException:  # cancelled: the command must not outlive the request that ran it
        _kill_group(process)
        raise
    output = stdout.decode("utf-8", "replace").strip()
    if process.returncode != 0:
        raise CredentialCommandError(
            f"{source} exited with status {process.returncode}{_stderr_note(stderr, output)}")
    if not output:
        raise CredentialCommandError(f"{source} printed nothing: it must print a credential on stdout.")
    if any(char.isspace() for char in output):
        raise CredentialCommandError(
            f"{source} printed more than one word: it must print the credential alone (not shown).")
    return check_credential(output, source)


def _stderr_note(stderr: bytes, stdout_text: str) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    if not text:
        return " (nothing on stderr)."
    for word in stdout_text.split():
        if len(word) >= _SHORTEST_SECRET:  # what it printed, if it was long enough to be a secret
            text = text.replace(word, REDACTED)
    text = _CREDENTIAL_SHAPE.sub(REDACTED, text)
    if len(text) > STDERR_SHOWN:
        text = "..." + text[-STDERR_SHOWN:]
    return f"; its stderr (credential-shaped words redacted): {text}"


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(process.pid, signal.SIGKILL)
