"""What every wire codec offers: the calls whose bytes differ between protocol versions.

A codec turns the domain model (``tinker_actors.types``) into request bodies and result bodies back
into the domain model, for one protocol version. Callers pick a codec once (after negotiation) and
call it; they never branch on the version themselves. The client side is :class:`ClientCodec`; the
server side (the local service) is :class:`ServerCodec`.

Every request body a client sends goes through its codec: a forward_backward (and forward) submission
in the version's own form, ``retrieve_future`` polls, and every other JSON body by the version's rule of
which fields are sent. Results are read through it where their form differs (forward_backward and
sample results); the other results are JSON in every version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from tinker_actors.types import ForwardBackwardInput, ForwardBackwardOutput, SampleResponse

__all__ = [
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "ClientCodec",
    "EncodedBody",
    "EncodedRequest",
    "ForwardBackwardCall",
    "PreparedRequest",
    "ServerCodec",
    "media_type",
]

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_PROTOBUF = "application/x-protobuf"

# A compressed request may not inflate past this by default: a small body must not be able to make
# the server allocate without bound. Far above the 5 MB chunks the 0.38 service announces.
DEFAULT_MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` value (parameters dropped, lower case)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """Bytes ready for the wire, and the headers that describe them."""

    content: bytes
    content_type: str
    content_encoding: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type}
        if self.content_encoding is not None:
            headers["Content-Encoding"] = self.content_encoding
        return headers

    def __repr__(self) -> str:  # never dump megabytes into a log or a traceback
        encoding = f", {self.content_encoding}" if self.content_encoding else ""
        return f"EncodedBody({len(self.content)} bytes, {self.content_type}{encoding})"


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A request body and the path it is POSTed to (the path differs between versions for forward)."""

    path: str
    body: EncodedBody


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A submission encoded before its seq id is known (clients take seq ids at send time, and a request
    that cannot be encoded must fail before it takes one): the body is ``before + seq_field(seq_id) +
    after``, compressed by ``compress`` when set (with ``content_encoding``).

    ``after`` is the rest of the body in pieces (bytes, or read-only views of arrays the request holds),
    joined once when the body is made, so that a big body is not copied twice."""

    path: str
    content_type: str
    before: bytes
    after: tuple[bytes | memoryview, ...]
    seq_field: Callable[[int], bytes]
    compress: Callable[[bytes], bytes] | None = None
    content_encoding: str | None = None

    @property
    def size(self) -> int:
        """The body's length before compression (give or take the seq id's few bytes)."""
        return len(self.before) + sum(len(part) for part in self.after)

    def body(self, seq_id: int) -> EncodedBody:
        """The body for ``seq_id`` (compressing takes a while for a big batch: call it off the event loop)."""
        content = b"".join((self.before, self.seq_field(seq_id), *self.after))
        if self.compress is not None:
            return EncodedBody(self.compress(content), self.content_type, self.content_encoding)
        return EncodedBody(content, self.content_type)

    def request(self, seq_id: int) -> EncodedRequest:
        return EncodedRequest(self.path, self.body(seq_id))

    def __repr__(self) -> str:
        return f"PreparedRequest({self.path}, {self.size} bytes, {self.content_type})"


@dataclass(frozen=True, slots=True)
class ForwardBackwardCall:
    """One forward_backward (or, with ``forward_only``, forward) submission, independent of the wire."""

    model_id: str
    seq_id: int
    input: ForwardBackwardInput
    forward_only: bool = False


class ClientCodec(Protocol):
    """The client's side of one protocol version."""

    @property
    def version(self) -> str:
        """The protocol version, as ``Config.protocol`` spells it (``"0.6.3"``, ``"0.38"``)."""
        ...

    @property
    def sdk_version(self) -> str:
        """The official SDK release whose wire this is (``"0.6.3"``, ``"0.38.0"``): what a client claims as
        ``sdk_version`` unless configured otherwise."""
        ...

    @property
    def sends_sdk_method(self) -> bool:
        """Whether requests made by a public method carry ``x-sdk-version`` and ``x-sdk-method``."""
        ...

    @property
    def result_accept(self) -> str:
        """The ``Accept`` header of a poll for a forward_backward or sample result."""
        ...

    def encode_json(self, request: BaseModel) -> bytes:
        """The JSON body of any other request, by this version's rules (which fields are sent)."""
        ...

    def encode_retrieve(self, request_id: str, *, allow_metadata_only: bool) -> bytes:
        """A ``retrieve_future`` body. ``allow_metadata_only`` is dropped by versions without it."""
        ...

    def encode_forward_backward(self, call: ForwardBackwardCall, *, compress: bool = False) -> EncodedRequest:
        """The submission of ``call``; ``compress`` when the server asked for compressed requests.

        Raises ``InvalidInputError`` when the input cannot be expressed on this wire.
        """
        ...

    def prepare_forward_backward(self, model_id: str, fb_input: ForwardBackwardInput, *, forward_only: bool = False,
                                 compress: bool = False) -> PreparedRequest:
        """The same submission, encoded now and completed with its seq id later (the same bytes as
        :meth:`encode_forward_backward`). Raises ``InvalidInputError`` now, before any seq id is taken."""
        ...

    def decode_forward_backward_output(self, content: bytes, content_type: str | None) -> ForwardBackwardOutput:
        """A completed forward_backward result. Raises ``APIResponseValidationError`` on a bad body."""
        ...

    def decode_sample_response(self, content: bytes, content_type: str | None) -> SampleResponse:
        """A completed sample result. Raises ``APIResponseValidationError`` on a bad body."""
        ...


class ServerCodec(Protocol):
    """The service's side of one protocol version."""

    @property
    def version(self) -> str:
        ...

    def decode_forward_backward(self, content: bytes, *, content_type: str | None,
                                content_encoding: str | None = None,
                                max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> ForwardBackwardCall:
        """A submitted forward_backward. Raises ``InvalidInputError`` on a bad body (answer 400)."""
        ...

    def encode_forward_backward_output(self, output: ForwardBackwardOutput) -> EncodedBody:
        ...

    def encode_sample_response(self, response: SampleResponse) -> EncodedBody:
        ...
