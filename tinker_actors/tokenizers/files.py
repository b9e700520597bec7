"""Reading a tokenizer directory (a Hub snapshot or a saved tokenizer) the way transformers reads it.

* ``tokenizer.json``: the fast tokenizer (required).
* special tokens (``bos_token``, ``eos_token``, ...): from ``tokenizer_config.json``, a plain string or an
  ``AddedToken`` dict (its ``content``); a token the config does not name is taken from the legacy
  ``special_tokens_map.json``.
* chat templates: ``chat_template.jinja`` and ``additional_chat_templates/<name>.jinja`` when present
  (they replace whatever the config holds, as in transformers); otherwise the config's ``chat_template``,
  a string or a list of ``{"name": ..., "template": ...}``. One template is a string; several are a dict
  by name (``"default"``, ``"tool_use"``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tinker_actors.tokenizers.errors import TokenizerFilesMissingError

__all__ = ["SPECIAL_TOKEN_NAMES", "ChatTemplates", "TokenizerFiles", "read_tokenizer_dir", "read_tokenizer_file"]

SPECIAL_TOKEN_NAMES: tuple[str, ...] = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""The named special tokens; each one set is passed to chat templates under its name, as transformers does."""

ChatTemplates = str | Mapping[str, str]


@dataclass(frozen=True, eq=False)
class TokenizerFiles:
    """What a tokenizer directory holds, read once."""

    tokenizer: Tokenizer
    name_or_path: str
    special_tokens: Mapping[str, str] = field(default_factory=dict)
    chat_template: ChatTemplates | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


def read_tokenizer_file(path: Path, name: str) -> Tokenizer:
    try:
        tokenizer: Tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the tokenizers library raises plain Exceptions for a bad file
        raise TokenizerFilesMissingError(f"{path} is not a tokenizers JSON file ({type(error).__name__}: "
                                         f"{str(error)[:200]})", tokenizer_id=name) from None
    return tokenizer


def read_tokenizer_dir(directory: Path, name: str) -> TokenizerFiles:
    """The tokenizer in ``directory``; ``name`` is what the user asked for (a repo id or a path)."""
    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise TokenizerFilesMissingError(
            f"{name!r} has no tokenizer.json ({directory}): tinker-actors loads fast tokenizers "
            "(tokenizer.json) only. Models whose tokenizer is custom code (transformers' trust_remote_code, "
            "e.g. a tiktoken or sentencepiece model) are not supported: load those with "
            "transformers.AutoTokenizer.", tokenizer_id=name)
    config = _read_json(directory / "tokenizer_config.json", name)
    legacy_map = _read_json(directory / "special_tokens_map.json", name)
    special: dict[str, str] = {}
    for key in SPECIAL_TOKEN_NAMES:
        value = _token_text(config.get(key))
        if value is None:
            value = _token_text(legacy_map.get(key))
        if value is not None:
            special[key] = value
    return TokenizerFiles(tokenizer=read_tokenizer_file(tokenizer_file, name), name_or_path=name,
                          special_tokens=special, chat_template=_chat_templates(directory, config, name),
                          config=config)


def _read_json(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TokenizerFilesMissingError(f"{path} of {name!r} is not readable JSON ({error})",
                                         tokenizer_id=name) from None
    if not isinstance(loaded, dict):
        raise TokenizerFilesMissingError(f"{path} of {name!r} is not a JSON object", tokenizer_id=name)
    return loaded


def _token_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _chat_templates(directory: Path, config: Mapping[str, Any], name: str) -> ChatTemplates | None:
    templates: dict[str, str] = {}
    default_file = directory / "chat_template.jinja"
    if default_file.is_file():
        templates["default"] = default_file.read_text(encoding="utf-8")
    extra_dir = directory / "additional_chat_templates"
    if extra_dir.is_dir():
        for extra in sorted(extra_dir.glob("*.jinja")):
            templates[extra.name.removesuffix(".jinja")] = extra.read_text(encoding="utf-8")
    if templates:
        return templates["default"] if list(templates) == ["default"] else templates
    declared = config.get("chat_template")
    if declared is None or isinstance(declared, str):
        return declared
    if isinstance(declared, list | tuple) and all(
            isinstance(item, Mapping) and isinstance(item.get("name"), str) and isinstance(item.get("template"), str)
            for item in declared):
        return {item["name"]: item["template"] for item in declared}
    raise TokenizerFilesMissingError(
        f"the chat_template of {name!r} in tokenizer_config.json is neither a string nor a list of "
        "{'name': ..., 'template': ...}", tokenizer_id=name)
