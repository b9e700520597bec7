"""The types of protocol 0.38: validated as the official SDK 0.38 validates them, the settings that are not
built yet refused with a typed error before anything goes on the wire, and the 0.6.3 wire unchanged.

The comparison with the official SDK runs the same constructions (``tests/compat038/official_validation.py``)
under its interpreter (``.venv-tinker038``) and here, and compares what each accepted and what it holds.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import tinker_actors as tinker
from tests.compat038.official_validation import CASES, run
from tests.wire.conftest import OFFICIAL_038_PYTHON, REPO
from tinker_actors import types
from tinker_actors.call_style import DeprecatedCallWarning
from tinker_actors.clients.backcompat import BackcompatClientFuture, BackcompatTrainingClientFuture
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import InvalidInputError, UnsupportedFeatureError
from tinker_actors.futures import APIFuture
from tinker_actors.local import LocalService
from tinker_actors.types.session_status import session_status_of
from tinker_actors.types.topk_logprobs import MASK_LOGPROB, TopkLogprobs, topk_from_lists, topk_to_lists
from tinker_actors.types.unsupported import NOT_SUPPORTED_YET
from tinker_actors.wire import v0_6_3, v0_38

# Accepted by the official types, refused here until the feature is built (types/unsupported.py).
REFUSED_HERE = {"create_model_dimuon"}
# Accepted by the official types and refused by the server (400); refused here, before sending.
CHECKED_BEFORE_SENDING = {"sample_last_n_without_logprobs", "sample_last_n_too_long"}


@pytest.fixture(scope="module")
def official() -> dict[str, Any]:
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON} (`make test`)")
    script = REPO / "tests" / "compat038" / "official_validation.py"
    done = subprocess.run([str(OFFICIAL_038_PYTHON), str(script), "tinker"], capture_output=True, text=True,
                          timeout=120, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _same_fields(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Equal, except that a field the official type lacks may be here at None (the search owner and status
    query types are subclasses of one class that has ``owner_urns`` / ``reasons``)."""
    extra = set(ours) - set(theirs)
    if any(ours[name] is not None for name in extra):
        return False
    return all(name in ours and _same(theirs[name], ours[name]) for name in theirs)


def _same(theirs: Any, ours: Any) -> bool:
    if isinstance(theirs, dict) and isinstance(ours, dict):
        return _same_fields(theirs, ours)
    if isinstance(theirs, list) and isinstance(ours, list):
        return len(theirs) == len(ours) and all(_same(a, b) for a, b in zip(theirs, ours, strict=True))
    return bool(theirs == ours)


def test_the_types_accept_and_hold_what_the_official_types_do(official: dict[str, Any]) -> None:
    ours = run("tinker_actors")
    assert set(official["cases"]) == {case for case, _, _ in CASES}
    problems = []
    for case, name, _ in CASES:
        theirs, here = official["cases"][case], ours["cases"][case]
        if case in REFUSED_HERE:
            if not (theirs["ok"] and here == {"ok": False, "error": "UnsupportedFeatureError"}):
                problems.append(f"{case}: official {theirs}, here {here} (expected a refusal of a setting not built)")
        elif case in CHECKED_BEFORE_SENDING:
            if not (theirs["ok"] and not here["ok"]):
                problems.append(f"{case}: official {theirs}, here {here} (expected a check before sending)")
        elif theirs["ok"] != here["ok"]:
            problems.append(f"{case} ({name}): official {theirs}, here {here}")
        elif theirs["ok"] and not _same(theirs["dump"], here["dump"]):
            problems.append(f"{case} ({name}): official holds {theirs['dump']}, here {here['dump']}")
    assert not problems, "\n".join(problems)
    assert ours["literals"] == official["literals"]


def test_the_official_outcomes_are_not_all_the_same(official: dict[str, Any]) -> None:
    """The comparison means something: the official types refuse some of the cases and accept most."""
    outcomes = [outcome["ok"] for outcome in official["cases"].values()]
    assert 10 < outcomes.count(False) < len(outcomes) // 2


# ---- refusals of what is not built yet ----------------------------------------------------------

PROMPT = types.ModelInput.from_ints([1, 2, 3, 4])
SAMPLING = types.SamplingParams(max_tokens=4)
DATUM = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]),
                    loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]})
