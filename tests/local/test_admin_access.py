"""Who may call the local service's admin endpoints (``/local/v1/...``), over real HTTP on 127.0.0.1.

With several keys only the admin may (user ``"default"``, else the first user): another user gets 403 and
nothing changes. With no key or one key the one user is the admin, as before. Health stays every user's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tinker_actors.cli import main
from tinker_actors.local import LocalService

ADMIN_KEY, OTHER_KEY = "tml-admin-key", "tml-second-key"

# Every admin endpoint but health (method, path, JSON body): what another user must not call.
ADMIN_CALLS: list[tuple[str, str, Any]] = [
    ("GET", "/local/v1/faults", None),
    ("POST", "/local/v1/faults", {"endpoint": "*", "status": 503}),
    ("DELETE", "/local/v1/faults", None),
    ("DELETE", "/local/v1/faults/1", None),
    ("GET", "/local/v1/protocol", None),
    ("PATCH", "/local/v1/protocol", {"flags": {"sample_max_concurrent_requests": 7}}),
    ("PUT", "/local/v1/protocol", {"flags": {"sample_max_concurrent_requests": 7}}),
    ("DELETE", "/local/v1/protocol", None),
    ("GET", "/local/v1/telemetry", None),
    ("GET", "/local/v1/requests", None),
    ("GET", "/local/v1/auth", None),
    ("PATCH", "/local/v1/auth", {"token_lifetime_s": 1}),
    ("GET", "/local/v1/billing", None),
    ("GET", "/local/v1/billing/events", None),
    ("GET", "/local/v1/billing/users/default", None),
    ("PUT", "/local/v1/billing/users/user-2", {"budget": None}),
    ("POST", "/local/v1/billing/users/user-2/top-up", {"tokens": 1000}),
    ("GET", "/local/v1/models", None),
    ("POST", "/local/v1/models/some-model/drop", None),
    ("POST", "/local/v1/models/some-model/corrupt", None),
    ("POST", "/local/v1/restart", None),
]


@pytest.fixture
def svc() -> Iterator[LocalService]:
    with LocalService(zero_work=True, api_keys=[ADMIN_KEY, OTHER_KEY], billing={"*": 10}) as service:
        yield service


@pytest.fixture
def http(svc: LocalService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.base_url, timeout=10) as client:
        yield client


def _call(http: httpx.Client, credential: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return http.request(method, path, headers={"X-API-Key": credential}, json=body)


def _token(http: httpx.Client, key: str) -> str:
    response = http.post("/api/v1/auth/token", headers={"X-API-Key": key}, json={})
    assert response.status_code == 200, response.text
    token: str = response.json()["jwt"]
    return token


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS, ids=[f"{m} {p}" for m, p, _ in ADMIN_CALLS])
def test_another_user_gets_403_on_every_admin_endpoint(http: httpx.Client, method: str, path: str,
                                                       body: Any) -> None:
    refused = _call(http, OTHER_KEY, method, path, body)
    assert refused.status_code == 403, refused.text
    message = refused.json()["error"]
    assert "admin" in message and "'default'" in message
    assert ADMIN_KEY not in refused.text and OTHER_KEY not in refused.text


def test_another_users_token_is_refused_too(http: httpx.Client) -> None:
    token = _token(http, OTHER_KEY)
    assert _call(http, token, "POST", "/local/v1/billing/users/user-2/top-up", {"tokens": 5}).status_code == 403
    assert _call(http, token, "GET", "/local/v1/billing/events").status_code == 403


def test_refused_calls_change_nothing(svc: LocalService, http: httpx.Client) -> None:
    svc.billing.set_budget("user-2", 0)
    for method, path, body in ADMIN_CALLS:
        assert _call(http, OTHER_KEY, method, path, body).status_code == 403
    assert svc.billing.account("user-2").budget == 0  # no top-up, no unlimited budget
    assert svc.faults.list_rules() == []  # no fault rule injected into everyone's traffic
    assert svc.protocol.flags() == {}  # no protocol flag changed
    assert svc.token_lifetime == 3600  # no token lifetime changed
    assert svc.restarts == 0  # not restarted
    assert _call(http, OTHER_KEY, "GET", "/local/v1/health").status_code == 200  # still serving


def test_the_admin_may_with_its_key_or_a_token_issued_for_it(svc: LocalService, http: httpx.Client) -> None:
    for credential in (ADMIN_KEY, _token(http, ADMIN_KEY)):
        topped = _call(http, credential, "POST", "/local/v1/billing/users/user-2/top-up", {"tokens": 5})
        assert topped.status_code == 200, topped.text
        assert _call(http, credential, "GET", "/local/v1/billing/events").status_code == 200
        added = _call(http, credential, "POST", "/local/v1/faults", {"endpoint": "asample", "status": 503})
        assert added.status_code == 201, added.text
        assert _call(http, credential, "DELETE", "/local/v1/faults").status_code == 200
        flags = {"flags": {"sample_max_concurrent_requests": 7}}
        assert _call(http, credential, "PATCH", "/local/v1/protocol", flags).status_code == 200
        assert _call(http, credential, "PATCH", "/local/v1/auth", {"token_lifetime_s": 60}).status_code == 200
        assert _call(http, credential, "GET", "/local/v1/requests").status_code == 200
        assert _call(http, credential, "GET", "/local/v1/telemetry").status_code == 200
    assert svc.billing.account("user-2").budget == 20
    assert svc.protocol.flags() == {"sample_max_concurrent_requests": 7}
    assert svc.token_lifetime == 60


def test_health_stays_every_users(http: httpx.Client) -> None:
    assert _call(http, OTHER_KEY, "GET", "/local/v1/health").status_code == 200
    assert _call(http, "tml-unknown", "GET", "/local/v1/health").status_code == 401


def test_without_a_default_user_the_first_user_is_the_admin() -> None:
    with LocalService(zero_work=True, api_keys={"alice": "tml-alice", "bob": "tml-bob"}) as svc, \
            httpx.Client(base_url=svc.base_url, timeout=10) as http:
        assert svc.api_key == "tml-alice"  # the key the service hands its owner is the admin's
        assert _call(http, "tml-alice", "GET", "/local/v1/billing").status_code == 200
        refused = _call(http, "tml-bob", "GET", "/local/v1/billing")
        assert refused.status_code == 403 and "'alice'" in refused.json()["error"]


def test_a_user_named_default_is_the_admin_wherever_it_is_listed() -> None:
    with LocalService(zero_work=True, api_keys={"alice": "tml-alice", "default": "tml-owner"}) as svc, \
            httpx.Client(base_url=svc.base_url, timeout=10) as http:
        assert svc.api_key == "tml-owner"
        assert _call(http, "tml-owner", "GET", "/local/v1/faults").status_code == 200
        assert _call(http, "tml-alice", "GET", "/local/v1/faults").status_code == 403


@pytest.mark.parametrize("key", [None, "tml-only"], ids=["any key", "one key"])
def test_single_user_mode_is_unchanged(key: str | None) -> None:
    with LocalService(zero_work=True, api_key=key) as svc, httpx.Client(base_url=svc.base_url, timeout=10) as http:
        credentials = [svc.api_key, _token(http, svc.api_key)] + (["tml-anything"] if key is None else [])
        for credential in credentials:
            for method, path, body in ADMIN_CALLS:
                if path in ("/local/v1/restart", "/local/v1/auth") and method != "GET":
                    continue  # allowed too, but would restart the service / shorten its tokens mid-test
                assert _call(http, credential, method, path, body).status_code != 403, (method, path)
            assert _call(http, credential, "PATCH", "/local/v1/auth", {"token_lifetime_s": 3600}).status_code == 200


def test_the_cli_admin_commands_use_the_key_they_are_given(svc: LocalService,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--url", svc.base_url, "--api-key"]
    assert main(["local", "billing", "top-up", *common, OTHER_KEY, "user-2", "100"]) == 1
    refused = capsys.readouterr()
    assert "HTTP 403" in refused.err and OTHER_KEY not in refused.err + refused.out
    assert svc.billing.account("user-2").budget == 10
    assert main(["local", "billing", "top-up", *common, ADMIN_KEY, "user-2", "100"]) == 0
    assert svc.billing.account("user-2").budget == 110
    assert main(["local", "fault", "list", *common, OTHER_KEY]) == 1
    assert main(["local", "fault", "list", *common, ADMIN_KEY]) == 0


def test_cli_serve_with_a_key_file_names_its_admin_and_the_cli_uses_its_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("alice tml-file-alice\nbob tml-file-bob\n")
    keys.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if key not in ("TINKER_LOCAL_API_KEY", "TINKER_API_KEY")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.cli", "local", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--zero-work", "--api-key-file", str(keys)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "alice, bob; admin: alice" in banner and "tml-file" not in banner, banner
        url = banner.split(" on ")[1].split(" ")[0]
        for key, code in (("tml-file-bob", 1), ("tml-file-alice", 0)):
            shown = subprocess.run([sys.executable, "-m", "tinker_actors.cli", "local", "protocol", "show", "--url",
                                    url, "--api-key", key], capture_output=True, text=True, env=env, timeout=60)
            assert shown.returncode == code, shown.stderr
            assert ("HTTP 403" in shown.stderr) == (code == 1) and key not in shown.stdout + shown.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
