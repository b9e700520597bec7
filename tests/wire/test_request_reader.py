"""The service reads a forward_backward request's arrays in place, and reads every body as protobuf would.

``request_reader`` walks the common form of the message and hands back views of the body; anything else
goes to protobuf's parser. These tests pin both halves: the common form is read without copies, and for
any body (built, odd, or broken) the service's answer is the one protobuf's parser alone gives.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.conftest import Official038
from tests.wire.test_codec_038 import calls
from tests.wire.test_official_038 import REQUESTS
from tinker_actors import types
from tinker_actors.errors import InvalidInputError
from tinker_actors.wire import CONTENT_TYPE_PROTOBUF, ForwardBackwardCall
from tinker_actors.wire.v0_38 import CODEC, codec
from tinker_actors.wire.v0_38 import tinker_pb2 as pb
from tinker_actors.wire.v0_38.request_reader import DatumSlices, scan_forward_backward


def _decode(body: bytes) -> ForwardBackwardCall | str:
    """What the service makes of ``body``: the call, or the text of its 400."""
    try:
        return CODEC.decode_forward_backward(body, content_type=CONTENT_TYPE_PROTOBUF)
    except InvalidInputError as refused:
        return f"refused: {refused}"


def _decode_by_protobuf(body: bytes, monkeypatch: pytest.MonkeyPatch) -> ForwardBackwardCall | str:
    """The same, with the in-place reader switched off: protobuf's parser reads every body."""
    with monkeypatch.context() as patch:
        patch.setattr(codec, "scan_forward_backward", lambda raw: None)
        return _decode(body)


def _batch(datums: int = 4, tokens: int = 300) -> types.ForwardBackwardInput:
    rng = np.random.default_rng(1)
    data = []
    for index in range(datums):
        ids = rng.integers(0, 50_000, tokens + 1)
        inputs: dict[str, Any] = {"target_tokens": ids[1:], "weights": rng.random(tokens).astype(np.float32)}
        if index % 2:
            inputs["advantages"] = rng.standard_normal((tokens, 1))  # a 2-D input, float64 -> float32
        data.append(types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]), loss_fn_inputs=inputs))
    return types.ForwardBackwardInput(data=data, loss_fn="cross_entropy")


def _body(fb_input: types.ForwardBackwardInput, seq_id: int = 7) -> bytes:
    return bytes(CODEC.prepare_forward_backward("run-1", fb_input).body(seq_id).content)


def test_the_common_form_is_read_in_place() -> None:
    body = _body(_batch())
    slices = scan_forward_backward(body)
    assert slices is not None and all(isinstance(datum, DatumSlices) for datum in slices.data)
    call = CODEC.decode_forward_backward(body, content_type=CONTENT_TYPE_PROTOBUF)
    whole = np.frombuffer(body, dtype=np.uint8)
    for datum in call.input.data:
        chunk = datum.model_input.chunks[0]
        assert isinstance(chunk, types.EncodedTextChunk)
        held = chunk.held_array()
        assert held is not None and np.shares_memory(held, whole)  # a view of the body, not a copy
        for tensor in datum.loss_fn_inputs.values():
            assert np.shares_memory(tensor.to_numpy(), whole)


def test_the_common_form_reads_as_protobuf_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for seq_id in (0, 1, 2**31 - 1):
        body = _body(_batch(), seq_id)
        assert _decode(body) == _decode_by_protobuf(body, monkeypatch)


@settings(max_examples=60, deadline=None)
@given(call=calls())
def test_any_request_reads_as_protobuf_reads_it(call: ForwardBackwardCall) -> None:
    # Images, loss settings in both maps, flat and shaped tensors, forward_only: in place or not, the same.
    body = CODEC.encode_forward_backward(call).body.content
    with pytest.MonkeyPatch.context() as patch:
        assert _decode(body) == _decode_by_protobuf(body, patch)


def _plain() -> pb.ForwardBackwardRequest:
    message = pb.ForwardBackwardRequest(model_id="run-1", seq_id=3, loss_fn="cross_entropy")
    datum = message.data.add()
    datum.model_input.add().encoded_text.tokens = np.arange(4, dtype="<i4").tobytes()
    datum.loss_fn_inputs["weights"].dense = np.ones(4, dtype="<f4").tobytes()
    datum.loss_fn_inputs["weights"].dtype = pb.DTYPE_FLOAT32
    datum.loss_fn_inputs["weights"].shape[:] = [4]
    return message


