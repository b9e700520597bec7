"""The session lifecycle of protocol 0.38, over real HTTP against the local service: created on first use,
finished with a status by close() and the context manager, heartbeats stopped by a 410, project and display
name, moving a session to a project, and REST clients that need no session."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

import tinker_actors as tinker
from tinker_actors.config import Config, RetryPolicy, Timeouts
from tinker_actors.local import FaultRule, LocalService
from tinker_actors.types import SessionSearchRequest

KEY = "tml-lifecycle-key"


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5, api_key=KEY) as svc:
        yield svc


@pytest.fixture(autouse=True)
def no_faults(service: LocalService) -> Iterator[None]:
    service.faults.clear()
    yield
    service.faults.clear()


def config(service: LocalService, **fields: Any) -> Config:
    values: dict[str, Any] = {"api_key": KEY, "base_url": service.base_url, "telemetry_enabled": False,
                              "retry": RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=5.0)}
    return Config(**(values | fields))


def received(service: LocalService, endpoint: str) -> int:
    return int(service.request_counts()["endpoints"].get(endpoint, {}).get("received", 0))


def summary(service: LocalService, session_id: str) -> Any:
    rest = tinker.RestClient(base_url=service.base_url, api_key=KEY)
    sessions = rest.search_sessions(session_id=session_id).result(10).sessions
    assert [s.session_id for s in sessions] == [session_id]
    return sessions[0]


# ---- created on first use -------------------------------------------------------------------------

def test_no_session_until_a_call_needs_one(service: LocalService) -> None:
    before = received(service, "create_session")
    with tinker.ServiceClient(config=config(service)) as client:
        rest = client.create_rest_client()
        rest.list_training_runs().result(10)
        client.get_server_capabilities()
        assert client.get_telemetry() is None  # telemetry disabled: no session made for it
        assert not client.has_session and "session_id=None" in repr(client)
        assert received(service, "create_session") == before

        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        assert client.has_session and received(service, "create_session") == before + 1
        session_id = client.session_id
        sampler = client.create_sampling_client(base_model="tiny-byte").result()
        assert client.session_id == session_id and received(service, "create_session") == before + 1
        assert training.model_id.startswith(session_id) and sampler.sampling_session_id.startswith(session_id)


def test_concurrent_first_uses_create_one_session(service: LocalService) -> None:
    before = received(service, "create_session")
    with tinker.ServiceClient(config=config(service)) as client:
        ids: list[str] = []
        threads = [threading.Thread(target=lambda: ids.append(client.session_id)) for _ in range(8)]
        futures = [client.create_sampling_client_future(base_model="tiny-byte") for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        samplers = [future.result(30) for future in futures]
        assert len(set(ids)) == 1 and len(ids) == 8
        assert all(s.sampling_session_id.startswith(ids[0]) for s in samplers)
    assert received(service, "create_session") == before + 1


def test_cancelling_one_first_use_does_not_cancel_the_session_for_the_others(service: LocalService) -> None:
    service.faults.add(FaultRule(endpoint="create_session", action="delay", delay_s=0.5, times=1))
    with tinker.ServiceClient(config=config(service)) as client:
        first = client.create_sampling_client_future(base_model="tiny-byte")
        second = client.create_sampling_client_future(base_model="tiny-byte")
        time.sleep(0.1)  # both wait for the session being created
        assert first.cancel()
        assert second.result(10).sampling_session_id.startswith(client.session_id)


def test_a_failed_creation_is_tried_again_by_the_next_use(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as client:
        service.faults.add(FaultRule(endpoint="create_session", status=503, times=10))
        with pytest.raises(tinker.InternalServerError):
            client.create_lora_training_client("tiny-byte", rank=2).result()
        service.faults.clear()
        assert not client.has_session
        assert client.create_lora_training_client("tiny-byte", rank=2).result().model_id.startswith(client.session_id)


def test_a_rest_client_of_its_own_needs_no_session(service: LocalService) -> None:
    before = received(service, "create_session")
    rest = tinker.RestClient(base_url=service.base_url, api_key=KEY)
    assert rest.list_training_runs().result(10).cursor is not None
    telemetry = rest.get_telemetry()  # session-less telemetry (docs/telemetry.md), not a session's
    assert telemetry is not None and telemetry.session_id.startswith("sessionless-")
    assert tinker.RestClient(base_url=service.base_url, api_key=KEY)._service is rest._service  # shared
    assert received(service, "create_session") == before
    with tinker.ServiceClient(config=config(service)) as client, \
            pytest.raises(tinker.InvalidInputError, match="not both"):
        tinker.RestClient(client, api_key=KEY)


# ---- close(status) and the context manager ----------------------------------------------------------

@pytest.mark.parametrize(("raised", "status"), [(None, "success"), (RuntimeError, "errored"),
                                                (KeyboardInterrupt, "interrupted")])
def test_the_context_manager_finishes_the_session_with_its_status(
        service: LocalService, raised: type[BaseException] | None, status: str) -> None:
    session_id = ""
    try:
        with tinker.ServiceClient(config=config(service)) as client:
            session_id = client.session_id
            if raised is not None:
                raise raised("stop")
    except (RuntimeError, KeyboardInterrupt):
        pass
    assert summary(service, session_id).status == {"type": "client_finished", "reason": {"type": status},
                                                   "detail": None}


def test_close_sends_status_and_detail_once(service: LocalService) -> None:
    client = tinker.ServiceClient(config=config(service))
    session_id = client.session_id
    before = received(service, "finish_session")
    with pytest.raises(tinker.InvalidInputError, match="success, errored, interrupted"):
        client.close("done")  # type: ignore[arg-type]
    assert client.close("interrupted", detail="preempted").result(1) is None
    assert client.close("success").done()  # closing again does nothing
    assert received(service, "finish_session") == before + 1
    assert summary(service, session_id).status == {"type": "client_finished", "reason": {"type": "interrupted"},
                                                   "detail": "preempted"}
    with pytest.raises(tinker.ClientStoppedError):
        client.create_sampling_client(base_model="tiny-byte").result()


def test_a_client_without_a_session_finishes_nothing(service: LocalService) -> None:
    before = received(service, "finish_session"), received(service, "create_session")
    with tinker.ServiceClient(config=config(service)) as client:
        client.create_rest_client().list_sessions().result(10)
    assert (received(service, "finish_session"), received(service, "create_session")) == before


def test_protocol_063_does_not_finish(service: LocalService) -> None:
    before = received(service, "finish_session")
    with tinker.ServiceClient(config=config(service, protocol="0.6.3")) as client:
        assert client.session_id
    assert received(service, "finish_session") == before


def test_a_failing_finish_is_logged_once_and_the_close_completes(service: LocalService) -> None:
    service.faults.add(FaultRule(endpoint="finish_session", status=500))
    client = tinker.ServiceClient(config=config(service, timeouts=Timeouts(finish_session=1.0)))
    session_id = client.session_id
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        client.close("success")
        took = time.monotonic() - started
    failures = [entry for entry in logs if entry["event"] == "session.finish_failed"]
    assert len(failures) == 1 and failures[0]["session_id"] == session_id and "500" in failures[0]["error"]
    assert took < 5.0
    assert received(service, "finish_session") >= 2  # retried within the bound


def test_a_hanging_finish_is_cut_at_its_bound(service: LocalService) -> None:
    service.faults.add(FaultRule(endpoint="finish_session", action="delay", delay_s=20.0))
    client = tinker.ServiceClient(config=config(service, timeouts=Timeouts(finish_session=0.5)))
    assert client.session_id
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        client.close("errored")
        took = time.monotonic() - started
    assert took < 4.0, f"close() took {took:.1f} s"
    assert [entry["event"] for entry in logs].count("session.finish_failed") == 1


# ---- heartbeats stop on 410 -------------------------------------------------------------------------

def test_heartbeats_stop_when_the_server_answers_410(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service, heartbeat_interval=0.05, log_level="info")) as client:
        session_id = client.session_id
        time.sleep(0.3)
        with structlog.testing.capture_logs() as logs:
            # Finished from elsewhere (another process of the job, the console): over real HTTP.
            answer = httpx.post(f"{service.base_url}/api/v1/sessions/{session_id}/finish",
                                json={"reason": {"type": "success"}}, headers={"X-API-Key": KEY})
            assert answer.status_code == 200
            deadline = time.monotonic() + 5.0
            while not any(e["event"] == "session.finished" for e in logs) and time.monotonic() < deadline:
                time.sleep(0.05)
            beats = received(service, "session_heartbeat")
            time.sleep(0.5)  # ten intervals
        assert received(service, "session_heartbeat") == beats
        finished = [e for e in logs if e["event"] == "session.finished"]
        assert len(finished) == 1 and finished[0]["session_id"] == session_id and finished[0]["log_level"] == "info"


# ---- project and display name -------------------------------------------------------------------------

def test_project_and_display_name_go_with_the_session(service: LocalService) -> None:
    with tinker.ServiceClient({"team": "rl"}, "proj-a", display_name="nightly sweep 7",
                              config=config(service)) as client:
        assert client.config.project_id == "proj-a" and client.config.display_name == "nightly sweep 7"
        session_id = client.session_id
        rest = client.create_rest_client()
        found = rest.search_sessions(SessionSearchRequest(display_name="SWEEP nightly")).result(10).sessions
        assert session_id in [s.session_id for s in found]
        mine = next(s for s in found if s.session_id == session_id)
        assert (mine.project_id, mine.display_name, mine.user_metadata) == ("proj-a", "nightly sweep 7", {"team": "rl"})
        assert [s.session_id for s in rest.search_sessions(project_ids=["proj-a"]).result(10).sessions] == [session_id]


def test_project_from_the_environment(service: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_PROJECT_ID", "proj-env")
    with tinker.ServiceClient(base_url=service.base_url, api_key=KEY, telemetry_enabled=False) as client:
        assert summary(service, client.session_id).project_id == "proj-env"
    with tinker.ServiceClient(base_url=service.base_url, api_key=KEY, telemetry_enabled=False,
                              project_id="proj-arg") as client:
        assert summary(service, client.session_id).project_id == "proj-arg"  # the argument wins


def test_assign_session_project(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as client:
        session_id = client.session_id
        rest = tinker.RestClient(base_url=service.base_url, api_key=KEY)
        assert rest.assign_session_project(session_id, "proj-b").result(10) is None
        assert summary(service, session_id).project_id == "proj-b"
        with pytest.raises(tinker.InvalidInputError, match="project_id"):
            rest.assign_session_project(session_id, "")
        with pytest.raises(tinker.NotFoundError):
            rest.assign_session_project("no-such-session", "proj-b").result(10)


def test_async_forms(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service, display_name="async one")) as client:
        session_id = client.session_id
        rest = client.create_rest_client()

        async def main() -> None:
            await rest.assign_session_project_async(session_id, "proj-c")
            found = await rest.search_sessions_async(display_name="async one")
            assert [(s.session_id, s.project_id) for s in found.sessions] == [(session_id, "proj-c")]
            assert (await rest.search_sessions(session_id=session_id)).sessions[0].session_id == session_id

        asyncio.run(main())
