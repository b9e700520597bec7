"""A telemetry batch is written as the session's protocol writes it (0.38: ``process_uuid``, defaults
included, ``None`` dropped; 0.6.3: only the fields set), naming the protocol's ``sdk_version``.

The field set of a 0.38 batch is checked against the one the official tinker==0.38.0 SDK sends to the
same local service (run in its own interpreter; skipped without it).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import tinker_actors as tinker
from tests.compat038.conftest import official_env, official_python
from tinker_actors.local import LocalService
from tinker_actors.local.server.wire_log import WireRecord

from .conftest import MakeConfig, session_events

_TELEMETRY = "/api/v1/telemetry"
# The official SDK opens its session at the first call that needs one.
_OFFICIAL_SESSION = ("import tinker\n"
                     "client = tinker.ServiceClient()\n"
                     "client.create_lora_training_client(base_model='tiny-byte', rank=2)\n"
                     "client.close('success').result()\n")


def _batches(records: list[WireRecord]) -> list[dict[str, Any]]:
    bodies = [record.decoded() for record in records if record.method == "POST" and record.path == _TELEMETRY]
    return [body for body in bodies if isinstance(body, dict)]


def _shape(batches: list[dict[str, Any]]) -> tuple[set[str], dict[str, set[str]]]:
    """The batch's own fields, and the fields of each kind of lifecycle event it carried."""
    fields = {key for batch in batches for key in batch if key != "events"}
    events: dict[str, set[str]] = {}
    for batch in batches:
        for event in batch["events"]:
            if event["event"] in ("SESSION_START", "SESSION_END"):
                events.setdefault(event["event"], set()).update(event)
    return fields, events


def test_038_batches_carry_the_process_uuid_and_the_protocol_sdk_version(service: LocalService,
                                                                        make_config: MakeConfig) -> None:
    config = make_config().replace(protocol="0.38")
    with (service.wire_log.capture() as capture, tinker.ServiceClient(config=config) as first,
          tinker.ServiceClient(config=config) as second):
        sessions = (first.session_id, second.session_id)
    for session_id in sessions:
        (batch,) = {json.dumps(e["batch"], sort_keys=True) for e in session_events(service, session_id)}
        assert json.loads(batch)["sdk_version"] == "0.38.0"
    sent = _batches(capture.records)
    assert {batch["session_id"] for batch in sent} == set(sessions)
    (process,) = {batch["process_uuid"] for batch in sent}  # one per process, shared by its sessions
    assert str(uuid.UUID(process)) == process


def test_063_batches_have_only_the_063_fields(service: LocalService, make_config: MakeConfig) -> None:
    with service.wire_log.capture() as capture, \
            tinker.ServiceClient(config=make_config().replace(protocol="0.6.3")) as client:
        assert client.session_id  # created on first use
    sent = _batches(capture.records)
    assert sent and all(set(batch) == {"events", "platform", "sdk_version", "session_id"} for batch in sent)
    assert {batch["sdk_version"] for batch in sent} == {"0.6.3"}


def test_038_batches_have_the_fields_of_the_official_038_sdk(service: LocalService, make_config: MakeConfig,
                                                             tmp_path: Path) -> None:
    python = official_python()
    with service.wire_log.capture() as official:
        done = subprocess.run([str(python), "-c", _OFFICIAL_SESSION],
                              env={**official_env(service, tmp_path), "TINKER_TELEMETRY": "1"},
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    with service.wire_log.capture() as ours, \
            tinker.ServiceClient(config=make_config().replace(protocol="0.38")) as client:
        client.create_lora_training_client("tiny-byte", rank=2).result()  # as the official session above
    official_fields, official_events = _shape(_batches(official.records))
    our_fields, our_events = _shape(_batches(ours.records))
    assert official_fields == {"platform", "sdk_version", "session_id", "process_uuid"}
    assert our_fields == official_fields
    assert our_events == official_events and set(our_events) == {"SESSION_START", "SESSION_END"}
