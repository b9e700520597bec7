"""Accounts of the local service: which keys it accepts and which user each one is (over real HTTP)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tinker_actors.local import LocalService
from tinker_actors.local.engine.accounts import Accounts, InvalidKeysError, KeyFileError, load_key_file


def _health(svc: LocalService, key: str) -> int:
    return httpx.get(svc.base_url + "/local/v1/health", headers={"X-API-Key": key}, timeout=10).status_code


def test_any_key_is_the_default_user() -> None:
    accounts = Accounts.from_keys(None)
    assert accounts.open
    first, second = accounts.identify("tml-one"), accounts.identify("tml-two")
    assert first is not None and second is not None
    assert first.user == second.user == "default"
    assert first.key_id != second.key_id
    assert accounts.identify("") is None


def test_one_key_is_the_default_user_and_only_it_is_accepted() -> None:
    accounts = Accounts.from_keys("tml-only")
    identity = accounts.identify("tml-only")
    assert identity is not None and identity.user == "default"
    assert accounts.identify("tml-other") is None


def test_a_list_of_keys_names_its_users_by_position() -> None:
    accounts = Accounts.from_keys(["tml-a", "tml-b", "tml-c"])
    assert accounts.users() == ["default", "user-2", "user-3"]
    assert [accounts.identify(k).user for k in ("tml-a", "tml-b", "tml-c")] == accounts.users()  # type: ignore[union-attr]


@pytest.mark.parametrize("keys", [[""], [], ["eyJhbGciOi"], ["tml-a", "tml-a"], {"a b": "tml-x"}, {"alice": "tml x"},
                                  {"": "tml-x"}])
def test_unusable_keys_are_a_typed_error_that_does_not_show_the_key(keys: object) -> None:
    with pytest.raises(InvalidKeysError) as caught:
        Accounts.from_keys(keys)  # type: ignore[arg-type]
    assert "tml-a" not in str(caught.value) and "tml x" not in str(caught.value)


def test_two_keys_two_users_over_http() -> None:
    with LocalService(zero_work=True, api_keys={"alice": "tml-alice", "bob": "tml-bob"}) as svc:
        assert svc.api_keys == {"alice": "tml-alice", "bob": "tml-bob"}
        assert svc.api_key == "tml-alice"  # the first key: still usable as before
        assert _health(svc, "tml-alice") == 200
        assert _health(svc, "tml-bob") == 200
        assert _health(svc, "tml-carol") == 401
        assert "tml-alice" not in repr(svc) and "tml-alice" not in repr(svc._accounts)


def test_api_key_and_api_keys_together_are_refused() -> None:
    with pytest.raises(InvalidKeysError, match="api_key and api_keys"):
        LocalService(zero_work=True, api_key="tml-a", api_keys=["tml-b"])


def _key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_key_file_names_a_user_per_line(tmp_path: Path) -> None:
    path = _key_file(tmp_path, "# users of the lab\nalice tml-alice-1\n\n   bob   tml-bob-2  \n")
    with LocalService(zero_work=True, api_key_file=path) as svc:
        assert svc.api_keys == {"alice": "tml-alice-1", "bob": "tml-bob-2"}
        assert _health(svc, "tml-bob-2") == 200 and _health(svc, "tml-nobody") == 401


@pytest.mark.parametrize(("text", "mode", "reason"), [
    ("alice tml-secret-1 extra\n", 0o600, "line 1: expected 'user key'"),
    ("alice\n", 0o600, "line 1: expected 'user key'"),
    ("# only a comment\n\n", 0o600, "holds no key"),
    ("alice tml-secret-1\nalice tml-secret-2\n", 0o600, "named twice"),
    ("alice tml-secret-1\nbob tml-secret-1\n", 0o600, "same key"),
    ("alice tml-secret-1\n", 0o644, "chmod 600"),
    ("alice tml-secret-1\n", 0o640, "chmod 600"),
])
def test_key_file_errors_are_typed_and_never_show_a_key(tmp_path: Path, text: str, mode: int, reason: str) -> None:
    path = _key_file(tmp_path, text, mode)
    with pytest.raises(KeyFileError) as caught:
        load_key_file(path)
    assert reason in str(caught.value) and str(path) in str(caught.value)
    assert "tml-secret" not in str(caught.value)
    with pytest.raises(KeyFileError):
        LocalService(zero_work=True, api_key_file=path)


def test_a_missing_key_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_file(tmp_path / "nope.txt")


def test_only_one_source_of_keys(tmp_path: Path) -> None:
    path = _key_file(tmp_path, "alice tml-a\n")
    with pytest.raises(InvalidKeysError, match="api_keys and api_key_file"):
        LocalService(zero_work=True, api_keys=["tml-b"], api_key_file=path)


def _serve(tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "TINKER_LOCAL_API_KEY"}
    return subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.cli", "local", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--zero-work", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_cli_serve_with_repeated_api_keys_and_a_token_lifetime(tmp_path: Path) -> None:
    process = _serve(tmp_path, "--api-key", "tml-cli-first", "--api-key", "tml-cli-second", "--token-lifetime", "7")
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "default, user-2" in banner and "tml-cli" not in banner, banner
        url = banner.split(" on ")[1].split(" ")[0]
        for key, user in (("tml-cli-first", "default"), ("tml-cli-second", "user-2")):
            me = httpx.get(f"{url}/api/v1/auth/apikey/me", headers={"X-API-Key": key}, timeout=10)
            assert me.status_code == 200 and me.json()["name"] == user
        settings = httpx.get(f"{url}/local/v1/auth", headers={"X-API-Key": "tml-cli-first"}, timeout=10).json()
        assert settings["token_lifetime_s"] == 7
        assert httpx.get(f"{url}/local/v1/health", headers={"X-API-Key": "tml-other"}, timeout=10).status_code == 401
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_cli_serve_with_a_key_file_and_a_bad_one(tmp_path: Path) -> None:
    good = _key_file(tmp_path, "alice tml-file-alice\nbob tml-file-bob\n")
    process = _serve(tmp_path, "--api-key-file", str(good))
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "alice, bob" in banner and "tml-file" not in banner, banner
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("alice tml-file-alice trailing\n")
    bad.chmod(0o600)
    refused = _serve(tmp_path, "--api-key-file", str(bad))
    out, err = refused.communicate(timeout=30)
    assert refused.returncode == 2 and "line 1" in err and "tml-file" not in out + err
