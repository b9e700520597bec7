"""A command's stdout is its answer alone: log lines of the library, also those of other threads while the
command runs (a telemetry reporter giving up a batch, a stalled download), go to stderr, so `-f json` parses.
Unconfigured structlog prints to stdout; its configuration is put back after the command."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import structlog

from tinker_actors.cli import main
from tinker_actors.local import FaultRule, LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService() as svc:
        yield svc


@pytest.mark.parametrize("configured_before", [False, True], ids=["as-found", "after-capture-logs"])
def test_a_warning_logged_while_a_json_command_runs_goes_to_stderr(service: LocalService,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    configured_before: bool) -> None:
    if configured_before:  # structlog counts as configured after capture_logs, still printing to stdout
        with structlog.testing.capture_logs():
            pass
        assert structlog.is_configured()
    # The command's request is held 1.5 s; another thread logs a warning 0.3 s in, as a reporter would.
    service.faults.add(FaultRule(endpoint="/api/v1/training_runs*", action="delay", delay_s=1.5, times=1))
    meanwhile = threading.Timer(0.3, lambda: structlog.get_logger("tinker_actors.telemetry").warning(
        "telemetry.batch_given_up", attempts=4, error="APIConnectionError: Connection error"))
    factory = structlog.get_config()["logger_factory"]
    meanwhile.start()
    try:
        code = main(["run", "list", "-f", "json", "--base-url", service.base_url, "--api-key", service.api_key])
    finally:
        meanwhile.join()
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out) == {"runs": []}  # stdout is the answer alone
    assert "telemetry.batch_given_up" in err
    assert structlog.get_config()["logger_factory"] is factory  # as it was before the command
