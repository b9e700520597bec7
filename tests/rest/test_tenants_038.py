"""Two users of one local service and the REST endpoints of 0.38 (FEATURES R2): nobody reads or changes another's
records through them, another's id answers as an unknown one, and the audit log is the admin's only.
(Copies, external weights and traces have their own isolation tests next to them.)"""

from __future__ import annotations

import pytest

import tinker_actors as tinker
from tests.rest.conftest import KEYS, WAIT_S, done, training_client
from tinker_actors.local import LocalService


def test_another_users_checkpoints_are_unknown(svc: LocalService, alice: tinker.ServiceClient,
                                               bob: tinker.ServiceClient) -> None:
    training = training_client(alice)
    mine = training.save_state("mine").result(WAIT_S).path
    bob_rest = bob.create_rest_client()
    with pytest.raises(tinker.NotFoundError) as ttl:
        bob_rest.set_checkpoint_ttl_from_tinker_path(mine, 1).result(WAIT_S)
    with pytest.raises(tinker.NotFoundError) as unknown:
        bob_rest.set_checkpoint_ttl_from_tinker_path(mine.replace("/mine", "/nothing"), 1).result(WAIT_S)
    assert str(ttl.value).replace("/mine", "/nothing") == str(unknown.value)
    report = bob_rest.delete_checkpoints([mine]).result(WAIT_S)
    assert report.deleted == [] and "not found" in report.failed[mine]
    (kept,) = alice.create_rest_client().list_checkpoints(training.model_id).result(WAIT_S).checkpoints
    assert kept.tinker_path == mine and kept.expires_at is None  # untouched
    assert bob_rest.list_user_checkpoints().result(WAIT_S).checkpoints == []
    assert bob_rest.list_training_runs(project_id="alpha").result(WAIT_S).training_runs == []


def test_whoami_is_the_callers(svc: LocalService) -> None:
    for user in KEYS:
        me = tinker.RestClient(base_url=svc.base_url, api_key=KEYS[user]).whoami().result(WAIT_S)
        assert (me.user_urn, me.email) == (user, f"{user}@localhost")


def test_the_audit_log_is_the_admins(svc: LocalService, alice: tinker.ServiceClient,
                                     bob: tinker.ServiceClient) -> None:
    bobs = training_client(bob).save_state("bobs").result(WAIT_S).path
    with pytest.raises(tinker.PermissionDeniedError, match="admin"):
        bob.create_rest_client().get_audit_log().result(WAIT_S)
    with pytest.raises(tinker.PermissionDeniedError):
        tinker.AdminClient(base_url=svc.base_url, api_key=KEYS["bob"]).get_audit_log().result(WAIT_S)
    alices = training_client(alice).save_weights_for_sampler("shared").result(WAIT_S).path
    alice.create_rest_client().publish_checkpoint_from_tinker_path(alices).result(WAIT_S)
    done(bob.create_sampling_client(model_path=alices))  # bob reads alice's published weights
    entries = alice.create_rest_client().get_audit_log().result(WAIT_S).entries  # alice is the admin
    assert [(e.event, e.event_details["actor"]) for e in entries if e.tinker_path == bobs] == [
        ("checkpoint_create", "bob")]
    assert [(e.event, e.event_details["actor"], e.purpose) for e in entries if e.tinker_path == alices] == [
        ("checkpoint_create", "alice", None), ("checkpoint_publish", "alice", None),
        ("checkpoint_read", "bob", "sample")]
