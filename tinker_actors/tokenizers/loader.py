"""``get_tokenizer``: from a model name to a loaded tokenizer, in this order.

1. A tokenizer shipped with tinker-actors for the local service's models (``tiny-bpe``,
   ``tinker-actors/tiny-byte``, aliases): offline, always.
2. An existing path: a ``tokenizer.json`` file, or a directory holding one (and, optionally, its
   ``tokenizer_config.json``, ``special_tokens_map.json`` and chat template files).
3. A Hugging Face Hub repository, chosen from the model name as the official SDK chooses it
   (:mod:`tinker_actors.tokenizers.naming`), read from the Hub cache, or downloaded into it first
   (:mod:`tinker_actors.tokenizers.hub`).

Loaded tokenizers are kept for the life of the process, so asking again is cheap.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tinker_actors.tokenizers.errors import TokenizerNotCachedError
from tinker_actors.tokenizers.files import TokenizerFiles, read_tokenizer_dir, read_tokenizer_file
from tinker_actors.tokenizers.handle import TokenizerHandle
from tinker_actors.tokenizers.hub import fetch_tokenizer_files, hub_settings
from tinker_actors.tokenizers.naming import tokenizer_repo_for

__all__ = ["LOCAL_CHAT_TEMPLATE", "get_tokenizer"]

LOCAL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
"""The chat template of the local service's tiny models: ``role: content<|endoftext|>`` per message, and
``assistant: `` as the generation prompt. Plain text and the end-of-text token, which the tiny tokenizers
know, so chat code runs end to end against the local service."""


def get_tokenizer(
    model_name: str | None = None,
    *,
    tokenizer_id: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    local_files_only: bool = False,
    add_special_tokens: bool = True,
) -> TokenizerHandle:
    """The tokenizer of a base model (``"Qwen/Qwen3-8B"``, a local service model, a path).

    ``tokenizer_id`` (what a server's ``get_info`` names) takes precedence over the model name. For a Hub
    model the files come from the Hugging Face cache, or are downloaded into it first: this call may block
    while downloading (a few MB at most). ``cache_dir``, ``token``, ``revision`` and ``local_files_only`` are
    huggingface_hub's; by default ``HF_HUB_CACHE``/``HF_HOME``, ``HF_TOKEN`` (or the stored login) and
    ``HF_HUB_OFFLINE`` decide. ``add_special_tokens`` is the default of ``encode``.

    Raises :class:`~tinker_actors.tokenizers.errors.TokenizerUnavailableError` (a subclass per cause:
    not cached while offline, no such repository, access refused, no ``tokenizer.json``, other fetch
    failure), naming the tokenizer and what to do.
    """
    for name in (tokenizer_id, model_name):
        if name:
            shipped = _shipped(name)
            if shipped is not None:
                return TokenizerHandle(shipped.tokenizer, add_special_tokens, shipped.name_or_path,
                                       shipped.special_tokens, shipped.chat_template)
    files = _local_or_hub(model_name, tokenizer_id, revision=revision, cache_dir=cache_dir, token=token,
                          local_files_only=local_files_only)
    return TokenizerHandle(files.tokenizer, add_special_tokens, files.name_or_path, files.special_tokens,
                           files.chat_template)


def _local_or_hub(model_name: str | None, tokenizer_id: str | None, *, revision: str | None,
                  cache_dir: str | os.PathLike[str] | None, token: str | None,
                  local_files_only: bool) -> TokenizerFiles:
    given = tokenizer_id or model_name
    if given:
        path = Path(given).expanduser()
        if path.is_file():
            return _from_file(str(path.resolve()), path.stat().st_mtime_ns)
        if path.is_dir():
            return _from_directory(str(path.resolve()), given, _stamp(path))
    repo = tokenizer_repo_for(model_name, tokenizer_id)
    snapshot = fetch_tokenizer_files(repo, revision=revision, cache_dir=cache_dir, token=token,
                                     local_files_only=local_files_only)
    settings = hub_settings(cache_dir, local_files_only)
    if settings.offline and not (snapshot / "tokenizer.json").is_file():
        raise TokenizerNotCachedError(
            f"the Hugging Face cache ({settings.cache_dir}) holds part of {repo!r} but not its tokenizer.json, and "
            f"downloads are off ({settings.offline_reason}): fetch it once with network access "
            f"(`hf download {repo} --include 'tokenizer*' '*.jinja'`), or allow downloads.", tokenizer_id=repo)
    return _from_directory(str(snapshot), repo, _stamp(snapshot))


@functools.lru_cache(maxsize=32)
def _shipped(name: str) -> TokenizerFiles | None:
    try:
        from tinker_actors.local.model.registry import get_base_model, load_tokenizer
    except ImportError:
        return None
    try:
        model = get_base_model(name)
        tokenizer = load_tokenizer(name)
    except (ValueError, KeyError, OSError):
        return None
    eos = tokenizer.id_to_token(model.eos_token_id)
    return TokenizerFiles(tokenizer=tokenizer, name_or_path=model.tokenizer_id,
                          special_tokens={"eos_token": eos} if eos is not None else {},
                          chat_template=LOCAL_CHAT_TEMPLATE)


def _stamp(directory: Path) -> tuple[int, ...]:
    """When the directory's tokenizer files last changed: a re-saved tokenizer is read again."""
    return tuple(child.stat().st_mtime_ns if child.exists() else 0 for child in (
        directory / "tokenizer.json", directory / "tokenizer_config.json", directory / "special_tokens_map.json",
        directory / "chat_template.jinja", directory / "additional_chat_templates"))


@functools.lru_cache(maxsize=32)
def _from_directory(directory: str, name: str, _stamp: tuple[int, ...]) -> TokenizerFiles:
    return read_tokenizer_dir(Path(directory), name)


@functools.lru_cache(maxsize=32)
def _from_file(path: str, _mtime_ns: int) -> TokenizerFiles:
    return TokenizerFiles(tokenizer=read_tokenizer_file(Path(path), path), name_or_path=path)
