"""get_tokenizer for real base models, read from a Hugging Face cache laid out by the test, offline."""

from __future__ import annotations

import pickle
import traceback
from pathlib import Path

import pytest

import tinker_actors as tinker
from tinker_actors.tokenizer import get_tokenizer as get_tokenizer_from_old_path
from tinker_actors.tokenizers import (
    TokenizerFilesMissingError,
    TokenizerNotCachedError,
    TokenizerUnavailableError,
    get_tokenizer,
    tokenizer_repo_for,
)

from .helpers import COMMIT, lay_out_repo

HELLO = "The keeper climbed the tower."


def test_a_cached_base_model_loads_offline_with_its_special_tokens_and_template(offline_hub: Path) -> None:
    lay_out_repo(offline_hub, "Qwen/Qwen3-8B", "chatml-qwen")
    tokenizer = get_tokenizer("Qwen/Qwen3-8B")
    assert tokenizer.name_or_path == "Qwen/Qwen3-8B"
    assert tokenizer.decode(tokenizer.encode(HELLO)) == HELLO
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None and tokenizer.bos_token_id is None
    assert tokenizer.eos_token_id == tokenizer.tokenizer.token_to_id("<|im_end|>")
    assert isinstance(tokenizer.chat_template, str) and "<|im_start|>" in tokenizer.chat_template
    assert get_tokenizer_from_old_path("Qwen/Qwen3-8B").tokenizer is tokenizer.tokenizer  # loaded once


def test_llama_3_models_use_the_ungated_tokenizer_repository_as_the_official_sdk(offline_hub: Path) -> None:
    lay_out_repo(offline_hub, "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer", "llama3")
    tokenizer = get_tokenizer("meta-llama/Llama-3.1-8B-Instruct")
    assert tokenizer.name_or_path == "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
    assert tokenizer.bos_token == "<|begin_of_text|>" and tokenizer.eos_token == "<|eot_id|>"
    ids = tokenizer.encode("hello")
    assert ids[0] == tokenizer.bos_token_id  # the tokenizer's post-processor adds bos ...
    assert tokenizer.encode("hello", add_special_tokens=False) == ids[1:]  # ... unless told not to


def test_the_official_sdk_naming_rules() -> None:
    assert tokenizer_repo_for("meta-llama/Llama-3.3-70B-Instruct") == (
        "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer")
    assert tokenizer_repo_for("Qwen/Qwen3-30B-A3B/fp8") == "Qwen/Qwen3-30B-A3B"  # org/model/variant
    assert tokenizer_repo_for("Qwen/Qwen3-8B:deployment-tag") == "Qwen/Qwen3-8B"
    # The server's tokenizer id wins over the model name, and is used as it stands (its :tag dropped).
    assert tokenizer_repo_for("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B:v2") == "meta-llama/Llama-3.1-8B"
    for unpublished in ("TML/model-1", "thinkingmachines/foo"):
        with pytest.raises(tinker.InvalidInputError, match="no public tokenizer"):
            tokenizer_repo_for(unpublished)
    for bad in ("a/b/c/d", "not a repo", "org/../etc", ""):
        with pytest.raises(tinker.InvalidInputError):
            tokenizer_repo_for(bad)


def test_the_server_tokenizer_id_takes_precedence(offline_hub: Path) -> None:
    lay_out_repo(offline_hub, "fixture-org/served-tokenizer", "hermes-multi")
    tokenizer = get_tokenizer("some-org/model-without-cache", tokenizer_id="fixture-org/served-tokenizer:abc")
    assert tokenizer.name_or_path == "fixture-org/served-tokenizer"


def test_a_missing_repository_offline_is_a_typed_error_naming_it_and_what_to_do(offline_hub: Path) -> None:
    with pytest.raises(TokenizerNotCachedError) as caught:
        get_tokenizer("some-org/not-in-the-cache")
    error = caught.value
    assert isinstance(error, TokenizerUnavailableError) and isinstance(error, tinker.InvalidInputError)
    assert isinstance(error, OSError)  # what transformers raises there: ported `except OSError` still works
    assert error.tokenizer_id == "some-org/not-in-the-cache" and not error.retryable
    message = str(error)
    assert "'some-org/not-in-the-cache'" in message and str(offline_hub) in message
    assert "HF_HUB_OFFLINE=1" in message and "hf download some-org/not-in-the-cache" in message
    assert error.__cause__ is None and error.__suppress_context__  # no stack of huggingface_hub exceptions
    assert pickle.loads(pickle.dumps(error)).tokenizer_id == "some-org/not-in-the-cache"