SPANS = [types.PromptProvenanceSpan(sequence_id="s", length=3)]
SAMPLED = [types.SampledProvenanceSpan(sequence_id="s", length=3)]
# Per refused field: a valid request of that type, and a value that asks for the feature.
VALID: dict[str, dict[str, Any]] = {
    "CreateModelRequest": {"session_id": "s", "model_seq_id": 0, "base_model": "b"},
    "OptimStepRequest": {"model_id": "m", "adam_params": types.AdamParams()},
    "ForwardBackwardInput": {"data": [DATUM], "loss_fn": "cross_entropy"},
    "ModelInput": {"chunks": [types.EncodedTextChunk(tokens=[1])]},
}
ASKING: dict[str, Any] = {
    "CreateModelRequest.optimizer_config": types.DimuonOptimizerConfig(),
    "OptimStepRequest.optim_params": types.DimuonParams(learning_rate=0.01),
    "ForwardBackwardInput.loss_fn": "custom",
    "ModelInput.chunks": [types.DmelChunk(dmel=b"\x00\x01")],
}
REFUSED = [f"{type_name}.{field}" for type_name, fields in NOT_SUPPORTED_YET.items() for field in fields]


def test_every_refused_setting_has_a_case_here() -> None:
    """Lifting a refusal (deleting its line in types/unsupported.py) means deleting its case here too."""
    assert set(ASKING) == set(REFUSED)
    assert set(VALID) == set(NOT_SUPPORTED_YET)


def test_the_porting_guide_lists_exactly_the_refused_settings() -> None:
    text = (REPO / "docs" / "porting-from-official-sdk.md").read_text()
    heading = "### Settings of 0.38 refused until they are built"
    assert heading in text
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    assert set(re.findall(r"`([A-Z]\w+\.\w+)`", section)) == set(REFUSED)


@pytest.mark.parametrize("feature", REFUSED)
def test_a_setting_not_built_is_refused_typed_when_the_request_is_built(feature: str) -> None:
    type_name, field = feature.split(".")
    model = getattr(types, type_name)
    model(**VALID[type_name])  # the defaults are fine
    with pytest.raises(UnsupportedFeatureError) as refused:
        model(**{**VALID[type_name], field: ASKING[feature]})
    assert isinstance(refused.value, InvalidInputError) and refused.value.feature == feature
    message = str(refused.value)
    assert message.startswith(f"{feature} asks for ") and "not supported yet by tinker-actors" in message
    assert "tml-secret-token" not in message  # values are never quoted (a token may be one)


def test_a_value_that_asks_for_nothing_new_is_taken() -> None:
    assert types.SampleRequest(prompt=PROMPT, sampling_params=SAMPLING, record_stability_info=False,
                               topk_sample_logprobs=0, prompt_alt_tokens_k=0).record_stability_info is False
    assert types.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b",
                                    optimizer_config={"type": "adamw"}).optimizer_config == types.AdamOptimizerConfig()
    for loss in ("cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce"):
        types.ForwardBackwardInput(data=[DATUM], loss_fn=loss, loss_fn_config={"beta": "0.5"})


def test_an_adam_step_is_taken_under_its_0_38_name() -> None:
    step = types.OptimStepRequest(model_id="m", optim_params=types.AdamParams(learning_rate=0.01))  # type: ignore[call-arg]
    assert step.optim_params is step.adam_params and step.adam_params.learning_rate == 0.01
    assert types.encode_json(step) == b'{"adam_params":{"learning_rate":0.01},"model_id":"m"}'


def test_stability_info_and_provenance_are_taken_as_the_official_types_take_them() -> None:
    assert types.SampleRequest(prompt=PROMPT, sampling_params=SAMPLING, record_stability_info=True
                               ).record_stability_info is True
    with_spans = DATUM.with_provenance(SPANS, SAMPLED)
    assert (with_spans.model_input_spans, with_spans.loss_fn_input_spans) == (SPANS, SAMPLED)
    assert DATUM.model_input_spans is None  # a copy: the datum itself is unchanged
    assert types.ForwardBackwardInput(data=[with_spans], loss_fn="stable_reinforce").data[0] == with_spans


def test_with_provenance_checks_the_tiling() -> None:
    with pytest.raises(InvalidInputError, match="model_input spans cover 2 positions but the field has 3"):
        DATUM.with_provenance([types.PromptProvenanceSpan(sequence_id="s", length=2)], SAMPLED)
    with pytest.raises(InvalidInputError, match="loss_fn_inputs spans cover 4 positions but the field has 3"):
        DATUM.with_provenance(SPANS, [*SAMPLED, types.SampledProvenanceSpan(sequence_id="t", offset=2, length=1)])
    two_d = types.Datum(model_input=DATUM.model_input, loss_fn_inputs={"target_tokens": [[2, 0], [3, 0], [4, 0]]})
    assert two_d.with_provenance(SPANS, []).loss_fn_input_spans == []  # 2-D targets: not counted, as officially


