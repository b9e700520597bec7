"""copy_weights (0.38) against the local service: the copy is a usable checkpoint of its own (sampled from, loaded
into a new model), shares the source's files, outlives it, lands in the asked project, honours its TTL, is
made once per idempotency key, and copies only what the caller (or the holder of an access token) may read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import tinker_actors as tinker
from tests.rest.conftest import KEYS, WAIT_S, done, training_client
from tinker_actors import types
from tinker_actors.local import LocalService

PROMPT = types.ModelInput.from_ints(list(b"the cat "))
PARAMS = types.SamplingParams(max_tokens=8, temperature=1.0, seed=7)


def _train_a_little(training: tinker.TrainingClient) -> None:
    tokens = list(b"the cat sat on the mat")
    datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:]})
    for _ in range(3):
        training.forward_backward([datum], "cross_entropy").result(WAIT_S)
        training.optim_step(types.AdamParams(learning_rate=0.05)).result(WAIT_S)


def _tokens(client: tinker.ServiceClient, model_path: str) -> list[int]:
    sampler = done(client.create_sampling_client(model_path=model_path))
    return list(sampler.sample(PROMPT, 1, PARAMS).result(WAIT_S).sequences[0].tokens)


def _arrays_files(data_dir: Path, tinker_path: str) -> list[Path]:
    """The arrays files, in any run of the data directory, of checkpoints with the kind and name of ``tinker_path``."""
    _, kind, name = tinker_path.removeprefix("tinker://").split("/")
    return sorted((data_dir / "runs").glob(f"*/{kind}/{name}/v*/arrays.npz"))


def test_a_copy_samples_like_its_source_and_outlives_it(svc: LocalService, alice: tinker.ServiceClient) -> None:
    training = training_client(alice)
    _train_a_little(training)
    source = training.save_weights_for_sampler("policy").result(WAIT_S).path
    rest = alice.create_rest_client()
    copy = rest.copy_weights(source, "archive").result(WAIT_S)
    assert copy != source and copy.endswith("/sampler_weights/policy")
    expected = _tokens(alice, source)
    assert _tokens(alice, copy) == expected  # the same weights

    files = _arrays_files(svc.data_dir, source)  # the source's and the copy's
    assert len(files) == 2 and len({f.stat().st_ino for f in files}) == 1  # one file linked twice: no bytes copied
    rest.delete_checkpoint_from_tinker_path(source).result(WAIT_S)
    assert _tokens(alice, copy) == expected  # the copy does not depend on the source

    listed = rest.list_checkpoints(copy.removeprefix("tinker://").split("/")[0]).result(WAIT_S).checkpoints
    assert [(c.tinker_path, c.public, c.expires_at) for c in listed] == [(copy, False, None)]
    in_project = rest.list_training_runs(project_id="archive").result(WAIT_S).training_runs
    assert [r.training_run_id for r in in_project] == [copy.removeprefix("tinker://").split("/")[0]]


def test_a_training_copy_loads_into_a_new_model_with_its_ttl(svc: LocalService, alice: tinker.ServiceClient) -> None:
    training = training_client(alice)
    _train_a_little(training)
    source = training.save_state("step-3").result(WAIT_S).path
    copy = alice.copy_weights(source, ttl_seconds=600).result(WAIT_S)  # into the client's project, "alpha"
    checkpoint = alice.create_rest_client().list_checkpoints(copy.removeprefix("tinker://").split("/")[0]) \
        .result(WAIT_S).checkpoints[0]
    assert checkpoint.expires_at is not None and 590 <= (checkpoint.expires_at - checkpoint.time).total_seconds() <= 600
    loaded = done(alice.create_training_client_from_state_with_optimizer(copy))
    datum = types.Datum(model_input=types.ModelInput.from_ints(list(b"the ca")),
                        loss_fn_inputs={"target_tokens": list(b"he cat")})
    assert loaded.forward([datum], "cross_entropy").result(WAIT_S).loss_fn_outputs


def test_the_same_idempotency_key_copies_once(svc: LocalService, alice: tinker.ServiceClient) -> None:
    source = training_client(alice).save_state("once").result(WAIT_S).path
    body = {"source_path": source, "destination_project_id": "p"}
    headers = {"X-API-Key": KEYS["alice"], "X-Idempotency-Key": "retry-1"}
    first = httpx.post(f"{svc.base_url}/api/v1/copy_weights", json=body, headers=headers, timeout=30)
    again = httpx.post(f"{svc.base_url}/api/v1/copy_weights", json=body, headers=headers, timeout=30)
    other = httpx.post(f"{svc.base_url}/api/v1/copy_weights", json=body, timeout=30,
                       headers={**headers, "X-Idempotency-Key": "retry-2"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.json() == again.json() != other.json()
    rest = alice.create_rest_client()
    assert rest.list_training_runs(project_id="p").result(WAIT_S).cursor.total_count == 2


def test_into_a_sessions_slot(svc: LocalService, alice: tinker.ServiceClient) -> None:
    training = training_client(alice)
    source = training.save_state("slot").result(WAIT_S).path
    url = f"{svc.base_url}/api/v1/copy_weights"
    headers = {"X-API-Key": KEYS["alice"]}
    body = {"source_path": source, "session_id": alice.session_id, "model_seq_id": 7}
    answer = httpx.post(url, json=body, headers=headers, timeout=30)
    assert answer.json() == {"tinker_path": f"tinker://{alice.session_id}:train:7/weights/slot"}
    taken = httpx.post(url, json=body, headers=headers, timeout=30)  # the slot is used now
    assert taken.status_code == 400 and "already used" in taken.json()["error"]
    used_by_model = httpx.post(url, json={**body, "model_seq_id": 0}, headers=headers, timeout=30)
    assert used_by_model.status_code == 400
    assert httpx.post(url, json={"source_path": source, "model_seq_id": 1}, headers=headers, timeout=30).status_code \
        == 400
    assert httpx.post(url, json={"source_path": source}, headers=headers, timeout=30).status_code == 400
    too_long = httpx.post(url, json={"source_path": source, "destination_project_id": "p", "ttl_seconds": 10**12},
                          headers=headers, timeout=30)
    assert too_long.status_code == 400 and "ttl_seconds" in too_long.json()["error"]


def test_only_what_the_caller_or_the_tokens_owner_may_read(svc: LocalService, alice: tinker.ServiceClient,
                                                           bob: tinker.ServiceClient) -> None:
    private = training_client(alice).save_state("private").result(WAIT_S).path
    bob_rest = bob.create_rest_client()
    with pytest.raises(tinker.NotFoundError) as unknown:
        bob_rest.copy_weights(private.replace("/private", "/never-saved"), "mine").result(WAIT_S)
    with pytest.raises(tinker.NotFoundError) as refused:
        bob_rest.copy_weights(private, "mine").result(WAIT_S)
    assert str(refused.value).replace("private", "never-saved") == str(unknown.value)  # as unknown: no leak
    copy = bob_rest.copy_weights(private, "mine", weights_access_token=svc.issue_token("alice")).result(WAIT_S)
    run = bob_rest.get_training_run_by_tinker_path(copy).result(WAIT_S)
    assert run.model_owner == "bob"  # bob's copy, in bob's project
    with pytest.raises(tinker.NotFoundError):
        bob_rest.copy_weights(private, "mine", weights_access_token="tml-not-a-key-of-this-service").result(WAIT_S)
    # a published checkpoint is everyone's to copy
    alice.create_rest_client().publish_checkpoint_from_tinker_path(private).result(WAIT_S)
    assert bob_rest.copy_weights(private, "mine").result(WAIT_S).endswith("/weights/private")