def test_local_files_only_is_offline_even_when_the_environment_is_not(
        offline_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(TokenizerNotCachedError, match="local_files_only=True"):
        get_tokenizer("some-org/not-in-the-cache", local_files_only=True)


def test_a_cached_repository_without_its_tokenizer_json_offline_says_so(offline_hub: Path) -> None:
    lay_out_repo(offline_hub, "fixture-org/config-only", "chatml-qwen", only=("tokenizer_config.json",))
    with pytest.raises(TokenizerNotCachedError, match=r"not its tokenizer\.json"):
        get_tokenizer("fixture-org/config-only")


def test_the_cache_directory_comes_from_the_argument_then_hf_hub_cache_then_hf_home(
        offline_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    lay_out_repo(elsewhere, "fixture-org/argument", "llama3")
    assert get_tokenizer("fixture-org/argument", cache_dir=elsewhere).eos_token == "<|eot_id|>"
    assert get_tokenizer("fixture-org/argument", cache_dir=str(elsewhere)).eos_token == "<|eot_id|>"
    with pytest.raises(TokenizerNotCachedError):  # not in HF_HUB_CACHE
        get_tokenizer("fixture-org/argument")

    home = tmp_path / "home"
    lay_out_repo(home / "hub", "fixture-org/in-home", "strict-alternation")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(home))
    assert get_tokenizer("fixture-org/in-home").bos_token == "<bos>"


def test_a_revision_names_a_cached_commit(offline_hub: Path) -> None:
    lay_out_repo(offline_hub, "fixture-org/pinned", "chatml-qwen")
    assert get_tokenizer("fixture-org/pinned", revision=COMMIT).eos_token == "<|im_end|>"
    with pytest.raises(TokenizerNotCachedError, match="revision 'v9'"):
        get_tokenizer("fixture-org/pinned", revision="v9")


def test_a_directory_or_a_tokenizer_json_path_loads_without_the_hub(tmp_path: Path) -> None:
    snapshot = lay_out_repo(tmp_path / "cache", "fixture-org/dir", "hermes-multi")
    from_dir = get_tokenizer(str(snapshot))
    assert from_dir.bos_token == "<s>" and isinstance(from_dir.chat_template, dict)
    from_file = get_tokenizer(str(snapshot / "tokenizer.json"))
    assert from_file.chat_template is None and from_file.encode(HELLO) == from_dir.encode(HELLO)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerFilesMissingError, match=r"no tokenizer\.json"):
        get_tokenizer(str(empty))
    (empty / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerFilesMissingError, match="not a tokenizers JSON file"):
        get_tokenizer(str(empty))


def test_the_shipped_tiny_tokenizers_stay_offline_and_gain_a_plain_chat_template() -> None:
    tokenizer = get_tokenizer("tiny-bpe")
    assert tokenizer.tokenizer is get_tokenizer("tinker-actors/tiny-bpe").tokenizer
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 0
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "user: Hi<|endoftext|>\nassistant: "
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert 0 in ids and tokenizer.decode(ids, skip_special_tokens=False) == text


def test_no_hugging_face_token_appears_in_errors(offline_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret, env_secret = "hf_argumentTokenAbCdEf123456", "hf_environmentTokenXyZ987654"
    monkeypatch.setenv("HF_TOKEN", env_secret)
    with pytest.raises(TokenizerNotCachedError) as caught:
        get_tokenizer("some-org/private-model", token=secret)
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(caught.value.__dict__)
    shown += repr(pickle.dumps(caught.value))
    assert secret not in shown and env_secret not in shown


def test_a_network_fetch_never_happens_on_an_actor_thread() -> None:
    """Only user calls reach the Hub: no module of the actors, the HTTP layer or the local service imports
    the Hub fetch. The layers that run on the caller's thread may: tokenizers, the checkpoint push to the Hub,
    the CLI. The tokenizer errors fetch nothing: anything may import them (the package re-exports them)."""
    import ast

    package = Path(tinker.__file__).resolve().parent
    callers_thread = ("tokenizers/", "tokenizer.py", "checkpoints/", "cli/")
    fetches_nothing = {"tinker_actors.tokenizers.errors"}
    offenders = []
    for source in package.rglob("*.py"):
        relative = source.relative_to(package).as_posix()
        if relative.startswith(callers_thread):
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module not in fetches_nothing and (
                    node.module.startswith(("tinker_actors.tokenizers", "tinker_actors.checkpoints.hub_export"))
                    or node.module.split(".")[0] == "huggingface_hub"):
                offenders.append(relative)
    assert offenders == []
