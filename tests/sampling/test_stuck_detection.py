"""``RetryConfig.enable_stuck_detection`` (official 0.38) and the server's ``sample_enable_stuck_detection``: whether
a sampling client's no-progress clock (``progress_timeout``) fails its samples, over real HTTP.

Without stuck detection the clock still announces the stall (``wait.stalled``), and a sample is bounded on its own
by ``Config.pending_timeout`` (its polls also by ``Config.no_progress_timeout``): no caller hangs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import structlog

import tinker_actors as tinker
from tests.sampling.conftest import PROMPT, config, service_with
from tinker_actors.config import WaitWarnings
from tinker_actors.local import FaultAction, FaultRule, LocalService

LIMIT = 1.0  # RetryConfig.progress_timeout here
SLOW = 2.5  # how long the slow sample takes: past LIMIT
SLACK = 4.0  # how late a bound may end on a loaded machine


def sample_slowly(service: LocalService, protocol: str = "0.38", **retry: Any) -> tuple[float, BaseException | None]:
    """One sample whose ``asample`` answers after SLOW seconds: how long it took, and its error (None: it worked)."""
    with tinker.ServiceClient(config=config(service, protocol=protocol)) as client:
        sampler = client.create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
            progress_timeout=LIMIT, retry_delay_base=0.05, retry_delay_max=0.1, **retry)).result(timeout=30)
        service.faults.add(FaultRule(endpoint="asample", action=FaultAction.DELAY, delay_s=SLOW, times=None))
        started = time.monotonic()
        try:
            sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2)).result(60)
        except tinker.TinkerError as error:
            return time.monotonic() - started, error
        finally:
            service.faults.clear()
        return time.monotonic() - started, None


@pytest.mark.parametrize("protocol", ["0.38", "0.6.3"])
def test_stuck_detection_fails_a_sample_after_progress_timeout(protocol: str) -> None:
    with service_with() as service:
        elapsed, error = sample_slowly(service, protocol)
    assert isinstance(error, tinker.NoProgressError), error
    assert LIMIT <= elapsed < LIMIT + SLACK


@pytest.mark.parametrize("protocol", ["0.38", "0.6.3"])
def test_without_stuck_detection_the_slow_sample_finishes(protocol: str) -> None:
    with service_with() as service:
        elapsed, error = sample_slowly(service, protocol, enable_stuck_detection=False)
    assert error is None
    assert elapsed >= SLOW * 0.9


def test_the_server_can_turn_stuck_detection_off() -> None:
    with service_with({"sample_enable_stuck_detection": False}) as service:
        elapsed, error = sample_slowly(service)  # the client asks for it (the default); the server says no
    assert error is None and elapsed >= SLOW * 0.9
    with service_with({"sample_enable_stuck_detection": True}) as service:
        _, error = sample_slowly(service)
    assert isinstance(error, tinker.NoProgressError)


def test_without_stuck_detection_the_stall_is_still_announced_and_bounded() -> None:
    """A sample the server never finishes ends at Config.pending_timeout, with its stall announced on the way."""
    with service_with() as service, tinker.ServiceClient(config=config(
            service, pending_timeout=2.5, wait_warnings=WaitWarnings(first_after=0.5, repeat_after=60.0))) as client:
        sampler = client.create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
            progress_timeout=LIMIT, enable_stuck_detection=False)).result(timeout=30)
        service.faults.add(FaultRule(endpoint="asample", action=FaultAction.NEVER_COMPLETE))
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs, pytest.raises(tinker.NoProgressError, match="pending_timeout"):
            sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2)).result(60)
        elapsed = time.monotonic() - started
    assert 2.5 <= elapsed < 2.5 + SLACK  # past progress_timeout: the clock did not fail it
    stalls = [line for line in logs if line["event"] == "wait.stalled" and line["request_type"] == "Sample"]
    assert stalls and stalls[0]["sampling_session_id"] == sampler.sampling_session_id


def test_without_stuck_detection_429_for_ever_still_ends_at_pending_timeout() -> None:
    with service_with() as service, tinker.ServiceClient(config=config(service, pending_timeout=2.0)) as client:
        sampler = client.create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
            progress_timeout=LIMIT, rate_limit_backoff=0.05, enable_stuck_detection=False)).result(timeout=30)
        service.faults.add(FaultRule(endpoint="asample", status=429))
        started = time.monotonic()
        with pytest.raises(tinker.NoProgressError, match=r"stuck detection is off.*HTTP 429"):
            sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2)).result(60)
    assert 2.0 <= time.monotonic() - started < 2.0 + SLACK


def test_the_default_is_on_as_in_the_official_sdk() -> None:
    assert tinker.RetryConfig().enable_stuck_detection is True
    assert tinker.RetryConfig(enable_stuck_detection=False).enable_stuck_detection is False
