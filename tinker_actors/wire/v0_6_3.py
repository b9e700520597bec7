"""Protocol 0.6.3: every body is JSON (WIRE-PROTOCOL §2), encoded by ``tinker_actors.types``.

Forward and forward_backward are two endpoints with two body shapes; results are JSON. The server
never asks 0.6.3 clients to compress, so ``compress`` has nothing to act on.

What protocol 0.38 added to a forward_backward is sent as 0.6.3 can carry it, or refused: a sparse
tensor goes dense (0.6.3's TensorData has no sparse form; the values are the same), a numeric text
setting of ``loss_fn_config`` goes as its number (what the 0.6.3 SDK's pydantic made of it), and any
other text setting is an :class:`InvalidInputError` (0.6.3's ``loss_fn_config`` holds numbers only).
Sample settings that 0.38 added do not exist in 0.6.3: a request that sets one is refused
(:class:`UnsupportedFeatureError` naming the field, "needs protocol 0.38") before anything is sent.
"""

from __future__ import annotations

import math
from typing import TypeVar

import pydantic

from tinker_actors.errors import APIResponseValidationError, InvalidInputError, UnsupportedFeatureError
from tinker_actors.types import (
    Datum,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    FutureRetrieveRequest,
    SampleRequest,
    SampleResponse,
    TensorData,
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
        if isinstance(request, SampleRequest):
            refuse_038_sample_settings(request)
        return encode_json(request)  # only the fields that were set (WIRE-PROTOCOL §2.0)

    def encode_retrieve(self, request_id: str, *, allow_metadata_only: bool) -> bytes:
        return encode_json(FutureRetrieveRequest(request_id=request_id))  # 0.6.3 has no metadata-only answers

    def prepare_forward_backward(self, model_id: str, fb_input: ForwardBackwardInput, *, forward_only: bool = False,
                                 compress: bool = False) -> PreparedRequest:
        # The seq id is the last field of both bodies: everything before it is encoded now.
        fb_input = as_0_6_3(fb_input)
        if forward_only:
            path, head = "/api/v1/forward", encode_json(ForwardRequest(forward_input=fb_input, model_id=model_id))
        else:
            path, head = "/api/v1/forward_backward", encode_json(ForwardBackwardRequest(
                forward_backward_input=fb_input, model_id=model_id))
        return PreparedRequest(path, CONTENT_TYPE_JSON, head[:-1] + b',"seq_id":', (b"}",), _seq_text)

    def encode_forward_backward(self, call: ForwardBackwardCall, *, compress: bool = False) -> EncodedRequest:
        call = ForwardBackwardCall(call.model_id, call.seq_id, as_0_6_3(call.input), call.forward_only)
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


def as_0_6_3(fb_input: ForwardBackwardInput) -> ForwardBackwardInput:
    """``fb_input`` as protocol 0.6.3 can carry it (see the module docstring); itself when nothing changes."""
    config = fb_input.loss_fn_config
    if config is not None and any(isinstance(value, str) for value in config.values()):
        config = {name: _number(name, value) for name, value in config.items()}
    data = fb_input.data
    if any(tensor.is_sparse for datum in data for tensor in datum.loss_fn_inputs.values()):
        data = [_dense(datum) for datum in data]
    if config is fb_input.loss_fn_config and data is fb_input.data:
        return fb_input
    return fb_input.model_copy(update={"data": data, "loss_fn_config": config})


def _number(name: str, value: float | str) -> float:
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(
            f"loss_fn_config[{name!r}] is the text {value!r}: protocol 0.6.3 carries numeric loss settings only "
            "(text settings need protocol 0.38)") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"loss_fn_config[{name!r}] must be a finite number, got {value!r}")
    return number


def _dense(datum: Datum) -> Datum:
    if not any(tensor.is_sparse for tensor in datum.loss_fn_inputs.values()):
        return datum
    inputs = {name: TensorData.from_numpy(tensor.to_numpy()) if tensor.is_sparse else tensor
              for name, tensor in datum.loss_fn_inputs.items()}
    return datum.model_copy(update={"loss_fn_inputs": inputs})


def refuse_038_sample_settings(request: SampleRequest) -> None:
    """:class:`UnsupportedFeatureError` if ``request`` sets a sample setting that protocol 0.38 added."""
    asked = {
        "topk_sample_logprobs": request.topk_sample_logprobs != 0,
        "target_prompt_logprobs": request.target_prompt_logprobs is not None,
        "prompt_alt_tokens_k": request.prompt_alt_tokens_k != 0,
        "prompt_logprobs_last_n": request.prompt_logprobs_last_n is not None,
        "record_stability_info": bool(request.record_stability_info),
    }
    for name, set_ in asked.items():
        if set_:
            raise UnsupportedFeatureError(
                f"SampleRequest.{name} needs protocol 0.38; this client speaks 0.6.3 with its server (leave {name} at "
                f"its default, or use a server that speaks 0.38: docs/protocols.md)", feature=f"SampleRequest.{name}")


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
