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


def _unlisted(model: object, field: str) -> bool:
    """Whether ``field`` of ``model`` still holds its array: no Python list has been made of it."""
    return not isinstance(vars(model)[field], list)



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
    config = Config(api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False, protocol="0.38")
    with tinker.ServiceClient(config=config) as client:
        training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
        output = training.forward_backward(batch, "cross_entropy").result(30)
    inputs = [tensor for datum in batch for tensor in datum.loss_fn_inputs.values()]
    assert all(_unlisted(tensor, "data") for tensor in inputs)
    outputs = [tensor for out in output.loss_fn_outputs for tensor in out.values()]
    assert [out["logprobs"].shape for out in output.loss_fn_outputs] == [[16], [9], [12]]
    assert outputs and all(_unlisted(tensor, "data") and tensor.held_array() is not None for tensor in outputs)
    assert np.all(output.loss_fn_outputs[0]["logprobs"].to_numpy() <= 0)
    assert output.loss_fn_outputs[1]["logprobs"].data == output.loss_fn_outputs[1]["logprobs"].to_numpy().tolist()


def test_a_prepared_body_holds_views_of_the_arrays_and_joins_them_once() -> None:
    from tinker_actors.wire import v0_38
    from tinker_actors.wire.v0_38 import tinker_pb2 as pb

    datum = _numpy_datum(np.random.default_rng(1), 300)
    prepared = v0_38.CODEC.prepare_forward_backward(
        "model-1", tinker.types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"))
    held = [tensor.held_array() for tensor in datum.loss_fn_inputs.values()]
    chunk = datum.model_input.chunks[0]
    assert isinstance(chunk, tinker.EncodedTextChunk)
    held.append(chunk.held_array())
    views = [part for part in prepared.after if isinstance(part, memoryview)]
    assert len(views) == 3 and all(any(np.shares_memory(np.asarray(view), array) for array in held if array is not None)
                                   for view in views)
    body = prepared.body(7).content
    assert len(body) == prepared.size + 2  # the seq id field: 2 bytes
    message = pb.ForwardBackwardRequest.FromString(body)
    assert message.seq_id == 7 and message.model_id == "model-1"
    assert np.frombuffer(message.data[0].model_input[0].encoded_text.tokens, "<i4").tolist() == chunk.tokens


def test_the_service_checks_and_runs_a_protobuf_batch_without_token_lists() -> None:
    from tinker_actors.local import WorkLimits
    from tinker_actors.local.api.training_api import check_batch, datum_input
    from tinker_actors.wire import ForwardBackwardCall, v0_38

    datum = _numpy_datum(np.random.default_rng(2), 300)
    call = ForwardBackwardCall("m", 1, tinker.types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"))
    received = v0_38.CODEC.decode_forward_backward(v0_38.CODEC.encode_forward_backward(call).body.content,
                                                   content_type="application/x-protobuf")
    check_batch(received.input, 50_000, WorkLimits())
    arrays = datum_input(received.input.data[0], "cross_entropy")
    chunk = received.input.data[0].model_input.chunks[0]
    assert isinstance(chunk, tinker.EncodedTextChunk) and _unlisted(chunk, "tokens")
    assert arrays.tokens.dtype == np.int64 and arrays.tokens.tolist() == chunk.tokens
