"""The call style of the official SDK 0.38 (FEATURES A10), over real HTTP against the local service.

Creation calls return a future of the client at once (``.result()``, or ``await`` it); any call's future can be
awaited directly; 0.6.3 code keeps working: the two-level ``await (await x_async())`` of the training calls,
the creation calls' ``_async`` forms (deprecated, one warning each) and the future used as the client itself
(deprecated, one warning per attribute name, at the user's line). A blocking call made on the I/O loop's thread
(a done callback) or in an actor's thread raises a ``RuntimeError`` at once instead of waiting on itself.

The last test runs ``call_style_038.py``, written for the official SDK 0.38, on tinker-actors, and also on the
official SDK when its interpreter is installed: the same steps succeed with the same values and warnings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import tinker_actors as tinker
from supervisors import SupervisedActor
from tinker_actors.call_style import BlockingCallError, DeprecatedCallWarning, forget_warnings
from tinker_actors.clients.backcompat import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
from tinker_actors.config import Config, PollBackoff
from tinker_actors.local import FaultAction, FaultRule, LocalService

HERE = Path(__file__).resolve()
SCRIPT = HERE.with_name("call_style_038.py")
OFFICIAL_038 = HERE.parents[2] / ".venv-tinker038" / "bin" / "python"
TEXT = list(b"the quick brown fox jumps over the lazy dog. ")
PROMPT = tinker.ModelInput.from_ints(TEXT[:8])
PARAMS = tinker.SamplingParams(max_tokens=4, temperature=0.0)
WAIT_S = 60.0
SLOW_S = 3.0  # a slow create_model: long enough for a check to run while it is pending, even under load


def datum(tokens: list[int] = TEXT) -> tinker.Datum:
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:]})


@pytest.fixture
def svc(service: LocalService) -> Iterator[tinker.ServiceClient]:
    service.faults.clear()
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False,
                    poll_backoff=PollBackoff(initial=0.01, max=0.05))
    with tinker.ServiceClient(config=config) as client:
        yield client
    service.faults.clear()


@contextmanager
def recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning given inside, each deprecation given anew (they are given once per process)."""
    forget_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def deprecations(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, DeprecatedCallWarning)]


def slow_creation(service: LocalService) -> None:
    """The next create_model takes SLOW_S seconds on the server."""
    service.faults.add(FaultRule(endpoint="create_model", action=FaultAction.DELAY, delay_s=SLOW_S, times=1))


# ---- the 0.38 style: futures of clients ---------------------------------------------------------------

def test_a_creation_call_returns_a_future_at_once_and_its_result_is_the_client(
        svc: tinker.ServiceClient, service: LocalService) -> None:
    slow_creation(service)
    with recorded() as caught:
        started = time.monotonic()
        future = svc.create_lora_training_client("tiny-byte", rank=4)
        returned_after = time.monotonic() - started
        assert returned_after < SLOW_S / 2 and not future.done()  # at once, while the server is still creating it
        assert isinstance(future, tinker.APIFuture) and isinstance(future, BackcompatTrainingClientFuture)
        training = future.result(WAIT_S)
        assert type(training) is tinker.TrainingClient
        assert training.forward_backward([datum()], "cross_entropy").result(WAIT_S).metrics["loss:sum"] > 0
        state = training.save_state("call-style").result(WAIT_S).path
        sampler_future = training.save_weights_and_get_sampling_client()
        assert isinstance(sampler_future, BackcompatSamplingClientFuture)
        sampler = sampler_future.result(WAIT_S)
        assert type(sampler) is tinker.SamplingClient
        assert len(sampler.sample(PROMPT, 1, PARAMS).result(WAIT_S).sequences[0].tokens) == 4
        for make in (lambda: svc.create_training_client_from_state(state),
                     lambda: svc.create_training_client_from_state_with_optimizer(state)):
            created = make()
            assert isinstance(created, BackcompatTrainingClientFuture)
            assert type(created.result(WAIT_S)) is tinker.TrainingClient
        for make_sampler in (lambda: svc.create_sampling_client(base_model="tiny-byte"),
                             lambda: training.create_sampling_client(
                                 training.save_weights_for_sampler("cs").result(WAIT_S).path)):
            created_sampler = make_sampler()
            assert isinstance(created_sampler, BackcompatSamplingClientFuture)
            assert type(created_sampler.result(WAIT_S)) is tinker.SamplingClient
    assert not deprecations(caught)  # the 0.38 style warns of nothing


