"""What goes on the wire: the same calls, made with the official 0.38 SDK and with ours in 0.38 mode,
arrive at the local service as the same requests.

The calls are in ``wire_scenario.json``; ``official_wire_calls.py`` makes them with the official
tinker==0.38.0 SDK (in its own interpreter), :func:`_our_calls` with tinker-actors, each awaited
before the next. The service records what it received (``svc.wire_log``); a capture becomes a list
of requests (method, path, the headers that say how the body is encoded, the body decoded: JSON as
parsed, protobuf as the message's fields) with ids replaced by placeholders in order of first
appearance, heartbeats and telemetry left out (timing decides how many there are) and a poll
repeated while the answer is pending counted once, with its last answer.

* ``official_038_wire.json`` pins what the official SDK sends; after a deliberate change (a new
  SDK, a service change that alters what the SDK does) rewrite it with
  ``TINKER_ACTORS_WRITE_WIRE_PIN=1 pytest tests/compat038/test_wire_capture.py``.
* Our 0.38 mode must send the same as the official SDK, captured in the same run.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat038.conftest import HERE, official_python, run_official, service_with_flags
from tinker_actors.local import LocalService
from tinker_actors.local.server.wire_log import WireRecord

SCENARIO: dict[str, Any] = json.loads((HERE / "wire_scenario.json").read_text())
PIN = HERE / "official_038_wire.json"
WRITE_PIN = os.environ.get("TINKER_ACTORS_WRITE_WIRE_PIN") == "1"
TIMEOUT_S = 30.0

# The service's flags for each variant: as it answers by default, and asking for zstd requests.
VARIANTS: dict[str, dict[str, Any]] = {"plain": {}, "zstd": {"proto_compress_fwdbwd": True}}
_NOT_COMPARED = {"/api/v1/session_heartbeat", "/api/v1/telemetry"}
_CONFIG = {"/api/v1/client/config", "/api/v1/client/dynamic_config"}
_POLL = "/api/v1/retrieve_future"
# How a body is encoded (compared for every request), and what the SDK says about itself and the
# answer it wants (compared by test_our_headers_are_the_official_ones).
ENCODING_HEADERS = ("content-type", "content-encoding")
SDK_HEADERS = ("accept", "x-sdk-version", "x-sdk-method")
# Ids the service hands out: session ids (UUIDs; model and sampler ids contain them) and request ids.
_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|req-[A-Za-z0-9_-]{22}")


class _Placeholders:
    """Replaces each id by ``<id N>``, N counting distinct ids in order of first appearance."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def _name(self, found: re.Match[str]) -> str:
        return self._names.setdefault(found.group(0), f"<id {len(self._names) + 1}>")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return _IDS.sub(self._name, value)
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, bytes):
            return {"undecoded_bytes": value.hex()}
        return value


def wire_requests(records: list[WireRecord]) -> list[dict[str, Any]]:
    """A capture as comparable data (see the module docstring)."""
    placeholders = _Placeholders()
    requests: list[dict[str, Any]] = []
    seen_config: list[dict[str, Any]] = []
    for record in records:
        if record.path in _NOT_COMPARED:
            continue
        request = {"method": record.method, "path": placeholders(record.path), "query": record.query,
                   "headers": {name: record.headers[name] for name in (*ENCODING_HEADERS, *SDK_HEADERS)
                               if name in record.headers},
                   "body": placeholders(record.decoded()), "status": record.status}
        if record.path in _CONFIG:  # asked again by each new client of the same server: once is enough
            if request in seen_config:
                continue
            seen_config.append(request)
        if record.path == _POLL and requests and {**requests[-1], "status": None} == {**request, "status": None}:
            requests[-1] = request  # the same poll again (the first was answered "pending"): keep the last answer
            continue
        requests.append(request)
    return requests


def _without(requests: list[dict[str, Any]], headers: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{**r, "headers": {k: v for k, v in r["headers"].items() if k not in headers}} for r in requests]


def _differences(ours: list[dict[str, Any]], official: list[dict[str, Any]]) -> str:
    """Every request one side sent that the other did not (aligned as a diff aligns lines)."""
    mine = [json.dumps(r, sort_keys=True) for r in ours]
    theirs = [json.dumps(r, sort_keys=True) for r in official]
    lines = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=mine, b=theirs, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        lines += [f" ours     #{i}: {mine[i]}" for i in range(i1, i2)]
        lines += [f" official #{j}: {theirs[j]}" for j in range(j1, j2)]
    return "the requests differ:\n" + "\n".join(line[:1500] for line in lines)


# ---- the two sides ----------------------------------------------------------------------------

def _official_capture(variant: str, home: Path) -> list[dict[str, Any]]:
    with service_with_flags(VARIANTS[variant]) as service, service.wire_log.capture() as capture:
        run = run_official("official_wire_calls.py", service, home)
    failed = run.failed_steps()
    assert not failed, f"the official 0.38 SDK's calls failed ({variant}):\n" + "\n".join(
        f"--- {name}\n{error}" for name, error in failed.items())
    return wire_requests(capture.records)


def _datum(tokens: list[int], inputs: dict[str, Any]) -> Any:
    from tinker_actors import types

    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": tokens[1:], **inputs})


