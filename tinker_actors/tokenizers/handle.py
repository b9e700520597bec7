"""The tokenizer handle ``get_tokenizer`` returns: encode, decode, special tokens and chat templates.

It wraps a ``tokenizers.Tokenizer`` (the fast tokenizer of ``tokenizer.json``, also reachable as
``.tokenizer``; other attributes are passed through to it) and offers the parts of a transformers
tokenizer that training and sampling code uses. Read-only and thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenizers import Tokenizer

from tinker_actors.errors import InvalidInputError
from tinker_actors.tokenizers.chat_template import is_batched, render_conversations, select_chat_template
from tinker_actors.tokenizers.files import SPECIAL_TOKEN_NAMES, ChatTemplates

__all__ = ["TokenizerHandle"]

# transformers' apply_chat_template arguments with no counterpart here, and the value that means "unused".
_UNSUPPORTED_CHAT_ARGUMENTS: dict[str, object] = {
    "padding": False, "truncation": False, "max_length": None, "return_tensors": None,
    "return_assistant_tokens_mask": False, "tokenizer_kwargs": None, "sanitize_control_tokens": False,
}


@dataclass(frozen=True, eq=False)
class TokenizerHandle:
    """A tokenizer: ``encode``/``decode``, the special tokens, and ``apply_chat_template``.

    ``special_tokens`` maps the named special tokens (``bos_token``, ``eos_token``, ...) to their text;
    ``chat_template`` is the tokenizer's template (a string, or a dict of named templates), or None.
    """

    tokenizer: Tokenizer
    add_special_tokens: bool = True
    name_or_path: str = ""
    special_tokens: Mapping[str, str] = field(default_factory=dict)
    chat_template: ChatTemplates | None = None

    # ---- text <-> ids ----------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        special = self.add_special_tokens if add_special_tokens is None else add_special_tokens
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=special).ids
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        text: str = self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text

    @property
    def vocab_size(self) -> int:
        size: int = self.tokenizer.get_vocab_size()
        return size

    def __len__(self) -> int:
        return self.vocab_size

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int | None] | None:
        """The id of a token (None when not in the vocabulary), or of each token of a list."""
        if isinstance(tokens, str):
            found: int | None = self.tokenizer.token_to_id(tokens)
            return found
        return [self.tokenizer.token_to_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str | None] | None:
        if isinstance(ids, int):
            token: str | None = self.tokenizer.id_to_token(ids)
            return token
        return [self.tokenizer.id_to_token(one) for one in ids]

    # ---- special tokens --------------------------------------------------------------------------

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, in transformers' order (what chat templates receive)."""
        return {name: self.special_tokens[name] for name in SPECIAL_TOKEN_NAMES if name in self.special_tokens}

    def _special_id(self, name: str) -> int | None:
        text = self.special_tokens.get(name)
        found: int | None = self.tokenizer.token_to_id(text) if text is not None else None
        return found

    @property
    def bos_token(self) -> str | None:
        return self.special_tokens.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self.special_tokens.get("eos_token")

    @property
    def pad_token(self) -> str | None:
        return self.special_tokens.get("pad_token")

    @property
    def unk_token(self) -> str | None:
        return self.special_tokens.get("unk_token")

    @property
    def bos_token_id(self) -> int | None:
        return self._special_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._special_id("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("pad_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._special_id("unk_token")

    # ---- chat templates --------------------------------------------------------------------------

    def get_chat_template(self, chat_template: str | None = None, tools: Sequence[Any] | None = None) -> str:
        """The template text ``apply_chat_template`` would use (a name picks one of several templates)."""
        return select_chat_template(self.chat_template, chat_template, tools is not None, self.name_or_path)

    def apply_chat_template(
        self,
        conversation: Any,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        return_dict: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Render a chat with the model's chat template, as transformers' ``apply_chat_template`` renders it.

        ``conversation`` is a list of messages (``{"role": ..., "content": ...}``; dataclasses and pydantic
        models too), or a list of such lists (then a list of results). ``add_generation_prompt`` appends the
        header of an assistant turn; ``continue_final_message`` (True, or the field to continue) leaves the
        last message open instead. ``tools`` (JSON schemas) and ``documents`` are passed to the template, as
        is every extra keyword argument (``enable_thinking=False``, ``date_string=...``).

        Returns the rendered text when ``tokenize=False``; otherwise its token ids, encoded without adding
        special tokens (the template writes them), or ``{"input_ids", "attention_mask"}`` when
        ``return_dict=True``. (transformers 5 returns the dict by default; 4.x and the official SDK's
        examples, the ids.) Raises :class:`~tinker_actors.tokenizers.errors.ChatTemplateError` when there is no
        template or the template refuses the chat, :class:`~tinker_actors.errors.InvalidInputError` for
        malformed input.
        """
        for name, unused in _UNSUPPORTED_CHAT_ARGUMENTS.items():
            if name in kwargs and kwargs.pop(name) not in (unused, {}):
                raise InvalidInputError(
                    f"apply_chat_template({name}=...) is not supported by tinker-actors' tokenizer: it renders "
                    "and encodes one chat at a time, without padding, truncation or tensors")
        if "messages" in kwargs:
            raise InvalidInputError("apply_chat_template: pass the messages as the conversation, not as messages=")
        template = self.get_chat_template(chat_template, tools)
        batched = is_batched(conversation)
        conversations = list(conversation) if batched else [conversation]
        texts = render_conversations(
            template, conversations, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, tools=tools, documents=documents,
            variables={**self.special_tokens_map, **kwargs}, name=self.name_or_path)
        if not tokenize:
            return texts if batched else texts[0]
        ids: list[list[int]] = [encoding.ids for encoding in self.tokenizer.encode_batch(
            texts, add_special_tokens=False)]
        if return_dict:
            masks = [[1] * len(one) for one in ids]
            return {"input_ids": ids, "attention_mask": masks} if batched else {
                "input_ids": ids[0], "attention_mask": masks[0]}
        return ids if batched else ids[0]

    # ---- everything else of the fast tokenizer ---------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # pickle, copy and friends ask for dunders: never the wrapped tokenizer's
            raise AttributeError(name)
        return getattr(self.tokenizer, name)
