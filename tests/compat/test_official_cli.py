"""The official ``tinker`` CLI's run and checkpoint commands work against the local service.

Configured by TINKER_BASE_URL and TINKER_API_KEY. One command runs as a real subprocess
(``python -m tinker.cli``); the others run the same click commands in-process, because every new
process spends ~2 s importing torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tinker_actors.local import LocalService

tinker = pytest.importorskip("tinker", reason="the official tinker SDK (compat extra) is not installed")

pytestmark = pytest.mark.compat


def _env(svc: LocalService) -> dict[str, str]:
    return {"TINKER_BASE_URL": svc.base_url, "TINKER_API_KEY": svc.api_key, "TINKER_TELEMETRY": "0"}


def _subprocess_cli(svc: LocalService, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in its own process."""
    return subprocess.run([sys.executable, "-m", "tinker.cli", "-f", "json", *args],
                          env={**os.environ, **_env(svc), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=60, check=False)


def _cli(svc: LocalService, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """The same click command run in this process (importing torch per command would be slow)."""
    from click.testing import CliRunner
    from tinker.cli.__main__ import main_cli

    for name, value in _env(svc).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main_cli, ["-f", "json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _json_output(output: str) -> Any:
    """The command's JSON document (log lines of other components in this process may precede it)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("{", "[")))
    return json.loads("\n".join(lines[start:]))


def test_run_and_checkpoint_commands(sdk_env: LocalService, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    svc = sdk_env
    sc = tinker.ServiceClient(base_url=svc.base_url, api_key=svc.api_key)
    tc = sc.create_lora_training_client(base_model="tiny-byte", rank=2)
    run_id = tc.model_id
    keep = tc.save_state("cli-keep").result(timeout=30).path
    doomed = tc.save_state("cli-doomed").result(timeout=30).path

    with ThreadPoolExecutor(max_workers=1) as pool:
        real_process = pool.submit(_subprocess_cli, svc, "run", "list", "--limit", "0")

        assert _json_output(_cli(svc, monkeypatch, "run", "info", run_id))["training_run_id"] == run_id
        assert keep in _cli(svc, monkeypatch, "checkpoint", "list", "--run-id", run_id)
        assert keep in _cli(svc, monkeypatch, "checkpoint", "list", "--limit", "0")
        assert keep in _cli(svc, monkeypatch, "checkpoint", "info", keep)
        download = _json_output(_cli(svc, monkeypatch, "checkpoint", "download", keep, "--output", str(tmp_path)))
        assert "arrays.npz" in {p.name for p in Path(download["destination"]).iterdir()}

        rc = sc.create_rest_client()
        _cli(svc, monkeypatch, "checkpoint", "publish", keep)
        _cli(svc, monkeypatch, "checkpoint", "delete", doomed, "-y")
        checkpoints = {c.tinker_path: c for c in rc.list_checkpoints(run_id).result(timeout=30).checkpoints}
        assert doomed not in checkpoints
        assert checkpoints[keep].public
        _cli(svc, monkeypatch, "checkpoint", "unpublish", keep)
        checkpoints = {c.tinker_path: c for c in rc.list_checkpoints(run_id).result(timeout=30).checkpoints}
        assert not checkpoints[keep].public

        listed = real_process.result()
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
