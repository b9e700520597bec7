"""Which protocol a ServiceClient speaks, and how it obeys the server's flags (docs/protocols.md).

Against the local service, which serves 0.6.3 and 0.38 at once; what the client sent is read from the
service's wire log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import tinker_actors as tinker
from tinker_actors.clients.protocol import LEGACY_CHUNK_LIMITS, DynamicFlags
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import FaultAction, FaultRule, LocalService
from tinker_actors.local.server.wire_log import WireCapture, WireRecord
from tinker_actors.training.chunking import ChunkLimits

TEXT = list(b"the lighthouse keeper counted every wave that night, and wrote them down. ")
PROMPT = tinker.ModelInput.from_ints(TEXT[:5])


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


@pytest.fixture(autouse=True)
def clean(service: LocalService) -> Iterator[None]:
    """Each test starts with every flag at its default and no fault armed."""
    service.protocol.clear_flags()
    service.faults.clear()
    yield
    service.protocol.clear_flags()
    service.faults.clear()


@pytest.fixture
def wire(service: LocalService) -> Iterator[WireCapture]:
    with service.wire_log.capture() as capture:
        yield capture


def make(service: LocalService, **overrides: Any) -> tinker.ServiceClient:
    settings: dict[str, Any] = dict(
        api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False,
        retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=5.0),
        poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=5.0)
    settings.update(overrides)
    return tinker.ServiceClient(config=Config(**settings))


def datum(start: int) -> tinker.Datum:
    tokens = TEXT[start:start + 9]
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 8})


def posts(wire: WireCapture, path: str) -> list[WireRecord]:
    return [record for record in wire.snapshot() if record.method == "POST" and record.path == path]


# ---- negotiation ---------------------------------------------------------------------------------

def test_auto_speaks_038_when_the_server_answers_client_config(service: LocalService, wire: WireCapture) -> None:
    with make(service) as svc:
        assert (svc.protocol.version, svc.protocol.how, svc.protocol.sdk_version) == ("0.38", "negotiated", "0.38.0")
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        out = training.forward([datum(0), datum(9)], "cross_entropy").result(30)
        assert len(out.loss_fn_outputs) == 2
    paths = [record.path for record in wire.snapshot()]
    assert paths[:3] == ["/api/v1/client/config", "/api/v1/client/dynamic_config", "/api/v1/create_session"]
    assert posts(wire, "/api/v1/client/config")[0].decoded() == {"sdk_version": "0.38.0"}
    assert posts(wire, "/api/v1/create_session")[0].decoded()["sdk_version"] == "0.38.0"
    (forward,) = posts(wire, "/api/v1/forward_backward")  # 0.38 has no /forward
    assert forward.content_type == "application/x-protobuf" and forward.decoded()["forward_only"] is True
    assert not posts(wire, "/api/v1/forward")


def test_auto_falls_back_to_063_on_404_with_one_info_line(service: LocalService, wire: WireCapture) -> None:
    service.faults.add(FaultRule(endpoint="client_config", status=404, body={"detail": "Not Found"}))
    with structlog.testing.capture_logs() as logs, make(service, log_level="info") as svc:
        assert (svc.protocol.version, svc.protocol.how) == ("0.6.3", "fallback")
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        training.forward([datum(0)], "cross_entropy").result(30)
        sampler = svc.create_sampling_client(base_model="tiny-byte").result()
        sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30)
    lines = [line for line in logs if line["event"] == "protocol.fallback"]
    assert len(lines) == 1 and lines[0]["log_level"] == "info" and lines[0]["protocol"] == "0.6.3"
    assert not posts(wire, "/api/v1/client/dynamic_config")  # nothing more is asked of an older server
    assert posts(wire, "/api/v1/create_session")[0].decoded()["sdk_version"] == "0.6.3"
    (forward,) = posts(wire, "/api/v1/forward")
    assert forward.content_type == "application/json" and "type" not in forward.decoded()  # 0.6.3 body rules
    assert not any(name.startswith("x-sdk-") for record in wire.snapshot() for name in record.headers)


def test_the_fallback_line_is_silent_at_the_default_level(service: LocalService) -> None:
    service.faults.add(FaultRule(endpoint="client_config", status=404))
    with structlog.testing.capture_logs() as logs, make(service) as svc:
        assert svc.protocol.version == "0.6.3"
    assert not [line for line in logs if line["event"] == "protocol.fallback"]


def test_pinned_038_refuses_a_server_without_client_config(service: LocalService) -> None:
    service.faults.add(FaultRule(endpoint="client_config", status=404))
    with pytest.raises(tinker.NotFoundError, match="protocol='auto'"):
        make(service, protocol="0.38")


def test_pinned_063_asks_nothing_and_sends_063(service: LocalService, wire: WireCapture) -> None:
    with make(service, protocol="0.6.3") as svc:
        assert (svc.protocol.version, svc.protocol.how) == ("0.6.3", "pinned")
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        training.forward_backward([datum(0)], "cross_entropy").result(30)
    assert not posts(wire, "/api/v1/client/config")
    assert posts(wire, "/api/v1/forward_backward")[0].content_type == "application/json"


def test_the_protocol_comes_from_the_environment_too(monkeypatch: pytest.MonkeyPatch,
                                                     service: LocalService) -> None:
    monkeypatch.setenv("TINKER_ACTORS_PROTOCOL", "0.6.3")
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key) as svc:
        assert svc.protocol.how == "pinned"
    monkeypatch.setenv("TINKER_ACTORS_PROTOCOL", "0.25")
    with pytest.raises(tinker.InvalidInputError, match="protocol"):
        tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key)


def test_038_fetches_the_models_info_at_creation_and_answers_get_info_from_it(
        service: LocalService, wire: WireCapture) -> None:
    """As the official 0.38 SDK: one get_info right after create_model, none when get_info() is called."""
    with make(service, protocol="0.38") as svc:
        assert svc.protocol.info_on_create
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        (fetched,) = posts(wire, "/api/v1/get_info")
        assert fetched.decoded() == {"model_id": training.model_id, "type": "get_info"}
        assert fetched.headers["x-sdk-method"] == "ServiceClient.create_lora_training_client"
        assert training.get_info().model_id == training.model_id
        assert len(posts(wire, "/api/v1/get_info")) == 1


def test_063_asks_for_the_models_info_on_the_first_get_info(service: LocalService, wire: WireCapture) -> None:
    with make(service, protocol="0.6.3") as svc:
        assert not svc.protocol.info_on_create
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        assert not posts(wire, "/api/v1/get_info")
        assert training.get_info().model_id == training.model_id
        assert len(posts(wire, "/api/v1/get_info")) == 1


# ---- flags ---------------------------------------------------------------------------------------

def test_chunk_limit_and_compression_flags_shape_the_wire(service: LocalService, wire: WireCapture) -> None:
    service.protocol.set_flags({"fwdbwd_max_chunk_len": 2, "proto_compress_fwdbwd": True})
    with make(service) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        out = training.forward_backward([datum(i) for i in range(0, 45, 9)], "cross_entropy").result(30)
        assert len(out.loss_fn_outputs) == 5
    chunks = posts(wire, "/api/v1/forward_backward")
    assert [len(record.decoded()["data"]) for record in chunks] == [2, 2, 1]
    assert {record.headers.get("content-encoding") for record in chunks} == {"zstd"}


def test_the_byte_limit_of_a_chunk_is_the_servers(service: LocalService, wire: WireCapture) -> None:
    # A datum here: 8 tokens (int32) + 8 target tokens (int64) + 8 weights (float32) = 128 bytes.
    service.protocol.set_flags({"fwdbwd_max_chunk_bytes_count": 300})
    with make(service) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        training.forward_backward([datum(i) for i in range(0, 45, 9)], "cross_entropy").result(30)
    chunks = posts(wire, "/api/v1/forward_backward")
    assert [len(record.decoded()["data"]) for record in chunks] == [2, 2, 1]
    assert chunks[0].headers.get("content-encoding") is None  # compression is off by default


def test_a_client_chunk_limit_only_tightens_the_servers(service: LocalService) -> None:
    service.protocol.set_flags({"fwdbwd_max_chunk_len": 3})
    with make(service) as svc:
        assert svc.protocol.chunk_limits_for(ChunkLimits(max_datums=8)).max_datums == 3
        assert svc.protocol.chunk_limits_for(ChunkLimits(max_datums=2)).max_datums == 2


def test_unknown_flags_are_ignored_and_no_flags_mean_the_defaults(service: LocalService) -> None:
    service.protocol.set_flags({"a_flag_from_the_future": {"nested": [1, 2]}, "another_one": "text"})
    with make(service) as svc:
        profile = svc.protocol
        assert profile.version == "0.38"
        assert profile.chunk_limits == ChunkLimits(max_datums=1024, max_numbers=None, max_bytes=5_000_000)
        assert not profile.compress_forward_backward and profile.sample_retries
        assert (profile.max_concurrent_samples, profile.sample_bytes_in_flight, profile.response_bytes_in_flight,
                profile.forward_backward_bytes_in_flight) == (2000, 10 * 1024 * 1024, 50 * 1024 * 1024, 50_000_000)
        assert profile.dynamic == DynamicFlags()
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        training.forward_backward([datum(0)], "cross_entropy").result(30)
    with make(service, protocol="0.6.3") as svc:
        assert svc.protocol.chunk_limits == LEGACY_CHUNK_LIMITS and svc.protocol.max_concurrent_samples is None


def test_a_malformed_flag_is_a_typed_error(service: LocalService) -> None:
    service.faults.add(FaultRule(endpoint="client_config", status=200, body={"fwdbwd_max_chunk_len": "many"}))
    with pytest.raises(tinker.APIResponseValidationError, match="fwdbwd_max_chunk_len"):
        make(service)


def test_dynamic_flags_are_refreshed_at_the_servers_interval(service: LocalService) -> None:
    service.protocol.set_flags({"refresh_interval_sec": 1})
    before = service.stats.snapshot()["endpoints"].get("client_dynamic_config", {}).get("received", 0)
    with make(service, min_config_refresh_interval=0.5) as svc:
        assert svc.protocol.refresh_interval(svc.config) == 1.0
        time.sleep(1.4)
        service.protocol.update_flags({"sample_cancel_enabled": True})
        time.sleep(1.1)
        assert svc.protocol.dynamic is not None and svc.protocol.dynamic.sample_cancel_enabled
        asked = service.stats.snapshot()["endpoints"]["client_dynamic_config"]["received"] - before
    assert 2 <= asked <= 4, asked  # once at the start, then about once a second (2.5 s)
    # Never more often than the client's floor, whatever the server asks.
    assert svc.protocol.refresh_interval(Config()) == 10.0


def test_a_failed_refresh_keeps_the_last_flags(service: LocalService) -> None:
    service.protocol.set_flags({"refresh_interval_sec": 1, "sample_cancel_max_batch_size": 7})
    with make(service, min_config_refresh_interval=0.5) as svc:
        service.faults.add(FaultRule(endpoint="client_dynamic_config", status=503))
        time.sleep(1.3)
        assert svc.protocol.dynamic is not None and svc.protocol.dynamic.sample_cancel_max_batch_size == 7
        sampler = svc.create_sampling_client(base_model="tiny-byte").result()
        sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30)


def test_the_servers_sampling_concurrency_caps_the_clients(service: LocalService) -> None:
    service.protocol.set_flags({"sample_max_concurrent_requests": 1})
    service.faults.add(FaultRule(endpoint="asample", action=FaultAction.DELAY, delay_s=0.3))
    with make(service) as svc:
        sampler = svc.create_sampling_client(base_model="tiny-byte").result()  # RetryConfig allows 256
        started = time.monotonic()
        futures = [sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)) for _ in range(3)]
        for future in futures:
            future.result(30)
        assert time.monotonic() - started >= 0.85  # one at a time: 3 x 0.3 s


def test_sample_no_retries_fails_at_the_first_error(service: LocalService) -> None:
    service.protocol.set_flags({"sample_no_retries": True})
    service.faults.add(FaultRule(endpoint="asample", status=500, times=1))
    with make(service) as svc:
        sampler = svc.create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
            retry_delay_base=0.01)).result()
        with pytest.raises(tinker.InternalServerError):
            sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)).result(30)
        assert sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)).result(30).sequences


def test_results_announced_by_their_size_first_are_fetched(service: LocalService, wire: WireCapture) -> None:
    service.protocol.inline_result_bytes = 0  # every result: its size first (complete_metadata)
    service.protocol.set_flags({"inflight_response_bytes_semaphore_size": 1})  # each result alone
    try:
        with make(service) as svc:
            training = svc.create_lora_training_client("tiny-byte", rank=2).result()
            futures = [training.forward([datum(i)], "cross_entropy") for i in range(0, 27, 9)]
            assert [len(future.result(30).loss_fn_outputs) for future in futures] == [1, 1, 1]
            sample = svc.create_sampling_client(base_model="tiny-byte").result().sample(
                PROMPT, 2, tinker.SamplingParams(max_tokens=2)).result(30)
            assert len(sample.sequences) == 2
            assert svc._context.response_budget is not None and svc._context.response_budget.used == 0
    finally:
        service.protocol.inline_result_bytes = 1024 * 1024
    polls = [record.decoded() for record in posts(wire, "/api/v1/retrieve_future")]
    assert any(poll["allow_metadata_only"] is False for poll in polls)  # the fetch after the size


def test_sample_sequence_ids(service: LocalService, protocol: str) -> None:
    # The sample's future names its sequences (0.38 requires it; the local service names them for every client).
    with make(service, protocol=protocol) as svc:
        response = svc.create_sampling_client(base_model="tiny-byte").result().sample(
            PROMPT, 3, tinker.SamplingParams(max_tokens=2)).result(30)
    ids = [sequence.sequence_id for sequence in response.sequences]
    assert len(set(ids)) == 3 and all(ids)


# ---- headers -------------------------------------------------------------------------------------

def test_038_requests_name_the_sdk_version_and_the_method(service: LocalService, wire: WireCapture) -> None:
    with make(service, sdk_version="0.40.1") as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        training.forward_backward([datum(0)], "cross_entropy").result(30)
    assert posts(wire, "/api/v1/client/config")[0].decoded() == {"sdk_version": "0.40.1"}
    assert posts(wire, "/api/v1/create_session")[0].decoded()["sdk_version"] == "0.40.1"
    records = wire.snapshot()
    assert all(record.headers["user-agent"].startswith("tinker-actors/") for record in records)
    # Made by no public method (the session's start): no x-sdk headers, as in the official SDK.
    assert "x-sdk-method" not in posts(wire, "/api/v1/create_session")[0].headers
    (fwdbwd,) = posts(wire, "/api/v1/forward_backward")
    assert fwdbwd.headers["x-sdk-version"] == "0.40.1"
    assert fwdbwd.headers["x-sdk-method"] == "TrainingClient.forward_backward"
    polls = [record for record in posts(wire, "/api/v1/retrieve_future")
             if record.headers.get("accept") == "application/x-protobuf"]
    assert polls and {record.headers["x-sdk-method"] for record in polls} == {"TrainingClient.forward_backward"}
    created = posts(wire, "/api/v1/create_model")[0]
    assert created.headers["x-sdk-method"] == "ServiceClient.create_lora_training_client"  # the outermost call