def test_bad_arguments_raise_at_the_call_and_a_refusal_of_the_server_through_the_future(
        svc: tinker.ServiceClient, service: LocalService) -> None:
    before = service.stats.snapshot()["endpoints"].get("create_model", {}).get("received", 0)
    with pytest.raises(tinker.InvalidInputError):
        svc.create_lora_training_client("tiny-byte", train_mlp=False, train_attn=False, train_unembed=False)
    with pytest.raises(tinker.InvalidInputError):
        svc.create_training_client_from_state("s3://not-a-tinker-path")
    with pytest.raises(tinker.InvalidInputError):
        svc.create_sampling_client()
    assert service.stats.snapshot()["endpoints"].get("create_model", {}).get("received", 0) == before
    refused = svc.create_lora_training_client("no-such-model", rank=2)  # returns: the server has not answered yet
    with pytest.raises(tinker.RequestFailedError, match="unknown base model"):
        refused.result(WAIT_S)
    with recorded(), pytest.raises(tinker.RequestFailedError, match="unknown base model"):
        refused.forward_backward([datum()], "cross_entropy")  # 0.6.3 style: the error at the first use


def test_a_dropped_creation_future_still_creates_the_model(svc: tinker.ServiceClient, service: LocalService) -> None:
    def created() -> int:
        executed: int = service.stats.snapshot()["endpoints"].get("create_model", {}).get("executed", 0)
        return executed

    before = created()
    svc.create_lora_training_client("tiny-byte", rank=2)  # nobody keeps the future (the official SDK creates it too)
    deadline = time.monotonic() + WAIT_S
    while created() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert created() == before + 1


def test_await_a_creation_call_and_any_future_directly(svc: tinker.ServiceClient) -> None:
    async def main() -> tuple[Any, ...]:
        training = await svc.create_lora_training_client("tiny-byte", rank=4)
        output = await training.forward_backward([datum()], "cross_entropy")
        await training.optim_step(tinker.AdamParams(learning_rate=1e-3))
        sampler = await training.save_weights_and_get_sampling_client()
        response = await sampler.sample(PROMPT, 1, PARAMS)
        base = await svc.create_sampling_client(base_model="tiny-byte")
        gathered = await asyncio.gather(*(base.sample(PROMPT, 1, PARAMS).coroutine() for _ in range(3)))
        return training, output, sampler, response, base, gathered

    with recorded() as caught:
        training, output, sampler, response, base, gathered = asyncio.run(main())
    assert type(training) is tinker.TrainingClient and output.metrics["loss:sum"] > 0
    assert type(sampler) is tinker.SamplingClient and type(base) is tinker.SamplingClient
    assert len(response.sequences[0].tokens) == 4 and len(gathered) == 3
    assert not deprecations(caught)


# ---- 0.6.3 code keeps running -----------------------------------------------------------------------------

def test_the_two_level_await_of_063_keeps_working(svc: tinker.ServiceClient) -> None:
    async def main() -> tuple[Any, Any]:
        training = await svc.create_lora_training_client("tiny-byte", rank=2)
        forward_future = await training.forward_backward_async([datum()], "cross_entropy")
        optim_future = await training.optim_step_async(tinker.AdamParams(learning_rate=1e-3))
        assert isinstance(forward_future, tinker.APIFuture)
        output = await forward_future.result_async()
        await optim_future
        sampler = await training.save_weights_and_get_sampling_client()
        return output, await sampler.sample_async(PROMPT, 1, PARAMS)

    output, response = asyncio.run(main())
    assert output.metrics["loss:sum"] > 0 and len(response.sequences[0].tokens) == 4


def test_the_creation_calls_async_forms_give_the_client_and_warn_once_each_with_the_replacement(
        svc: tinker.ServiceClient) -> None:
    async def main() -> list[Any]:
        clients = []
        for _ in range(2):  # twice: one warning per form
            training = await svc.create_lora_training_client_async("tiny-byte", rank=2)
            path = training.save_weights_for_sampler("cs-async").result(WAIT_S).path
            clients += [training, await training.save_weights_and_get_sampling_client_async(),
                        await training.create_sampling_client_async(path),
                        await svc.create_sampling_client_async(base_model="tiny-byte")]
        state = training.save_state("cs-async").result(WAIT_S).path
        clients += [await svc.create_training_client_from_state_async(state),
                    await svc.create_training_client_from_state_with_optimizer_async(state)]
        return clients

    with recorded() as caught:
        clients = asyncio.run(main())
    assert [type(c).__name__ for c in clients] == ["TrainingClient", "SamplingClient", "SamplingClient",
                                                   "SamplingClient"] * 2 + ["TrainingClient"] * 2
    given = deprecations(caught)
    replacements = {"ServiceClient.create_lora_training_client_async()":
                    "`await service_client.create_lora_training_client(...)`",
                    "TrainingClient.save_weights_and_get_sampling_client_async()":
                    "`await training_client.save_weights_and_get_sampling_client()`",
                    "TrainingClient.create_sampling_client_async()":
                    "`await training_client.create_sampling_client(path)`",
                    "ServiceClient.create_sampling_client_async()":
                    "`await service_client.create_sampling_client(...)`",
                    "ServiceClient.create_training_client_from_state_async()":
                    "`await service_client.create_training_client_from_state(...)`",
                    "ServiceClient.create_training_client_from_state_with_optimizer_async()":
                    "`await service_client.create_training_client_from_state_with_optimizer(...)`"}
    assert len(given) == len(replacements)
    for form, replacement in replacements.items():
        [warning] = [w for w in given if str(w.message).startswith(form)]
        assert replacement in str(warning.message) and issubclass(warning.category, FutureWarning)
        assert Path(warning.filename) == HERE  # the user's line, not one of ours


