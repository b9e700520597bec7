"""Periodic checkpoints (issue 14): every N steps or T seconds, keep the last K, TTL; failures are reported,
never raised into the training loop. Real HTTP against a LocalService on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
import structlog

import tinker_actors as tinker
from tests.recovery.conftest import batch, config, train_step, wait_until
from tinker_actors.errors import ClientStoppedError, InvalidInputError
from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper
from tinker_actors.training.checkpoint_policy import CheckpointPolicy, CheckpointStatus


def _status(training: tinker.TrainingClient) -> CheckpointStatus:
    status = training.checkpoint_status()
    assert status is not None
    return status


def _wait_for_saves(training: tinker.TrainingClient, count: int) -> None:
    wait_until(lambda: _status(training).saves == count, what=f"save number {count}")


def _listed(client: tinker.ServiceClient, model_id: str) -> list[str]:
    listing = client.create_rest_client().list_checkpoints(model_id).result(timeout=30)
    return sorted(checkpoint.checkpoint_id for checkpoint in listing.checkpoints)


def test_every_n_steps_keeps_the_last_k_and_deletes_older_ones_through_the_rest_api(
        client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
    training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=2, keep_last=2))
    for step in range(1, 8):
        train_step(training)
        if step % 2 == 0:  # let each save finish before the next step: the names are then known
            _wait_for_saves(training, step // 2)
    wait_until(lambda: _listed(client, training.model_id) == ["weights/periodic-000004", "weights/periodic-000006"],
               what="the oldest checkpoint to be deleted")
    status = _status(training)
    assert [(c.step, c.path.rsplit("/", 1)[-1]) for c in status.kept] == [(4, "periodic-000004"),
                                                                           (6, "periodic-000006")]
    assert status.last_step == 7 and status.save_failures == status.delete_failures == 0
    # The checkpoints recovery may use are exactly the kept ones, each knowing the steps it holds.
    assert [list(c.steps or ()) for c in training.recovery_status().checkpoints] == [[1, 2, 3, 4],
                                                                                      [1, 2, 3, 4, 5, 6]]


def test_every_t_seconds_saves_only_when_a_step_completed_and_sets_the_ttl(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
    training.enable_periodic_checkpoints(CheckpointPolicy(every_seconds=0.2, ttl_seconds=7200, keep_last=None))
    train_step(training)
    wait_until(lambda: _status(training).saves == 1, what="a timed save")
    time.sleep(0.6)  # no step since: nothing new to save
    assert _status(training).saves == 1
    train_step(training)
    wait_until(lambda: _status(training).saves == 2, what="the second timed save")
    listing = client.create_rest_client().list_checkpoints(training.model_id).result(timeout=30)
    assert len(listing.checkpoints) == 2
    wait_until(lambda: all(c.expires_at is not None for c in
                           client.create_rest_client().list_checkpoints(training.model_id).result(30).checkpoints),
               what="the TTL of both checkpoints")


def test_a_failed_save_is_reported_and_training_goes_on(client: tinker.ServiceClient, faults: FaultHelper,
                                                        service: LocalService) -> None:
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
    training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=1, keep_last=None))
    refused = faults.fail("save_weights", status=400, times=1)  # the first save is refused
    with structlog.testing.capture_logs() as logs:
        losses = [train_step(training) for _ in range(4)]  # nothing raised here
        wait_until(lambda: _status(training).saves >= 2, what="later saves")
    assert faults.fired(refused) == 1
    status = _status(training)
    assert status.save_failures == 1 and status.last_error is not None and "400" in status.last_error
    assert losses[-1] < losses[0]
    failed = [entry for entry in logs if entry["event"] == "checkpoint.save_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "warning" and "400" in failed[0]["error"]


def test_a_save_whose_result_is_lost_is_reported_as_an_event(service: LocalService, faults: FaultHelper) -> None:
    # Telemetry on: the failure reaches the session's telemetry as a checkpoint.save_failed event.
    with tinker.ServiceClient(config=config(service, telemetry_enabled=True)) as client:
        training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
        training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=1, keep_last=None))
        faults.expire_futures(request_type="SaveWeights", times=1)  # the save's poll answers 410
        for _ in range(3):
            train_step(training)
        wait_until(lambda: _status(training).save_failures == 1 and _status(training).saves >= 1,
                   what="the failed save to be counted")
        session_id = client.session_id
        assert client.telemetry.wait_until_settled(10)
    names = [event.get("event_name") for event in service.telemetry_events()
             if event["batch"].get("session_id") == session_id]
    assert "checkpoint.save_failed" in names and "checkpoint.saved" in names


def test_a_policy_needs_a_period_and_sane_values() -> None:
    for bad in ({}, {"every_steps": 0}, {"every_seconds": -1.0}, {"every_steps": 2, "keep_last": 0},
                {"every_steps": 2, "name_prefix": "a/b"}, {"every_steps": True}):
        with pytest.raises(InvalidInputError):
            CheckpointPolicy(**bad)


def test_without_a_policy_there_is_no_status(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
    assert training.checkpoint_status() is None
    assert training.forward(batch(), "cross_entropy").result(timeout=30).metrics


def test_the_status_of_a_policy_that_stopped_is_a_typed_error(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as client:
        training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
        training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=100))
        assert _status(training).saves == 0
    # closed: the policy's actor is gone with its supervisor (as after a give-up), and the question says so
    with pytest.raises(ClientStoppedError, match="not running anymore"):
        training.checkpoint_status()
