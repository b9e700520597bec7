"""TINKER_CREDENTIAL_CMD: success, and each way it fails with a clear typed error that shows no secret."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest

import tinker_actors as tinker
from tinker_actors.auth.command import run_credential_command
from tinker_actors.auth.errors import CredentialCommandError, CredentialError
from tinker_actors.config import Config
from tinker_actors.errors import TinkerError
from tinker_actors.local import LocalService

SECRET_IN_COMMAND = "cmd-secret-7f3a"  # a command line may hold a secret of its own: never shown


def run(command: str, timeout: float = 10.0) -> str:
    return asyncio.run(run_credential_command(command, timeout))


def failure(command: str, timeout: float = 10.0) -> CredentialCommandError:
    with pytest.raises(CredentialCommandError) as caught:
        run(command, timeout)
    error = caught.value
    assert "TINKER_CREDENTIAL_CMD" in str(error)
    assert SECRET_IN_COMMAND not in str(error) and SECRET_IN_COMMAND not in repr(error)
    return error


def test_the_command_s_output_is_the_credential() -> None:
    assert run(f"X={SECRET_IN_COMMAND}; echo '  tml-from-command  '") == "tml-from-command"
    token = jwt.encode({"sub": "ada", "exp": int(time.time()) + 600}, "k" * 32, algorithm="HS256")
    assert run(f"echo {token}") == token


def test_a_non_zero_exit_names_the_status_and_shows_stderr_without_credential_shaped_words() -> None:
    error = failure(f"X={SECRET_IN_COMMAND}; echo tml-printed-then-failed; "
                    "echo 'vault: token tml-leaked-on-stderr expired, eyJhbGciOi.x.y too' >&2; exit 3")
    message = str(error)
    assert "exited with status 3" in message and "vault: token" in message and "expired" in message
    for secret in ("tml-printed-then-failed", "tml-leaked-on-stderr", "eyJhbGciOi"):
        assert secret not in message


def test_a_command_past_its_timeout_is_stopped_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    started = time.monotonic()
    error = failure(f"(sleep 1.5; touch {marker}) & sleep 30", timeout=0.5)
    assert time.monotonic() - started < 5.0
    assert "did not finish within 0.5 s" in str(error) and "credential_cmd_timeout" in str(error)
    time.sleep(2.0)
    assert not marker.exists()  # the whole process group was killed, not only the shell


@pytest.mark.parametrize(("command", "expected"), [
    ("true", "printed nothing"),
    ("echo hello-not-a-key", "not a Tinker credential"),
    ("echo tml-one tml-two", "more than one word"),
    ("echo eyJnot-a-jwt", "malformed JWT"),
])
def test_empty_or_malformed_output_is_refused_without_quoting_it(command: str, expected: str) -> None:
    message = str(failure(f"X={SECRET_IN_COMMAND}; {command}"))
    assert expected in message
    assert "hello-not-a-key" not in message and "tml-one" not in message and "eyJnot" not in message


def test_an_expired_jwt_is_refused() -> None:
    token = jwt.encode({"sub": "ada", "exp": int(time.time()) - 5}, "k" * 32, algorithm="HS256")
    message = str(failure(f"echo {token}"))
    assert "expired JWT" in message and token not in message


def test_errors_are_typed() -> None:
    assert issubclass(CredentialCommandError, CredentialError) and issubclass(CredentialError, TinkerError)


def test_a_service_client_sends_what_the_command_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalService(api_keys={"ada": "tml-ada-key"}) as service:
        monkeypatch.setenv("TINKER_CREDENTIAL_CMD", f"X={SECRET_IN_COMMAND}; echo tml-ada-key")
        with tinker.ServiceClient(base_url=service.base_url, telemetry_enabled=False) as client:
            assert client.get_server_capabilities().supported_models
        assert service.auth_counts()["keys_accepted"] >= 2  # client/config and the capabilities, with its key


@pytest.mark.parametrize("command", ["exit 1", "sleep 5", "true"])
def test_a_service_client_whose_command_fails_raises_the_typed_error_at_once(
        monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    with LocalService(api_keys={"ada": "tml-ada-key"}) as service:
        monkeypatch.setenv("TINKER_CREDENTIAL_CMD", f"X={SECRET_IN_COMMAND}; {command}")
        config = Config.from_env(base_url=service.base_url, telemetry_enabled=False)
        config = config.replace(auth=config.auth.model_copy(update={"credential_cmd_timeout": 0.5}))
        started = time.monotonic()
        with pytest.raises(CredentialCommandError) as caught:
            tinker.ServiceClient(config=config)
        assert time.monotonic() - started < 10.0
        assert SECRET_IN_COMMAND not in str(caught.value)
        assert service.auth_counts()["keys_accepted"] == 0  # nothing was sent


def test_sampling_with_only_a_credential_command(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalService(api_keys={"ada": "tml-ada-key"}, long_poll_s=0.5) as service:
        monkeypatch.setenv("TINKER_CREDENTIAL_CMD", "echo tml-ada-key")
        with tinker.ServiceClient(base_url=service.base_url, telemetry_enabled=False) as client:
            sampler = client.create_sampling_client(base_model="tiny-byte").result()
            result = sampler.sample(tinker.ModelInput.from_ints([1, 2, 3]), 1,
                                    tinker.SamplingParams(max_tokens=3)).result(30)
            assert result.sequences
