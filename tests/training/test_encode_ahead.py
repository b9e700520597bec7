"""Encoding ahead (tinker_actors/clients/encode_ahead.py): the later chunks of a batch whose encoding cannot
fail are written by the encoding worker while the chunks before them are sent; bad input still raises in
the caller's thread before anything of the batch is sent; and should the worker fail all the same, the
batch is a PartialBatchError and what was queued behind it is not sent (docs/concepts/failures.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import LocalService
from tinker_actors.local.server.wire_log import WireCapture
from tinker_actors.training import ChunkLimits
from tinker_actors.types import EncodedTextChunk, ForwardBackwardInput
from tinker_actors.wire.codec import ForwardBackwardCall
from tinker_actors.wire.v0_38 import codec as codec_038

TOKENS = 300  # long enough for the token run to be held as an int32 array (types/model_input.py)


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


@pytest.fixture
def wire(service: LocalService) -> Iterator[WireCapture]:
    service.faults.clear()
    with service.wire_log.capture() as capture:
        yield capture
    service.faults.clear()


@pytest.fixture
def training(service: LocalService) -> Iterator[Any]:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False, protocol="0.38",
                    retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.05, deadline=5.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=10.0)
    with tinker.ServiceClient(config=config) as svc:
        client = svc.create_lora_training_client("tiny-byte", rank=2).result(30)
        client._chunk_limits = ChunkLimits(max_datums=2)
        yield client


def held_datum(seed: int) -> tinker.Datum:
    """A datum of arrays in the wire's dtypes (what encodes ahead)."""
    tokens = np.random.default_rng(seed).integers(0, 256, TOKENS + 1)
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:].astype(np.int64),
                                        "weights": np.ones(TOKENS, dtype=np.float32)})


def forward_backward_posts(wire: WireCapture) -> list[Any]:
    return [record for record in wire.snapshot()
            if record.method == "POST" and record.path == "/api/v1/forward_backward"]


def encoding_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread that encodes each chunk, in order."""
    threads: list[str] = []
    encode = codec_038.ProtobufCodec.prepare_forward_backward

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(codec_038.ProtobufCodec, "prepare_forward_backward", spy)
    return threads


def test_later_chunks_are_encoded_by_the_worker_and_the_wire_is_unchanged(
        training: Any, wire: WireCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = encoding_threads(monkeypatch)
    batch = [held_datum(seed) for seed in range(5)]
    out = training.forward_backward(batch, "cross_entropy").result(30)
    assert len(out.loss_fn_outputs) == 5
    assert all(output["logprobs"].shape == [TOKENS] for output in out.loss_fn_outputs)
    caller = threading.current_thread().name
    assert threads[0] == caller  # the first chunk: at once, in the caller's thread
    assert len(threads) == 3 and all(name.startswith("tinker-encode") for name in threads[1:])
    posts = forward_backward_posts(wire)
    assert [len(record.decoded()["data"]) for record in posts] == [2, 2, 1]
    # Byte for byte what the one-pass encoder writes for the same chunk and seq id.
    for record, start in zip(posts, (0, 2, 4), strict=True):
        seq_id = record.decoded()["seq_id"]
        fb_input = ForwardBackwardInput(data=batch[start:start + 2], loss_fn="cross_entropy")
        expected = codec_038.CODEC.encode_forward_backward(ForwardBackwardCall(
            training.model_id, seq_id, fb_input))
        assert record.body == expected.body.content


def test_a_chunk_that_could_fail_is_encoded_in_the_callers_thread_and_fails_before_anything_is_sent(
        training: Any, wire: WireCapture) -> None:
    # The third datum's tokens: an int64 array holding an id int32 cannot carry; encoding it is what refuses it.
    bad_tokens = EncodedTextChunk.from_array(np.full(TOKENS, 2**40, dtype=np.int64))
    bad = tinker.Datum(model_input=tinker.ModelInput(chunks=[bad_tokens]),
                       loss_fn_inputs=held_datum(2).loss_fn_inputs)
    with pytest.raises(tinker.InvalidInputError, match="int32"):
        training.forward_backward([held_datum(0), held_datum(1), bad], "cross_entropy")
    assert forward_backward_posts(wire) == []
    training.forward_backward([held_datum(0)], "cross_entropy").result(30)  # the client goes on


def test_if_the_worker_fails_the_batch_is_partial_and_nothing_behind_it_is_sent(
        training: Any, wire: WireCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    # Made to trust input it should not (the check is what keeps this from happening): the second chunk
    # then fails in the worker, after the first chunk went out.
    monkeypatch.setattr(codec_038.ProtobufCodec, "prepares_without_error", lambda self, model_id, fb_input: True)
    bad = tinker.Datum(model_input=tinker.ModelInput(chunks=[EncodedTextChunk.from_array(
        np.full(TOKENS, 2**40, dtype=np.int64))]), loss_fn_inputs=held_datum(2).loss_fn_inputs)
    batch = training.forward_backward([held_datum(0), held_datum(1), bad], "cross_entropy")
    behind = training.optim_step(tinker.AdamParams(learning_rate=1e-3))
    with pytest.raises(tinker.PartialBatchError) as info:
        batch.result(30)
    assert info.value.applied_chunks == [0] and info.value.failed_chunks == [1]
    assert isinstance(info.value.errors[1], tinker.InvalidInputError)
    with pytest.raises(tinker.NotSentError):
        behind.result(30)
    assert len(forward_backward_posts(wire)) == 1
    assert not [record for record in wire.snapshot() if record.path == "/api/v1/optim_step"]


def test_what_encodes_ahead() -> None:
    check = codec_038.CODEC.prepares_without_error

    def fb(*data: tinker.Datum, **config: Any) -> ForwardBackwardInput:
        return ForwardBackwardInput(data=list(data), loss_fn="cross_entropy", loss_fn_config=config or None)

    held = held_datum(0)
    assert check("model", fb(held, held))
    assert check("model", fb(held, clip=0.5, mode="text"))
    short = tinker.Datum(model_input=tinker.ModelInput.from_ints([1, 2, 3]),  # a list: checked while packed
                         loss_fn_inputs={"target_tokens": np.array([2, 3, 4]), "weights": np.ones(3, np.float32)})
    assert not check("model", fb(held, short))
    wide = tinker.Datum(model_input=held.model_input,  # float64 weights: cast while packed
                        loss_fn_inputs={**held.loss_fn_inputs, "weights": np.ones(TOKENS)})
    assert not check("model", fb(wide))
    assert not check("model", fb(held, **{"\ud800": 1.0}))  # not UTF-8: the writer refuses it
    assert not check("\ud800", fb(held))
