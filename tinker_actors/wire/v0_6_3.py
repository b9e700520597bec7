"""Protocol 0.6.3: every body is JSON (WIRE-PROTOCOL §2), encoded by ``tinker_actors.types``.

Forward and forward_backward are two endpoints with two body shapes; results are JSON. The server
never asks 0.6.3 clients to compress, so ``compress`` has nothing to act on.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic

from tinker_actors.errors import APIResponseValidationError
from tinker_actors.types import (
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    FutureRetrieveRequest,
    SampleResponse,
    encode_json,
)
from tinker_actors.wire.codec import (
    CONTENT_TYPE_JSON,
    EncodedBody,
    EncodedRequest,
    ForwardBackwardCall,
    PreparedRequest,
)

__all__ = ["CODEC", "JsonCodec"]

_Result = TypeVar("_Result", bound=pydantic.BaseModel)


class JsonCodec:
    """Protocol 0.6.3, the client's side (:class:`~tinker_actors.wire.codec.ClientCodec`)."""

    @property
    def version(self) -> str:
        return "0.6.3"

    @property
    def sdk_version(self) -> str:
        return "0.6.3"

    @property
    def sends_sdk_method(self) -> bool:
        return False  # 0.6.3 had no x-sdk-version / x-sdk-method headers

    @property
    def result_accept(self) -> str:
        return CONTENT_TYPE_JSON

    def encode_json(self, request: pydantic.BaseModel) -> bytes:
        return encode_json(request)  # only the fields that were set (WIRE-PROTOCOL §2.0)

    def encode_retrieve(self, request_id: str, *, allow_metadata_only: bool) -> bytes:
        return encode_json(FutureRetrieveRequest(request_id=request_id))  # 0.6.3 has no metadata-only answers

    def prepare_forward_backward(self, model_id: str, fb_input: ForwardBackwardInput, *, forward_only: bool = False,
                                 compress: bool = False) -> PreparedRequest:
        # The seq id is the last field of both bodies: everything before it is encoded now.
        if forward_only:
            path, head = "/api/v1/forward", encode_json(ForwardRequest(forward_input=fb_input, model_id=model_id))
        else:
            path, head = "/api/v1/forward_backward", encode_json(ForwardBackwardRequest(
                forward_backward_input=fb_input, model_id=model_id))
        return PreparedRequest(path, CONTENT_TYPE_JSON, head[:-1] + b',"seq_id":', (b"}",), _seq_text)

    def encode_forward_backward(self, call: ForwardBackwardCall, *, compress: bool = False) -> EncodedRequest:
        if call.forward_only:
            content = encode_json(ForwardRequest(forward_input=call.input, model_id=call.model_id, seq_id=call.seq_id))
            return EncodedRequest("/api/v1/forward", EncodedBody(content, CONTENT_TYPE_JSON))
        content = encode_json(ForwardBackwardRequest(forward_backward_input=call.input, model_id=call.model_id,
                                                     seq_id=call.seq_id))
        return EncodedRequest("/api/v1/forward_backward", EncodedBody(content, CONTENT_TYPE_JSON))

    def decode_forward_backward_output(self, content: bytes, content_type: str | None) -> ForwardBackwardOutput:
        return _validate(ForwardBackwardOutput, content)

    def decode_sample_response(self, content: bytes, content_type: str | None) -> SampleResponse:
        return _validate(SampleResponse, content)

    def __repr__(self) -> str:
        return "JsonCodec(version='0.6.3')"


def _seq_text(seq_id: int) -> bytes:
    return str(int(seq_id)).encode()


def _validate(model: type[_Result], content: bytes) -> _Result:
    try:
        return model.model_validate_json(content)
    except pydantic.ValidationError as invalid:
        # Not chained, and no input quoted: a response body is not ours to echo into tracebacks.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in invalid.errors(include_url=False, include_input=False)[:3])
        raise APIResponseValidationError(f"invalid JSON {model.__name__} result: {problems}") from None


CODEC = JsonCodec()
