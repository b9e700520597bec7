"""Sparse (CSR) TensorData of protocol 0.38: layout rules, densifying, the numpy path, and both codecs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tinker_actors import types
from tinker_actors.errors import InvalidInputError
from tinker_actors.training.chunking import estimate_bytes, estimate_size
from tinker_actors.wire import v0_6_3, v0_38
from tinker_actors.wire.codec import ForwardBackwardCall
from tinker_actors.wire.v0_38 import tinker_pb2 as pb


def _unlisted(model: object, field: str) -> bool:
    """Whether ``field`` of ``model`` still holds its array: no Python list has been made of it."""
    return not isinstance(vars(model)[field], list)


def _top_k(rows: int = 40, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Targets and weights ``[rows, k]`` where most rows list one token (the rest: token 0, weight 0)."""
    rng = np.random.default_rng(0)
    targets = np.zeros((rows, k), dtype=np.int64)
    weights = np.zeros((rows, k), dtype=np.float32)
    targets[:, 0] = rng.integers(1, 200, rows)
    weights[:, 0] = 1.0
    targets[:2, 1:] = rng.integers(1, 200, (2, k - 1))
    weights[:2] = rng.dirichlet(np.ones(k), 2)
    return targets, weights


# ---------------------------------------------------------------------------------------- the type


@pytest.mark.parametrize("pad", [0, 7])
def test_sparse_round_trip_with_a_pad_value(pad: int) -> None:
    dense = np.full((6, 5), pad, dtype=np.int64)
    dense[0, 3], dense[2, 0], dense[2, 4], dense[5, 1] = 11, 12, 13, 14
    tensor = types.TensorData.from_numpy_sparse(dense, pad_value=pad)
    assert tensor.is_sparse and tensor.size == 4 and tensor.shape == [6, 5]
    assert tensor.sparse_crow_indices == [0, 1, 1, 3, 3, 3, 4] and tensor.sparse_col_indices == [3, 0, 4, 1]
    np.testing.assert_array_equal(tensor.to_numpy(pad_value=pad), dense)
    assert tensor.tolist(pad_value=pad) == dense.tolist()
    assert tensor.to_numpy().tolist() != dense.tolist() or pad == 0  # the pad is the caller's to give back


def test_compressing_falls_back_to_dense_when_it_is_not_smaller() -> None:
    assert not types.TensorData.from_numpy_sparse(np.ones((3, 3))).is_sparse  # nothing to leave out
    assert not types.TensorData.from_numpy_sparse(np.zeros(5)).is_sparse  # 1-D: dense, as the official SDK
    with pytest.raises(TypeError, match="pad_value must be an integer"):
        types.TensorData.from_numpy_sparse(np.zeros((2, 2)), pad_value=0.5)  # type: ignore[arg-type]


def test_a_numpy_built_sparse_tensor_makes_no_list_until_read() -> None:
    _, weights = _top_k()
    tensor = types.TensorData.from_numpy_sparse(weights)
    assert tensor.is_sparse
    assert all(_unlisted(tensor, name) for name in ("data", "sparse_crow_indices", "sparse_col_indices"))
    np.testing.assert_array_equal(tensor.to_numpy(), weights)
    assert all(_unlisted(tensor, name) for name in ("data", "sparse_crow_indices", "sparse_col_indices"))
    # JSON (0.38's pydantic form) writes the lists without keeping them; it reads back the same tensor.
    body = json.loads(types.encode_json(tensor))
    assert set(body) == {"data", "dtype", "shape", "sparse_crow_indices", "sparse_col_indices"}
    assert _unlisted(tensor, "sparse_col_indices")
    np.testing.assert_array_equal(types.TensorData.model_validate(body).to_numpy(), weights)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"shape": [4]}, "needs a 2-D dense shape"),
    ({"sparse_crow_indices": [0, 2]}, "not rows \\+ 1"),
    ({"sparse_col_indices": [0]}, "but data has 2 values"),
    ({"sparse_crow_indices": [0, 2, 1]}, "rise from 0 to 2"),
    ({"sparse_col_indices": [0, 3]}, "outside \\[0, 3\\)"),
    ({"sparse_crow_indices": [0, 2, 2], "sparse_col_indices": [2, 0]}, "sorted and distinct"),
    ({"sparse_crow_indices": [0, 2, 2], "sparse_col_indices": [1, 1]}, "sorted and distinct"),
    ({"sparse_col_indices": None}, "set together"),
])
def test_a_layout_the_official_sdk_would_refuse_is_refused(fields: dict[str, Any], problem: str) -> None:
    good = {"data": [1.0, 2.0], "dtype": "float32", "shape": [2, 3], "sparse_crow_indices": [0, 1, 2],
            "sparse_col_indices": [2, 0]}
    assert types.TensorData(**good).to_numpy().tolist() == [[0, 0, 1], [2, 0, 0]]
    with pytest.raises(ValueError, match=problem):
        types.TensorData(**{**good, **fields})


