"""Opt-in recovery of a lost model (issue 14), over real HTTP against a LocalService on 127.0.0.1.

The model is lost with the local service's own faults (drop, corrupt, restart). Checked each time: the
training loop goes on from the last checkpoint, the rolled-back steps are reported exactly, the server-side
step counter holds every step once (never twice, never silently missing), the same HTTP request is never
executed twice, and without recovery the same faults give today's typed errors.
"""

from __future__ import annotations

import threading
import time

import pytest
import structlog

import tinker_actors as tinker
from tests.recovery.conftest import ADAM, batch, config, optimizer_step, train_step, wait_until
from tinker_actors.errors import FutureExpiredError, NotFoundError, RequestFailedError
from tinker_actors.local import LocalService
from tinker_actors.recovery import RecoveryFailedError, RecoveryPolicy, RecoveryReport, StepRolledBackError
from tinker_actors.testing import FaultHelper
from tinker_actors.training.checkpoint_policy import CheckpointPolicy

FAST = RecoveryPolicy(max_attempts=3, initial_wait=0.05, max_wait=0.2)


@pytest.fixture(params=["0.6.3", "0.38"])
def protocol(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def _training(client: tinker.ServiceClient, *, every_steps: int | None = 3,
              policy: RecoveryPolicy = FAST) -> tinker.TrainingClient:
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
    if every_steps is not None:
        training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=every_steps, keep_last=2))
    training.enable_recovery(policy)
    return training


def _saves(training: tinker.TrainingClient) -> int:
    status = training.checkpoint_status()
    return status.saves if status is not None else 0


def _loop(training: tinker.TrainingClient, steps: range, *, save_every: int = 3) -> dict[int, float | None]:
    """Step by step (each result awaited). Whenever the periodic policy saves (after ``save_every`` completed
    steps), wait for the save, so that what each checkpoint holds is known to the test. A rolled-back step's
    loss is None."""
    losses: dict[int, float | None] = {}
    completed = 0
    for step in steps:
        try:
            losses[step] = train_step(training)
            completed += 1
        except StepRolledBackError as error:
            assert error.step == step
            losses[step] = None
        if save_every and completed == save_every:
            completed = 0
            _wait_for_save_after(training, _saves(training), step)
    return losses


def _wait_for_save_after(training: tinker.TrainingClient, saves: int, step: int) -> None:
    wait_until(lambda: _saves(training) > saves, what=f"the periodic save after step {step}")


def _never_executed_twice(service: LocalService, *model_ids: str) -> None:
    rows = [row for row in service.request_counts()["sequenced"] if row["id"] in model_ids]
    assert rows and all(row["executed"] <= 1 for row in rows), rows


def _reports() -> tuple[list[RecoveryReport], RecoveryPolicy]:
    reports: list[RecoveryReport] = []
    return reports, RecoveryPolicy(max_attempts=3, initial_wait=0.05, max_wait=0.2, on_recovery=reports.append)


def test_a_dropped_model_is_recreated_from_the_last_checkpoint_and_training_goes_on(
        service: LocalService, faults: FaultHelper, protocol: str) -> None:
    reports, policy = _reports()
    with tinker.ServiceClient(config=config(service, protocol)) as client:
        training = _training(client, policy=policy)
        old_model = training.model_id
        faults.drop_model_on("optim_step", every_nth=8)  # the model is lost as optim_step 8 arrives
        with structlog.testing.capture_logs() as logs:
            losses = _loop(training, range(1, 13))
        new_model = training.model_id
        assert new_model != old_model
        (report,) = training.recovery_status().recoveries
        # Steps 1-6 were in the checkpoint; 7 ran on the lost model after it; 8's gradient was lost with it.
        assert report.checkpoint_step == 6 and report.checkpoint.endswith("/weights/periodic-000006")
        assert report.rolled_back_steps == (7, 8)
        assert (report.old_model_id, report.new_model_id, report.attempts) == (old_model, new_model, 1)
        assert losses[8] is None and all(losses[step] is not None for step in (*range(1, 8), *range(9, 13)))
        # Training went on from the checkpoint: step 9 starts where step 7 started, and the loss still falls.
        after = [loss for step, loss in sorted(losses.items()) if step >= 9 and loss is not None]
        assert after[0] == pytest.approx(losses[7], rel=1e-6)
        assert min(after[1:]) < after[0]
        # The server holds each surviving step exactly once: 1-6 and 9-12.
        assert optimizer_step(service, new_model) == 10
        _never_executed_twice(service, old_model, new_model)
        wait_until(lambda: len(reports) == 1, what="the on_recovery callback")
        assert reports == [report]
        assert [entry["event"] for entry in logs if entry["event"].startswith("recovery.")] == [
            "recovery.started", "recovery.completed"]