def test_using_the_future_as_the_client_works_and_warns_once_per_name(svc: tinker.ServiceClient) -> None:
    with recorded() as caught:
        training = svc.create_lora_training_client("tiny-byte", rank=2)
        assert isinstance(training, tinker.TrainingClient)  # as 0.38's, an instance of the client's class
        losses = [training.forward_backward([datum()], "cross_entropy").result(WAIT_S).metrics["loss:sum"]
                  for _ in range(3)]
        assert all(loss > 0 for loss in losses) and training.model_id.startswith(svc.session_id)
        training.on_queue_state_change = lambda state: None  # type: ignore[method-assign,assignment]  # on the client
        assert training.result(WAIT_S).on_queue_state_change is training.on_queue_state_change
        sampler = training.save_weights_and_get_sampling_client()
        assert sampler.sample(PROMPT, 1, PARAMS).result(WAIT_S).sequences
        assert sampler.sampling_session_id == sampler.result().sampling_session_id  # an instance attribute
        clone = pickle.loads(pickle.dumps(sampler))  # pickling it pickles the client
        assert type(clone) is tinker.SamplingClient and clone.sampling_session_id == sampler.sampling_session_id
        assert "pending" not in repr(training) and "TrainingClient" in repr(training)
    given = deprecations(caught)
    names = [str(w.message).split("(.", 1)[1].split(" ", 1)[0] for w in given]
    assert sorted(names) == sorted(["forward_backward", "model_id", "on_queue_state_change", "save_weights_and_get"
                                    "_sampling_client", "sample", "sampling_session_id", "__reduce__"])
    for warning in given:
        assert "call .result() (or await it) to get the client" in str(warning.message)
        assert issubclass(warning.category, FutureWarning) and Path(warning.filename) == HERE


def test_warnings_turned_into_errors_raise_at_every_use(svc: tinker.ServiceClient) -> None:
    training = svc.create_lora_training_client("tiny-byte", rank=2)
    forget_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedCallWarning)
        for _ in range(2):
            with pytest.raises(DeprecatedCallWarning):
                training.model_id  # noqa: B018
    assert training.result(WAIT_S).model_id


# ---- blocking where it would wait on itself --------------------------------------------------------------

def in_a_done_callback(future: tinker.APIFuture[Any], body: Callable[[], Any]) -> tuple[str, Any, float, bool]:
    """Run ``body`` in a done callback of ``future`` (which is still pending when added): ("ok" | "raised", its
    result or error, seconds it took, whether it ran on the I/O loop's thread)."""
    assert not future.done()
    outcome: concurrent.futures.Future[tuple[str, Any, float, bool]] = concurrent.futures.Future()

    def callback(_: Any) -> None:
        on_loop = threading.current_thread().name == "tinker-ioloop"
        started = time.monotonic()
        try:
            value = body()
        except Exception as error:
            outcome.set_result(("raised", error, time.monotonic() - started, on_loop))
            return
        outcome.set_result(("ok", value, time.monotonic() - started, on_loop))

    future.future().add_done_callback(callback)
    return outcome.result(WAIT_S)