def test_a_datum_compresses_2d_torch_targets_and_weights_and_takes_nested_lists() -> None:
    torch = pytest.importorskip("torch")
    targets, weights = _top_k()
    datum = types.Datum(model_input=types.ModelInput.from_ints(list(range(40))),
                        loss_fn_inputs={"target_tokens": torch.tensor(targets), "weights": torch.tensor(weights),
                                        "advantages": torch.zeros(40, 4)})
    inputs = datum.loss_fn_inputs
    assert inputs["target_tokens"].is_sparse and inputs["weights"].is_sparse  # as the official SDK 0.38 does
    assert not inputs["advantages"].is_sparse  # only targets and weights
    np.testing.assert_array_equal(inputs["weights"].to_numpy(), weights)
    nested = types.Datum(model_input=types.ModelInput.from_ints([1, 2]),
                         loss_fn_inputs={"target_tokens": [[3, 4], [5, 6]], "weights": [[0.5, 0.5], [1.0, 0.0]]})
    assert nested.loss_fn_inputs["target_tokens"].shape == [2, 2]
    assert nested.loss_fn_inputs["weights"].dtype == "float32"
    with pytest.raises(InvalidInputError, match="rectangular"):
        types.Datum(model_input=types.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": [[3, 4], [5]]})


def test_the_chunk_estimates_count_a_sparse_tensor_as_each_protocol_sends_it() -> None:
    targets, weights = _top_k()
    sparse = types.Datum(model_input=types.ModelInput.from_ints(list(range(40))), loss_fn_inputs={
        "target_tokens": types.TensorData.from_numpy_sparse(targets),
        "weights": types.TensorData.from_numpy_sparse(weights)})
    nnz_targets, nnz_weights = int(np.count_nonzero(targets)), int(np.count_nonzero(weights))
    # 0.38 (the official estimate): values, and 8 bytes per row pointer and per column.
    assert estimate_bytes(sparse) == 4 * 40 + 8 * nnz_targets + 4 * nnz_weights + 8 * (2 * 41 + nnz_targets
                                                                                        + nnz_weights)
    assert estimate_size(sparse) == 40 + 2 * targets.size  # 0.6.3 sends it dense


# ------------------------------------------------------------------------------------------- wires


def _input(config: dict[str, float | str] | None = None) -> types.ForwardBackwardInput:
    targets, weights = _top_k()
    datum = types.Datum(model_input=types.ModelInput.from_ints(list(range(40))), loss_fn_inputs={
        "target_tokens": types.TensorData.from_numpy_sparse(targets),
        "weights": types.TensorData.from_numpy_sparse(weights)})
    return types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy", loss_fn_config=config)


def test_the_0_38_codec_sends_and_reads_sparse_csr_and_text_settings() -> None:
    fb_input = _input({"clip_low_threshold": 0.5, "mode": "tight"})
    body = v0_38.CODEC.prepare_forward_backward("model-1", fb_input).body(3).content
    message = pb.ForwardBackwardRequest()
    message.ParseFromString(body)
    tensor = message.data[0].loss_fn_inputs["target_tokens"]
    assert tensor.WhichOneof("encoding") == "sparse_csr" and list(tensor.shape) == [40, 4]
    expected = fb_input.data[0].loss_fn_inputs["target_tokens"].csr_arrays()
    assert expected is not None
    assert np.frombuffer(tensor.sparse_csr.values, "<i8").tolist() == expected[0].tolist()
    assert np.frombuffer(tensor.sparse_csr.crow_indices, "<i8").tolist() == expected[1].tolist()
    assert np.frombuffer(tensor.sparse_csr.col_indices, "<i8").tolist() == expected[2].tolist()
    # Numbers in both maps, text only in the v2 one (as the official SDK writes them).
    assert dict(message.loss_fn_config) == {"clip_low_threshold": 0.5}
    assert message.loss_fn_config_v2["mode"].text == "tight"
    assert message.loss_fn_config_v2["clip_low_threshold"].number == 0.5

    call = v0_38.CODEC.decode_forward_backward(body, content_type="application/x-protobuf")
    assert call.input.loss_fn_config == {"clip_low_threshold": 0.5, "mode": "tight"}
    read = call.input.data[0].loss_fn_inputs
    for name in ("target_tokens", "weights"):
        assert read[name].is_sparse
        assert all(_unlisted(read[name], field) for field in ("data", "sparse_crow_indices", "sparse_col_indices"))
        np.testing.assert_array_equal(read[name].to_numpy(), fb_input.data[0].loss_fn_inputs[name].to_numpy())


def test_the_0_38_service_refuses_a_malformed_sparse_tensor() -> None:
    body = v0_38.CODEC.prepare_forward_backward("model-1", _input()).body(3).content
    message = pb.ForwardBackwardRequest()
    message.ParseFromString(body)
    message.data[0].loss_fn_inputs["weights"].sparse_csr.col_indices = np.array([9], dtype="<i8").tobytes()
    with pytest.raises(InvalidInputError, match="loss input 'weights' of datum 0: sparse_col_indices has 1"):
        v0_38.CODEC.decode_forward_backward(message.SerializeToString(), content_type="application/x-protobuf")


def test_the_0_6_3_codec_sends_sparse_tensors_dense_and_settings_as_numbers() -> None:
    fb_input = _input({"clip_low_threshold": "0.5"})
    request = v0_6_3.CODEC.encode_forward_backward(ForwardBackwardCall("model-1", 3, fb_input))
    body = json.loads(request.body.content)
    inputs = body["forward_backward_input"]["data"][0]["loss_fn_inputs"]
    targets, weights = _top_k()
    assert inputs["target_tokens"] == {"data": targets.ravel().tolist(), "dtype": "int64", "shape": [40, 4]}
    assert np.allclose(inputs["weights"]["data"], weights.ravel()) and "sparse_crow_indices" not in inputs["weights"]
    assert body["forward_backward_input"]["loss_fn_config"] == {"clip_low_threshold": 0.5}  # 0.6.3: a number
    prepared = v0_6_3.CODEC.prepare_forward_backward("model-1", fb_input).body(3).content
    assert json.loads(prepared) == body
    with pytest.raises(InvalidInputError, match=r"protocol 0\.6\.3 carries numeric loss settings only"):
        v0_6_3.CODEC.prepare_forward_backward("model-1", _input({"mode": "tight"}))
