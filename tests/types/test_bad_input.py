"""Bad input to the training calls is refused by the domain model with a typed, explicit error (issue 9 §3),
and float-valued loss inputs keep their precision on the wire (issue 9 §2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinker_actors.types as T
from tinker_actors.errors import InvalidInputError
from tinker_actors.types.datum import datum_list
from tinker_actors.types.tensor import first_non_finite
from tinker_actors.types.training import adam_params_of, check_loss


def datum(**inputs: Any) -> T.Datum:
    return T.Datum(model_input=T.ModelInput.from_ints([1, 2, 3]),
                   loss_fn_inputs={"target_tokens": [2, 3, 4], **inputs})


class TestAdamParams:
    @pytest.mark.parametrize(("field", "value", "says"), [
        ("eps", 0.0, "eps: must be > 0"),
        ("eps", -1e-8, "eps: must be > 0"),
        ("learning_rate", math.nan, "learning_rate: must be a finite number, got nan"),
        ("learning_rate", math.inf, "learning_rate: must be a finite number, got inf"),
        ("beta2", math.nan, "beta2: must be a finite number"),
        ("weight_decay", -0.1, "weight_decay: must not be negative"),
        ("grad_clip_norm", math.inf, "grad_clip_norm: must be a finite number"),
    ])
    def test_out_of_range_is_refused_at_construction(self, field: str, value: float, says: str) -> None:
        with pytest.raises(InvalidInputError, match=says) as info:
            T.AdamParams(**{field: value})
        assert isinstance(info.value, ValueError)

    def test_valid_values_and_the_wire_are_unchanged(self) -> None:
        params = T.AdamParams(learning_rate=0.0, eps=1e-8, beta1=0.0)
        assert T.encode_json(params) == b'{"learning_rate":0.0,"beta1":0.0,"eps":1e-8}'

    def test_what_optim_step_takes(self) -> None:
        params = T.AdamParams(learning_rate=1e-3)
        assert adam_params_of(params) is params
        assert adam_params_of({"learning_rate": 1e-3}) == params  # a dict, as the official SDK's pydantic takes
        for bad in (None, 1e-3, "1e-3"):
            with pytest.raises(InvalidInputError, match="optim_step takes an AdamParams"):
                adam_params_of(bad)
        with pytest.raises(InvalidInputError, match="eps: must be > 0"):
            adam_params_of({"eps": 0})
        with pytest.raises(InvalidInputError, match="eps: must be > 0"):  # built without validation
            adam_params_of(T.AdamParams.model_construct(eps=0.0))


class TestBatches:
    def test_any_iterable_of_datums(self) -> None:
        one, two = datum(), datum()
        assert datum_list([one, two], "forward_backward") == [one, two]
        assert datum_list((d for d in (one, two)), "forward_backward") == [one, two]
        assert datum_list([], "forward_backward") == []

    @pytest.mark.parametrize(("data", "says"), [
        (None, "takes a list of Datum, got NoneType"),
        ({"model_input": None}, "takes a list of Datum, got dict"),
        ("tokens", "takes a list of Datum, got str"),
        ([{"model_input": {"chunks": []}, "loss_fn_inputs": {}}], r"data\[0\] is a dict, not a Datum"),
    ])
    def test_what_is_not_a_batch(self, data: Any, says: str) -> None:
        with pytest.raises(InvalidInputError, match=says):
            datum_list(data, "forward_backward")

    def test_one_datum_instead_of_a_list(self) -> None:
        with pytest.raises(InvalidInputError, match=r"got a single Datum: pass \[datum\]"):
            datum_list(datum(), "forward_backward")

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    @pytest.mark.parametrize("form", ["list", "numpy", "tensor"])
    def test_non_finite_loss_inputs(self, bad: float, form: str) -> None:
        values = [0.5, bad, 1.0]
        weights: Any = {"list": values, "numpy": np.array(values),
                        "tensor": T.TensorData(data=values, dtype="float32")}[form]
        data = [datum(), datum(weights=weights)]
        with pytest.raises(InvalidInputError, match=rf"data\[1\]\.loss_fn_inputs\['weights'\] holds {bad} at "
                                                    "position 1; loss inputs must be finite"):
            datum_list(data, "forward_backward")

    def test_first_non_finite(self) -> None:
        assert first_non_finite([1.0, 2.0]) is None
        assert first_non_finite([1e308, 1e308]) is None  # the sum overflows, the values are finite
        assert first_non_finite([10**400, 1]) is None  # ints beyond the float range
        assert first_non_finite([1.0, math.nan, math.inf]) == 1
        assert first_non_finite([math.inf, -math.inf]) == 0


class TestLoss:
    def test_loss_name_and_config(self) -> None:
        check_loss("ppo", {"clip_low_threshold": 0.8, "clip_high_threshold": "1.2"}, "forward_backward")
        with pytest.raises(InvalidInputError, match="loss_fn: Input should be 'cross_entropy'"):
            check_loss("mse", None, "forward_backward")
        check_loss("dro", {"beta": "high"}, "forward")  # a text setting (protocol 0.38): the server judges it
        with pytest.raises(InvalidInputError, match=r"loss_fn_config.beta.*valid number"):
            check_loss("dro", {"beta": [0.5]}, "forward")
        with pytest.raises(InvalidInputError, match=r"loss_fn_config\['beta'\] must be a finite number, got nan"):
            check_loss("dro", {"beta": math.nan}, "forward")


@pytest.mark.parametrize("name", [123, Path("ckpt"), b"ckpt", None])
def test_checkpoint_names_must_be_strings(name: Any) -> None:
    with pytest.raises(InvalidInputError):
        T.validate_checkpoint_name(name)


class TestFloatPrecision:
    def test_float64_arrays_keep_their_precision(self) -> None:
        body = T.encode_json(datum(advantages=np.array([0.1, 0.2, 0.3])))
        assert b'"data":[0.1,0.2,0.3],"dtype":"float32"' in body

    def test_other_float_widths(self) -> None:
        assert T.TensorData.from_numpy(np.array([0.1], dtype=np.float32)).data == [float(np.float32(0.1))]
        assert T.TensorData.from_numpy(np.array([0.1], dtype=np.float16)).data == [float(np.float16(0.1))]
        assert T.TensorData.from_numpy(np.array([0.1], dtype=np.longdouble)).data == [0.1]
        torch = pytest.importorskip("torch")
        assert T.TensorData.from_torch(torch.tensor([0.1], dtype=torch.float64)).data == [0.1]
        assert T.TensorData.from_torch(torch.tensor([0.1], dtype=torch.bfloat16)).data == [0.10009765625]
