"""``kind="inflight"`` samplers follow their training model's latest weights (FEATURES S6), over real HTTP."""

from __future__ import annotations

import httpx
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


def test_an_ended_session_frees_its_inflight_weights_and_completion_queues() -> None:
    """A long-running service must not keep the published weights or completion queues of sessions that ended."""
    flags = {"sample_use_retrieve_futures": True}
    with service_with(flags) as service:
        def health() -> dict[str, int]:
            answer = httpx.get(f"{service.base_url}/local/v1/health", headers={"X-API-Key": "tml-test-key"})
            return {key: answer.json()[key] for key in ("loaded_samplers", "inflight_weights", "completion_queues")}

        for _ in range(3):  # three sessions, one after the other
            with tinker.ServiceClient(config=config(service, **{"protocol": "0.38"})) as client:
                training = done(client.create_lora_training_client(base_model="tiny-byte", rank=8, seed=3))
                inflight = done(training.save_weights_and_get_sampling_client(kind="inflight"))
                train_step(training)
                sample_tokens(inflight)
                live = health()
                assert live["inflight_weights"] == 1 and live["completion_queues"] >= 1, live
        # each session was finished by close(): nothing of theirs is kept
        assert health() == {"loaded_samplers": 0, "inflight_weights": 0, "completion_queues": 0}