def test_calls_in_flight_when_the_model_is_lost_are_resent_in_order_and_no_step_is_applied_twice(
        client: tinker.ServiceClient, service: LocalService, faults: FaultHelper) -> None:
    training = _training(client, every_steps=None)
    old_model = training.model_id
    for _ in range(3):
        train_step(training)
    saved = training.save_state("base").result(timeout=30)  # a save_state of the user's is a checkpoint too
    faults.drop_model_on("optim_step", every_nth=3)  # 3rd optim_step from now: step 6
    optims = {}
    for step in range(4, 13):  # pipelined: nothing awaited
        training.forward_backward(batch(), "cross_entropy")
        optims[step] = training.optim_step(ADAM)
    ok: set[int] = set()
    rolled: set[int] = set()
    for step, future in optims.items():
        try:
            future.result(timeout=60)
            ok.add(step)
        except StepRolledBackError as error:
            rolled.add(error.step)
    (report,) = training.recovery_status().recoveries
    assert report.checkpoint == saved.path and report.checkpoint_step == 3
    lost = set(report.rolled_back_steps)
    assert rolled <= lost                          # each failed step is reported...
    assert ok | lost == set(range(4, 13))          # ...and no step is silently missing
    assert 6 in lost                               # its gradient (at least) was lost with the model
    # Every step that survived is held once by the model, never twice.
    assert optimizer_step(service, training.model_id) == 3 + len(ok - lost)
    assert set(report.resubmitted_steps) <= ok - lost
    _never_executed_twice(service, old_model, training.model_id)


def test_a_model_lost_again_and_again_while_calls_are_in_flight_keeps_every_step_once(
        client: tinker.ServiceClient, service: LocalService, faults: FaultHelper) -> None:
    training = _training(client, every_steps=2)
    models = {training.model_id}
    faults.drop_model_on("optim_step", every_nth=5, times=3)  # three losses, whichever model holds then
    optims = {}
    for step in range(1, 31):  # pipelined, four steps at a time
        training.forward_backward(batch(), "cross_entropy")
        optims[step] = training.optim_step(ADAM)
        if step % 4 == 0:
            optims[step].exception(timeout=60)  # wait for the step to end, whichever way
            models.add(training.model_id)
    ok: set[int] = set()
    for step, future in optims.items():
        try:
            future.result(timeout=60)
            ok.add(step)
        except StepRolledBackError as error:
            assert error.step == step
    reports = training.recovery_status().recoveries
    assert len(reports) == 3
    lost = {step for report in reports for step in report.rolled_back_steps}
    assert ok | lost == set(range(1, 31))
    assert optimizer_step(service, training.model_id) == len(ok - lost)
    _never_executed_twice(service, *models, *(report.new_model_id for report in reports))


def test_a_corrupted_model_is_recognised_by_its_training_run_and_recovered(
        client: tinker.ServiceClient, service: LocalService, faults: FaultHelper) -> None:
    training = _training(client)
    faults.corrupt_model_on("optim_step", every_nth=5)  # accepted, then fails with a server error
    losses = _loop(training, range(1, 9))
    (report,) = training.recovery_status().recoveries
    assert report.checkpoint_step == 3 and report.rolled_back_steps == (4, 5)
    assert "RequestFailedError" in report.cause
    assert losses[5] is None
    assert optimizer_step(service, training.model_id) == 6  # 1-3, 6-8


