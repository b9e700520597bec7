"""Async RL on 0.38 (FEATURES S6) as the official tinker==0.38.0 SDK does it against the local service, with
``sample_use_retrieve_futures`` and ``sample_cancel_enabled`` on; and the same journey on tinker-actors by
changing the import (``journey_async_rl.py``). The service's counts show each SDK used the batched poll and
sent the cancel; the inflight sampler's outputs change after a step with no save, and match a checkpoint
saved at that step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.compat038.conftest import (
    ScriptRun,
    official_python,
    run_official,
    run_ours,
    service_with_flags,
)
from tinker_actors.local.engine.sample_work import sample_counters_of

JOURNEY = "journey_async_rl.py"
FLAGS = {"sample_use_retrieve_futures": True, "sample_cancel_enabled": True}
SECONDS_PER_TOKEN = 0.005  # the 400-token sample then takes 2 s or more


@dataclass(frozen=True)
class _Outcome:
    run: ScriptRun
    counts: dict[str, Any]
    samples: dict[str, int]


@pytest.fixture(scope="module", params=["official", "tinker_actors"])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    if request.param == "official":
        official_python()
    with service_with_flags(FLAGS) as service:
        # a loaded sampler: the long sample is surely still running when the journey cancels it 0.3 s in
        service.faults.slow_sampling(SECONDS_PER_TOKEN)
        home = tmp_path_factory.mktemp(f"async-rl-{request.param}")
        run = (run_official if request.param == "official" else run_ours)(JOURNEY, service, home)
        yield _Outcome(run, service.request_counts()["endpoints"], sample_counters_of(service.stats).snapshot())


def test_every_step_passes(outcome: _Outcome) -> None:
    assert not outcome.run.failed_steps(), outcome.run.failed_steps()


def test_the_inflight_sampler_follows_the_step_and_matches_its_checkpoint(outcome: _Outcome) -> None:
    values = outcome.run.values
    assert values["inflight_after"] != values["inflight_before"]
    assert values["inflight_after"] == values["snapshot_after"]


def test_the_cancel_reaches_the_service_and_stops_the_work(outcome: _Outcome) -> None:
    assert outcome.counts["cancel_future"]["received"] == 1
    assert outcome.samples["cancelled"] == 1
    assert outcome.counts["asample"]["failed"] == 1  # the cancelled sample, answered as such


def test_many_samples_resolve_through_the_batched_poll(outcome: _Outcome) -> None:
    assert outcome.run.values["many"] == 32
    assert outcome.counts["retrieve_futures"]["received"] >= 1