def test_a_blocking_call_in_a_done_callback_on_the_io_loop_raises_at_once(
        service: LocalService) -> None:
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False, protocol="0.6.3")
    with tinker.ServiceClient(config=config) as svc:  # 0.6.3: get_info() is a request, not the answer kept
        training = svc.create_lora_training_client("tiny-byte", rank=2).result(WAIT_S)
        slow_creation(service)
        pending = svc.create_lora_training_client("tiny-byte", rank=2)
        blocking_calls: dict[str, Callable[[], Any]] = {
            "APIFuture.result()": pending.result,
            "APIFuture.exception()": pending.exception,
            ".forward_backward)": lambda: pending.forward_backward([datum()], "cross_entropy"),
            "TrainingClient._get_info": training.get_info,
        }
        for says, call in blocking_calls.items():
            with recorded():
                status, error, seconds, on_loop = in_a_done_callback(training.forward([datum()], "cross_entropy"),
                                                                     call)
            assert on_loop and status == "raised" and seconds < 1.0, (says, status, error)
            assert isinstance(error, BlockingCallError) and isinstance(error, RuntimeError)
            assert says in str(error) and "I/O loop" in str(error) and "wait" in str(error)
        # A finished future answers anywhere, the loop's thread included; and the loop went on: the slow creation
        # completes.
        done = training.forward([datum()], "cross_entropy")
        done.result(WAIT_S)
        status, value, _, on_loop = in_a_done_callback(training.forward([datum()], "cross_entropy"), done.result)
        assert on_loop and status == "ok" and value.metrics["loss:sum"] > 0
        assert type(pending.result(WAIT_S)) is tinker.TrainingClient


def test_a_blocking_call_in_an_actors_thread_raises_at_once(svc: tinker.ServiceClient, service: LocalService) -> None:
    slow_creation(service)
    pending = svc.create_lora_training_client("tiny-byte", rank=2)

    class Waiter(SupervisedActor):
        def on_receive(self, message: Any) -> Any:
            try:
                return pending.result(WAIT_S)
            except BlockingCallError as error:
                return error

    actor = Waiter.start()
    try:
        started = time.monotonic()
        answer = actor.ask("wait", timeout=WAIT_S)
        assert time.monotonic() - started < 1.0
    finally:
        actor.stop()
    assert isinstance(answer, BlockingCallError) and "actor Waiter" in str(answer)
    assert type(pending.result(WAIT_S)) is tinker.TrainingClient  # from this thread, the wait is fine


def test_a_blocking_call_from_the_callers_own_event_loop_is_allowed(svc: tinker.ServiceClient) -> None:
    async def main() -> Any:
        return svc.create_lora_training_client("tiny-byte", rank=2).result(WAIT_S)  # stops this loop, not ours

    assert type(asyncio.run(main())) is tinker.TrainingClient


# ---- code written for the official SDK 0.38 runs by changing the import ----------------------------------

def run_script(python: Path | str, sdk: str, tmp_path: Path) -> dict[str, Any]:
    """``call_style_038.py`` with ``python`` and ``import <sdk>``, against a service of its own whose first
    create_model is slow."""
    with LocalService(long_poll_s=5.0) as local:
        slow_creation(local)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "TINKER_BASE_URL": local.base_url, "TINKER_API_KEY": local.api_key, "TINKER_TELEMETRY": "0",
               "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run([str(python), str(SCRIPT), sdk], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    assert done.returncode == 0, f"{sdk}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


# Forms the official SDK 0.38 deprecates and this SDK does not warn about yet (the porting guide lists them).
NOT_WARNED_HERE = {"async_two_levels_of_063"}


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_script(sys.executable, "tinker_actors", tmp_path_factory.mktemp("home"))


def test_code_written_for_038_runs_on_tinker_actors_by_changing_the_import(ours: dict[str, Any]) -> None:
    assert all(outcome == "ok" for outcome in ours["steps"].values()), ours["steps"]
    assert ours["values"]["blocking_on_the_loop"] == {"raised": "RuntimeError", "says_await": True,
                                                      "callback_ran": True, "in_callback_under_a_second": True,
                                                      "then_created": "TrainingClient"}
    assert {step for step, given in ours["warnings"].items() if given} == {"async_one_level_deprecated",
                                                                           "direct_use_deprecated"}
    for given in ours["warnings"].values():
        assert all(w["future_warning"] and w["file"] == SCRIPT.name for w in given)


def test_the_038_script_does_here_what_it_does_on_the_official_sdk(ours: dict[str, Any], tmp_path: Path) -> None:
    if not OFFICIAL_038.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038}: `make test` creates it")
    official = run_script(OFFICIAL_038, "tinker", tmp_path)
    assert official["steps"] == ours["steps"]
    assert official["values"] == ours["values"]
    for step in ours["steps"]:
        if step in NOT_WARNED_HERE:
            continue
        theirs, here = official["warnings"][step], ours["warnings"][step]
        assert bool(theirs) == bool(here), step
        for warning in theirs + here:  # FutureWarnings at the user's line, saying how to get the client
            assert warning["future_warning"] and warning["file"] == SCRIPT.name
            assert ".result()" in warning["message"] or "await" in warning["message"]
