"""The official ``tinker`` CLI's run and checkpoint commands work against the local service.

Each command is a real subprocess (``python -m tinker.cli``) configured by TINKER_BASE_URL and
TINKER_API_KEY. Independent commands run concurrently to keep the test short.
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


def _cli(svc: LocalService, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINKER_BASE_URL": svc.base_url, "TINKER_API_KEY": svc.api_key,
           "TINKER_TELEMETRY": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tinker.cli", "-f", "json", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_run_and_checkpoint_commands(sdk_env: LocalService, tmp_path: Path) -> None:
    svc = sdk_env
    sc = tinker.ServiceClient(base_url=svc.base_url, api_key=svc.api_key)
    tc = sc.create_lora_training_client(base_model="tiny-byte", rank=2)
    run_id = tc.model_id
    keep = tc.save_state("cli-keep").result(timeout=30).path
    doomed = tc.save_state("cli-doomed").result(timeout=30).path

    commands = {
        "runs": ("run", "list", "--limit", "0"),
        "run": ("run", "info", run_id),
        "ckpts": ("checkpoint", "list", "--run-id", run_id),
        "user": ("checkpoint", "list", "--limit", "0"),
        "info": ("checkpoint", "info", keep),
        "download": ("checkpoint", "download", keep, "--output", str(tmp_path)),
        "publish": ("checkpoint", "publish", keep),
        "delete": ("checkpoint", "delete", doomed, "-y"),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_cli, svc, *args) for name, args in commands.items()}
        results = {name: future.result() for name, future in futures.items()}

    assert run_id in json.dumps(_json(results["runs"]))
    assert run_id in json.dumps(_json(results["run"]))
    assert keep in json.dumps(_json(results["ckpts"]))
    assert keep in json.dumps(_json(results["user"]))
    assert keep in json.dumps(_json(results["info"]))
    download = _json(results["download"])
    files = {p.name for p in Path(download["destination"]).iterdir()}
    assert "arrays.npz" in files
    for name in ("publish", "delete"):
        assert results[name].returncode == 0, results[name].stderr

    rc = sc.create_rest_client()
    checkpoints = {c.tinker_path: c for c in rc.list_checkpoints(run_id).result(timeout=30).checkpoints}
    assert doomed not in checkpoints
    assert checkpoints[keep].public

    unpublish = _cli(svc, "checkpoint", "unpublish", keep)
    assert unpublish.returncode == 0, unpublish.stderr
    checkpoints = {c.tinker_path: c for c in rc.list_checkpoints(run_id).result(timeout=30).checkpoints}
    assert not checkpoints[keep].public
