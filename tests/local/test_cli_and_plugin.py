"""`tinker-actors local serve` as a real process, and the pytest fixtures of tinker_actors.testing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper
from tinker_actors.testing.plugin import faults, local_service, local_service_env  # noqa: F401 (fixtures)

from .support import SESSION_BODY


def test_local_serve_runs_until_terminated(tmp_path: Path) -> None:
    env = {**os.environ, "TINKER_LOCAL_API_KEY": "tml-cli-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.cli", "local", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--zero-work"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "tinker-actors local service on http://127.0.0.1:" in banner, process.stderr
        assert "tml-cli-key" not in banner
        url = banner.split(" on ")[1].split(" ")[0]
        assert httpx.get(f"{url}/local/v1/health", headers={"X-API-Key": "wrong"}).status_code == 401
        health = httpx.get(f"{url}/local/v1/health", headers={"X-API-Key": "tml-cli-key"}).json()
        assert health["zero_work"] is True
        created = httpx.post(f"{url}/api/v1/create_session", json=SESSION_BODY,
                             headers={"X-API-Key": "tml-cli-key"})
        assert created.status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
    assert (tmp_path / "sessions.json").exists()


def test_local_serve_announces_flags_and_local_protocol_changes_them(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tinker_actors.cli import main

    env = {**os.environ, "TINKER_LOCAL_API_KEY": "tml-cli-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.cli", "local", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--zero-work", "--flag", "proto_compress_fwdbwd=true", "--flag", "fwdbwd_max_chunk_len=16",
         "--flag", "credential_default_source=api_key", "--inline-result-bytes", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" on ")[1].split(" ")[0]
        headers = {"X-API-Key": "tml-cli-key"}
        config = httpx.post(f"{url}/api/v1/client/config", json={"sdk_version": "0.38.0"}, headers=headers).json()
        assert config == {"proto_compress_fwdbwd": True, "fwdbwd_max_chunk_len": 16,
                          "credential_default_source": "api_key"}
        shell = ["--url", url, "--api-key", "tml-cli-key"]
        assert main(["local", "protocol", "set", *shell, "fwdbwd_max_chunk_len=null", "refresh_interval_sec=12"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown == {"flags": {"proto_compress_fwdbwd": True, "credential_default_source": "api_key",
                                   "refresh_interval_sec": 12}, "inline_result_bytes": 0}
        dynamic = httpx.post(f"{url}/api/v1/client/dynamic_config", json={}, headers=headers).json()
        assert dynamic == {"refresh_interval_sec": 12}
        assert main(["local", "protocol", "set", *shell, "fwdbwd_max_chunk_len=lots"]) == 1
        assert "fwdbwd_max_chunk_len" in capsys.readouterr().err
        assert main(["local", "protocol", "clear", *shell]) == 0
        capsys.readouterr()
        assert main(["local", "protocol", "show", *shell]) == 0
        assert json.loads(capsys.readouterr().out)["flags"] == {}
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_local_serve_refuses_a_bad_flag(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "tinker_actors.cli", "local", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--zero-work", "--flag", "proto_compress_fwdbwd=maybe"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and "proto_compress_fwdbwd" in finished.stderr


def test_version_command_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    from tinker_actors.cli import main

    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("tinker-actors ")


@pytest.mark.local_service(zero_work=True, long_poll_s=0.5)
def test_plugin_fixtures(local_service_env: LocalService, faults: FaultHelper) -> None:  # noqa: F811
    svc = local_service_env
    assert os.environ["TINKER_BASE_URL"] == svc.base_url
    assert svc.config.zero_work and svc.config.long_poll_s == 0.5
    headers = {"X-API-Key": svc.api_key}
    rule = faults.fail("create_session", 503, times=1)
    limited = faults.rate_limit("get_server_capabilities", retry_after=3)
    answers = [httpx.post(f"{svc.base_url}/api/v1/create_session", json=SESSION_BODY, headers=headers)
               for _ in range(2)]
    assert [a.status_code for a in answers] == [503, 200]
    assert faults.fired(rule) == 1
    capabilities = httpx.get(f"{svc.base_url}/api/v1/get_server_capabilities", headers=headers)
    assert (capabilities.status_code, capabilities.headers["retry-after"]) == (429, "3")
    assert faults.fired(limited) == 1
