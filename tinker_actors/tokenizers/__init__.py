"""Tokenizers (FEATURES D4, D5): the local service's shipped tokenizers, files on disk, and real models'
tokenizers from the Hugging Face Hub, with their chat templates.

``get_tokenizer(model_name)`` returns a :class:`TokenizerHandle` (``encode``, ``decode``, special tokens,
``apply_chat_template``). Guide: docs/guides/tokenizers.md.

* :mod:`.loader`: the order in which a name is resolved, and the process-wide cache of loaded tokenizers;
* :mod:`.naming`: which Hub repository holds a base model's tokenizer (the official SDK's choices);
* :mod:`.hub`: fetching the files into the Hugging Face cache (cache dir, token, offline mode);
* :mod:`.files`: reading a tokenizer directory as transformers reads it;
* :mod:`.chat_template`: rendering chats as transformers renders them (sandboxed Jinja2);
* :mod:`.handle`: the handle; :mod:`.errors`: the typed errors.
"""

from tinker_actors.tokenizers.errors import (
    ChatTemplateError,
    TokenizerAccessError,
    TokenizerFetchError,
    TokenizerFilesMissingError,
    TokenizerNotCachedError,
    TokenizerRepoNotFoundError,
    TokenizerUnavailableError,
)
from tinker_actors.tokenizers.handle import TokenizerHandle
from tinker_actors.tokenizers.hub import TOKENIZER_FILES
from tinker_actors.tokenizers.loader import LOCAL_CHAT_TEMPLATE, get_tokenizer
from tinker_actors.tokenizers.naming import tokenizer_repo_for

__all__ = [
    "LOCAL_CHAT_TEMPLATE",
    "TOKENIZER_FILES",
    "ChatTemplateError",
    "TokenizerAccessError",
    "TokenizerFetchError",
    "TokenizerFilesMissingError",
    "TokenizerHandle",
    "TokenizerNotCachedError",
    "TokenizerRepoNotFoundError",
    "TokenizerUnavailableError",
    "get_tokenizer",
    "tokenizer_repo_for",
]
