"""The stored-credentials file, ``~/.tinker/credentials.json``, in the official CLI's format.

``tinker auth login`` (the official CLI) and ``tinker-actors auth login`` read and write the same file, so
a key stored by one is used by the other. Its shape (version 1)::

    {
      "version": 1,
      "default": "42",
      "keys": {
        "42": {"type": "manual", "key": "tml-...", "name": "laptop", "note": "...",
               "details": {"org_details": {"name": "..."}, "user_details": {"email": "..."}}}
      }
    }

``type`` is ``manual`` (a key the user pasted) or ``generated`` (minted for the CLI itself by older CLIs:
logging out deletes such a key on the server). Fields left out are absent, never ``null``; fields this
module does not know are kept when the file is rewritten.

The file holds live keys: it is written atomically (a temporary file in the same directory, then a
rename), with mode 0600 in a directory of mode 0700. A key read from it is a :class:`SecretStr`: reprs,
logs and errors never show it, and a record refuses to be pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, ValidationError, field_serializer

from tinker_actors.auth.errors import StoredCredentialsError

__all__ = [
    "CREDENTIALS_FILE_VERSION",
    "CredentialsFile",
    "KeyDetails",
    "OrgDetails",
    "StoredCredentials",
    "StoredKey",
    "UserDetails",
    "default_credentials_path",
]

CREDENTIALS_FILE_VERSION: Literal[1] = 1
_FILE_MODE = 0o600
_DIR_MODE = 0o700
_REVEAL = "reveal_stored_keys"  # serialization context flag: only the file writer sets it


class _Record(BaseModel):
    # Unknown fields are kept (a newer CLI may add some); inputs never appear in validation errors.
    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)


class OrgDetails(_Record):
    """The organisation a key belongs to."""

    name: str


class UserDetails(_Record):
    """The user a key was issued to."""

    email: str


class KeyDetails(_Record):
    """Who a key belongs to, as ``GET /api/v1/auth/apikey/me`` describes it."""

    org_details: OrgDetails
    user_details: UserDetails


class StoredKey(_Record):
    """One stored key. ``key`` is a secret: shown nowhere but in the file itself."""

    type: Literal["manual", "generated"] = "manual"
    key: SecretStr
    name: str
    note: str | None = None
    details: KeyDetails | None = None

    @field_serializer("key")
    def _key_text(self, key: SecretStr, info: SerializationInfo) -> str:
        context = info.context
        if isinstance(context, Mapping) and context.get(_REVEAL):
            return key.get_secret_value()
        return str(key)  # masked

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a StoredKey holds an API key and is never pickled")


class StoredCredentials(_Record):
    """The whole file: the stored keys by id, and the id of the default one."""

    version: Literal[1] = 1
    default: str | None = None
    keys: dict[str, StoredKey] = Field(default_factory=dict)

    def default_entry(self) -> tuple[str, StoredKey] | None:
        """``(id, record)`` of the default key, or None (no default, or it names a key no longer stored)."""
        if self.default is None or self.default not in self.keys:
            return None
        return self.default, self.keys[self.default]

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("StoredCredentials hold API keys and are never pickled")


def default_credentials_path(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/.tinker/credentials.json``; ``home`` defaults to the user's home directory (``HOME``)."""
    return (Path(home) if home is not None else Path.home()) / ".tinker" / "credentials.json"


class CredentialsFile:
    """Reads and writes one credentials file. Every method reads the file afresh (another CLI may have
    changed it); a missing file reads as empty."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_credentials_path()

    def __repr__(self) -> str:
        return f"CredentialsFile({str(self.path)!r})"

    def read(self) -> StoredCredentials:
        """The file's contents; :class:`StoredCredentialsError` (never quoting it) when it is not a
        version-1 credentials file."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return StoredCredentials()
        except OSError as error:
            raise StoredCredentialsError(f"cannot read the stored credentials in {self.path}: "
                                         f"{error.strerror or type(error).__name__}") from None
        try:
            return StoredCredentials.model_validate_json(raw)
        except ValidationError as invalid:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'file'}: {problem['msg']}"
                for problem in invalid.errors(include_input=False, include_url=False)[:3])
            raise StoredCredentialsError(
                f"{self.path} is not a credentials file this SDK can read ({problems}). Fix or remove it "
                "(`tinker-actors auth logout` cannot, as it cannot read it), then log in again.") from None

    def default_entry(self) -> tuple[str, StoredKey] | None:
        """``(id, record)`` of the default key, or None."""
        return self.read().default_entry()

    def write(self, credentials: StoredCredentials) -> None:
        """Replace the file atomically: mode 0600, in a directory of mode 0700 (created if needed)."""
        directory = self.path.parent
        try:
            if not directory.is_dir():
                directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
                directory.chmod(_DIR_MODE)  # mkdir's mode is reduced by the umask
            text = json.dumps(credentials.model_dump(mode="json", exclude_none=True, context={_REVEAL: True}),
                              indent=2)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.")
        except OSError as error:
            raise StoredCredentialsError(f"cannot write the stored credentials in {self.path}: "
                                         f"{error.strerror or type(error).__name__}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), _FILE_MODE)  # before a byte of the key is written
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(error, OSError):
                raise StoredCredentialsError(f"cannot write the stored credentials in {self.path}: "
                                             f"{error.strerror or type(error).__name__}") from None
            raise

    def store(self, key_id: str, record: StoredKey, *, make_default: bool = True) -> None:
        """Add (or replace) ``record`` under ``key_id``, making it the default key unless told not to."""
        credentials = self.read()
        credentials.keys[key_id] = record
        if make_default:
            credentials.default = key_id
        self.write(credentials)

    def remove(self, key_id: str) -> StoredKey:
        """Remove the key stored under ``key_id`` (and the default, if it named it); KeyError if absent."""
        credentials = self.read()
        record = credentials.keys.pop(key_id)
        if credentials.default == key_id:
            credentials.default = None
        self.write(credentials)
        return record