def _our_calls(service: LocalService) -> None:
    """wire_scenario.json's calls with tinker-actors speaking 0.38, as official_wire_calls.py makes them."""
    import tinker_actors
    from tinker_actors import types

    s = SCENARIO
    client = tinker_actors.ServiceClient(base_url=service.base_url, api_key=service.api_key, protocol="0.38",
                                         telemetry_enabled=False)
    try:
        training = client.create_lora_training_client(base_model=s["base_model"], rank=s["rank"], seed=s["seed"],
                                                       user_metadata=s["user_metadata"]).result()
        data = [_datum(d["tokens"], d["inputs"]) for d in s["datums"]]
        ppo = s["ppo"]
        n = len(ppo["tokens"]) - 1
        ppo_datum = _datum(ppo["tokens"], {"logprobs": [ppo["logprobs"]] * n,
                                           "advantages": [ppo["advantages"]] * n})
        training.forward_backward(data, "cross_entropy").result(timeout=TIMEOUT_S)
        training.forward(data[:1], "cross_entropy").result(timeout=TIMEOUT_S)
        training.forward_backward([ppo_datum], "ppo", ppo["config"]).result(timeout=TIMEOUT_S)
        training.optim_step(types.AdamParams(learning_rate=s["learning_rate"])).result(timeout=TIMEOUT_S)
        state_path = training.save_state(s["state_name"]).result(timeout=TIMEOUT_S).path
        training.load_state(state_path).result(timeout=TIMEOUT_S)
        training.load_state_with_optimizer(state_path).result(timeout=TIMEOUT_S)
        saved = training.save_weights_for_sampler(s["sampler_name"]).result(timeout=TIMEOUT_S)
        sampler = client.create_sampling_client(model_path=saved.path).result()
        prompt = types.ModelInput.from_ints(s["prompt"])
        sampler.sample(prompt, s["num_samples"], types.SamplingParams(max_tokens=s["max_tokens"], temperature=0.0),
                       include_prompt_logprobs=True, topk_prompt_logprobs=s["topk_prompt_logprobs"]
                       ).result(timeout=TIMEOUT_S)
        sampler.compute_logprobs(prompt).result(timeout=TIMEOUT_S)
        rest = client.create_rest_client()
        rest.list_checkpoints(training.model_id).result(timeout=TIMEOUT_S)
        rest.delete_checkpoint_from_tinker_path(state_path).result(timeout=TIMEOUT_S)
    finally:
        client.close()


def _our_capture(variant: str) -> list[dict[str, Any]]:
    with service_with_flags(VARIANTS[variant]) as service, service.wire_log.capture() as capture:
        _our_calls(service)
    # Only what the official script does too: it exits without closing its session.
    return [r for r in wire_requests(capture.records) if not r["path"].endswith("/finish")]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[dict[str, Any]]]]:
    official_python()
    home = tmp_path_factory.mktemp("official038-wire")
    captures = {variant: _official_capture(variant, home) for variant in VARIANTS}
    if WRITE_PIN:
        PIN.write_text(json.dumps({"tinker": "0.38.0", "scenario": "wire_scenario.json", "variants": VARIANTS,
                                   "captures": captures}, indent=1, sort_keys=True) + "\n")
    yield captures


# ---- the tests -------------------------------------------------------------------------------

def test_the_official_sdk_sends_what_is_pinned(official: dict[str, list[dict[str, Any]]]) -> None:
    pinned = json.loads(PIN.read_text())["captures"]
    for variant, requests in official.items():
        assert requests == pinned[variant], f"{variant}: " + _differences(requests, pinned[variant])


def test_the_pin_shows_the_038_wire(official: dict[str, list[dict[str, Any]]]) -> None:
    """What the pin says, in words: protobuf fwd/bwd (zstd when asked), forward as forward_only,
    results asked for as protobuf, JSON bodies with defaults and type discriminators."""
    for variant, requests in official.items():
        fwdbwd = [r for r in requests if r["path"] == "/api/v1/forward_backward"]
        assert [r["body"].get("forward_only", False) for r in fwdbwd] == [False, True, False]
        for request in fwdbwd:
            assert request["headers"]["content-type"] == "application/x-protobuf"
            assert request["headers"].get("content-encoding") == ("zstd" if variant == "zstd" else None)
        polls = [r for r in requests if r["path"] == _POLL]
        assert {r["headers"]["accept"] for r in polls} == {"application/json", "application/x-protobuf"}
        assert all(r["body"]["allow_metadata_only"] is True for r in polls)
        by_path = {r["path"]: r["body"] for r in requests if r["method"] == "POST"}
        assert by_path["/api/v1/create_model"]["optimizer_config"] == {"type": "adamw"}
        assert by_path["/api/v1/optim_step"]["adam_params"]["weight_decay"] == 0.0
        assert by_path["/api/v1/save_weights_for_sampler"]["kind"] == "snapshot"
        assert by_path["/api/v1/asample"]["prompt"]["chunks"][0]["type"] == "encoded_text"
        assert all(r["status"] in (200, 204) for r in requests), [r for r in requests if r["status"] >= 300]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_our_038_requests_are_the_official_ones(official: dict[str, list[dict[str, Any]]], variant: str) -> None:
    """Same paths, same encodings, same decoded bodies (protobuf messages and JSON), in the same order."""
    ours = _without(_our_capture(variant), SDK_HEADERS)
    theirs = _without(official[variant], SDK_HEADERS)
    assert ours == theirs, _differences(ours, theirs)


def test_our_headers_are_the_official_ones(official: dict[str, list[dict[str, Any]]]) -> None:
    """Accept (protobuf results), x-sdk-version and x-sdk-method, request by request."""
    def headers(requests: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, str]]]:
        return [(r["method"], r["path"], {k: v for k, v in r["headers"].items() if k in SDK_HEADERS})
                for r in requests]

    ours, theirs = headers(_our_capture("plain")), headers(official["plain"])
    assert ours == theirs, _differences([{"h": h} for h in ours], [{"h": h} for h in theirs])
