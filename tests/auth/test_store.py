"""The stored-credentials file: the official CLI's format, both ways, written safely (issue 11)."""

from __future__ import annotations

import io
import json
import pickle
import stat
from pathlib import Path

import pytest

from tests.auth.conftest import credentials_path, run_official, write_official_file
from tinker_actors.auth.errors import StoredCredentialsError
from tinker_actors.auth.store import CredentialsFile, KeyDetails, StoredKey
from tinker_actors.cli import main
from tinker_actors.config import Config, MissingApiKeyError
from tinker_actors.local import LocalService

KEY = "tml-stored-0123456789abcdef"
DETAILS = {"org_details": {"name": "Acme"}, "user_details": {"email": "ada@acme.test"}}


def test_a_stored_key_round_trips_in_the_official_format(home: Path) -> None:
    store = CredentialsFile()
    assert store.path == credentials_path(home)
    store.store("42", StoredKey(type="manual", key=KEY, name="laptop", details=KeyDetails.model_validate(DETAILS)))

    path = credentials_path(home)
    assert json.loads(path.read_text()) == {  # the official CLI's shape: no null fields, key in clear
        "version": 1, "default": "42",
        "keys": {"42": {"type": "manual", "key": KEY, "name": "laptop", "details": DETAILS}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]  # no temporary file left
    entry = store.default_entry()
    assert entry is not None and entry[0] == "42" and entry[1].key.get_secret_value() == KEY

    assert store.remove("42").name == "laptop"
    assert json.loads(path.read_text()) == {"version": 1, "keys": {}}
    assert store.default_entry() is None


def test_a_file_written_by_hand_in_the_official_format_is_the_default_credential(home: Path) -> None:
    write_official_file(home, {
        "version": 1, "default": "7",
        "keys": {"7": {"type": "generated", "key": KEY, "name": "cli-key", "details": DETAILS,
                       "minted_by": "an older CLI"},
                 "8": {"type": "manual", "key": "tml-other-key", "name": "old"}}})
    config = Config.from_env()
    assert config.api_key is not None and config.api_key.get_secret_value() == KEY
    assert config.api_key_origin == "stored"

    store = CredentialsFile()
    store.remove("8")  # a rewrite keeps what this SDK does not know
    assert json.loads(credentials_path(home).read_text())["keys"]["7"]["minted_by"] == "an older CLI"


def test_no_default_no_key_and_a_default_naming_a_missing_key_count_as_none(home: Path) -> None:
    with pytest.raises(MissingApiKeyError):
        Config.from_env().require_api_key()
    write_official_file(home, {"version": 1, "default": "9", "keys": {"7": {"key": KEY, "name": "x"}}})
    assert Config.from_env().api_key is None
    assert CredentialsFile().default_entry() is None


@pytest.mark.parametrize("content", [
    '{"version": 2, "keys": {"1": {"key": "tml-stored-0123456789abcdef", "name": "x"}}}',
    '{"version": 1, "default": "1", "keys": {"1": {"type": "robot", "key": "tml-stored-0123456789abcdef"}}}',
    'tml-stored-0123456789abcdef',
])
def test_a_file_that_is_not_a_credentials_file_is_a_typed_error_that_quotes_nothing(home: Path,
                                                                                     content: str) -> None:
    path = credentials_path(home)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(StoredCredentialsError) as caught:
        Config.from_env()
    assert str(path) in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


def test_stored_keys_never_show_or_pickle_the_key() -> None:
    record = StoredKey(key=KEY, name="laptop")
    assert KEY not in repr(record) and KEY not in str(record) and KEY not in record.model_dump_json()
    with pytest.raises(TypeError):
        pickle.dumps(record)


def test_a_failed_write_is_a_typed_error_and_leaves_no_temporary_file(home: Path) -> None:
    path = credentials_path(home)
    (path / "in-the-way").mkdir(parents=True)  # the file's name is taken by a directory: the rename fails
    with pytest.raises(StoredCredentialsError) as caught:
        CredentialsFile().store("1", StoredKey(key=KEY, name="first"))
    assert KEY not in str(caught.value)
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]


def test_a_key_stored_by_the_official_cli_is_used_here_and_ours_by_it(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalService(api_keys={"ada": "tml-ada-key", "bob": "tml-bob-key"}) as service:
        done = run_official(["-m", "tinker.cli", "auth", "login"], home=home, base_url=service.base_url,
                            stdin="tml-ada-key\n")
        assert done.returncode == 0, done.stderr
        stored = json.loads(credentials_path(home).read_text())
        assert [record["key"] for record in stored["keys"].values()] == ["tml-ada-key"]
        assert stat.S_IMODE(credentials_path(home).stat().st_mode) == 0o600

        # Ours reads the official CLI's file: the stored key is the credential, and whoami says whose it is.
        assert main(["auth", "whoami", "--base-url", service.base_url, "-f", "json"]) == 0
        whoami = json.loads(capsys.readouterr().out)
        assert whoami["name"] == "ada" and "stored" in whoami["source"]

        # The official CLI reads ours: log out there, log in here with another key, and the official SDK
        # finds ours as its default credential.
        assert run_official(["-m", "tinker.cli", "auth", "logout"], home=home, base_url=service.base_url
                            ).returncode == 0
        monkeypatch.setattr("sys.stdin", io.StringIO("tml-bob-key\n"))  # not a terminal: one line is read
        assert main(["auth", "login", "--base-url", service.base_url]) == 0
        capsys.readouterr()
        done = run_official(["-c", "from tinker.lib.credentials import JsonCredentialStore, default_credentials_path;"
                                   "r = JsonCredentialStore(default_credentials_path()).get_default_key();"
                                   "print(r.type, r.name, r.key == 'tml-bob-key', r.details.user_details.email)"],
                            home=home, base_url=service.base_url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["manual", "bob", "True", "bob@localhost"]

