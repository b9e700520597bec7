"""ModelInput builders (D1), key-based dtype inference (D2), TensorData conversions (D3), tinker paths."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

import tinker_actors.types as T
from tinker_actors.errors import InvalidInputError, TinkerError, UnknownLossInputKeyError


class TestModelInputBuilders:
    def test_empty_append_append_int_length_to_ints(self) -> None:
        empty = T.ModelInput.empty()
        assert empty.length == 0 and empty.to_ints() == []
        grown = empty.append(T.EncodedTextChunk(tokens=[1, 2])).append_int(3)
        assert grown.to_ints() == [1, 2, 3]
        assert grown.length == 3
        assert len(grown.chunks) == 2  # append_int adds a one-token chunk, like the official SDK
        assert empty.length == 0  # builders return new objects; the original is unchanged

    def test_from_ints_round_trip(self) -> None:
        assert T.ModelInput.from_ints(range(5)).to_ints() == [0, 1, 2, 3, 4]

    def test_image_chunks_count_expected_tokens_and_block_to_ints(self) -> None:
        mi = T.ModelInput.from_ints([1]).append(T.ImageChunk(data=b"img", format="png", expected_tokens=7))
        assert mi.length == 8
        with pytest.raises(InvalidInputError, match="text chunks only"):
            mi.to_ints()
        with pytest.raises(InvalidInputError, match="expected_tokens"):
            _ = T.ModelInput.empty().append(T.ImageChunk(data=b"x", format="png")).length

    def test_chunks_parse_by_keys_without_type(self) -> None:
        mi = T.ModelInput.model_validate({"chunks": [
            {"tokens": [1, 2]}, {"data": "aGk=", "format": "jpeg", "expected_tokens": 2},
            {"location": "s3://bucket/x.png", "format": "png"}, {"type": "encoded_text", "tokens": [9]}]})
        kinds = [type(c).__name__ for c in mi.chunks]
        assert kinds == ["EncodedTextChunk", "ImageChunk", "ImageAssetPointerChunk", "EncodedTextChunk"]
        image = mi.chunks[1]
        assert isinstance(image, T.ImageChunk) and image.data == b"hi"

    def test_frozen_and_unknown_fields_rejected(self) -> None:
        mi = T.ModelInput.from_ints([1])
        with pytest.raises(pydantic.ValidationError):
            mi.chunks = []  # type: ignore[misc]
        with pytest.raises(pydantic.ValidationError, match="extra"):
            T.EncodedTextChunk.model_validate({"tokens": [1], "bogus": 1})


class TestDatumDtypeInference:
    @pytest.mark.parametrize(("key", "dtype"), [
        ("target_tokens", "int64"), ("weights", "float32"), ("advantages", "float32"), ("logprobs", "float32"),
        ("clip_low_threshold", "float32"), ("clip_high_threshold", "float32")])
    def test_known_keys(self, key: str, dtype: str) -> None:
        datum = T.Datum(model_input=T.ModelInput.from_ints([1, 2]), loss_fn_inputs={key: [1, 2]})
        tensor = datum.loss_fn_inputs[key]
        assert tensor.dtype == dtype and tensor.shape == [2]
        assert tensor.to_numpy().dtype == (np.int64 if dtype == "int64" else np.float32)

    def test_unknown_key_with_plain_list_is_a_clear_typed_error(self) -> None:
        with pytest.raises(UnknownLossInputKeyError) as info:
            T.Datum(model_input=T.ModelInput.from_ints([1]), loss_fn_inputs={"mask": [1]})
        error = info.value
        assert isinstance(error, KeyError) and isinstance(error, TinkerError)  # ported `except KeyError` works
        assert "mask" in str(error) and "numpy array" in str(error)

    def test_unknown_key_with_array_is_fine(self) -> None:
        datum = T.Datum(model_input=T.ModelInput.from_ints([1]),
                        loss_fn_inputs={"mask": np.array([[1.5]], dtype=np.float64)})
        assert datum.loss_fn_inputs["mask"].dtype == "float32"
        assert datum.loss_fn_inputs["mask"].shape == [1, 1]

    def test_datum_parses_wire_json(self) -> None:
        datum = T.Datum.model_validate({"model_input": {"chunks": [{"tokens": [1]}]},
                                        "loss_fn_inputs": {"weights": {"data": [1], "dtype": "float32"}}})
        assert datum.loss_fn_inputs["weights"].to_numpy().tolist() == [1.0]


class TestTensorData:
    def test_numpy_round_trip_keeps_shape_and_dtype(self) -> None:
        array = np.arange(12, dtype=np.int32).reshape(3, 4)
        tensor = T.TensorData.from_numpy(array)
        assert tensor.dtype == "int64" and tensor.shape == [3, 4]
        np.testing.assert_array_equal(tensor.to_numpy(), array)
        floats = T.TensorData.from_numpy(np.linspace(0, 1, 6).reshape(2, 3))
        assert floats.dtype == "float32" and floats.to_numpy().dtype == np.float32

    @pytest.mark.parametrize("bad", [np.array([True, False]), np.array([1 + 2j]), np.array(["a"])])
    def test_unsupported_numpy_dtypes(self, bad: np.ndarray) -> None:  # type: ignore[type-arg]
        with pytest.raises(InvalidInputError, match="unsupported numpy dtype"):
            T.TensorData.from_numpy(bad)

    def test_shape_must_match_data(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="holds 4 values"):
            T.TensorData(data=[1, 2, 3], dtype="int64", shape=[2, 2])

    def test_torch_round_trip(self) -> None:
        torch = pytest.importorskip("torch")
        tensor = torch.tensor([[1.5, 2.5]], dtype=torch.bfloat16)
        data = T.TensorData.from_torch(tensor)
        assert data.dtype == "float32" and data.shape == [1, 2]
        assert data.to_torch().dtype == torch.float32
        assert T.TensorData.from_torch(torch.tensor([3, 4])).dtype == "int64"
        with pytest.raises(InvalidInputError):
            T.TensorData.from_torch(torch.tensor([True]))
        datum = T.Datum(model_input=T.ModelInput.from_ints([1, 2]),
                        loss_fn_inputs={"target_tokens": torch.tensor([2, 3])})
        assert datum.loss_fn_inputs["target_tokens"].dtype == "int64"


class TestTinkerPaths:
    def test_parse(self) -> None:
        parsed = T.ParsedCheckpointTinkerPath.from_tinker_path("tinker://abc:train:0/sampler_weights/000080")
        assert parsed.training_run_id == "abc:train:0"
        assert parsed.checkpoint_type == "sampler"
        assert parsed.checkpoint_id == "sampler_weights/000080"
        assert parsed.name == "000080" and parsed.kind == "sampler_weights"

    @pytest.mark.parametrize("bad", ["http://x/weights/a", "tinker://run/weights", "tinker://run/other/a",
                                     "tinker://run/weights/a/b", "tinker:///weights/a", "tinker://run/weights/.."])
    def test_invalid_paths_are_clear_value_errors(self, bad: str) -> None:
        with pytest.raises(InvalidInputError, match="Invalid tinker path") as info:
            T.ParsedCheckpointTinkerPath.from_tinker_path(bad)
        assert isinstance(info.value, ValueError)

    @pytest.mark.parametrize("bad", ["", "a/b", "..", "x..y", " a"])
    def test_checkpoint_names(self, bad: str) -> None:
        with pytest.raises(InvalidInputError):
            T.validate_checkpoint_name(bad)
        assert T.validate_checkpoint_name("step-0001") == "step-0001"


class TestRequestValidation:
    def test_sampling_params_ranges(self) -> None:
        for bad in ({"top_p": 0.0}, {"top_k": 0}, {"temperature": -1.0}, {"max_tokens": -1}):
            with pytest.raises(pydantic.ValidationError):
                T.SamplingParams(**bad)  # type: ignore[arg-type]
        params = T.SamplingParams(stop=["\n", "END"])
        assert params.stop_strings() == ["\n", "END"] and params.stop_token_ids() == []
        assert T.SamplingParams(stop=[1, 2]).stop_token_ids() == [1, 2]

    def test_adam_and_lora_ranges(self) -> None:
        with pytest.raises(InvalidInputError, match="learning_rate: must not be negative"):
            T.AdamParams(learning_rate=-1.0)
        with pytest.raises(InvalidInputError, match=r"beta1: must be in \[0, 1\)"):
            T.AdamParams(beta1=1.0)
        with pytest.raises(pydantic.ValidationError):
            T.LoraConfig(rank=0)

    def test_unknown_loss_function_rejected(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="cross_entropy"):
            T.ForwardBackwardInput(data=[], loss_fn="mse")  # type: ignore[arg-type]

    def test_only_set_fields_are_encoded(self) -> None:
        assert T.encode_json(T.AdamParams()) == b"{}"
        assert T.encode_json(T.AdamParams(learning_rate=1e-3)) == b'{"learning_rate":0.001}'
        assert T.encode_json(T.SamplingParams(max_tokens=3)) == b'{"max_tokens":3}'
        request = T.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b", user_metadata=None,
                                       lora_config=T.LoraConfig(rank=8, seed=None, train_unembed=True,
                                                                train_mlp=True, train_attn=True))
        assert b'"user_metadata":null' in T.encode_json(request) and b'"type"' not in T.encode_json(request)

    def test_responses_ignore_unknown_fields(self) -> None:
        future = T.UntypedAPIFuture.model_validate({"request_id": "r", "new_field": [1]})
        assert future.request_id == "r" and future.model_id is None
        failed = T.RequestFailedResponse.model_validate({"error": "boom", "category": "weird"})
        assert failed.category == "unknown"
