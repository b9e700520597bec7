"""The service's 0.38 forward_backward result written from numpy arrays reads back as the codec's own."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tinker_actors import types
from tinker_actors.errors import InvalidInputError
from tinker_actors.wire.codec import CONTENT_TYPE_PROTOBUF
from tinker_actors.wire.v0_38 import CODEC
from tinker_actors.wire.v0_38.array_results import encode_forward_backward_arrays

Outputs = list[dict[str, npt.NDArray[Any]]]
rng = np.random.default_rng(0)


def _through_the_codec(outputs: Outputs, metrics: dict[str, float]) -> types.ForwardBackwardOutput:
    domain = types.ForwardBackwardOutput(
        loss_fn_output_type="target_token_logprobs", metrics=metrics,
        loss_fn_outputs=[{name: types.TensorData.from_numpy(value) for name, value in out.items()} for out in outputs])
    body = CODEC.encode_forward_backward_output(domain)
    return CODEC.decode_forward_backward_output(body.content, body.content_type)


CASES: dict[str, Outputs] = {
    "flat float32": [{"logprobs": rng.standard_normal(n).astype(np.float32),
                      "elementwise_loss": rng.random(n).astype(np.float32)} for n in (5, 1, 9)],
    "float64 and integers": [{"logprobs": rng.standard_normal(4), "ids": np.arange(4, dtype=np.int32)},
                             {"logprobs": rng.standard_normal(2), "ids": np.arange(2, dtype=np.uint8)}],
    "ragged 2-D": [{"topk": rng.random((3, 2)).astype(np.float32)}, {"topk": rng.random((3, 2)).astype(np.float32)},
                   {"topk": rng.random((2, 4)).astype(np.float32)}],
    "empty datum": [{"logprobs": np.zeros(0, dtype=np.float32)}, {"logprobs": np.ones(3, dtype=np.float32)}],
    "no datums": [],
}


@pytest.mark.parametrize("name", list(CASES))
def test_arrays_encode_to_what_the_codec_writes(name: str) -> None:
    outputs = CASES[name]
    metrics = {"loss:sum": 1.25, "clip_fraction:mean": 0.5}
    body = encode_forward_backward_arrays(outputs, metrics, "target_token_logprobs")
    assert body.content_type == CONTENT_TYPE_PROTOBUF
    decoded = CODEC.decode_forward_backward_output(body.content, body.content_type)
    assert decoded == _through_the_codec(outputs, metrics)


def test_results_the_domain_cannot_hold_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="same output names"):
        encode_forward_backward_arrays([{"a": np.zeros(1)}, {"b": np.zeros(1)}], {}, "x")
    with pytest.raises(InvalidInputError, match="dtype"):
        encode_forward_backward_arrays([{"a": np.array(["text"])}], {}, "x")
