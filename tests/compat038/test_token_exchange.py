"""The official tinker==0.38.0 SDK against the local service with token exchange switched on.

``client/config`` answers ``pjwt_auth_enabled: true`` and tokens live 3 seconds, so the SDK exchanges
its key at ``POST /api/v1/auth/token`` and sends JWTs, fetching fresh ones during the run (it refreshes
a token with less than a minute left before each request). The whole official loop
(``official_loop.py``) must pass unchanged; the service's own counts say what the SDK sent. Then
``official_auth.py`` runs the SDK's auth pieces: the official CLI's ``auth/apikey/me`` calls, how the
SDK reads the service's tokens, the ``invalid_token`` signal and its replay, and a revoked key.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.compat038.conftest import (
    HERE,
    RUN_TIMEOUT_S,
    ScriptRun,
    official_env,
    official_python,
    run_official,
    service_with_flags,
)
from tests.wire.conftest import REPO
from tinker_actors.local import FaultRule

TOKEN_LIFETIME_S = 3
KEYS = {"default": "tml-compat038-first", "second": "tml-compat038-second"}
INVALID_TOKEN_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True)
class _JwtRun:
    run: ScriptRun
    auth: dict[str, int]  # the service's auth_counts() after the run
    endpoints: dict[str, Any]  # per-endpoint request counts
    failed: list[tuple[str, str, int | None]]  # requests answered with an error, or dropped


@pytest.fixture(scope="module")
def jwt_loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_JwtRun]:
    official_python()
    with service_with_flags({"pjwt_auth_enabled": True}, api_keys=KEYS, token_lifetime=TOKEN_LIFETIME_S) as svc:
        with svc.wire_log.capture() as capture:
            run = run_official("official_loop.py", svc, tmp_path_factory.mktemp("official038-jwt"))
        failed = sorted({(r.method, r.path, r.status) for r in capture.snapshot()
                         if r.status is None or r.status >= 400}, key=str)
        yield _JwtRun(run, svc.auth_counts(), svc.request_counts()["endpoints"], failed)


def _received(run: _JwtRun, endpoint: str) -> int:
    counts: dict[str, int] = run.endpoints.get(endpoint, {})
    return counts.get("received", 0)


def test_the_official_loop_passes_with_token_exchange(jwt_loop: _JwtRun) -> None:
    failed = jwt_loop.run.failed_steps()
    assert not failed, "steps of the official 0.38 loop failed with token exchange on:\n" + "\n".join(
        f"--- {name}\n{error}" for name, error in failed.items())
    losses = jwt_loop.run.values["losses"]
    assert losses[-1] < losses[0] * 0.8, losses
    assert jwt_loop.failed == [], f"requests of the official SDK that failed: {jwt_loop.failed}"
    warnings = [line for line in jwt_loop.run.summary["warnings"]
                if "DEPRECATED: TrainingClient.load_state*()" not in line]
    assert warnings == []


def test_the_sdk_exchanged_its_key_and_sent_tokens(jwt_loop: _JwtRun) -> None:
    """Tokens were fetched again during the run (each lives 3 s and the SDK replaces a token with less than a
    minute left before a request: every exchange after the first replaced a token), and everything but
    client/config and the exchanges themselves carried a token, not the key."""
    exchanges = _received(jwt_loop, "auth_token")
    assert exchanges > 1 and jwt_loop.auth["tokens_issued"] == exchanges
    assert jwt_loop.auth["keys_accepted"] == exchanges + _received(jwt_loop, "client_config")
    assert jwt_loop.auth["tokens_accepted"] >= _received(jwt_loop, "forward_backward") \
        + _received(jwt_loop, "retrieve_future") + _received(jwt_loop, "asample")
    assert jwt_loop.auth["refused"] == 0 and jwt_loop.auth["tokens_refused"] == 0


def _run_auth_script(home: Path) -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
    python = official_python()
    with service_with_flags({"pjwt_auth_enabled": True}, api_keys=KEYS, token_lifetime=TOKEN_LIFETIME_S) as svc:
        # one invalid-token refusal of the next capabilities request: the SDK must replay it with a new token
        svc.faults.add(FaultRule(endpoint="get_server_capabilities", status=401, headers=INVALID_TOKEN_HEADERS,
                                 times=1))
        env = {**official_env(svc, home), "TINKER_SECOND_KEY": KEYS["second"]}
        done = subprocess.run([str(python), str(HERE / "official_auth.py")], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
        lines = done.stdout.strip().splitlines()
        assert done.returncode == 0 and lines, f"official_auth.py: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return json.loads(lines[-1]), svc.auth_counts(), svc.request_counts()["endpoints"]


def test_the_official_auth_pieces_understand_the_service(tmp_path: Path) -> None:
    summary, auth, endpoints = _run_auth_script(tmp_path)
    failed = {name: error for name, error in summary["steps"].items() if error != "ok"}
    assert not failed, "\n".join(f"--- {name}\n{error}" for name, error in failed.items())
    values = summary["values"]
    me = values["apikey_me"]
    assert me["names"] == ["default", "second"] and len(set(me["key_ids"])) == 2
    exchange = values["exchange"]
    assert exchange["sub"] == "default"
    assert TOKEN_LIFETIME_S <= exchange["lifetime"] <= TOKEN_LIFETIME_S + 1
    assert 0.4 * TOKEN_LIFETIME_S <= exchange["refresh_delay"] <= 0.6 * (TOKEN_LIFETIME_S + 1)
    assert values["expired_token_signal"] == {"status": 401, "invalid_token": True}
    assert "tiny-byte" in values["replay_after_invalid_token"]
    capabilities = endpoints["get_server_capabilities"]
    assert capabilities["faulted"] == 1 and capabilities["received"] == 2  # refused once, replayed (the
    # expired probe was refused on its credential, before it counted)
    revoked = values["revoke_second_key"]
    assert "HTTP 401" in revoked["refused"] and KEYS["second"] not in revoked["refused"]
    assert revoked["sdk_error"]  # a new client with the revoked key fails instead of working
    assert auth["tokens_refused"] >= 1 and auth["refused"] >= 2
