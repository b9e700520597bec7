"""The wire: one codec per protocol version (see :mod:`tinker_actors.wire.codec` for what a codec offers).

* ``"0.6.3"`` — :mod:`tinker_actors.wire.v0_6_3`: JSON everywhere.
* ``"0.38"`` — :mod:`tinker_actors.wire.v0_38`: protobuf forward_backward requests (zstd when the
  server asks) and protobuf fwd/bwd and sample results.

Pick one with :func:`client_codec` after negotiation and call it; never branch on the version.
"""

from __future__ import annotations

from tinker_actors.errors import InvalidInputError
from tinker_actors.wire import v0_6_3, v0_38
from tinker_actors.wire.codec import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_PROTOBUF,
    ClientCodec,
    EncodedBody,
    EncodedRequest,
    ForwardBackwardCall,
    PreparedRequest,
    ServerCodec,
)

__all__ = [
    "CLIENT_CODECS",
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "ClientCodec",
    "EncodedBody",
    "EncodedRequest",
    "ForwardBackwardCall",
    "PreparedRequest",
    "ServerCodec",
    "client_codec",
]

CLIENT_CODECS: dict[str, ClientCodec] = {v0_6_3.CODEC.version: v0_6_3.CODEC, v0_38.CODEC.version: v0_38.CODEC}


def client_codec(version: str) -> ClientCodec:
    """The codec of protocol ``version`` (``"0.6.3"`` or ``"0.38"``)."""
    try:
        return CLIENT_CODECS[version]
    except KeyError:
        known = ", ".join(sorted(CLIENT_CODECS))
        raise InvalidInputError(f"unknown protocol version {version!r} (known: {known})") from None
