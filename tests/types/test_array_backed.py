"""TensorData built from numpy (or read from the 0.38 wire) holds the array and makes its list only when read.

Code written for lists sees lists (``data``, JSON, equality, pickles, copies), and the fast paths see the
array: the 0.38 codec writes it with ``tobytes``, ``to_numpy`` returns it without a copy, and the
training calls check it for NaN without making a list.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from tinker_actors import types
from tinker_actors.errors import InvalidInputError
from tinker_actors.types.datum import datum_list
from tinker_actors.wire.v0_38 import CODEC


def _unlisted(model: object, field: str) -> bool:
    """Whether ``field`` of ``model`` still holds its array: no Python list has been made of it."""
    return not isinstance(vars(model)[field], list)



def _list_built(array: np.ndarray) -> types.TensorData:
    """What from_numpy built before it held arrays: the list of the flat array, and its shape."""
    flat = array.astype(np.int64) if array.dtype.kind in "iu" else array
    dtype: types.TensorDtype = "int64" if array.dtype.kind in "iu" else "float32"
    return types.TensorData.model_construct(data=flat.ravel().tolist(), dtype=dtype, shape=list(array.shape))


ARRAYS = {
    "float32 2-D": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "float64 keeps its precision": np.array([0.1, -2.5, 1e-300]),
    "int32 widens": np.array([1, -2, 3], dtype=np.int32),
    "uint8": np.array([0, 255], dtype=np.uint8),
    "empty": np.zeros(0, dtype=np.float32),
}


def test_from_numpy_makes_no_list_until_data_is_read() -> None:
    tensor = types.TensorData.from_numpy(np.arange(4, dtype=np.float32))
    assert _unlisted(tensor, "data")
    assert tensor.size == 4 and tensor.first_non_finite() is None
    assert _unlisted(tensor, "data")
    assert tensor.data == [0.0, 1.0, 2.0, 3.0]
    assert tensor.data is tensor.data  # made once
    assert tensor.held_array() is not None  # and the array is still used


@pytest.mark.parametrize("name", list(ARRAYS))
def test_a_numpy_built_tensor_is_what_the_list_built_one_was(name: str) -> None:
    array = ARRAYS[name]
    held, listed = types.TensorData.from_numpy(array), _list_built(array)
    assert held.held_array() is not None
    assert types.encode_json(held) == types.encode_json(listed)  # the 0.6.3 JSON, byte for byte
    assert held == listed and listed == held
    assert held.model_dump() == listed.model_dump()
    assert repr(types.TensorData.from_numpy(array)) == repr(listed)
    assert dict(types.TensorData.from_numpy(array)) == dict(listed)
    assert np.array_equal(held.to_numpy(), listed.to_numpy())
    assert held.to_numpy().dtype == listed.to_numpy().dtype
    assert held.tolist() == listed.tolist()
    for fresh in (types.TensorData.from_numpy(array), held):  # before and after the list was made
        assert pickle.loads(pickle.dumps(fresh)) == listed
        assert copy.deepcopy(fresh) == listed
        assert copy.copy(fresh) == listed
        assert types.encode_json(pickle.loads(pickle.dumps(fresh))) == types.encode_json(listed)


def test_json_keeps_field_order_whenever_the_list_is_made() -> None:
    tensor = types.TensorData.from_numpy(np.array([1.5, 2.5]))
    assert tensor.dtype == "float32" and _unlisted(tensor, "data")
    assert types.encode_json(tensor) == b'{"data":[1.5,2.5],"dtype":"float32","shape":[2]}'
    flat = CODEC.decode_forward_backward_output(CODEC.encode_forward_backward_output(types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", metrics={},
        loss_fn_outputs=[{"x": tensor}])).content, "application/x-protobuf").loss_fn_outputs[0]["x"]
    assert types.encode_json(flat) == b'{"data":[1.5,2.5],"dtype":"float32","shape":[2]}'


def test_to_numpy_is_a_read_only_view_and_the_tensor_owns_its_values() -> None:
    source = np.arange(6, dtype=np.float32)
    tensor = types.TensorData.from_numpy(source.reshape(2, 3))
    source[0] = 99.0  # the caller's array changes later: the tensor does not
    view = tensor.to_numpy()
    assert view.shape == (2, 3) and view[0, 0] == 0.0
    assert np.shares_memory(view, tensor.to_numpy())  # no copy per call
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0
    assert tensor.data[0] == 0.0


def test_a_list_put_in_by_model_copy_is_the_truth() -> None:
    tensor = types.TensorData.from_numpy(np.array([1.0, 2.0]))
    updated = tensor.model_copy(update={"data": [5.0, 6.0]})
    assert updated.held_array() is None
    assert updated.to_numpy().tolist() == [5.0, 6.0]
    assert types.encode_json(updated) == b'{"data":[5.0,6.0],"dtype":"float32","shape":[2]}'
    assert tensor.to_numpy().tolist() == [1.0, 2.0]


def test_tensors_stay_unhashable_as_lists_are() -> None:
    with pytest.raises(TypeError):
        hash(types.TensorData.from_numpy(np.zeros(2)))


def test_a_decoded_result_holds_views_of_the_message() -> None:
    output = types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", metrics={"loss:sum": 1.0},
        loss_fn_outputs=[{"logprobs": types.TensorData.from_numpy(-np.arange(n, dtype=np.float32))} for n in (3, 2)])
    body = CODEC.encode_forward_backward_output(output)
    decoded = CODEC.decode_forward_backward_output(body.content, body.content_type)
    tensors = [out["logprobs"] for out in decoded.loss_fn_outputs]
    assert all(_unlisted(tensor, "data") for tensor in tensors)
    assert all(tensor.held_array() is not None and not tensor.to_numpy().flags.writeable for tensor in tensors)
    assert [tensor.data for tensor in tensors] == [[-0.0, -1.0, -2.0], [-0.0, -1.0]]
    assert decoded == output


def test_training_calls_find_non_finite_values_in_held_arrays_without_lists() -> None:
    good = types.Datum(model_input=types.ModelInput.from_ints([1, 2]),
                       loss_fn_inputs={"weights": np.ones(2, dtype=np.float32), "target_tokens": np.array([2, 3])})
    assert datum_list([good], "forward_backward") == [good]
    assert all(_unlisted(tensor, "data") for tensor in good.loss_fn_inputs.values())
    bad = types.Datum(model_input=types.ModelInput.from_ints([1, 2]),
                      loss_fn_inputs={"weights": np.array([1.0, np.inf])})
    with pytest.raises(InvalidInputError, match=r"holds inf at position 1"):
        datum_list([bad], "forward_backward")


def test_plain_float_lists_validate_as_before() -> None:
    assert types.TensorData.from_list([1.0, 2.5], "float32").data == [1.0, 2.5]
    mixed = types.TensorData.from_list([1.0, 2], "float32")
    assert mixed.data == [1.0, 2.0] and all(type(v) is float for v in mixed.data)
    assert types.TensorData.from_list([1, 2], "float32").data == [1, 2]  # ints stay ints (the JSON writes 1, 2)
    assert types.TensorData.from_list([1.0, True], "float32").data == [1, 1]  # the union's lax list[int]
    with pytest.raises(ValueError):
        types.TensorData.from_list([1.0, "x"], "float32")  # type: ignore[arg-type]


def _sample_body(length: int, *, prompt: int = 0) -> bytes:
    rng = np.random.default_rng(length)
    sequence = types.SampledSequence(stop_reason="length", tokens=rng.integers(0, 1000, length).tolist(),
                                     logprobs=(-rng.random(length, dtype=np.float32)).tolist())
    prompt_logprobs = [None, *(-rng.random(prompt - 1, dtype=np.float32)).tolist()] if prompt else None
    response = types.SampleResponse(sequences=[sequence], prompt_logprobs=prompt_logprobs)
    return CODEC.encode_sample_response(response).content


def test_a_long_0_38_sample_holds_arrays_until_its_lists_are_read() -> None:
    body = _sample_body(2048, prompt=1000)
    response = CODEC.decode_sample_response(body, "application/x-protobuf")
    sequence = response.sequences[0]
    assert _unlisted(sequence, "tokens") and _unlisted(sequence, "logprobs")
    assert _unlisted(response, "prompt_logprobs")
    assert sequence.tokens_np.dtype == np.int32 and not sequence.tokens_np.flags.writeable
    assert sequence.logprobs_np is not None and sequence.logprobs_np.size == 2048
    named = sequence.model_copy(update={"sequence_id": "s-1"})  # what the client does with 0.38's ids
    assert _unlisted(named, "tokens") and named.sequence_id == "s-1"
    prompt_np = response.prompt_logprobs_np
    assert prompt_np is not None and np.isnan(prompt_np[0])
    assert response.prompt_logprobs is not None and response.prompt_logprobs[0] is None
    assert named.tokens == sequence.tokens_np.tolist()
    assert named == sequence.model_copy(update={"sequence_id": "s-1"})
    listed = types.SampleResponse.model_validate_json(types.encode_json(response))
    assert listed == response and types.encode_json(listed) == types.encode_json(response)
    assert pickle.loads(pickle.dumps(response)) == listed


@pytest.mark.parametrize("length", [0, 3])
def test_a_short_0_38_sample_holds_lists_and_gives_arrays_too(length: int) -> None:
    response = CODEC.decode_sample_response(_sample_body(length, prompt=2), "application/x-protobuf")
    sequence = response.sequences[0]
    assert isinstance(sequence.__dict__["tokens"], list) and len(sequence.tokens) == length
    assert sequence.tokens_np.tolist() == sequence.tokens and sequence.tokens_np.dtype == np.int32
    assert sequence.logprobs_np is not None and sequence.logprobs_np.tolist() == sequence.logprobs
    assert response.prompt_logprobs is not None and response.prompt_logprobs[0] is None
    prompt_np = response.prompt_logprobs_np
    assert prompt_np is not None and np.isnan(prompt_np[0]) and prompt_np[1] == response.prompt_logprobs[1]
    assert types.SampledSequence(stop_reason="stop", tokens=[1]).logprobs_np is None
    assert types.SampleResponse(sequences=[]).prompt_logprobs_np is None


LONG = list(range(300))


def test_a_long_token_list_is_checked_and_packed_once() -> None:
    chunk = types.ModelInput.from_ints(LONG).chunks[0]
    assert isinstance(chunk, types.EncodedTextChunk)
    held = chunk.held_array()
    assert held is not None and held.dtype == np.dtype("<i4") and not held.flags.writeable
    assert chunk.length == 300 and _unlisted(chunk, "tokens")
    listed = types.EncodedTextChunk(tokens=LONG)
    assert types.encode_json(chunk) == types.encode_json(listed) and chunk == listed
    assert types.ModelInput.from_ints(LONG).to_ints() == LONG
    from_numpy = types.ModelInput.from_ints(np.arange(300, dtype=np.uint16)).chunks[0]
    assert isinstance(from_numpy, types.EncodedTextChunk) and from_numpy.held_array() is not None
    assert from_numpy == listed


@pytest.mark.parametrize("odd", [True, np.int64(7), "8", 9.0, 2**40, -(2**31) - 1])
def test_token_lists_struct_will_not_take_as_int32_follow_the_field_rules(odd: object) -> None:
    tokens: list[int] = [*LONG[:-1], odd]  # type: ignore[list-item]
    made = types.ModelInput.from_ints(tokens).chunks[0]
    validated = types.EncodedTextChunk(tokens=tokens)
    assert isinstance(made, types.EncodedTextChunk)
    assert made == validated and made.tokens == validated.tokens
    assert all(type(token) is int for token in made.tokens)


def test_long_int_lists_of_loss_inputs_are_held_as_int64() -> None:
    tensor = types.TensorData.from_list(LONG, "int64")
    assert tensor.held_array() is not None and _unlisted(tensor, "data")
    assert types.encode_json(tensor) == types.encode_json(types.TensorData(data=LONG, dtype="int64", shape=[300]))
    as_floats = types.TensorData.from_list(LONG, "float32")  # ints in a float tensor stay ints in its JSON
    assert types.encode_json(as_floats) == types.encode_json(types.TensorData(data=LONG, dtype="float32",
                                                                              shape=[300]))
    for odd in (True, 2**70, 1.5):
        mixed = [*LONG[:-1], odd]
        assert types.TensorData.from_list(mixed, "int64") == types.TensorData(data=mixed, dtype="int64", shape=[300])


def test_the_service_reads_token_runs_as_views_of_the_request() -> None:
    from tinker_actors.wire import ForwardBackwardCall

    datum = types.Datum(model_input=types.ModelInput.from_ints(LONG), loss_fn_inputs={"target_tokens": LONG})
    call = ForwardBackwardCall("m", 1, types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"))
    received = CODEC.decode_forward_backward(CODEC.encode_forward_backward(call).body.content,
                                             content_type="application/x-protobuf")
    chunk = received.input.data[0].model_input.chunks[0]
    assert isinstance(chunk, types.EncodedTextChunk) and chunk.held_array() is not None
    assert received == call


def test_serializing_writes_held_arrays_as_lists_without_keeping_them() -> None:
    tensor = types.TensorData.from_numpy(np.array([1.5, 2.5], dtype=np.float32))
    chunk = types.ModelInput.from_ints(LONG).chunks[0]
    assert types.encode_json(tensor) == b'{"data":[1.5,2.5],"dtype":"float32","shape":[2]}'
    assert tensor.model_dump() == {"data": [1.5, 2.5], "dtype": "float32", "shape": [2],
                                   "sparse_crow_indices": None, "sparse_col_indices": None}
    assert types.encode_json(chunk) == types.encode_json(types.EncodedTextChunk(tokens=LONG))
    assert _unlisted(tensor, "data") and _unlisted(chunk, "tokens")  # the JSON path made no list to keep


def test_subclasses_and_class_attributes_behave_as_for_other_models() -> None:
    class Scaled(types.TensorData):
        scale: float = 1.0

    scaled = Scaled.from_numpy(np.arange(3.0))
    assert isinstance(scaled, Scaled) and scaled.data == [0.0, 1.0, 2.0] and scaled.scale == 1.0
    assert Scaled(data=[1.0], dtype="float32").data == [1.0]
    with pytest.raises(AttributeError):
        types.TensorData.data  # noqa: B018 - no class attribute, as for any pydantic field