@pytest.mark.parametrize(("build", "message"), [
    (lambda: types.PromptProvenanceSpan(sequence_id="", length=1), "sequence_id"),
    (lambda: types.PromptProvenanceSpan(sequence_id="s", length=-1), "length"),
    (lambda: types.SampledProvenanceSpan(sequence_id="s", offset=-2, length=1), "offset"),
    (lambda: types.SampledProvenanceSpan(sequence_id="s"), "length"),  # type: ignore[call-arg]
    (lambda: types.Datum(model_input=DATUM.model_input, loss_fn_inputs={}, model_input_spans=SPANS),
     "provenance comes as a pair"),
    (lambda: types.Datum(model_input=DATUM.model_input, loss_fn_inputs={}, model_input_spans=SPANS,
                         loss_fn_input_spans=[{"sequence_id": "s", "length": 3}]), r"loss_fn_input_spans\[0\]"),
    (lambda: DATUM.with_provenance(SPANS, [("s", 0, 3)]),  # type: ignore[list-item]
     r"loss_fn_inputs\[0\] must be a PromptProvenanceSpan"),
], ids=["empty-sequence-id", "negative-length", "negative-offset", "no-length", "half-a-pair", "a-dict",
        "a-tuple"])
def test_bad_provenance_is_a_typed_error_before_anything_is_sent(build: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as refused:
        build()
    assert not isinstance(refused.value, UnsupportedFeatureError)


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


def test_a_client_call_asking_for_a_setting_not_built_fails_before_anything_is_sent(service: LocalService) -> None:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False,
                    retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.05, deadline=5.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05))
    with tinker.ServiceClient(config=config) as client:
        training = client.create_lora_training_client("tiny-byte", rank=4)
        with service.wire_log.capture() as wire:
            with pytest.raises(UnsupportedFeatureError, match=r"OptimStepRequest\.optim_params"):
                training.optim_step(types.DimuonParams(learning_rate=0.01))  # type: ignore[arg-type]
            with pytest.raises(UnsupportedFeatureError, match=r"ForwardBackwardInput\.loss_fn"):
                training.forward_backward([DATUM], "custom")
            training.forward_backward([DATUM], "cross_entropy").result(30)  # the client still works
        sent = [record.path for record in wire.records]
        assert sent.count("/api/v1/forward_backward") == 1 and "/api/v1/optim_step" not in sent


# ---- what goes on the wire ----------------------------------------------------------------------

