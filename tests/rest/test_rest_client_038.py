"""The RestClient methods of the official SDK 0.38 (FEATURES R2) against the local service, in each call style
tinker-actors has: ``.result()`` on the returned future, ``await`` of that future, and the ``*_async`` method."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, Literal

import pytest

import tinker_actors as tinker
from tests.rest.conftest import KEYS, WAIT_S, training_client
from tinker_actors.local import LocalService

Style = Literal["result", "await", "async"]
STYLES: tuple[Style, ...] = ("result", "await", "async")


def call(rest: tinker.RestClient, style: Style, name: str, *args: Any, **kwargs: Any) -> Any:
    """``rest.<name>(...)`` in one call style."""
    if style == "result":
        return getattr(rest, name)(*args, **kwargs).result(WAIT_S)

    async def go() -> Any:
        if style == "await":
            return await getattr(rest, name)(*args, **kwargs)
        method: Callable[..., Awaitable[Any]] = getattr(rest, f"{name}_async")
        return await method(*args, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def rest(svc: LocalService) -> tinker.RestClient:
    return tinker.RestClient(base_url=svc.base_url, api_key=KEYS["alice"])


@pytest.mark.parametrize("style", STYLES)
def test_each_new_method_in_each_call_style(svc: LocalService, alice: tinker.ServiceClient,
                                            rest: tinker.RestClient, style: Style) -> None:
    training = training_client(alice)
    path = training.save_state("r2").result(WAIT_S).path

    models = call(rest, style, "get_server_capabilities").supported_models
    assert {m.model_name for m in models} >= {"tiny-byte"}
    assert all(m.max_context_length and m.trainable and m.sampleable for m in models)

    me = call(rest, style, "whoami")
    assert (me.user_urn, me.org_urn, me.email) == ("alice", "tml:organization:local", "alice@localhost")

    copy = call(rest, style, "copy_weights", path, "archive", ttl_seconds=3600)
    assert copy.endswith("/weights/r2") and copy != path
    copied = rest.get_training_run_by_tinker_path(copy).result(WAIT_S)
    assert copied.base_model == "tiny-byte" and copied.lora_rank == 2
    assert call(rest, style, "list_training_runs", project_id="archive").cursor.total_count == 1

    entries = call(rest, style, "get_audit_log", "checkpoints", date.today()).entries
    assert [e.event for e in entries if e.tinker_path in (path, copy)] == ["checkpoint_create", "checkpoint_copy"]
    assert entries[-1].event_details["source_path"] == path and entries[-1].event_details["actor"] == "alice"

    url = call(rest, style, "export_session_trace", alice.session_id)
    assert url.startswith(svc.base_url + "/local/v1/traces/")

    report = call(rest, style, "delete_checkpoints", [copy])
    assert (report.deleted, report.failed) == ([copy], {})
    assert rest.list_checkpoints(copied.training_run_id).result(WAIT_S).checkpoints == []


def test_admin_client_reads_the_audit_log(svc: LocalService, alice: tinker.ServiceClient) -> None:
    admin = tinker.AdminClient(base_url=svc.base_url, api_key=KEYS["alice"])
    path = training_client(alice).save_state("audited").result(WAIT_S).path
    events = admin.get_audit_log().result(WAIT_S).entries
    assert any(e.event == "checkpoint_create" and e.tinker_path == path for e in events)
    assert asyncio.run(admin.get_audit_log_async("projects")).entries == []  # only checkpoint events here
    assert admin.get_audit_log(day=date(2000, 1, 1)).result(WAIT_S).entries == []  # another day's log
    today = datetime.now(UTC)  # a datetime asks for its UTC day
    assert path in {e.tinker_path for e in admin.get_audit_log(day=today).result(WAIT_S).entries}


def test_bad_arguments_fail_before_anything_is_sent(svc: LocalService, rest: tinker.RestClient) -> None:
    watched = ("copy_weights", "get_external_weights_urls", "audit_log", "export_session_trace", "delete_checkpoint")

    def sent() -> dict[str, Any]:
        return {name: svc.request_counts()["endpoints"].get(name) for name in watched}

    before = sent()
    bad: list[Callable[[], object]] = [
        lambda: rest.copy_weights("not-a-path", "p"),
        lambda: rest.copy_weights("tinker://run/weights/x", "p", ttl_seconds=-1),
        lambda: rest.get_external_weights_urls("tinker://run/weights/x"),  # not external weights
        lambda: rest.get_audit_log("everything"),  # type: ignore[arg-type]
        lambda: rest.get_audit_log(day="2026-01-01"),  # type: ignore[arg-type]
        lambda: rest.export_session_trace(""),
        lambda: rest.export_session_trace("s", poll_interval=0),
        lambda: rest.delete_checkpoints(["tinker://run/weights/ok", "nope"]),
        lambda: rest.delete_checkpoints([], max_in_flight=0),
    ]
    for attempt in bad:
        with pytest.raises(tinker.InvalidInputError):
            attempt()
    assert sent() == before == dict.fromkeys(watched)


def test_copy_weights_needs_a_destination(svc: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_PROJECT_ID", raising=False)
    with tinker.ServiceClient(base_url=svc.base_url, api_key=KEYS["alice"]) as client:
        with pytest.raises(tinker.InvalidInputError, match="destination_project_id"):
            client.copy_weights("tinker://run/weights/x")
        with pytest.raises(tinker.InvalidInputError, match="destination_project_id"):
            client.create_rest_client().copy_weights("tinker://run/weights/x")


def test_listing_filters_by_project_and_access_scope(svc: LocalService, alice: tinker.ServiceClient,
                                                     bob: tinker.ServiceClient) -> None:
    alice_rest, bob_rest = alice.create_rest_client(), bob.create_rest_client()
    alpha = training_client(alice)  # alice's client is in project "alpha"
    published = alpha.save_state("shared").result(WAIT_S).path
    alice_rest.publish_checkpoint_from_tinker_path(published).result(WAIT_S)
    bob_run = training_client(bob)

    assert [r.training_run_id for r in alice_rest.list_training_runs(project_id="alpha").result(WAIT_S)
            .training_runs] == [alpha.model_id]
    assert alice_rest.list_training_runs(project_id="nowhere").result(WAIT_S).training_runs == []
    owned = {r.training_run_id for r in bob_rest.list_training_runs(access_scope="owned").result(WAIT_S).training_runs}
    accessible = {r.training_run_id for r in bob_rest.list_training_runs(access_scope="accessible")
                  .result(WAIT_S).training_runs}
    assert owned == {bob_run.model_id} and accessible == {bob_run.model_id, alpha.model_id}
    with pytest.raises(tinker.NotFoundError):
        bob_rest.get_training_run(alpha.model_id).result(WAIT_S)  # owned (the default): not bob's
    seen = bob_rest.get_training_run(alpha.model_id, access_scope="accessible").result(WAIT_S)
    assert seen.last_checkpoint is not None and seen.last_checkpoint.tinker_path == published
    assert bob_rest.get_training_run_by_tinker_path(published, "accessible").result(WAIT_S).training_run_id \
        == alpha.model_id

    def paths(response: tinker.types.CheckpointsListResponse) -> list[str]:
        return [c.tinker_path for c in response.checkpoints]

    assert paths(alice_rest.list_user_checkpoints(project_id="alpha").result(WAIT_S)) == [published]
    assert paths(alice_rest.list_user_checkpoints(project_id="nowhere").result(WAIT_S)) == []
    assert paths(bob_rest.list_user_checkpoints().result(WAIT_S)) == []
    assert paths(asyncio.run(bob_rest.list_user_checkpoints_async(access_scope="accessible"))) == [published]
    assert alice_rest.list_sessions(project_id="alpha").result(WAIT_S).sessions == [alice.session_id]
    assert asyncio.run(bob_rest.list_sessions_async(project_id="alpha")).sessions == []
