"""The official tinker==0.38.0 SDK against the local service, as a user runs it.

The official 0.38 SDK cannot share a virtualenv with the 0.6.3 one of the other compat tests (same
package name), so ``make test`` gives it its own, ``.venv-tinker038`` (no torch), and these tests
run it in a subprocess pointed at a :class:`LocalService` started here (127.0.0.1 only). Without
that virtualenv they skip and say why; ``TINKER_ACTORS_OFFICIAL_038_PYTHON`` names another
interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.wire.conftest import OFFICIAL_038_PYTHON, REPO
from tinker_actors.local import LocalService

HERE = Path(__file__).resolve().parent
RUN_TIMEOUT_S = 120.0  # a whole script run; it takes a few seconds


def official_python() -> Path:
    """The 0.38 interpreter, or a skip saying how to get it."""
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}: "
                    "`make test` creates it (.venv-tinker038)")
    return OFFICIAL_038_PYTHON


@contextmanager
def service_with_flags(flags: dict[str, Any] | None = None, **service_options: Any) -> Iterator[LocalService]:
    """A local service whose ``client/config`` announces ``flags`` (none: every flag at its default)."""
    with LocalService(long_poll_s=5.0, protocol_flags=flags or {}, **service_options) as service:
        yield service


def official_env(service: LocalService, home: Path) -> dict[str, str]:
    """Only what the SDK needs: the service's address and key, telemetry off, nothing from this
    process's environment that could point it elsewhere (proxies, real credentials)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "TINKER_BASE_URL": service.base_url, "TINKER_API_KEY": service.api_key,
            "TINKER_TELEMETRY": "0", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1",
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class ScriptRun:
    """One run of a script under the official SDK: its JSON summary (last stdout line) and stderr."""

    summary: dict[str, Any]
    stderr: str
    seconds: float

    @property
    def steps(self) -> dict[str, str]:
        steps: dict[str, str] = self.summary["steps"]
        return steps

    @property
    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = self.summary["values"]
        return values

    def failed_steps(self) -> dict[str, str]:
        return {name: outcome for name, outcome in self.steps.items() if outcome != "ok"}


def run_script(command: list[str], env: dict[str, str], what: str) -> ScriptRun:
    """Run a journey ``command``; its last stdout line is the summary. A failed run raises with its output."""
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          check=False)
    seconds = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"{' '.join(Path(part).name for part in command[1:])} under {what} exited with "
                             f"{done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return ScriptRun(summary=json.loads(lines[-1]), stderr=done.stderr, seconds=seconds)


def run_official(script: str, service: LocalService, home: Path, *args: str,
                 extra_env: dict[str, str] | None = None) -> ScriptRun:
    """Run ``tests/compat038/<script>`` with the official 0.38 interpreter against ``service``."""
    python = official_python()
    env = {**official_env(service, home), **(extra_env or {})}
    return run_script([str(python), str(HERE / script), *args], env, "the official SDK 0.38")


def run_ours(script: str, service: LocalService, home: Path, *args: str, protocol: str | None = "0.38",
             extra_env: dict[str, str] | None = None) -> ScriptRun:
    """Run ``tests/compat038/<script> tinker_actors`` with this interpreter against ``service``, speaking
    ``protocol`` (None: what the client chooses by itself)."""
    # PYTHONPATH: this checkout's tinker_actors, also from a git worktree whose venv installs another one.
    env = {**official_env(service, home), "PYTHONPATH": str(REPO), **(extra_env or {})}
    if protocol is not None:
        env["TINKER_ACTORS_PROTOCOL"] = protocol
    return run_script([sys.executable, str(HERE / script), "tinker_actors", *args], env,
                      f"tinker-actors ({protocol or 'its own protocol choice'})")


def official_exit_ok(done: subprocess.CompletedProcess[str]) -> bool:
    """Whether an official 0.38 process did its work: exit 0, or SIGABRT after a complete JSON answer. The
    official process sometimes aborts while the interpreter finalizes (no Python frame; its HTTP runtime's
    threads, pyqwest/tokio, still running), after it printed everything; seen in its CLI and its journeys."""
    if done.returncode == 0:
        return True
    if done.returncode != -signal.SIGABRT or not done.stdout.strip():
        return False
    try:
        json.loads(done.stdout)
    except ValueError:
        return False
    return True


def run_official_cli(service: LocalService, home: Path, *args: str) -> Any:
    """The official ``tinker`` console command with ``-f json``: its JSON output."""
    official_python()
    command = OFFICIAL_038_PYTHON.parent / "tinker"
    done = subprocess.run([str(command), "-f", "json", *args], env=official_env(service, home), cwd=REPO,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if not official_exit_ok(done):
        raise AssertionError(f"tinker {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout)
