"""Where the credential comes from: api_key=, TINKER_API_KEY, TINKER_CREDENTIAL_CMD, the stored key, in this
order, each winning over the next; and the server's ``credential_default_source`` (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tinker_actors as tinker
from tests.auth.conftest import write_official_file
from tinker_actors.auth.api import get_api_key_info
from tinker_actors.auth.errors import CredentialCommandRequiredError
from tinker_actors.auth.sources import credential_source
from tinker_actors.config import Config, InvalidApiKeyError, MissingApiKeyError
from tinker_actors.local import LocalService

KEYS = {"arg": "tml-arg-key", "env": "tml-env-key", "cmd": "tml-cmd-key", "stored": "tml-stored-key"}


def store_key(home: Path, key: str) -> None:
    write_official_file(home, {"version": 1, "default": "1", "keys": {"1": {"type": "manual", "key": key,
                                                                            "name": "stored"}}})


def whoami(client: tinker.ServiceClient) -> str:
    """The user the service saw on a request of ``client`` (``GET auth/apikey/me``)."""
    return client._context.call(get_api_key_info(client._context.http)).name


def test_each_source_wins_over_the_next_over_real_http(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalService(api_keys=KEYS) as service:
        store_key(home, KEYS["stored"])
        monkeypatch.setenv("TINKER_CREDENTIAL_CMD", f"echo {KEYS['cmd']}")
        monkeypatch.setenv("TINKER_API_KEY", KEYS["env"])
        seen = []
        for remove in (None, "arg", "TINKER_API_KEY", "TINKER_CREDENTIAL_CMD"):
            if remove is not None and remove != "arg":
                monkeypatch.delenv(remove)
            api_key = KEYS["arg"] if remove is None else None
            with tinker.ServiceClient(base_url=service.base_url, api_key=api_key, telemetry_enabled=False) as client:
                seen.append(whoami(client))
        assert seen == ["arg", "env", "cmd", "stored"]
        monkeypatch.setenv("HOME", str(home / "elsewhere"))
        with pytest.raises(MissingApiKeyError, match="TINKER_CREDENTIAL_CMD"):
            tinker.ServiceClient(base_url=service.base_url)


def test_which_source_a_config_names(home: Path) -> None:
    store_key(home, KEYS["stored"])
    env = {"HOME": str(home), "TINKER_API_KEY": KEYS["env"], "TINKER_CREDENTIAL_CMD": "echo tml-x"}
    assert credential_source(Config.from_env(env, api_key=KEYS["arg"])).kind == "argument"
    assert credential_source(Config.from_env(env)).kind == "environment"
    assert credential_source(Config.from_env({**env, "TINKER_API_KEY": ""})).kind == "command"
    only_home = {"HOME": str(home)}
    stored = Config.from_env(only_home)
    assert credential_source(stored).kind == "stored" and stored.api_key_origin == "stored"
    assert Config.from_env({}).api_key is None  # an explicit environment without HOME has no stored key


def test_a_key_of_the_wrong_shape_falls_back_to_the_command_or_is_refused(home: Path) -> None:
    with_command = Config.from_env({"TINKER_API_KEY": "sk-not-tinker", "TINKER_CREDENTIAL_CMD": "echo tml-x"})
    assert credential_source(with_command).kind == "command"
    with pytest.raises(InvalidApiKeyError) as caught:
        credential_source(Config.from_env({"TINKER_API_KEY": "sk-not-tinker"}))
    assert "sk-not-tinker" not in str(caught.value) and "TINKER_API_KEY" in str(caught.value)


def test_an_organisation_that_requires_dynamic_credentials_gets_the_command(home: Path) -> None:
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.e30.sig"
    config = Config.from_env({"TINKER_CREDENTIAL_CMD": "echo tml-x"}, api_key=KEYS["arg"])
    assert credential_source(config, command_required=True).kind == "command"  # even over api_key=
    assert credential_source(config.replace(api_key=jwt_like), command_required=True).kind == "argument"
    with pytest.raises(CredentialCommandRequiredError, match="requires dynamic credentials"):
        credential_source(Config(api_key=KEYS["arg"]), command_required=True)


def test_a_service_client_follows_credential_default_source(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flags = {"pjwt_auth_enabled": True, "credential_default_source": "credential_cmd"}
    with LocalService(api_keys=KEYS, protocol_flags=flags) as service:
        with pytest.raises(CredentialCommandRequiredError):
            tinker.ServiceClient(base_url=service.base_url, api_key=KEYS["arg"], telemetry_enabled=False)
        monkeypatch.setenv("TINKER_CREDENTIAL_CMD", f"echo {KEYS['cmd']}")
        with tinker.ServiceClient(base_url=service.base_url, api_key=KEYS["arg"], telemetry_enabled=False) as client:
            assert whoami(client) == "cmd"  # the exchanged token is the command's user's
