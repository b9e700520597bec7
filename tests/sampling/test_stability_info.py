"""StableReinforce's inputs with tinker-actors over real HTTP against the local service: ``record_stability_info`` set
when a sampling client is created (every official call form) goes in every sample request of that client, pickles
and sampler handles keep it; a datum's provenance spans and the loss ``stable_reinforce`` reach the server, which
answers 400 (its objective is not published); and protocol 0.6.3, where all of it is refused, typed, before
anything is sent. What the requests hold is read from the service's wire log."""

from __future__ import annotations

import asyncio
import pickle
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

import tinker_actors as tinker
from tests.sampling.conftest import PROMPT, TEXT, config, done
from tinker_actors.errors import BadRequestError, InvalidInputError, UnsupportedFeatureError
from tinker_actors.local import LocalService

BASE = "tiny-byte"
TIMEOUT = 30
PARAMS = tinker.SamplingParams(max_tokens=4, temperature=0.0)


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(config=config(service)) as svc:
        yield svc


@pytest.fixture(scope="module")
def training(client: tinker.ServiceClient) -> Any:
    return done(client.create_lora_training_client(BASE, rank=2))


@pytest.fixture(scope="module")
def saved_path(training: Any) -> str:
    path: str = training.save_weights_for_sampler("stability").result(TIMEOUT).path
    return path


def _recorded(service: LocalService, sample: Callable[[], Any]) -> list[Any]:
    """``record_stability_info`` of each asample request ``sample()`` sent."""
    with service.wire_log.capture() as wire:
        sample()
    return [record.decoded().get("record_stability_info", "absent") for record in wire.records
            if record.path == "/api/v1/asample"]


def _sample_twice(sampler: Any) -> None:
    prompt = tinker.ModelInput.from_ints(PROMPT)
    sampler.sample(prompt, 2, PARAMS).result(TIMEOUT)
    sampler.compute_logprobs(prompt).result(TIMEOUT)


def _await(coroutine_factory: Callable[[], Any]) -> Any:
    async def main() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the deprecated *_async forms, on purpose
            return await coroutine_factory()

    return asyncio.run(main())


def test_every_sample_of_a_recording_client_asks_for_stability_info(
        service: LocalService, client: tinker.ServiceClient, training: Any, saved_path: str) -> None:
    forms: dict[str, Callable[[], Any]] = {
        "service": lambda: client.create_sampling_client(base_model=BASE, record_stability_info=True).result(TIMEOUT),
        "service-await": lambda: _await(lambda: _awaited(client.create_sampling_client(
            model_path=saved_path, record_stability_info=True))),
        "service-async": lambda: _await(lambda: client.create_sampling_client_async(
            base_model=BASE, record_stability_info=True)),
        "service-future": lambda: client.create_sampling_client_future(
            model_path=saved_path, record_stability_info=True).result(TIMEOUT),
        "training": lambda: training.create_sampling_client(saved_path, record_stability_info=True).result(TIMEOUT),
        "training-async": lambda: _await(lambda: training.create_sampling_client_async(
            saved_path, None, True)),
        "save-and-get": lambda: training.save_weights_and_get_sampling_client(
            record_stability_info=True).result(TIMEOUT),
        "save-and-get-positional": lambda: training.save_weights_and_get_sampling_client(
            None, None, True, "snapshot").result(TIMEOUT),
        "save-and-get-async": lambda: _await(lambda: training.save_weights_and_get_sampling_client_async(
            record_stability_info=True)),
        "save-and-get-future": lambda: training.save_weights_and_get_sampling_client_future(
            record_stability_info=True).result(TIMEOUT),
        "save-and-get-submit": lambda: training.save_weights_and_get_sampling_client_submit(
            None, True).result(TIMEOUT),
        "sampling-client-create": lambda: tinker.SamplingClient.create(
            client, base_model=BASE, record_stability_info=True).result(TIMEOUT),
    }
    for form, create in forms.items():
        sampler = create()
        assert sampler.record_stability_info is True, form
        assert _recorded(service, partial(_sample_twice, sampler)) == [True, True], form
        # Another process's copy keeps it, as the official pickles and handles do.
        copies = {"pickle": pickle.loads(pickle.dumps(sampler)),
                  "handle": tinker.SamplingClient.from_sampler_handle(sampler.get_sampler_handle())}
        for how, copy in copies.items():
            assert _recorded(service, partial(_sample_twice, copy)) == [True, True], (form, how)


async def _awaited(future: Any) -> Any:
    return await future


def test_a_client_made_without_it_asks_for_nothing(service: LocalService, client: tinker.ServiceClient,
                                                   training: Any) -> None:
    """The official default: false in every request (the 0.38 body carries the field at its default)."""
    samplers = [client.create_sampling_client(base_model=BASE).result(TIMEOUT),
                training.save_weights_and_get_sampling_client().result(TIMEOUT)]
    for sampler in samplers:
        assert sampler.record_stability_info is False
        assert _recorded(service, partial(_sample_twice, sampler)) == [False, False]
        handle = tinker.SamplingClient.from_sampler_handle(sampler.get_sampler_handle())
        assert _recorded(service, partial(_sample_twice, handle)) == [False, False]


