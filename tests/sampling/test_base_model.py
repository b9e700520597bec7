"""``SamplingClient.get_base_model()`` (official 0.38): the base model a sampler samples, known from the client's
creation (a saved-weights sampler learns it with ``GET samplers/{id}``, as the official SDK does), else asked of
the server once; for base-model, saved-weights, snapshot and inflight samplers, over real HTTP."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import tinker_actors as tinker
from tests.sampling.conftest import config, done, service_with
from tinker_actors.call_style import DeprecatedCallWarning
from tinker_actors.errors import NotFoundError
from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper


def sampler_lookups(service: LocalService) -> int:
    return int(service.request_counts()["endpoints"].get("get_sampler", {}).get("received", 0))


def test_every_kind_of_sampler_knows_its_base_model_without_asking_again() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        base = done(client.create_sampling_client(base_model="tiny-bpe"))
        assert sampler_lookups(service) == 0  # the caller named it
        assert base.get_base_model() == "tiny-bpe"

        training = done(client.create_lora_training_client(base_model="tiny-byte", rank=4, seed=1))
        snapshot = done(training.save_weights_and_get_sampling_client())
        inflight = done(training.save_weights_and_get_sampling_client(kind="inflight"))
        assert snapshot.get_base_model() == inflight.get_base_model() == "tiny-byte"
        assert sampler_lookups(service) == 0  # the training client knows its model

        path = training.save_weights_for_sampler(name="saved").result(timeout=30).path
        saved = done(client.create_sampling_client(model_path=path))
        assert sampler_lookups(service) == 1  # learned once, at creation
        assert saved.get_base_model() == "tiny-byte"
        assert sampler_lookups(service) == 1


@pytest.mark.parametrize("kind", ["snapshot", "inflight", "saved", "base"])
def test_a_client_made_from_a_session_id_asks_the_server_once(kind: str) -> None:
    """The local service's record of each kind of sampler names its base model."""
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        training = done(client.create_lora_training_client(base_model="tiny-byte", rank=4, seed=1))
        if kind == "saved":
            path = training.save_weights_for_sampler(name="saved").result(timeout=30).path
            original = done(client.create_sampling_client(model_path=path))
        elif kind == "base":
            original = done(client.create_sampling_client(base_model="tiny-byte"))
        else:
            original = done(training.save_weights_and_get_sampling_client(kind=kind))
        clone = tinker.SamplingClient.create(client, sampling_session_id=original.sampling_session_id).result()
        before = sampler_lookups(service)
        assert clone.get_base_model() == "tiny-byte"
        assert clone.get_base_model() == "tiny-byte"
        assert sampler_lookups(service) == before + 1


def test_a_failed_lookup_at_creation_is_made_again_when_asked() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        training = done(client.create_lora_training_client(base_model="tiny-byte", rank=4, seed=1))
        path = training.save_weights_for_sampler(name="saved").result(timeout=30).path
        rule = FaultHelper(service).fail("get_sampler", 404, times=1)
        saved = done(client.create_sampling_client(model_path=path))  # the creation does not fail for it
        assert FaultHelper(service).fired(rule) == 1 and saved.base_model is None
        assert saved.get_base_model() == "tiny-byte"
        assert saved.get_tokenizer().encode("ab") == [97, 98]  # the byte tokenizer of tiny-byte


def test_an_unknown_sampler_is_a_typed_error() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        client.session_id  # noqa: B018 (the session the clone attaches to)
        ghost = tinker.SamplingClient.create(client, sampling_session_id="no-such-sampler").result()
        with pytest.raises(NotFoundError):
            ghost.get_base_model()


def test_the_async_form_is_deprecated_and_the_creation_future_forwards_both() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        future = client.create_sampling_client(base_model="tiny-bpe")
        with pytest.warns(DeprecatedCallWarning, match="get_base_model"):
            assert future.get_base_model() == "tiny-bpe"
        sampler = future.result()

        async def both() -> tuple[str, str]:
            pending = client.create_sampling_client(base_model="tiny-byte")
            return await sampler.get_base_model_async(), await pending.get_base_model_async()

        with pytest.warns(DeprecatedCallWarning) as warned:
            assert asyncio.run(both()) == ("tiny-bpe", "tiny-byte")
        assert any("get_base_model_async" in str(w.message) for w in warned)


def test_pickles_and_handles_keep_the_base_model() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        sampler = done(client.create_sampling_client(base_model="tiny-bpe"))
        before = sampler_lookups(service)
        assert pickle.loads(pickle.dumps(sampler)).get_base_model() == "tiny-bpe"
        handle = sampler.get_sampler_handle()
        assert tinker.SamplingClient.from_sampler_handle(handle).get_base_model() == "tiny-bpe"
        assert sampler_lookups(service) == before
