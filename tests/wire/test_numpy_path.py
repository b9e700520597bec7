"""Numpy in, numpy out: a forward_backward over protocol 0.38 makes no Python list of its numbers on the client.

The client checks, chunks and encodes numpy-built loss inputs from their arrays, and the result's tensors
are views of the protobuf message: ``data`` (the list) is made only if the caller reads it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import tinker_actors as tinker
from tinker_actors.config import Config
from tinker_actors.local import LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    # Chunks of two datums, so that the batch below is split (the sizes are read from the arrays too).
    with LocalService(long_poll_s=0.5, protocol_flags={"fwdbwd_max_chunk_len": 2}) as svc:
        yield svc


def _numpy_datum(rng: np.random.Generator, length: int) -> tinker.Datum:
    tokens = rng.integers(0, 200, length + 1)
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(length, dtype=np.float32)})


def test_numpy_inputs_and_results_never_become_lists(service: LocalService) -> None:
    rng = np.random.default_rng(0)
    batch = [_numpy_datum(rng, length) for length in (16, 9, 12)]
    config = Config(api_key="test-key", base_url=service.base_url, telemetry_enabled=False, protocol="0.38")
    with tinker.ServiceClient(config=config) as client:
        training = client.create_lora_training_client("tiny-byte", rank=4, seed=0)
        output = training.forward_backward(batch, "cross_entropy").result(30)
    inputs = [tensor for datum in batch for tensor in datum.loss_fn_inputs.values()]
    assert all("data" not in tensor.__dict__ for tensor in inputs)
    outputs = [tensor for out in output.loss_fn_outputs for tensor in out.values()]
    assert [out["logprobs"].shape for out in output.loss_fn_outputs] == [[16], [9], [12]]
    assert outputs and all("data" not in tensor.__dict__ and tensor.held_array() is not None for tensor in outputs)
    assert np.all(output.loss_fn_outputs[0]["logprobs"].to_numpy() <= 0)
    assert output.loss_fn_outputs[1]["logprobs"].data == output.loss_fn_outputs[1]["logprobs"].to_numpy().tolist()
