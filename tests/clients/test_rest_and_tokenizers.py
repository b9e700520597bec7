"""Every RestClient call against the local service (R1), and tokenizers resolved offline (D4)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.tokenizer import get_tokenizer

TEXT = list(b"rest calls and tokenizers, all offline. ")


def test_every_rest_call(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=3).result()
    training.forward_backward([datum(TEXT[:16])], "cross_entropy").result(30)
    weights = training.save_state("rest-w").result(30).path
    sampler_weights = training.save_weights_for_sampler("rest-s").result(30).path
    sampler = client.create_sampling_client(model_path=sampler_weights).result()
    rest = client.create_rest_client()

    run = rest.get_training_run(training.model_id).result(10)
    assert run.is_lora and run.lora_rank == 3 and run.base_model == "tiny-byte"
    assert rest.get_training_run_by_tinker_path(weights).result(10).training_run_id == training.model_id
    page = rest.list_training_runs(limit=1, offset=0).result(10)
    assert len(page.training_runs) == 1 and page.cursor.total_count >= 1
    user_checkpoints = rest.list_user_checkpoints(limit=50).result(10).checkpoints
    assert {weights, sampler_weights} <= {c.tinker_path for c in user_checkpoints}

    rest.publish_checkpoint_from_tinker_path(weights).result(10)
    assert any(c.public for c in rest.list_checkpoints(training.model_id).result(10).checkpoints)
    rest.unpublish_checkpoint_from_tinker_path(weights).result(10)
    assert not any(c.public for c in rest.list_checkpoints(training.model_id).result(10).checkpoints)

    rest.set_checkpoint_ttl_from_tinker_path(weights, 3600).result(10)
    checkpoint = next(c for c in rest.list_checkpoints(training.model_id).result(10).checkpoints
                      if c.tinker_path == weights)
    assert checkpoint.expires_at is not None and checkpoint.expires_at > datetime.now(UTC)

    info = rest.get_weights_info_by_tinker_path(weights).result(10)
    assert (info.base_model, info.is_lora, info.lora_rank) == ("tiny-byte", True, 3)
    assert client.session_id in rest.list_sessions(limit=100).result(10).sessions
    session = rest.get_session(client.session_id).result(10)
    assert training.model_id in session.training_run_ids
    assert sampler.sampling_session_id in session.sampler_ids
    assert rest.get_sampler(sampler.sampling_session_id).result(10).base_model == "tiny-byte"
    archive = rest.get_checkpoint_archive_url(training.model_id, "weights/rest-w").result(10)
    assert archive.url.startswith("http://127.0.0.1") and archive.expires > datetime.now(UTC)

    async def async_calls() -> int:
        runs = await rest.list_training_runs_async()
        return len(runs.training_runs)

    assert asyncio.run(async_calls()) >= 1
    rest.delete_checkpoint_from_tinker_path(sampler_weights).result(10)
    with pytest.raises(tinker.NotFoundError):
        rest.delete_checkpoint_from_tinker_path(sampler_weights).result(10)


def test_rest_rejects_bad_paths_before_the_wire(client: tinker.ServiceClient) -> None:
    rest = client.create_rest_client()
    with pytest.raises(tinker.InvalidInputError):
        rest.get_weights_info_by_tinker_path("tinker://run/other/x")
    with pytest.raises(tinker.InvalidInputError):
        rest.publish_checkpoint_from_tinker_path("not-a-path")


def test_tokenizer_from_the_training_client_matches_the_model(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-bpe", rank=2).result()
    tokenizer = training.get_tokenizer()
    ids = tokenizer.encode("The keeper climbed the tower.", add_special_tokens=False)
    assert tokenizer.decode(ids) == "The keeper climbed the tower."
    assert max(ids) < tokenizer.vocab_size
    assert training.get_info().model_data.tokenizer_id is not None
    assert get_tokenizer("tiny-bpe").tokenizer is get_tokenizer("tinker-actors/tiny-bpe").tokenizer  # cached


def test_unknown_tokenizer_is_a_clear_offline_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub model is downloaded when not cached, unless offline
    with pytest.raises(tinker.InvalidInputError, match=r"not in the Hugging Face cache .* downloads are off"):
        get_tokenizer("some-org/some-model-that-is-not-cached", cache_dir=tmp_path)