def _odd_bodies() -> dict[str, bytes]:
    """Bodies in forms the in-place reader leaves to protobuf, or that are wrong."""
    plain = _plain().SerializeToString()
    cases: dict[str, bytes] = {}
    message = _plain()
    message.seq_id = -5
    cases["negative seq_id"] = message.SerializeToString()
    cases["a field written twice (last wins)"] = plain + _plain().SerializeToString().replace(b"run-1", b"run-2")
    cases["an unknown field"] = plain + b"\x98\x06\x01"  # field 99, varint 1
    message = _plain()
    message.seq_id = 0  # not written: the overlong one below is the only one
    cases["a varint with bits past 64"] = message.SerializeToString() + b"\x10" + b"\xff" * 9 + b"\x7f"
    cases["model_id as a varint"] = b"\x08\x05" + plain
    message = _plain()
    message.data[0].loss_fn_inputs["weights"].shape[:] = [2, 2]
    cases["a 2-D shape"] = message.SerializeToString()
    message = _plain()
    message.data[0].loss_fn_inputs["weights"].shape[:] = [-4]
    cases["a negative dimension"] = message.SerializeToString()
    message = _plain()
    message.data[0].loss_fn_inputs["weights"].dtype = 9  # type: ignore[assignment]  # a value the enum does not name
    cases["an unknown dtype"] = message.SerializeToString()
    message = _plain()
    message.data[0].loss_fn_inputs["weights"].dtype = pb.DTYPE_BFLOAT16
    message.data[0].loss_fn_inputs["weights"].dense = np.ones(4, dtype="<u2").tobytes()
    cases["bfloat16 values"] = message.SerializeToString()
    message = _plain()
    message.data[0].loss_fn_inputs["weights"].dense = b"\0" * 7
    cases["a partial value"] = message.SerializeToString()
    message = _plain()
    message.data[0].model_input.add().encoded_text.tokens = b"\1\0\0\0"
    message.data[0].model_input.add().image.data = b"png"
    cases["two text chunks and an image"] = message.SerializeToString()
    message = _plain()
    message.data[0].model_input.add()
    cases["an empty chunk"] = message.SerializeToString()
    message = _plain()
    message.data[0].model_input_spans.add().prompt_tokens.sequence_id = "s"
    cases["provenance spans"] = message.SerializeToString()
    message = _plain()
    message.data[0].loss_fn_inputs["mask"].sparse_csr.values = b""
    message.data[0].loss_fn_inputs["mask"].dtype = pb.DTYPE_FLOAT32
    cases["a sparse tensor"] = message.SerializeToString()
    message = _plain()
    message.loss_fn_config["clip"] = 0.2
    message.loss_fn_config_v2["mode"].text = "x"
    cases["both loss settings maps"] = message.SerializeToString()
    message = _plain()
    message.loss_fn_config_v2["mode"].SetInParent()
    cases["a setting neither number nor text"] = message.SerializeToString()
    message = _plain()
    message.forward_only = True
    message.loss_fn = "no_such_loss"
    cases["an unknown loss"] = message.SerializeToString()
    entry = b"\x0a\x01w"  # a loss_fn_inputs entry with a key and no value
    cases["a map entry without its value"] = plain + b"\x1a" + bytes([len(entry) + 2]) + b"\x12" + bytes(
        [len(entry)]) + entry
    cases["text that is not UTF-8"] = plain.replace(b"run-1", b"run\xff1")
    cases["empty"] = b""
    cases["garbage"] = b"\xff" * 12
    return cases


@pytest.mark.parametrize("name", list(_odd_bodies()))
def test_odd_and_broken_bodies_read_as_protobuf_reads_them(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _odd_bodies()[name]
    assert _decode(body) == _decode_by_protobuf(body, monkeypatch)


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3))
def test_damaged_bodies_read_as_protobuf_reads_them(cut: int, flips: list[tuple[int, int]]) -> None:
    body = bytearray(_body(_batch(datums=2, tokens=3)))
    del body[cut % (len(body) + 1):]
    for position, value in flips:
        if body:
            body[position % len(body)] = value
    with pytest.MonkeyPatch.context() as patch:
        assert _decode(bytes(body)) == _decode_by_protobuf(bytes(body), patch)


def test_every_truncation_of_a_request_reads_as_protobuf_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _body(_batch(datums=2, tokens=2))
    rng = random.Random(0)
    for cut in sorted({*range(0, len(body), 3), *rng.sample(range(len(body)), 20)}):
        assert _decode(body[:cut]) == _decode_by_protobuf(body[:cut], monkeypatch), cut


def test_the_official_sdks_requests_are_read_in_place(official: Official038) -> None:
    theirs = official.call("encode_forward_backward", case=REQUESTS["cross_entropy"], compress=False)
    slices = scan_forward_backward(bytes.fromhex(theirs["body_hex"]))
    assert slices is not None and slices.data and all(isinstance(datum, DatumSlices) for datum in slices.data)
