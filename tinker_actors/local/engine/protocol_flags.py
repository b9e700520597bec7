"""What the service tells newer SDKs about the protocol: the flags of ``client/config`` and
``client/dynamic_config``, and when a finished result is announced by its size first.

Since 0.18 the official SDK asks ``POST /api/v1/client/config`` once and ``POST
/api/v1/client/dynamic_config`` every ``refresh_interval_sec``; both answer a JSON object of flags,
and a flag left out means the SDK's default, so ``{}`` means "all defaults". :class:`ProtocolSettings`
holds the flags a test (or an operator) set, shared by the three control surfaces (Python, the admin
endpoints, the CLI) and thread-safe: a test changes flags from its own thread while the service runs.

Flags the official 0.38 SDK knows are checked for their type; any other name is accepted with any
JSON value and put in both answers, so that a test can check that clients ignore flags they do not
know. Some switches turn on features this service does not serve (their endpoints answer 404); they
can still be set, to see how a client reacts, and setting one logs a warning that says so.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tinker_actors.errors import InvalidInputError

__all__ = [
    "CONFIG_FLAGS",
    "DEFAULT_INLINE_RESULT_BYTES",
    "DYNAMIC_FLAGS",
    "FlagSpec",
    "ProtocolSettings",
]

_log = logging.getLogger(__name__)

# A finished result at least this large is first announced by its size when the poll allows it
# (``allow_metadata_only``): small results (samples) come in one round trip, big fwd/bwd outputs in two.
DEFAULT_INLINE_RESULT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FlagSpec:
    """A flag the official SDK reads: its type, the SDK's default, the least value an int may have,
    and the endpoint it needs when this service does not serve that feature."""

    kind: type[bool] | type[int] | type[str]
    default: bool | int | str
    minimum: int = 1
    unserved_endpoint: str | None = None


# client/config, read once when a client starts (official SDK 0.38, types/client_config_response.py).
CONFIG_FLAGS: dict[str, FlagSpec] = {
    "pjwt_auth_enabled": FlagSpec(bool, False),
    "credential_default_source": FlagSpec(str, "api_key"),
    "sample_dispatch_bytes_semaphore_size": FlagSpec(int, 10 * 1024 * 1024),
    "inflight_response_bytes_semaphore_size": FlagSpec(int, 50 * 1024 * 1024),
    "parallel_fwdbwd_chunks": FlagSpec(bool, True),
    "proto_compress_fwdbwd": FlagSpec(bool, False),
    "fwdbwd_max_chunk_len": FlagSpec(int, 1024),
    "fwdbwd_max_chunk_bytes_count": FlagSpec(int, 5_000_000),
    "fwdbwd_dispatch_bytes_semaphore_size": FlagSpec(int, 50_000_000),
    "billing_exception_max_pause_duration_sec": FlagSpec(int, 3600, minimum=0),
    "sample_no_retries": FlagSpec(bool, False),
    "sample_enable_stuck_detection": FlagSpec(bool, True),
    "sample_max_concurrent_requests": FlagSpec(int, 2000),
    "use_pyqwest_transport": FlagSpec(bool, True),
    "sample_use_retrieve_futures": FlagSpec(bool, False),  # served: local/api/sample_futures_api.py
    "custom_loss_server_side": FlagSpec(bool, False, unserved_endpoint="/api/v1/create_custom_loss"),
    "sample_join_sampling_session": FlagSpec(bool, False),  # served: clones get their seq-id block there
}

# client/dynamic_config, re-read every refresh_interval_sec (types/client_dynamic_config_response.py).
DYNAMIC_FLAGS: dict[str, FlagSpec] = {
    "refresh_interval_sec": FlagSpec(int, 300),
    "sample_cancel_enabled": FlagSpec(bool, False),  # served: local/api/sample_futures_api.py
    "sample_cancel_max_batch_size": FlagSpec(int, 64),
}

_KNOWN = {**CONFIG_FLAGS, **DYNAMIC_FLAGS}


def _checked(name: object, value: object) -> tuple[str, Any]:
    """``(name, value)`` if a flag may be set so; else :class:`InvalidInputError` saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"a protocol flag name is a non-empty string, got {name!r}")
    spec = _KNOWN.get(name)
    if spec is None:
        try:  # unknown flags pass through to clients as they are: they must be JSON
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidInputError(f"protocol flag {name!r}: {value!r} is not a JSON value") from None
        return name, value
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"protocol flag {name!r} is true or false, got {value!r}")
    elif spec.kind is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # 16.0 from a JSON or CLI source
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"protocol flag {name!r} is an integer, got {value!r}")
        if value < spec.minimum:
            raise InvalidInputError(f"protocol flag {name!r} must be at least {spec.minimum}, got {value}")
    elif not isinstance(value, str):
        raise InvalidInputError(f"protocol flag {name!r} is a string, got {value!r}")
    return name, value