def test_a_value_that_is_not_a_bool_is_a_typed_error_before_anything_is_sent(
        service: LocalService, client: tinker.ServiceClient, training: Any) -> None:
    with service.wire_log.capture() as wire:
        with pytest.raises(InvalidInputError, match="record_stability_info is True or False, got str"):
            client.create_sampling_client(base_model=BASE, record_stability_info="yes")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="record_stability_info is True or False, got int"):
            training.save_weights_and_get_sampling_client(record_stability_info=1)
    assert not [r for r in wire.records if r.path.endswith(("create_sampling_session", "save_weights_for_sampler"))]


def _rollout_datum(sampler: Any) -> tuple[tinker.Datum, str]:
    """A datum built from one sampled sequence, with the spans that name it (prompt runs, then sampled runs)."""
    prompt = PROMPT[:6]
    sequence = sampler.sample(tinker.ModelInput.from_ints(prompt), 1, PARAMS).result(TIMEOUT).sequences[0]
    sequence_id = sequence.sequence_id
    assert sequence_id, "every sequence is named"
    tokens = prompt + list(sequence.tokens)
    n = len(tokens) - 1
    datum = tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                         loss_fn_inputs={"target_tokens": tokens[1:], "advantages": [1.0] * n,
                                         "logprobs": [0.0] * (len(prompt) - 1) + list(sequence.logprobs or [])})
    sampled = len(sequence.tokens)
    return datum.with_provenance(
        [tinker.PromptProvenanceSpan(sequence_id=sequence_id, length=len(prompt)),
         tinker.SampledProvenanceSpan(sequence_id=sequence_id, length=sampled - 1)],
        [tinker.PromptProvenanceSpan(sequence_id=sequence_id, offset=1, length=len(prompt) - 1),
         tinker.SampledProvenanceSpan(sequence_id=sequence_id, length=sampled)]), sequence_id


def test_stable_reinforce_reaches_the_server_with_its_spans_and_the_local_service_refuses_it(
        service: LocalService, client: tinker.ServiceClient, training: Any) -> None:
    sampler = training.save_weights_and_get_sampling_client(record_stability_info=True).result(TIMEOUT)
    datum, sequence_id = _rollout_datum(sampler)
    with service.wire_log.capture() as wire:
        with pytest.raises(BadRequestError, match="does not implement stable_reinforce") as refused:
            training.forward_backward([datum], "stable_reinforce", {"kl_coeff": 0.01}).result(TIMEOUT)
        # The spans on another loss are accepted and ignored, as the Tinker service takes them.
        other = training.forward_backward([datum], "importance_sampling").result(TIMEOUT)
    assert "objective is not published" in str(refused.value)
    assert len(other.loss_fn_outputs) == 1
    sent = [r for r in wire.records if r.path == "/api/v1/forward_backward"]
    assert [r.status for r in sent] == [400, 200]
    first = sent[0].decoded()
    assert first["loss_fn"] == "stable_reinforce"
    runs = first["data"][0]["model_input_spans"] + first["data"][0]["loss_fn_input_spans"]
    assert [next(iter(run)) for run in runs] == ["prompt_tokens", "sampled_tokens"] * 2
    assert {value["sequence_id"] for run in runs for value in run.values()} == {sequence_id}


def test_protocol_0_6_3_refuses_all_of_it_before_anything_is_sent(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service, protocol="0.6.3")) as old:
        training = done(old.create_lora_training_client(BASE, rank=2))
        path = training.save_weights_for_sampler("old").result(TIMEOUT).path
        datum = tinker.Datum(model_input=tinker.ModelInput.from_ints(TEXT[:4]),
                             loss_fn_inputs={"target_tokens": TEXT[1:5], "advantages": [1.0] * 4,
                                             "logprobs": [0.0] * 4})
        spans = datum.with_provenance([tinker.PromptProvenanceSpan(sequence_id="req-a:0", length=4)],
                                      [tinker.SampledProvenanceSpan(sequence_id="req-a:0", length=4)])
        with service.wire_log.capture() as wire:
            with pytest.raises(UnsupportedFeatureError, match=r"needs protocol 0\.38") as refused:
                training.save_weights_and_get_sampling_client(record_stability_info=True)
            assert refused.value.feature == "SampleRequest.record_stability_info"
            with pytest.raises(UnsupportedFeatureError, match=r"record_stability_info needs protocol 0\.38"):
                old.create_sampling_client(model_path=path, record_stability_info=True).result(TIMEOUT)
            with pytest.raises(UnsupportedFeatureError, match=r"need protocol 0\.38") as refused:
                training.forward_backward([spans], "importance_sampling")
            assert refused.value.feature == "Datum.model_input_spans"
            with pytest.raises(UnsupportedFeatureError, match=r"needs protocol 0\.38"):
                training.forward([datum], "stable_reinforce")
        sent = {record.path for record in wire.records}
        assert not sent & {"/api/v1/create_sampling_session", "/api/v1/save_weights_for_sampler",
                           "/api/v1/forward_backward", "/api/v1/forward", "/api/v1/asample"}, sent
        training.forward_backward([datum], "importance_sampling").result(TIMEOUT)  # the client still works
