"""The clients against the local service over real HTTP: the official SDK's API, working."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.local import LocalService

TEXT = list(b"the quick brown fox jumps over the lazy dog. " * 3)


def test_training_loop_learns_and_checkpoints(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=4, seed=0).result()
    batch = [datum(TEXT[i:i + 33]) for i in range(0, 64, 16)]
    losses = []
    for _ in range(8):
        fwd_bwd = training.forward_backward(batch, "cross_entropy")
        training.optim_step(tinker.AdamParams(learning_rate=1e-2))
        losses.append(fwd_bwd.result(30).metrics["loss:sum"])
    assert losses[-1] < 0.7 * losses[0], losses
    output = training.forward(batch, "cross_entropy").result(30)
    assert len(output.loss_fn_outputs) == len(batch)
    assert output.loss_fn_outputs[0]["logprobs"].shape == [32]

    saved = training.save_state("e2e").result(30)
    assert saved.path.endswith("/weights/e2e")
    resumed = client.create_training_client_from_state_with_optimizer(saved.path).result()
    resumed_loss = resumed.forward(batch, "cross_entropy").result(30).metrics["loss:sum"]
    assert resumed_loss == pytest.approx(output.metrics["loss:sum"], rel=1e-4)

    sampler_path = training.save_weights_for_sampler("e2e-s").result(30).path
    sampler = client.create_sampling_client(model_path=sampler_path).result()
    prompt = tinker.ModelInput.from_ints(TEXT[:8])
    response = sampler.sample(prompt, 2, tinker.SamplingParams(max_tokens=5, seed=3)).result(30)
    assert len(response.sequences) == 2 and all(len(s.tokens) == 5 for s in response.sequences)
    again = sampler.sample(prompt, 2, tinker.SamplingParams(max_tokens=5, seed=3)).result(30)
    assert [s.tokens for s in again.sequences] == [s.tokens for s in response.sequences]
    logprobs = sampler.compute_logprobs(prompt).result(30)
    assert logprobs[0] is None and len(logprobs) == 8

    rest = client.create_rest_client()
    runs = rest.list_training_runs().result(10)
    assert any(run.training_run_id == training.model_id for run in runs.training_runs)
    kinds = {c.checkpoint_type for c in rest.list_checkpoints(training.model_id).result(10).checkpoints}
    assert kinds == {"training", "sampler"}
    assert rest.get_weights_info_by_tinker_path(saved.path).result(10).lora_rank == 4
    archive = rest.get_checkpoint_archive_url_from_tinker_path(saved.path).result(10)
    assert archive.url.startswith("http://127.0.0.1")
    rest.delete_checkpoint_from_tinker_path(saved.path).result(10)
    remaining = rest.list_checkpoints(training.model_id).result(10).checkpoints
    assert "weights/e2e" not in {c.checkpoint_id for c in remaining}


def test_ephemeral_sampler_and_async_api(client: tinker.ServiceClient) -> None:
    async def run() -> tinker.SampleResponse:
        capabilities = await client.get_server_capabilities_async()  # from this loop, not the IoLoop
        assert "tiny-byte" in {m.model_name for m in capabilities.supported_models}
        training = await client.create_lora_training_client("tiny-byte", rank=2)
        assert (await training.get_info_async()).model_id == training.model_id
        future = await training.forward_backward_async([datum(TEXT[:20])], "cross_entropy")
        await future
        sampler = await training.save_weights_and_get_sampling_client()
        return await sampler.sample_async(tinker.ModelInput.from_ints(TEXT[:4]), 1,
                                          tinker.SamplingParams(max_tokens=3, stop=[ord(" ")]))

    response = asyncio.run(run())
    assert response.sequences[0].stop_reason in ("stop", "length")


def test_bad_input_is_a_typed_error_before_the_wire(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    before = service.stats.snapshot()
    with pytest.raises(tinker.InvalidInputError):
        training.forward_backward([datum(TEXT[:10])], "not_a_loss")
    with pytest.raises(tinker.InvalidInputError):
        training.save_state("../escape")
    with pytest.raises(tinker.InvalidInputError):
        client.create_sampling_client(model_path="s3://nope").result()
    with pytest.raises(tinker.InvalidInputError):
        client.create_lora_training_client("tiny-byte", train_mlp=False, train_attn=False, train_unembed=False).result()
    assert service.stats.snapshot() == before  # nothing was sent


def test_chunked_batch_is_combined(client: tinker.ServiceClient) -> None:
    from tinker_actors.training import ChunkLimits

    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    training._chunk_limits = ChunkLimits(max_datums=2)
    batch = [datum(TEXT[i:i + 11]) for i in range(5)]
    combined = training.forward(batch, "cross_entropy").result(30)
    single = [training.forward([d], "cross_entropy").result(30).metrics["loss:sum"] for d in batch]
    assert len(combined.loss_fn_outputs) == 5
    assert combined.metrics["loss:sum"] == pytest.approx(sum(single), rel=1e-5)


def test_sampling_client_handle_pickles(client: tinker.ServiceClient) -> None:
    sampler = client.create_sampling_client(base_model="tiny-byte").result()
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone.sampling_session_id == sampler.sampling_session_id
    result = clone.sample(tinker.ModelInput.from_ints(TEXT[:4]), 1, tinker.SamplingParams(max_tokens=2)).result(30)
    assert len(result.sequences[0].tokens) == 2


def test_partial_chunk_failure_is_detectable(client: tinker.ServiceClient, service: LocalService) -> None:
    from tinker_actors.local import FaultRule
    from tinker_actors.training import ChunkLimits

    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    training._chunk_limits = ChunkLimits(max_datums=1)
    batch = [datum(TEXT[i:i + 11]) for i in range(3)]
    # The second chunk's POST is refused (400, not retried): chunk 0 ran, 1 failed, 2 was never sent.
    service.faults.add(FaultRule(endpoint="forward_backward", status=400, every_nth=2, times=1))
    with pytest.raises(tinker.PartialBatchError) as info:
        training.forward_backward(batch, "cross_entropy").result(30)
    error = info.value
    assert error.applied_chunks == [0] and error.failed_chunks == [1, 2]
    assert isinstance(error.errors[2], tinker.NotSentError)
    assert len(error.outputs[0].loss_fn_outputs) == 1
    service.faults.clear()