def test_a_restart_that_loses_the_models_but_keeps_the_checkpoints_is_recovered_from() -> None:
    with LocalService(long_poll_s=0.3, gap_timeout_s=0.3) as service:
        faults = FaultHelper(service)
        with tinker.ServiceClient(config=config(service)) as client:
            training = _training(client, every_steps=2)
            _loop(training, range(1, 5), save_every=2)
            faults.restart_service()  # the service comes back without the model; checkpoints and session kept
            _loop(training, range(5, 9), save_every=2)
            (report,) = training.recovery_status().recoveries
            assert report.checkpoint_step == 4 and report.rolled_back_steps == ()
            assert report.resubmitted == 1  # step 5's forward_backward, refused with 404: sent again
            assert optimizer_step(service, training.model_id) == 8


def test_a_restart_in_the_middle_of_a_request_is_recovered_from() -> None:
    with LocalService(long_poll_s=0.3, gap_timeout_s=0.3) as service:
        faults = FaultHelper(service)
        with tinker.ServiceClient(config=config(service)) as client:
            training = _training(client, every_steps=2)
            faults.restart_on("optim_step", every_nth=5)  # optim_step 5's connection drops with the service
            losses = _loop(training, range(1, 9), save_every=2)
            (report,) = training.recovery_status().recoveries
            assert report.checkpoint_step == 4 and report.rolled_back_steps == (5,)
            assert losses[5] is None and optimizer_step(service, training.model_id) == 7


@pytest.mark.parametrize("fault", ["drop", "corrupt", "restart"])
def test_without_recovery_the_same_faults_give_todays_typed_errors(fault: str) -> None:
    with LocalService(long_poll_s=0.3, gap_timeout_s=0.3) as service:
        faults = FaultHelper(service)
        with tinker.ServiceClient(config=config(service)) as client:
            training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
            training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=1))  # steps counted, no recovery
            train_step(training)
            if fault == "drop":
                assert faults.drop_model(training.model_id)
            elif fault == "corrupt":
                assert faults.corrupt_model(training.model_id)
            else:
                faults.restart_service()
            expected = RequestFailedError if fault == "corrupt" else NotFoundError
            with pytest.raises(expected) as raised:
                training.forward_backward(batch(), "cross_entropy").result(timeout=30)
            if fault == "corrupt":
                assert raised.value.category.value == "server"
            assert training.recovery_status().recoveries == () and not training.recovery_status().enabled


def test_a_lost_poll_without_recovery_stays_a_future_expired_error(client: tinker.ServiceClient,
                                                                   faults: FaultHelper) -> None:
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result()
    faults.expire_futures(request_type="ForwardBackward", times=1)
    with pytest.raises(FutureExpiredError):
        training.forward_backward(batch(), "cross_entropy").result(timeout=30)


def test_a_forgotten_result_of_a_live_model_is_not_taken_for_a_lost_model(client: tinker.ServiceClient,
                                                                          faults: FaultHelper) -> None:
    training = _training(client)
    train_step(training)
    faults.expire_futures(request_type="ForwardBackward", times=1)  # 410 while polling, the model is fine
    with pytest.raises(FutureExpiredError):
        training.forward_backward(batch(), "cross_entropy").result(timeout=30)
    assert training.recovery_status().recoveries == ()
    train_step(training)


def test_recovery_that_runs_out_of_attempts_fails_typed_and_at_once_afterwards(
        client: tinker.ServiceClient, faults: FaultHelper) -> None:
    failures: list[RecoveryFailedError] = []
    policy = RecoveryPolicy(max_attempts=2, initial_wait=0.05, max_wait=0.1, on_failure=failures.append)
    training = _training(client, every_steps=1, policy=policy)
    _loop(training, range(1, 3), save_every=1)
    faults.fail("create_model", status=400, times=None)  # every attempt to recreate the model is refused
    assert faults.drop_model(training.model_id)
    with pytest.raises(RecoveryFailedError) as raised:
        training.forward_backward(batch(), "cross_entropy").result(timeout=30)
    assert raised.value.attempts == 2 and "400" in str(raised.value)
    with pytest.raises(RecoveryFailedError):  # later calls: at once, nothing sent
        training.optim_step(ADAM).result(timeout=5)
    status = training.recovery_status()
    assert status.failed is not None and not status.recovering
    wait_until(lambda: len(failures) == 1, what="the on_failure callback")


