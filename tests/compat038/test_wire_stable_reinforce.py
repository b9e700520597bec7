"""StableReinforce on the wire: the same calls, made with the official 0.38 SDK and with ours in 0.38 mode, arrive at
the local service as the same requests (decoded: JSON as parsed, protobuf as the message's fields).

The calls (``official_stable_reinforce_calls.py`` for the official SDK, :func:`_our_calls` here): a sampling client
made with ``record_stability_info=True`` by ``save_weights_and_get_sampling_client`` and by
``ServiceClient.create_sampling_client``, samples from them, then forward_backward of a datum whose provenance spans
name the sampled sequence, first with ``importance_sampling`` (the service takes the spans and ignores them), then
with ``stable_reinforce`` (the local service answers 400: its objective is not published; the wire log keeps the
refused request too). Captures are compared as ``test_wire_capture.py`` compares them (ids replaced by placeholders
in order of first appearance, so the spans' sequence ids must name the same sequences on both sides).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat038.conftest import official_python, run_official, service_with_flags
from tests.compat038.test_wire_capture import SDK_HEADERS, _differences, _without, wire_requests
from tinker_actors.local import LocalService

TIMEOUT_S = 30.0
BASE_MODEL = "tiny-byte"
PROMPT = [116, 104, 101, 32, 99]  # as official_stable_reinforce_calls.py
_FWDBWD = "/api/v1/forward_backward"


def _rollout_datum(prompt: list[int], sequence: Any) -> Any:
    """official_stable_reinforce_calls.py's datum, with tinker-actors' types."""
    from tinker_actors import types

    tokens = prompt + list(sequence.tokens)
    sampled = len(sequence.tokens)
    datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "advantages": [0.5] * (len(tokens) - 1),
                                        "logprobs": [0.0] * (len(prompt) - 1) + list(sequence.logprobs)})
    sid = sequence.sequence_id
    return datum.with_provenance(
        model_input=[types.PromptProvenanceSpan(sequence_id=sid, length=len(prompt)),
                     types.SampledProvenanceSpan(sequence_id=sid, length=sampled - 1)],
        loss_fn_inputs=[types.PromptProvenanceSpan(sequence_id=sid, offset=1, length=len(prompt) - 1),
                        types.SampledProvenanceSpan(sequence_id=sid, length=sampled)])


def _our_calls(service: LocalService) -> str:
    """The official script's calls with tinker-actors speaking 0.38; the stable_reinforce refusal's message."""
    import tinker_actors
    from tinker_actors import types

    client = tinker_actors.ServiceClient(base_url=service.base_url, api_key=service.api_key, protocol="0.38",
                                         telemetry_enabled=False)
    try:
        training = client.create_lora_training_client(base_model=BASE_MODEL, rank=4, seed=11).result()
        sampler = training.save_weights_and_get_sampling_client(record_stability_info=True).result()
        params = types.SamplingParams(max_tokens=3, temperature=0.0)
        prompt = types.ModelInput.from_ints(PROMPT)
        sample = sampler.sample(prompt, 1, params).result(timeout=TIMEOUT_S)
        datum = _rollout_datum(PROMPT, sample.sequences[0])
        training.forward_backward([datum], "importance_sampling").result(timeout=TIMEOUT_S)
        saved = training.save_weights_for_sampler("stable").result(timeout=TIMEOUT_S)
        other = client.create_sampling_client(model_path=saved.path, record_stability_info=True).result()
        other.sample(prompt, 2, params).result(timeout=TIMEOUT_S)
        with pytest.raises(tinker_actors.BadRequestError) as refused:
            training.forward_backward([datum], "stable_reinforce", {"kl_coeff": 0.01}).result(timeout=TIMEOUT_S)
        return str(refused.value.message)
    finally:
        client.close()


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    official_python()
    home: Path = tmp_path_factory.mktemp("official038-stable")
    with service_with_flags() as service, service.wire_log.capture() as capture:
        run = run_official("official_stable_reinforce_calls.py", service, home)
    theirs = wire_requests(capture.records)
    with service_with_flags() as service, service.wire_log.capture() as capture:
        message = _our_calls(service)
    ours = [r for r in wire_requests(capture.records) if not r["path"].endswith("/finish")]
    yield {"official": theirs, "ours": ours, "steps": run.steps, "our_refusal": message}


def test_the_official_sdk_sends_stable_reinforce_and_is_refused_in_the_services_words(
        captures: dict[str, Any]) -> None:
    steps = captures["steps"]
    refusal = steps.pop("forward_backward_stable_reinforce")
    assert set(steps.values()) == {"ok"}, steps
    assert refusal.startswith("refused: BadRequestError: ") and "does not implement stable_reinforce" in refusal
    assert "objective is not published" in captures["our_refusal"]


def test_the_official_requests_carry_the_flag_and_the_spans(captures: dict[str, Any]) -> None:
    """What the comparison below covers, in words: the flag in every sample, the runs in the protobuf datum."""
    requests = captures["official"]
    samples = [r for r in requests if r["path"] == "/api/v1/asample"]
    assert [r["body"]["record_stability_info"] for r in samples] == [True, True]
    fwdbwd = [r for r in requests if r["path"] == _FWDBWD]
    assert [(r["body"]["loss_fn"], r["status"]) for r in fwdbwd] == [("importance_sampling", 200),
                                                                     ("stable_reinforce", 400)]
    for request in fwdbwd:
        assert request["headers"]["content-type"] == "application/x-protobuf"
        datum = request["body"]["data"][0]
        kinds = [next(iter(run)) for run in datum["model_input_spans"] + datum["loss_fn_input_spans"]]
        assert kinds == ["prompt_tokens", "sampled_tokens"] * 2
        ids = {run[kind]["sequence_id"] for run in datum["model_input_spans"] for kind in run}
        assert len(ids) == 1 and next(iter(ids)).startswith("<id ")  # the sampled sequence's id, as a placeholder


def test_our_038_requests_are_the_official_ones(captures: dict[str, Any]) -> None:
    """Same paths, encodings and decoded bodies (the asample JSON with record_stability_info, the protobuf
    forward_backward with its spans), in the same order, with the same answers."""
    ours, theirs = _without(captures["ours"], SDK_HEADERS), _without(captures["official"], SDK_HEADERS)
    assert ours == theirs, _differences(ours, theirs)