def test_the_0_6_3_bodies_are_unchanged_by_the_new_fields() -> None:
    codec = v0_6_3.CODEC
    assert codec.encode_json(types.SaveWeightsRequest(model_id="m", path="a")) == b'{"model_id":"m","path":"a"}'
    assert codec.encode_json(types.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b")) == \
        b'{"session_id":"s","model_seq_id":0,"base_model":"b"}'
    sample = json.loads(codec.encode_json(types.SampleRequest(prompt=PROMPT, sampling_params=SAMPLING)))
    assert set(sample) == {"prompt", "sampling_params"}


def test_the_0_38_bodies_carry_the_official_values_of_the_new_fields() -> None:
    codec = v0_38.CODEC
    sample = json.loads(codec.encode_json(types.SampleRequest(prompt=PROMPT, sampling_params=SAMPLING)))
    assert {k: sample[k] for k in ("topk_sample_logprobs", "prompt_alt_tokens_k", "record_stability_info")} == \
        {"topk_sample_logprobs": 0, "prompt_alt_tokens_k": 0, "record_stability_info": False}
    assert "prompt_logprobs_last_n" not in sample and "target_prompt_logprobs" not in sample
    last_n = json.loads(codec.encode_json(types.SampleRequest(prompt=PROMPT, sampling_params=SAMPLING,
                                                              prompt_logprobs=True, prompt_logprobs_last_n=2)))
    assert last_n["prompt_logprobs_last_n"] == 2 and last_n["record_stability_info"] is False
    save = json.loads(codec.encode_json(types.SaveWeightsRequest(model_id="m", path="a", ttl_seconds=3600)))
    assert save == {"model_id": "m", "path": "a", "ttl_seconds": 3600, "overwrite": False, "type": "save_weights"}
    model = json.loads(codec.encode_json(types.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b")))
    assert model["optimizer_config"] == {"type": "adamw"}


def test_search_owners_and_status_queries_send_their_type_under_either_protocol() -> None:
    request = types.SessionSearchRequest(owner=types.AccessibleSearchOwner(),
                                         statuses=[types.ActiveSessionStatusQuery(),
                                                   types.ClientFinishedSessionStatusQuery(reasons=["success"])])
    for codec in (v0_6_3.CODEC, v0_38.CODEC):
        body = json.loads(codec.encode_json(request))
        assert body["owner"] == {"type": "accessible"}
        assert body["statuses"] == [{"type": "active"}, {"type": "client_finished", "reasons": ["success"]}]


# ---- the new value types ------------------------------------------------------------------------

def test_topk_matrices_and_lists_convert_both_ways() -> None:
    rows: list[list[tuple[int, float]] | None] = [[(5, -0.5), (7, -1.5)], None, [(9, -0.25)]]
    topk = topk_from_lists(rows)
    assert topk.token_ids.dtype == np.int32 and topk.logprobs.dtype == np.float32 and topk.token_ids.shape == (3, 2)
    assert topk.logprobs[1].tolist() == [MASK_LOGPROB, MASK_LOGPROB] and topk.token_ids[2].tolist() == [9, 0]
    assert topk_to_lists(topk) == rows
    empty = TopkLogprobs(token_ids=np.zeros((0, 3), np.int32), logprobs=np.zeros((0, 3), np.float32))
    assert topk_to_lists(empty) == []
    response = types.SampleResponse(sequences=[], topk_prompt_logprobs=rows)
    assert response.topk_prompt_logprobs_np is not None and topk_to_lists(response.topk_prompt_logprobs_np) == rows
    sequence = types.SampledSequence(stop_reason="length", tokens=[1])
    assert sequence.topk_logprobs is None and sequence.topk_logprobs_np is None


def test_a_session_status_reads_as_its_typed_form() -> None:
    status = session_status_of({"type": "client_finished", "reason": {"type": "errored"}, "detail": "boom"})
    assert isinstance(status, types.ClientSessionFinished)
    assert isinstance(status.reason, types.ClientSessionFinishErrored)
    failed = session_status_of({"type": "failed", "category": "user", "message": "m",
                                "reason": {"type": "sampling_session", "sampling_session_id": "x"}})
    assert isinstance(failed, types.SessionFailed)
    assert isinstance(failed.reason, types.SessionFailedSamplingSessionReason)
    assert session_status_of(None) is None


def test_a_credential_in_a_request_never_shows_in_its_repr() -> None:
    request = types.CopyWeightsRequest(source_path="tinker://r/weights/a", weights_access_token="tml-secret-token")
    assert "tml-secret-token" not in repr(request) and "tml-secret-token" not in str(request)


def test_a_backcompat_future_is_a_future_of_the_client_and_forwards_to_it_with_one_warning() -> None:
    class Client:
        def name(self) -> str:
            return "the client"

    future: BackcompatClientFuture[Client] = BackcompatClientFuture()
    future.raw.set_result(Client())
    assert isinstance(future, APIFuture) and isinstance(future.result(), Client)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert future.name() == "the client" and future.name() == "the client"
    assert [type(w.message) for w in caught] == [DeprecatedCallWarning]  # a FutureWarning, as 0.38 warns
    assert "call .result() (or await it) to get the client, then .name" in str(caught[0].message)
    with pytest.raises(AttributeError):
        future._private  # noqa: B018
    assert issubclass(BackcompatTrainingClientFuture, APIFuture)


# ---- 0.38 client additions ------------------------------------------------------------------------

def test_an_admin_client_reads_billing_as_the_rest_client_does(service: LocalService) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False)
    with tinker.ServiceClient(config=config, project_id="proj-admin") as client:
        training = client.create_lora_training_client("tiny-byte", rank=2)
        training.save_state("admin-ckpt").result(30)
        admin = tinker.AdminClient(base_url=service.base_url, api_key=service.api_key)
        storage = admin.get_current_checkpoint_storage_usage(project_id="proj-admin").result(10)
        assert [(item.project_id, item.checkpoint_count) for item in storage.data] == [("proj-admin", 1)]
        assert isinstance(admin.get_billing_usage(start, end).result(10), types.BillingUsageResponse)

        async def read_async() -> types.CurrentCheckpointStorageUsageResponse:
            await admin.get_billing_usage_async(start, end)
            return await admin.get_current_checkpoint_storage_usage_async("proj-admin")

        assert asyncio.run(read_async()) == storage
        assert isinstance(tinker.AdminClient(client).get_current_checkpoint_storage_usage().result(10),
                          types.CurrentCheckpointStorageUsageResponse)


def test_a_future_gives_a_coroutine_for_apis_that_take_one() -> None:
    future: APIFuture[int] = APIFuture()

    async def main() -> int:
        task = asyncio.create_task(future.coroutine())
        await asyncio.sleep(0)
        future.raw.set_result(7)
        return await task

    assert asyncio.run(main()) == 7
