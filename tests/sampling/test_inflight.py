"""``kind="inflight"`` samplers follow their training model's latest weights (FEATURES S6), over real HTTP."""

from __future__ import annotations

import pytest

import tinker_actors as tinker
from tests.sampling.conftest import config, done, sample_tokens, service_with, train_step
from tinker_actors.errors import InvalidInputError


def test_an_inflight_sampler_follows_each_step_without_a_save() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        training = done(client.create_lora_training_client(base_model="tiny-byte", rank=8, seed=3))
        inflight = done(training.save_weights_and_get_sampling_client(kind="inflight"))
        snapshot = done(training.save_weights_and_get_sampling_client())
        before = sample_tokens(inflight)
        assert sample_tokens(snapshot) == before  # the same weights so far

        train_step(training)
        saves = service.request_counts()["endpoints"]["save_weights_for_sampler"]["received"]
        after = sample_tokens(inflight)
        assert after != before  # the new weights, with no save in between
        assert service.request_counts()["endpoints"]["save_weights_for_sampler"]["received"] == saves
        assert sample_tokens(snapshot) == before  # a snapshot sampler keeps the weights it was made with

        path = training.save_weights_for_sampler(name="step-1").result(timeout=30).path
        saved = done(client.create_sampling_client(model_path=path))
        assert sample_tokens(saved) == after  # exactly the weights of that step

        train_step(training)
        assert sample_tokens(inflight) != after  # and it keeps following


def test_a_later_inflight_sampler_shares_the_same_latest_weights() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service)) as client:
        training = done(client.create_lora_training_client(base_model="tiny-byte", rank=8, seed=3))
        first = done(training.save_weights_and_get_sampling_client(kind="inflight"))
        train_step(training)
        second = done(training.save_weights_and_get_sampling_client(kind="inflight"))
        assert sample_tokens(first) == sample_tokens(second)


def test_inflight_is_refused_before_sending_on_protocol_0_6_3_and_a_bad_kind_is_refused() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service, protocol="0.6.3")) as client:
        training = done(client.create_lora_training_client(base_model="tiny-byte", rank=4))
        before = service.request_counts()["endpoints"].get("save_weights_for_sampler", {}).get("received", 0)
        with pytest.raises(InvalidInputError, match=r"protocol 0\.38"):
            training.save_weights_and_get_sampling_client(kind="inflight")
        with pytest.raises(InvalidInputError, match="'snapshot' or 'inflight'"):
            training.save_weights_and_get_sampling_client(kind="live")
        after = service.request_counts()["endpoints"].get("save_weights_for_sampler", {}).get("received", 0)
        assert after == before
