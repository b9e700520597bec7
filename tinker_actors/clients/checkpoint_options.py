"""The options of protocol 0.38's checkpoint saves (``ttl_seconds``, ``user_metadata``, ``overwrite``),
checked on the caller's thread before anything is queued.

They become request fields only when the caller set them (a 0.6.3 body carries only fields that were set,
and 0.38's defaults need not be repeated), and only on protocol 0.38: a 0.6.3 server has none of them and
would ignore or refuse them, so asking for one there is a typed error before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tinker_actors.errors import InvalidInputError

__all__ = ["check_ttl_seconds", "check_user_metadata", "save_options"]

_PROTOCOL = "0.38"


def check_ttl_seconds(method: str, ttl_seconds: object) -> int | None:
    """None (never expires) or whole seconds >= 0 (the server checks its own range: 1 hour to 10 years on the
    official service)."""
    if ttl_seconds is None:
        return None
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 0:
        raise InvalidInputError(f"{method}: ttl_seconds must be None or whole seconds >= 0, got {ttl_seconds!r}")
    return ttl_seconds


def check_user_metadata(method: str, user_metadata: object) -> dict[str, str] | None:
    """None, or a mapping of strings to strings (what a Checkpoint's user_metadata holds)."""
    if user_metadata is None:
        return None
    if not isinstance(user_metadata, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in user_metadata.items()):
        raise InvalidInputError(f"{method}: user_metadata must be a dict of str to str")
    return dict(user_metadata)


def save_options(protocol: str, method: str, *, ttl_seconds: object = None, user_metadata: object = None,
                 overwrite: object = False) -> dict[str, Any]:
    """The request fields the caller asked for (``{}`` when none), or :class:`InvalidInputError` if one is
    malformed or the protocol (``"0.38"`` or ``"0.6.3"``) has no such field."""
    options: dict[str, Any] = {}
    ttl = check_ttl_seconds(method, ttl_seconds)
    if ttl is not None:
        options["ttl_seconds"] = ttl
    metadata = check_user_metadata(method, user_metadata)
    if metadata is not None:
        options["user_metadata"] = metadata
    if not isinstance(overwrite, bool):
        raise InvalidInputError(f"{method}: overwrite must be True or False, got {overwrite!r}")
    if overwrite:
        options["overwrite"] = True
    if options and protocol != _PROTOCOL:
        raise InvalidInputError(f"{method}: {', '.join(sorted(options))} need protocol 0.38 (checkpoint expiry, "
                                f"metadata and overwrite); this client speaks {protocol}, whose server has none of "
                                "them (nothing was sent)")
    return options
