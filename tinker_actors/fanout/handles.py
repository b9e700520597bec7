"""Sampler handles: a string that names a sampling session, to give to other processes without pickle.

``SamplingClient.get_sampler_handle()`` writes one; ``SamplingClient.from_sampler_handle(handle)`` reads it
in any process, any number of times, each time making a new client of the same sampling session that
authenticates with that process's own credentials. A handle holds the base URL, the sampling session id,
the base model, the model path and whether the client records stability info (``record_stability_info``, as
the official SDK's handles do): never a credential. It is URL-safe base64 of a small JSON object.
Handles written by the official 0.38 SDK are read too (its credential field, empty there, is ignored).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from tinker_actors.fanout.errors import InvalidSamplerHandleError

__all__ = ["SamplerHandle"]

_VERSION = 1
_MAX_HANDLE_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class SamplerHandle:
    """What a handle says. Deliberately no credential field: the reader brings its own."""

    base_url: str
    sampling_session_id: str
    base_model: str | None = None
    model_path: str | None = None
    record_stability_info: bool = False

    def encode(self) -> str:
        fields = {"v": _VERSION, "base_url": self.base_url, "sampling_session_id": self.sampling_session_id,
                  "base_model": self.base_model, "model_path": self.model_path}
        if self.record_stability_info:  # only when set: a handle of a plain client reads as before
            fields["record_stability_info"] = True
        return base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode("ascii")

    @classmethod
    def decode(cls, handle: object) -> SamplerHandle:
        """Read a handle (ours or the official SDK's); :class:`InvalidSamplerHandleError` when it is not one."""
        if not isinstance(handle, str):
            raise InvalidSamplerHandleError(f"a sampler handle is a string, got {type(handle).__name__}")
        if not handle or len(handle) > _MAX_HANDLE_CHARS:
            raise InvalidSamplerHandleError(f"not a sampler handle ({len(handle)} characters)")
        try:
            fields = json.loads(base64.urlsafe_b64decode(handle.encode("ascii")))
        except (UnicodeError, binascii.Error, ValueError):
            raise InvalidSamplerHandleError(
                "not a sampler handle: expected the string SamplingClient.get_sampler_handle() returned") from None
        if not isinstance(fields, dict):
            raise InvalidSamplerHandleError("not a sampler handle: expected a JSON object inside")
        holder = fields.get("holder")
        base_url = holder.get("base_url") if isinstance(holder, dict) else fields.get("base_url")  # official: holder
        session = fields.get("sampling_session_id")
        if not isinstance(base_url, str) or not base_url or not isinstance(session, str) or not session:
            raise InvalidSamplerHandleError("not a sampler handle: it names no base URL or no sampling session")
        version = fields.get("v", _VERSION)
        if version != _VERSION:
            raise InvalidSamplerHandleError(f"a sampler handle of version {version!r}; this SDK reads version "
                                            f"{_VERSION} (upgrade tinker-actors where the handle is read)")
        return cls(base_url, session, _optional_str(fields.get("base_model")), _optional_str(fields.get("model_path")),
                   fields.get("record_stability_info") is True)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