def _checked_inline_bytes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"inline_result_bytes is a number of bytes (0 or more), got {value!r}")
    return value


class ProtocolSettings:
    """The flags announced to newer SDKs, and the size from which results are announced first.

    ``{}`` (no flag set) answers ``{}``: every client uses its defaults. Thread-safe.
    """

    def __init__(self, flags: Mapping[str, Any] | None = None, *,
                 inline_result_bytes: int = DEFAULT_INLINE_RESULT_BYTES) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, Any] = {}
        self._inline_result_bytes = _checked_inline_bytes(inline_result_bytes)
        if flags:
            self.set_flags(flags)

    # ---- flags ---------------------------------------------------------------------------------
    def flags(self) -> dict[str, Any]:
        """The flags set (a copy); those not listed are at the clients' defaults."""
        with self._lock:
            return dict(self._flags)

    def set_flags(self, flags: Mapping[str, Any]) -> None:
        """Replace every flag by ``flags`` (``{}``: back to all defaults)."""
        checked = dict(_checked(name, value) for name, value in flags.items())
        with self._lock:
            self._flags = checked
        self._warn_unserved(checked)

    def update_flags(self, flags: Mapping[str, Any]) -> None:
        """Set the flags in ``flags``, keeping the others; a ``None`` value puts a flag back to its default."""
        removed = [name for name, value in flags.items() if value is None]
        checked = dict(_checked(name, value) for name, value in flags.items() if value is not None)
        with self._lock:
            for name in removed:
                self._flags.pop(name, None)
            self._flags.update(checked)
        self._warn_unserved(checked)

    def clear_flags(self) -> None:
        self.set_flags({})

    def value(self, name: str) -> Any:
        """The flag's value if set, else None (the client's default applies)."""
        with self._lock:
            return self._flags.get(name)

    def config_answer(self) -> bytes:
        """The body of ``client/config``: the set flags that are not dynamic ones."""
        with self._lock:
            answer = {name: value for name, value in self._flags.items() if name not in DYNAMIC_FLAGS}
        return json.dumps(answer).encode()

    def dynamic_answer(self) -> bytes:
        """The body of ``client/dynamic_config``: the set dynamic flags, and any unknown flag."""
        with self._lock:
            answer = {name: value for name, value in self._flags.items() if name not in CONFIG_FLAGS}
        return json.dumps(answer).encode()

    @staticmethod
    def _warn_unserved(flags: Mapping[str, Any]) -> None:
        for name, value in flags.items():
            spec = _KNOWN.get(name)
            if spec is not None and spec.unserved_endpoint is not None and value is True:
                _log.warning("protocol flag %s is on, but the local service does not serve %s: clients that "
                             "follow the flag will get 404 there", name, spec.unserved_endpoint)

    # ---- results -------------------------------------------------------------------------------
    @property
    def inline_result_bytes(self) -> int:
        """A finished result of at least this many bytes is announced by its size first (``complete_metadata``)
        when the poll allows it; 0 announces every result so."""
        with self._lock:
            return self._inline_result_bytes

    @inline_result_bytes.setter
    def inline_result_bytes(self, value: int) -> None:
        checked = _checked_inline_bytes(value)
        with self._lock:
            self._inline_result_bytes = checked

    def snapshot(self) -> dict[str, Any]:
        """What the admin endpoint shows: ``{"flags": {...}, "inline_result_bytes": n}``."""
        with self._lock:
            return {"flags": dict(self._flags), "inline_result_bytes": self._inline_result_bytes}
