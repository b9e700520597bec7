"""``tinker-actors auth login | logout | status | whoami`` against the local service, HOME in a tmp dir."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import credentials_path, write_official_file
from tinker_actors.cli import main
from tinker_actors.local import LocalService

KEYS = {"ada": "tml-ada-cli-key", "bob": "tml-bob-cli-key"}


@pytest.fixture
def service() -> Iterator[LocalService]:
    with LocalService(api_keys=KEYS) as svc:
        yield svc


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    for key in KEYS.values():
        assert key not in out and key not in err  # no command ever prints a credential
    return code, out, err


def test_login_checks_the_key_stores_it_and_refuses_a_second_login(
        home: Path, service: LocalService, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(KEYS["ada"] + "\n"))
    code, out, _ = cli(["auth", "login", "--base-url", service.base_url], capsys)
    assert code == 0
    assert out.strip() == ("Logged in as ada@localhost (tinker-actors local service). "
                           "Stored API key 'ada' as the default credential.")
    stored = json.loads(credentials_path(home).read_text())
    key_id = stored["default"]
    assert stored["keys"][key_id]["key"] == KEYS["ada"] and stored["keys"][key_id]["type"] == "manual"
    assert stat.S_IMODE(credentials_path(home).stat().st_mode) == 0o600

    monkeypatch.setattr("sys.stdin", io.StringIO(KEYS["bob"] + "\n"))
    code, _, err = cli(["auth", "login", "--base-url", service.base_url], capsys)
    assert code == 1 and "Already logged in" in err and "logout" in err


@pytest.mark.parametrize(("typed", "expected"), [("tml-not-a-user-key", "Could not validate the API key"),
                                                 ("sk-wrong-shape", "not a Tinker API key"),
                                                 ("", "must not be empty")])
def test_login_with_a_bad_key_stores_nothing(home: Path, service: LocalService, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, typed: str, expected: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(typed + "\n"))
    code, _, err = cli(["auth", "login", "--base-url", service.base_url], capsys)
    assert code == 1 and expected in err
    assert typed == "" or typed not in err
    assert not credentials_path(home).exists()


def test_status_and_whoami_say_where_the_credential_comes_from(
        home: Path, service: LocalService, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(["auth", "status", "--base-url", service.base_url], capsys)
    assert code == 1 and "Credentials available: no" in out

    monkeypatch.setenv("TINKER_CREDENTIAL_CMD", f"echo {KEYS['bob']}")
    code, out, _ = cli(["auth", "status", "--base-url", service.base_url, "-f", "json"], capsys)
    status = json.loads(out)
    assert code == 0 and status["source"] == "TINKER_CREDENTIAL_CMD" and status["accessible"] is True
    code, out, _ = cli(["auth", "whoami", "--base-url", service.base_url], capsys)
    assert code == 0 and "API key name: bob" in out and "Email: bob@localhost" in out

    monkeypatch.setenv("TINKER_API_KEY", KEYS["ada"])
    code, out, _ = cli(["auth", "status", "--base-url", service.base_url], capsys)
    assert code == 0 and "Credential source: TINKER_API_KEY" in out and "Tinker accessible: yes" in out
    code, out, _ = cli(["auth", "whoami", "--base-url", service.base_url, "-f", "json"], capsys)
    assert json.loads(out)["name"] == "ada"

    monkeypatch.setenv("TINKER_API_KEY", "tml-unknown-key")  # a key the service refuses
    code, out, _ = cli(["auth", "status", "--base-url", service.base_url], capsys)
    assert code == 1 and "Tinker accessible: no" in out and "tml-unknown-key" not in out


def test_logout_removes_a_manual_key_and_deletes_a_generated_one_on_the_server(
        home: Path, service: LocalService, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["auth", "logout"], capsys)
    assert code == 1 and "No default credential is stored" in err

    details = {"org_details": {"name": "local"}, "user_details": {"email": "ada@localhost"}}
    write_official_file(home, {"version": 1, "default": "1", "keys": {
        "1": {"type": "manual", "key": KEYS["ada"], "name": "ada", "details": details},
        "2": {"type": "generated", "key": KEYS["bob"], "name": "cli-bob", "details": details}}})
    code, out, _ = cli(["auth", "logout", "--base-url", service.base_url], capsys)
    assert code == 0 and "Removed credential 'ada'. The API key is still active" in out
    assert json.loads(credentials_path(home).read_text())["keys"].keys() == {"2"}
    assert httpx.get(f"{service.base_url}/api/v1/auth/apikey/me", headers={"X-API-Key": KEYS["ada"]}).status_code \
        == 200  # a manual key stays valid on the server

    stored = json.loads(credentials_path(home).read_text())
    stored["default"] = "2"
    write_official_file(home, stored)
    code, out, _ = cli(["auth", "logout", "--base-url", service.base_url, "-f", "json"], capsys)
    assert code == 0 and json.loads(out)["deleted_on_server"] is True
    assert json.loads(credentials_path(home).read_text()) == {"version": 1, "keys": {}}
    assert httpx.get(f"{service.base_url}/api/v1/auth/apikey/me", headers={"X-API-Key": KEYS["bob"]}).status_code \
        == 401  # a generated key is revoked