def test_closing_the_client_during_a_recovery_ends_the_waiting_calls_at_once(service: LocalService,
                                                                             faults: FaultHelper) -> None:
    client = tinker.ServiceClient(config=config(service))
    policy = RecoveryPolicy(max_attempts=2, initial_wait=60.0, max_wait=60.0)  # a long wait between attempts
    training = _training(client, every_steps=1, policy=policy)
    _loop(training, range(1, 2), save_every=1)
    faults.fail("create_model", status=400, times=1)  # the first attempt fails: the second waits a minute
    assert faults.drop_model(training.model_id)
    waiting = training.forward_backward(batch(), "cross_entropy")
    wait_until(lambda: training.recovery_status().recovering, what="the recovery")
    started = time.monotonic()
    client.close()
    with pytest.raises(tinker.ClientStoppedError):
        waiting.result(timeout=30)
    assert time.monotonic() - started < 20


def test_without_a_checkpoint_recovery_gives_up_at_once(client: tinker.ServiceClient, faults: FaultHelper) -> None:
    training = _training(client, every_steps=None)
    train_step(training)
    assert faults.drop_model(training.model_id)
    with pytest.raises(RecoveryFailedError, match="no checkpoint"):
        training.forward_backward(batch(), "cross_entropy").result(timeout=30)


def test_every_recovery_is_a_telemetry_event(service: LocalService, faults: FaultHelper) -> None:
    with tinker.ServiceClient(config=config(service, telemetry_enabled=True)) as client:
        training = _training(client, every_steps=2)
        _loop(training, range(1, 3), save_every=2)
        assert faults.drop_model(training.model_id)
        _loop(training, range(3, 5), save_every=2)
        session_id = client.session_id
        assert client.telemetry.wait_until_settled(10)
    events = {event.get("event_name"): event for event in service.telemetry_events()
              if event["batch"].get("session_id") == session_id}
    assert events["recovery.started"]["severity"] == "WARNING"
    completed = events["recovery.completed"]["event_data"]
    assert completed["checkpoint_step"] == 2 and completed["rolled_back_steps"] == []
    assert completed["new_model_id"] == training.model_id


def test_the_callback_can_run_the_rolled_back_steps_again(client: tinker.ServiceClient, service: LocalService,
                                                          faults: FaultHelper) -> None:
    replayed = threading.Event()
    holder: list[tinker.TrainingClient] = []

    def run_again(report: RecoveryReport) -> None:
        training = holder[0]
        for _ in report.rolled_back_steps:  # this loop feeds the same data at every step
            training.forward_backward(batch(), "cross_entropy").result(timeout=30)
            training.optim_step(ADAM).result(timeout=30)
        replayed.set()

    policy = RecoveryPolicy(initial_wait=0.05, max_wait=0.1, on_recovery=run_again)
    training = _training(client, policy=policy)
    holder.append(training)
    faults.drop_model_on("optim_step", every_nth=8)
    _loop(training, range(1, 8))
    _loop(training, range(8, 11), save_every=0)  # the replayed steps make saves the loop cannot foresee
    assert replayed.wait(30)
    (report,) = training.recovery_status().recoveries
    assert report.rolled_back_steps == (7, 8)
    assert optimizer_step(service, training.model_id) == 10  # 1-6, 9, 10, and 7 and 8 once more


def test_bad_policies_are_refused() -> None:
    for bad in ({"max_attempts": 0}, {"initial_wait": -1.0}, {"initial_wait": 5.0, "max_wait": 1.0},
                {"checkpoint": "oldest"}, {"on_recovery": 3}):
        with pytest.raises(tinker.InvalidInputError):
            RecoveryPolicy(**bad)

