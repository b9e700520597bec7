"""The local service speaks protocol 0.38 next to 0.6.3, chosen per request as the official SDKs ask.

Over real HTTP on 127.0.0.1: requests are built with our 0.38 codec (the client side) and by hand
(0.38's JSON bodies, with defaults included, ``None`` dropped and ``type`` discriminators), results
are read with the codec. The official 0.38 SDK's own loop against the service is in tests/compat038.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.local.support import Api, RecordingBackend, RecordingTrainer, datum
from tinker_actors import types
from tinker_actors.errors import InvalidInputError
from tinker_actors.local import FaultAction, FaultRule, LocalService
from tinker_actors.local.engine.backend import DatumInput, LoraSpec, StepOutput, Trainer
from tinker_actors.wire import ForwardBackwardCall, v0_38

PROTOBUF = "application/x-protobuf"
# What the official 0.38 SDK sends to create a session (user_metadata None is dropped).
SESSION_038 = {"tags": [], "sdk_version": "0.38.0", "type": "create_session"}


class Api038(Api):
    """Speaks 0.38: protobuf forward_backward (zstd when asked), protobuf results on Accept."""

    def create_session(self) -> str:
        response = self.post("/api/v1/create_session", SESSION_038)
        assert response.status_code == 200, response.text
        session_id: str = response.json()["session_id"]
        return session_id

    def create_model(self, session_id: str, model_seq_id: int = 0, base_model: str = "tiny-byte") -> str:
        response = self.post("/api/v1/create_model", {
            "session_id": session_id, "model_seq_id": model_seq_id, "base_model": base_model,
            "lora_config": {"rank": 4, "train_unembed": True, "train_mlp": True, "train_attn": True},
            "optimizer_config": {"type": "adamw"}, "type": "create_model"})
        assert response.status_code == 200, response.text
        model_id: str = self.result(response.json()["request_id"])["model_id"]
        return model_id

    def send_fwdbwd(self, model_id: str, seq_id: int, data: list[types.Datum] | None = None, *,
                    forward_only: bool = False, compress: bool = False, loss_fn: str = "cross_entropy",
                    headers: dict[str, str] | None = None) -> httpx.Response:
        call = ForwardBackwardCall(model_id=model_id, seq_id=seq_id, forward_only=forward_only,
                                   input=types.ForwardBackwardInput(data=data or [text_datum([1, 2, 3, 4])],
                                                                    loss_fn=loss_fn))
        request = v0_38.CODEC.encode_forward_backward(call, compress=compress)
        return self.http.post(request.path, content=request.body.content,
                              headers={**request.body.headers(), **(headers or {})})

    def poll_038(self, request_id: str, *, allow_metadata_only: bool = False, accept: str = PROTOBUF) -> httpx.Response:
        return self.http.post("/api/v1/retrieve_future", headers={"Accept": accept},
                              json={"request_id": request_id, "allow_metadata_only": allow_metadata_only})

    def finished(self, request_id: str, *, allow_metadata_only: bool = False,
                 accept: str = PROTOBUF) -> httpx.Response:
        for _ in range(50):
            response = self.poll_038(request_id, allow_metadata_only=allow_metadata_only, accept=accept)
            if response.status_code != 408:
                return response
        raise AssertionError(f"future {request_id} did not finish")

    def fwdbwd_output(self, request_id: str) -> types.ForwardBackwardOutput:
        response = self.finished(request_id)
        assert response.status_code == 200, response.text
        return v0_38.CODEC.decode_forward_backward_output(response.content, response.headers["content-type"])


def text_datum(tokens: list[int]) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": np.asarray(tokens[1:], dtype=np.int64),
                                       "weights": np.ones(len(tokens) - 1, dtype=np.float32)})


def sample_body_038(sampler_id: str, seq_id: int, **changes: Any) -> dict[str, Any]:
    """An asample body as the official 0.38 SDK writes it: every setting, discriminators included."""
    body: dict[str, Any] = {
        "num_samples": 2, "prompt": {"chunks": [{"tokens": [5, 6, 7, 8], "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 3, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
        "sampling_session_id": sampler_id, "seq_id": seq_id, "prompt_logprobs": False,
        "topk_prompt_logprobs": 0, "topk_sample_logprobs": 0, "prompt_alt_tokens_k": 0,
        "record_stability_info": False, "type": "sample"}
    body.update(changes)
    return body


@pytest.fixture
def api038(zero_service: LocalService) -> Iterator[Api038]:
    client = Api038(zero_service)
    yield client
    client.close()


@pytest.fixture
def model(api038: Api038) -> str:
    return api038.create_model(api038.create_session())


# ---- client/config and client/dynamic_config ------------------------------------------------------

def test_config_answers_empty_objects_by_default(api038: Api038) -> None:
    for path in ("/api/v1/client/config", "/api/v1/client/dynamic_config"):
        response = api038.post(path, {"sdk_version": "0.38.0"})
        assert response.status_code == 200 and response.json() == {}


def test_flags_set_from_python_are_announced_where_each_belongs() -> None:
    flags = {"proto_compress_fwdbwd": True, "fwdbwd_max_chunk_len": 16, "refresh_interval_sec": 11,
             "some_future_flag": {"x": 1}}
    with LocalService(zero_work=True, protocol_flags=flags) as svc:
        api = Api038(svc)
        config = api.post("/api/v1/client/config", {"sdk_version": "0.38.0"}).json()
        dynamic = api.post("/api/v1/client/dynamic_config", {"sdk_version": "0.38.0"}).json()
        assert config == {"proto_compress_fwdbwd": True, "fwdbwd_max_chunk_len": 16, "some_future_flag": {"x": 1}}
        assert dynamic == {"refresh_interval_sec": 11, "some_future_flag": {"x": 1}}

        svc.protocol.update_flags({"fwdbwd_max_chunk_len": None, "sample_max_concurrent_requests": 64})
        config = api.post("/api/v1/client/config", {"sdk_version": "0.38.0"}).json()
        assert config == {"proto_compress_fwdbwd": True, "sample_max_concurrent_requests": 64,
                          "some_future_flag": {"x": 1}}
        svc.protocol.clear_flags()
        assert api.post("/api/v1/client/config", {"sdk_version": "0.38.0"}).json() == {}
        api.close()


@pytest.mark.parametrize("flags", [{"proto_compress_fwdbwd": "yes"}, {"fwdbwd_max_chunk_len": 0},
                                   {"fwdbwd_max_chunk_len": True}, {"credential_default_source": 3},
                                   {"odd": float("nan")}])
def test_a_flag_of_the_wrong_type_is_refused_before_anything_starts(flags: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="protocol flag"):
        LocalService(zero_work=True, protocol_flags=flags)


def test_admin_endpoints_show_merge_replace_and_clear_flags(api038: Api038) -> None:
    assert api038.admin("GET", "protocol").json() == {"flags": {}, "inline_result_bytes": 1024 * 1024}
    merged = api038.admin("PATCH", "protocol", {"flags": {"proto_compress_fwdbwd": True, "fwdbwd_max_chunk_len": 8}})
    assert merged.json()["flags"] == {"proto_compress_fwdbwd": True, "fwdbwd_max_chunk_len": 8}
    merged = api038.admin("PATCH", "protocol", {"flags": {"fwdbwd_max_chunk_len": None}, "inline_result_bytes": 0})
    assert merged.json() == {"flags": {"proto_compress_fwdbwd": True}, "inline_result_bytes": 0}
    replaced = api038.admin("PUT", "protocol", {"flags": {"sample_cancel_max_batch_size": 3}})
    assert replaced.json()["flags"] == {"sample_cancel_max_batch_size": 3}
    assert api038.post("/api/v1/client/dynamic_config", {}).json() == {"sample_cancel_max_batch_size": 3}
    bad_bodies: list[dict[str, Any]] = [{"flags": {"fwdbwd_max_chunk_len": "many"}}, {"flags": []},
                                        {"inline_result_bytes": -1}, {"flag": {}}]
    for bad in bad_bodies:
        response = api038.admin("PATCH", "protocol", bad)
        assert response.status_code == 400, bad
    assert api038.admin("GET", "protocol").json()["flags"] == {"sample_cancel_max_batch_size": 3}  # unchanged
    assert api038.admin("DELETE", "protocol").json()["flags"] == {}


# ---- protobuf forward_backward requests and results -----------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_protobuf_forward_backward_is_answered_as_protobuf_on_accept_and_json_otherwise(
        api038: Api038, model: str, compress: bool) -> None:
    data = [text_datum([1, 2, 3, 4, 5]), text_datum([7, 8, 9])]
    response = api038.send_fwdbwd(model, 1, data, compress=compress)
    assert response.status_code == 200, response.text
    future = response.json()
    assert future["model_id"] == model
    output = api038.fwdbwd_output(future["request_id"])
    assert [len(out["logprobs"].data) for out in output.loss_fn_outputs] == [4, 2]
    assert "loss:sum" in output.metrics
    as_json = api038.finished(future["request_id"], accept="application/json")  # a 0.6.3 poll of the same result
    assert as_json.headers["content-type"] == "application/json"
    assert types.ForwardBackwardOutput.model_validate_json(as_json.content) == output


def test_forward_only_runs_a_forward_pass(zero_service: LocalService) -> None:
    backend = RecordingBackend()
    with LocalService(backend=backend, long_poll_s=0.3) as svc:
        api = Api038(svc)
        model_id = api.create_model(api.create_session())
        first = api.send_fwdbwd(model_id, 1, [text_datum([1, 2, 3])], forward_only=True).json()
        second = api.send_fwdbwd(model_id, 2, [text_datum([1, 2, 3, 4])]).json()
        for future in (first, second):
            assert len(api.fwdbwd_output(future["request_id"]).loss_fn_outputs) == 1
        assert backend.operations == ["fwd:2", "fwdbwd:3"]
        api.close()


def test_protobuf_and_json_requests_of_one_model_run_in_seq_id_order(zero_service: LocalService) -> None:
    backend = RecordingBackend()
    with LocalService(backend=backend, long_poll_s=0.3) as svc:
        api = Api038(svc)
        model_id = api.create_model(api.create_session())
        backend.gate.clear()
        later = api.forward_backward(model_id, 2, [1, 2, 3, 4, 5])  # 0.6.3 JSON, sent first
        earlier = api.send_fwdbwd(model_id, 1, [text_datum([1, 2, 3])], compress=True)
        again = api.send_fwdbwd(model_id, 1, [text_datum([1, 2, 3])], compress=True)  # a client's re-send
        backend.gate.set()
        assert earlier.json()["request_id"] == again.json()["request_id"]
        api.fwdbwd_output(later.json()["request_id"])
        assert backend.operations == ["fwdbwd:2", "fwdbwd:4"]
        api.close()


def test_malformed_protobuf_requests_are_refused_with_400(api038: Api038, model: str) -> None:
    post = api038.http.post
    cases = [
        (b"\xff\xff\xff", {"Content-Type": PROTOBUF}, "not a valid ForwardBackwardRequest"),
        (b"\x28\xb5\x2f\xfd garbage", {"Content-Type": PROTOBUF, "Content-Encoding": "zstd"}, "zstd"),
        (b"", {"Content-Type": PROTOBUF, "Content-Encoding": "br"}, "Content-Encoding"),
    ]
    for content, headers, message in cases:
        response = post("/api/v1/forward_backward", content=content, headers=headers)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    out_of_vocab = api038.send_fwdbwd(model, 1, [text_datum([1, 2, 99999])])  # the same checks as JSON
    assert out_of_vocab.status_code == 400 and "vocabulary" in out_of_vocab.json()["error"], out_of_vocab.text
    fine = api038.send_fwdbwd(model, 2)  # the refused seq_id 1 does not hold seq_id 2 back
    started = time.monotonic()
    api038.fwdbwd_output(fine.json()["request_id"])
    assert time.monotonic() - started < 0.4  # gap_timeout_s is 0.5 in this fixture


def test_a_compressed_body_may_not_inflate_past_the_body_limit() -> None:
    with LocalService(zero_work=True, max_body_bytes=64 * 1024) as svc:
        api = Api038(svc)
        model_id = api.create_model(api.create_session())
        big = [text_datum(list(range(1, 200)) * 20) for _ in range(8)]  # ~130 KB of protobuf, compresses well
        response = api.send_fwdbwd(model_id, 1, big, compress=True)
        assert response.status_code == 400 and "inflate" in response.json()["error"], response.text
        api.close()


def test_announced_chunk_limits_are_enforced_on_protobuf_requests_only(api038: Api038, model: str) -> None:
    three = [text_datum([1, 2, 3]) for _ in range(3)]
    assert api038.send_fwdbwd(model, 1, three).status_code == 200  # nothing announced: the defaults are not enforced
    api038.service.protocol.update_flags({"fwdbwd_max_chunk_len": 2})
    refused = api038.send_fwdbwd(model, 2, three)
    assert refused.status_code == 400 and "fwdbwd_max_chunk_len" in refused.json()["error"]
    assert api038.send_fwdbwd(model, 2, three[:2]).status_code == 200
    # 2 tokens x 4 bytes + 2 targets x 8 + 2 weights x 4 = 32 estimated bytes per datum
    api038.service.protocol.update_flags({"fwdbwd_max_chunk_len": None, "fwdbwd_max_chunk_bytes_count": 40})
    refused = api038.send_fwdbwd(model, 3, three[:2])
    assert refused.status_code == 400 and "fwdbwd_max_chunk_bytes_count" in refused.json()["error"]
    assert api038.send_fwdbwd(model, 3, three[:1]).status_code == 200
    assert api038.forward_backward(model, 4).status_code == 200  # 0.6.3 JSON reads no flags


# ---- metadata-only answers ----------------------------------------------------------------------

def test_a_large_result_is_announced_by_its_size_first(api038: Api038, model: str) -> None:
    api038.service.protocol.inline_result_bytes = 0  # every result counts as large
    future = api038.send_fwdbwd(model, 1, [text_datum([1, 2, 3, 4])]).json()
    announced = api038.finished(future["request_id"], allow_metadata_only=True)
    assert announced.status_code == 200 and announced.headers["content-type"] == "application/json"
    metadata = announced.json()
    assert metadata["status"] == "complete_metadata"
    full = api038.finished(future["request_id"])
    assert full.headers["content-type"] == PROTOBUF and metadata["response_payload_size"] == len(full.content)
    json_size = api038.finished(future["request_id"], allow_metadata_only=True, accept="application/json")
    assert json_size.json()["response_payload_size"] == len(api038.poll(future["request_id"]).content)


def test_small_results_and_errors_come_at_once(api038: Api038, model: str) -> None:
    future = api038.send_fwdbwd(model, 1).json()  # a few bytes, under the default inline_result_bytes
    response = api038.finished(future["request_id"], allow_metadata_only=True)
    assert response.headers["content-type"] == PROTOBUF
    api038.service.protocol.inline_result_bytes = 0
    failing = api038.post("/api/v1/create_model", {  # an unknown base model: an error result
        "session_id": model.split(":train:")[0], "model_seq_id": 9, "base_model": "no-such-model"}).json()
    error = api038.finished(failing["request_id"], allow_metadata_only=True)
    assert error.headers["content-type"] == "application/json" and error.json()["category"] == "user"


class _RaggedBackend(RecordingBackend):
    """Its trainer names a different output per datum: JSON can carry that, a 0.38 record cannot."""

    def new_trainer(self, base_model: str, lora: LoraSpec) -> Trainer:
        return _RaggedTrainer(self, super().new_trainer(base_model, lora))


class _RaggedTrainer(RecordingTrainer):
    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float] | None,
            *, backward: bool) -> StepOutput:
        return StepOutput([{f"out{i}": np.zeros(len(d.tokens), np.float32)} for i, d in enumerate(batch)], {})


def test_a_result_protobuf_cannot_carry_is_a_server_error_and_json_polls_still_read_it(
        caplog: pytest.LogCaptureFixture) -> None:
    with LocalService(backend=_RaggedBackend(), long_poll_s=0.3) as svc:
        api = Api038(svc)
        model_id = api.create_model(api.create_session())
        future = api.send_fwdbwd(model_id, 1, [text_datum([1, 2, 3]), text_datum([4, 5, 6])]).json()
        failed = api.finished(future["request_id"])
        assert failed.headers["content-type"] == "application/json"
        assert failed.json()["category"] == "server" and "same output names" in failed.json()["error"]
        assert "encoding a result as protobuf failed" in caplog.text
        as_json = api.finished(future["request_id"], accept="application/json").json()
        assert [list(out) for out in as_json["loss_fn_outputs"]] == [["out0"], ["out1"]]
        api.close()


# ---- 0.38 JSON bodies ---------------------------------------------------------------------------

def test_training_requests_as_the_official_038_sdk_writes_them(api038: Api038, model: str) -> None:
    adam = {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.95, "eps": 1e-12, "weight_decay": 0.0,
            "grad_clip_norm": 0.0}
    api038.send_fwdbwd(model, 1)
    calls = [
        ("optim_step", {"adam_params": adam, "model_id": model, "seq_id": 2, "type": "optim_step"}),
        ("save_weights", {"model_id": model, "path": "kept", "seq_id": 3, "overwrite": False,
                          "ttl_seconds": 7200, "user_metadata": {"step": "3"}, "type": "save_weights"}),
        ("save_weights_for_sampler", {"model_id": model, "path": "s1", "seq_id": 4, "kind": "snapshot",
                                      "type": "save_weights_for_sampler"}),
        ("save_weights_for_sampler", {"model_id": model, "sampling_session_seq_id": 7, "seq_id": 5,
                                      "kind": "snapshot", "type": "save_weights_for_sampler"}),
        ("load_weights", {"model_id": model, "path": f"tinker://{model}/weights/kept", "seq_id": 6,
                          "optimizer": True, "type": "load_weights"}),
    ]
    results = []
    for endpoint, body in calls:
        response = api038.post(f"/api/v1/{endpoint}", body)
        assert response.status_code == 200, (endpoint, response.text)
        results.append(api038.result(response.json()["request_id"]))
    assert results[1]["path"] == f"tinker://{model}/weights/kept"
    assert results[3]["sampling_session_id"].endswith(":sample:7")
    run_id = model
    checkpoints = api038.http.get(f"/api/v1/training_runs/{run_id}/checkpoints").json()["checkpoints"]
    kept = next(c for c in checkpoints if c["checkpoint_id"] == "weights/kept")
    assert kept["expires_at"] is not None  # ttl_seconds honoured
    assert next(c for c in checkpoints if c["checkpoint_id"] == "sampler_weights/s1").get("expires_at") is None


@pytest.mark.parametrize(("endpoint", "changes", "message"), [
    ("create_model", {"optimizer_config": {"type": "dimuon", "version": 1}}, "AdamW only"),
    ("optim_step", {"optimizer_params": {"type": "dimuon", "learning_rate": 0.1}}, "AdamW only"),
    ("save_weights_for_sampler", {"kind": "inflight"}, "has no path"),  # inflight: a sampling session, not a file
    ("save_weights", {"ttl_seconds": -5}, "ttl_seconds"),
    ("save_weights", {"no_such_field": 1}, "no_such_field"),
])
def test_what_the_service_cannot_do_is_refused_with_a_clear_400(api038: Api038, model: str, endpoint: str,
                                                                 changes: dict[str, Any], message: str) -> None:
    session_id = model.split(":train:")[0]
    bodies: dict[str, dict[str, Any]] = {
        "create_model": {"session_id": session_id, "model_seq_id": 5, "base_model": "tiny-byte",
                         "lora_config": {"rank": 4}},
        "optim_step": {"model_id": model, "seq_id": 1},
        "save_weights_for_sampler": {"model_id": model, "path": "x", "seq_id": 1},
        "save_weights": {"model_id": model, "path": "x", "seq_id": 1},
    }
    response = api038.post(f"/api/v1/{endpoint}", {**bodies[endpoint], **changes})
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_create_training_client_from_state_is_one_load_that_creates_the_model(api038: Api038, model: str) -> None:
    api038.send_fwdbwd(model, 1)
    saved = api038.post("/api/v1/save_weights", {"model_id": model, "path": "base", "seq_id": 2,
                                                 "overwrite": False, "type": "save_weights"}).json()
    path = api038.result(saved["request_id"])["path"]
    session_id = api038.create_session()
    body = {"session_id": session_id, "model_seq_id": 0, "path": path, "optimizer": True,
            "user_metadata": {"from": "state"}, "type": "load_weights"}
    first = api038.post("/api/v1/load_weights", body).json()
    again = api038.post("/api/v1/load_weights", body).json()  # a retry of the same creation
    new_model = f"{session_id}:train:0"
    assert first == again and first["model_id"] == new_model
    assert api038.result(first["request_id"]) == {"path": path, "model_id": new_model, "type": "load_weights"}
    info = api038.post("/api/v1/get_info", {"model_id": new_model, "type": "get_info"}).json()
    assert info["lora_rank"] == 4  # the checkpoint's LoRA settings
    assert api038.fwdbwd_output(api038.send_fwdbwd(new_model, 1).json()["request_id"]).loss_fn_outputs
    missing = api038.post("/api/v1/load_weights", {**body, "model_seq_id": 1,
                                                   "path": f"tinker://{model}/weights/nope"})
    assert missing.status_code == 404
    other_base = api038.post("/api/v1/load_weights", {**body, "model_seq_id": 2, "base_model": "tiny-bpe"})
    assert other_base.status_code == 400 and "base model" in other_base.json()["error"]


# ---- sampling -----------------------------------------------------------------------------------

def _sampler(api: Api038, model: str) -> str:
    response = api.post("/api/v1/save_weights_for_sampler", {
        "model_id": model, "sampling_session_seq_id": 0, "seq_id": 1, "kind": "snapshot"})
    sampler_id: str = api.result(response.json()["request_id"])["sampling_session_id"]
    return sampler_id


def test_samples_carry_sequence_ids_and_results_come_as_protobuf_on_accept(api038: Api038, model: str) -> None:
    sampler_id = _sampler(api038, model)
    body = sample_body_038(sampler_id, 0, num_samples=3)
    future = api038.post("/api/v1/asample", body).json()
    ids = future["sample_sequence_ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert api038.post("/api/v1/asample", body).json() == future  # a re-send: the same future, the same ids
    response = api038.finished(future["request_id"])
    assert response.headers["content-type"] == PROTOBUF
    result = v0_38.CODEC.decode_sample_response(response.content, PROTOBUF)
    assert len(result.sequences) == 3 and all(len(s.tokens) == 3 for s in result.sequences)
    other = api038.post("/api/v1/asample", sample_body_038(sampler_id, 1, num_samples=1)).json()
    assert set(other["sample_sequence_ids"]).isdisjoint(ids)
    sampler = api038.http.get(f"/api/v1/samplers/{sampler_id}").json()
    assert sampler["sampler_id"] == sampler_id and sampler["base_model"] == "tiny-byte"


def test_prompt_logprobs_of_the_last_n_prompt_tokens_only(api038: Api038, model: str) -> None:
    sampler_id = _sampler(api038, model)
    body = sample_body_038(sampler_id, 0, prompt_logprobs=True, topk_prompt_logprobs=2, prompt_logprobs_last_n=2)
    response = api038.finished(api038.post("/api/v1/asample", body).json()["request_id"])
    result = v0_38.CODEC.decode_sample_response(response.content, PROTOBUF)
    assert result.prompt_logprobs is not None and result.topk_prompt_logprobs is not None
    assert [value is None for value in result.prompt_logprobs] == [True, True, False, False]
    assert [row is None for row in result.topk_prompt_logprobs] == [True, True, False, False]


def test_record_stability_info_is_accepted_and_changes_nothing(api038: Api038, model: str) -> None:
    """The official SDK sends it with every sample of a client made with record_stability_info=True; the local
    service records nothing (stable_reinforce, the one loss that would read it, is a 400 here) and samples as usual."""
    sampler_id = _sampler(api038, model)
    results = []
    for seq_id, recording in enumerate((True, False)):
        body = sample_body_038(sampler_id, seq_id, record_stability_info=recording,
                               sampling_params={"max_tokens": 3, "temperature": 0.0, "top_k": -1, "top_p": 1.0})
        future = api038.post("/api/v1/asample", body)
        assert future.status_code == 200, future.text
        assert len(future.json()["sample_sequence_ids"]) == 2
        response = api038.finished(future.json()["request_id"])
        results.append([s.tokens for s in v0_38.CODEC.decode_sample_response(response.content, PROTOBUF).sequences])
    assert results[0] == results[1]


@pytest.mark.parametrize(("changes", "message"), [
    ({"topk_sample_logprobs": -2}, "topk_sample_logprobs"),
    ({"topk_sample_logprobs": 65}, "topk_sample_logprobs"),
    ({"prompt_alt_tokens_k": -1}, "prompt_alt_tokens_k"),
    ({"target_prompt_logprobs": {"data": [1, 2, 3], "dtype": "int64"}}, "target_prompt_logprobs"),
    ({"prompt_logprobs": True, "prompt_logprobs_last_n": 4}, "prompt_logprobs_last_n"),
    ({"prompt_logprobs_last_n": 1}, "needs prompt_logprobs"),
])
def test_bad_or_unserved_sample_settings_are_refused(api038: Api038, model: str,
                                                                  changes: dict[str, Any], message: str) -> None:
    response = api038.post("/api/v1/asample", sample_body_038(_sampler(api038, model), 0, **changes))
    assert response.status_code == 400 and message in response.json()["error"], response.text


# ---- sessions -----------------------------------------------------------------------------------

def test_a_finished_session_unloads_its_models_and_its_heartbeat_answers_410(api038: Api038, model: str) -> None:
    session_id = model.split(":train:")[0]
    finish = f"/api/v1/sessions/{session_id}/finish"
    body = {"reason": {"type": "success"}, "detail": None}
    assert api038.post(finish, body).status_code == 200
    assert api038.post(finish, body).status_code == 200  # a retry of the close
    heartbeat = api038.post("/api/v1/session_heartbeat", {"session_id": session_id, "type": "session_heartbeat"})
    assert heartbeat.status_code == 410
    assert api038.send_fwdbwd(model, 1).status_code == 404
    assert api038.post("/api/v1/sessions/no-such-session/finish", body).status_code == 404


# ---- faults act the same on both protocols ------------------------------------------------------

def test_a_status_fault_fires_identically_for_json_and_protobuf_requests(api038: Api038, model: str) -> None:
    seen = []
    senders: list[tuple[int, Callable[[int], httpx.Response]]] = [
        (1, lambda seq: api038.forward_backward(model, seq)), (2, lambda seq: api038.send_fwdbwd(model, seq))]
    for seq_id, send in senders:
        svc = api038.service
        svc.faults.add(FaultRule(endpoint="forward_backward", status=503, times=1))
        before = svc.request_counts()["endpoints"]["forward_backward"] if seq_id == 2 else {}
        refused, accepted = send(seq_id), send(seq_id)
        api038.fwdbwd_output(accepted.json()["request_id"])
        counts = svc.request_counts()
        endpoint = counts["endpoints"]["forward_backward"]
        delta = {name: value - before.get(name, 0) for name, value in endpoint.items()}
        sequenced = [{k: v for k, v in entry.items() if k != "seq_id"}
                     for entry in counts["sequenced"] if entry["seq_id"] == seq_id]
        seen.append((refused.status_code, refused.json(), accepted.status_code, delta, sequenced))
    json_round, protobuf_round = seen
    assert json_round == protobuf_round  # status, body, counts: the same whatever the request's protocol
    assert json_round[0] == 503 and json_round[2] == 200
    assert json_round[3] == {"received": 2, "duplicates": 0, "executed": 1, "failed": 0, "faulted": 1}
    assert json_round[4] == [{"id": model, "endpoint": "forward_backward", "received": 1, "executed": 1}]


def test_drop_after_runs_the_protobuf_request_once_and_the_resend_gets_its_future(api038: Api038, model: str) -> None:
    api038.service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.DROP_AFTER, times=1))
    with pytest.raises(httpx.HTTPError):
        api038.send_fwdbwd(model, 1, compress=True)
    resent = api038.send_fwdbwd(model, 1, compress=True)
    assert resent.status_code == 200
    api038.fwdbwd_output(resent.json()["request_id"])
    counts = api038.service.request_counts()
    assert counts["endpoints"]["forward_backward"]["duplicates"] == 1
    assert [(e["received"], e["executed"]) for e in counts["sequenced"] if e["id"] == model] == [(2, 1)]


def test_a_poll_fault_targets_forward_backward_futures_of_either_protocol(api038: Api038, model: str) -> None:
    api038.service.faults.add(FaultRule(endpoint="retrieve_future", request_type="ForwardBackward", status=408,
                                        queue_state="paused_capacity", times=1))
    future = api038.send_fwdbwd(model, 1).json()
    held = api038.poll_038(future["request_id"])
    assert held.status_code == 408 and held.json()["queue_state"] == "paused_capacity"
    assert api038.fwdbwd_output(future["request_id"]).loss_fn_outputs


# ---- the numpy model speaks it too --------------------------------------------------------------

def test_the_real_model_gives_the_same_numbers_over_both_protocols() -> None:
    with LocalService(long_poll_s=5.0) as svc:
        api = Api038(svc)
        session_id = api.create_session()
        models = [api.create_model(session_id, n) for n in (0, 1)]  # the same seed: equal LoRA weights
        tokens = [3, 10, 20, 30, 40, 50]
        json_output = api.result(api.post("/api/v1/forward", {
            "forward_input": {"data": [datum(tokens)], "loss_fn": "cross_entropy"},
            "model_id": models[0], "seq_id": 1}).json()["request_id"])
        proto_output = api.fwdbwd_output(api.send_fwdbwd(models[1], 1, [text_datum(tokens)],
                                                         forward_only=True).json()["request_id"])
        expected = types.ForwardBackwardOutput.model_validate(json_output)
        assert np.allclose(expected.loss_fn_outputs[0]["logprobs"].to_numpy(),
                           proto_output.loss_fn_outputs[0]["logprobs"].to_numpy())
        api.close()
