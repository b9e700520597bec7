"""Downloading a tokenizer that is not cached, from a Hub stand-in on 127.0.0.1 (tests/tokenizers/fake_hub.py)
reached through HF_ENDPOINT, with offline mode off: only the tokenizer files are fetched, into the cache;
the token goes in the Authorization header and nowhere else; each refusal of the Hub is a typed error."""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from tinker_actors.tokenizers import (
    TokenizerAccessError,
    TokenizerFilesMissingError,
    TokenizerNotCachedError,
    TokenizerRepoNotFoundError,
    get_tokenizer,
)

from .fake_hub import FakeHub, running_hub
from .helpers import CLOSED_PORT_ENDPOINT, FIXTURES

SECRET = "hf_fakeHubSecretToken0123456789"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with running_hub() as fake:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # in case the whole run was started offline
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


def _add(hub: FakeHub, repo_id: str, family: str, **options: object) -> None:
    repo = hub.add_directory(repo_id, FIXTURES / family, **options)
    repo.files["model.safetensors"] = b"\0" * 4096  # weights: must never be fetched
    repo.files["README.md"] = b"# model card"


def test_a_tokenizer_not_cached_is_downloaded_into_the_cache_once(hub: FakeHub, offline_hub: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _add(hub, "Qwen/Qwen3-8B", "chatml-qwen")
    tokenizer = get_tokenizer("Qwen/Qwen3-8B")
    assert tokenizer.eos_token == "<|im_end|>"
    fetched = {record.path.rsplit("/", 1)[-1] for record in hub.requests if "/resolve/" in record.path}
    assert fetched == {"tokenizer.json", "tokenizer_config.json"}  # nothing else of the repository
    snapshots = list((offline_hub / "models--Qwen--Qwen3-8B" / "snapshots").iterdir())
    assert [path.name for path in snapshots] == [hub.repos["Qwen/Qwen3-8B"].commit]
    assert (offline_hub / "models--Qwen--Qwen3-8B" / "refs" / "main").read_text() == snapshots[0].name

    asked = len(hub.requests)
    get_tokenizer("Qwen/Qwen3-8B")
    assert len(hub.requests) == asked  # the process asks the Hub once per repository
    # And the cache now serves it offline, in a fresh process's view too (the resolved-snapshot memo forgotten).
    from tinker_actors.tokenizers import hub as hub_module

    hub_module.forget_snapshots()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT_ENDPOINT)
    assert get_tokenizer("Qwen/Qwen3-8B").eos_token == "<|im_end|>"


def test_chat_template_files_are_fetched_with_the_tokenizer(hub: FakeHub, tmp_path: Path) -> None:
    _add(hub, "fixture-org/files", "chatml-files")
    tokenizer = get_tokenizer("fixture-org/files", cache_dir=tmp_path / "cache-argument")
    assert isinstance(tokenizer.chat_template, dict) and sorted(tokenizer.chat_template) == ["default", "tool_use"]
    assert (tmp_path / "cache-argument" / "models--fixture-org--files").is_dir()


def test_the_token_is_sent_to_the_hub_and_never_shown(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    _add(hub, "fixture-org/private", "llama3", token=SECRET)
    with pytest.raises(TokenizerRepoNotFoundError) as caught:  # without the token, the Hub hides it
        get_tokenizer("fixture-org/private")
    assert "'fixture-org/private'" in str(caught.value) and "hf auth login" in str(caught.value)

    wrong = "hf_wrongTokenForThisRepo98765"
    with pytest.raises(TokenizerRepoNotFoundError) as caught:
        get_tokenizer("fixture-org/private", token=wrong)
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value.__dict__)
    shown += repr(pickle.dumps(caught.value))
    assert wrong not in shown and "hf_" not in shown

    assert get_tokenizer("fixture-org/private", token=SECRET).eos_token == "<|eot_id|>"
    assert any(record.authorization == f"Bearer {SECRET}" for record in hub.requests)

    monkeypatch.setenv("HF_TOKEN", SECRET)  # huggingface_hub's own token lookup
    get_tokenizer("fixture-org/private", revision=hub.repos["fixture-org/private"].commit)


def test_a_gated_repository_says_to_accept_its_conditions(hub: FakeHub) -> None:
    _add(hub, "fixture-org/gated", "llama3", gated=True)
    with pytest.raises(TokenizerAccessError, match=r"gated repository: accept its conditions at http://127\.0\.0\.1"):
        get_tokenizer("fixture-org/gated")


def test_an_unknown_repository_or_revision_online(hub: FakeHub) -> None:
    with pytest.raises(TokenizerRepoNotFoundError, match="no repository 'fixture-org/nothing-here'"):
        get_tokenizer("fixture-org/nothing-here")
    _add(hub, "fixture-org/exists", "chatml-qwen")
    with pytest.raises(TokenizerRepoNotFoundError, match="has no revision 'v2'"):
        get_tokenizer("fixture-org/exists", revision="v2")


def test_a_repository_without_tokenizer_json_is_not_supported(hub: FakeHub) -> None:
    hub.add_directory("fixture-org/remote-code", FIXTURES / "chatml-qwen")
    del hub.repos["fixture-org/remote-code"].files["tokenizer.json"]
    hub.repos["fixture-org/remote-code"].files["tiktoken.model"] = b"..."
    with pytest.raises(TokenizerFilesMissingError, match="trust_remote_code"):
        get_tokenizer("fixture-org/remote-code")


def test_an_unreachable_hub_is_a_retryable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(TokenizerNotCachedError) as caught:
        get_tokenizer("fixture-org/anything")
    assert caught.value.retryable
    assert "could not reach the Hugging Face Hub (http://127.0.0.1:9)" in str(caught.value)
