"""``create_custom_loss`` code written for the official tinker==0.38.0 SDK runs on tinker-actors by changing the
import (``journey_custom_loss.py``), and the official SDK's own ``create_custom_loss`` works against the local
service in its client-side mode (the service does not announce ``custom_loss_server_side``): the same metrics,
step for step, and the same refusals, each a ``ValueError``. Neither SDK uploads the loss.

The official 0.38 virtualenv has no torch: its run gets this interpreter's torch (and what torch imports) on
``PYTHONPATH`` through a folder of links, so no second copy is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat038.conftest import ScriptRun, official_python, run_official, run_ours, service_with_flags
from tinker_actors.local.server.wire_log import WireRecord

JOURNEY = "journey_custom_loss.py"
# torch and the packages it imports that the official 0.38 virtualenv lacks.
TORCH_PACKAGES = ("torch", "torchgen", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "filelock")

pytest.importorskip("torch")


def _torch_links(folder: Path) -> Path:
    """A folder holding a link to each of this interpreter's TORCH_PACKAGES."""
    folder.mkdir(exist_ok=True)
    for name in TORCH_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        source = Path(next(iter(spec.submodule_search_locations)))
        (folder / name).symlink_to(source, target_is_directory=True)
    return folder


def _uploads(records: list[WireRecord]) -> list[str]:
    return [r.path for r in records if "custom_loss" in r.path]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptRun]:
    official_python()
    home = tmp_path_factory.mktemp("custom-loss-official")
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_official(JOURNEY, service, home, "tinker",
                           extra_env={"PYTHONPATH": str(_torch_links(home / "torch-links"))})
    assert _uploads(capture.snapshot()) == []
    yield run


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptRun]:
    home = tmp_path_factory.mktemp("custom-loss-ours")
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_ours(JOURNEY, service, home)
    assert _uploads(capture.snapshot()) == []
    yield run


def _assert_every_step_passes(run: ScriptRun) -> None:
    assert not run.failed_steps(), "\n".join(f"--- {name}\n{error}" for name, error in run.failed_steps().items())


REFUSALS = ("bad_metric_name", "branching", "captured_tensor", "missing_rank", "created_twice", "datum_without_input",
            "other_session")


def test_the_journey_runs_on_tinker_actors_by_changing_the_import(ours: ScriptRun) -> None:
    _assert_every_step_passes(ours)
    values = ours.values
    assert values["handle"] == {"name": "pg_loss", "loss_id": None,
                                "inputs": [["logprobs", 1], ["weights", 1], ["advantage", 0]]}
    losses = [step["custom/pg:sum"] for step in values["steps"]]
    assert losses[-1] < losses[0], losses  # the steps were applied
    for name in REFUSALS:
        assert values[name]["value_error"], (name, values[name])


def test_the_official_sdks_create_custom_loss_runs_client_side_against_the_local_service(
        official: ScriptRun, ours: ScriptRun) -> None:
    _assert_every_step_passes(official)
    assert official.values["handle"] == ours.values["handle"]
    for theirs, mine in zip(official.values["steps"], ours.values["steps"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-5)
    for name in REFUSALS:
        assert official.values[name]["value_error"], (name, official.values[name])
