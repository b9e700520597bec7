"""The errors of getting a tokenizer and of rendering a chat.

Every "could not get the tokenizer" error is a :class:`TokenizerUnavailableError`: an
:class:`~tinker_actors.errors.InvalidInputError` (so a ``ValueError``) and also an ``OSError``, the type
``transformers.AutoTokenizer.from_pretrained`` raises in the same situations, so code ported from the
official SDK (which returns a transformers tokenizer) keeps its ``except OSError`` clauses. Each names the
tokenizer and says what to do. None of them ever quotes a Hugging Face token: messages are written here,
and the Hub's own text, when quoted, goes through :func:`tinker_actors.tokenizers.hub.redact_tokens`.
"""

from __future__ import annotations

from tinker_actors.errors import ErrorCategory, InvalidInputError

__all__ = [
    "ChatTemplateError",
    "TokenizerAccessError",
    "TokenizerFetchError",
    "TokenizerFilesMissingError",
    "TokenizerNotCachedError",
    "TokenizerRepoNotFoundError",
    "TokenizerUnavailableError",
]


class TokenizerUnavailableError(InvalidInputError, OSError):
    """The tokenizer could not be loaded. ``tokenizer_id`` names what was asked for (a Hub repo, a path)."""

    def __init__(self, message: str = "", *, tokenizer_id: str = "", category: ErrorCategory | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message, category=category, retryable=retryable)
        self.tokenizer_id = tokenizer_id


class TokenizerNotCachedError(TokenizerUnavailableError):
    """The tokenizer is not in the Hugging Face cache, and it could not be downloaded: offline mode
    (``HF_HUB_OFFLINE=1``, ``local_files_only=True``) or the Hub could not be reached (then ``retryable``)."""


class TokenizerRepoNotFoundError(TokenizerUnavailableError):
    """The Hub has no such repository or revision, or it is private and the token does not give access."""


class TokenizerAccessError(TokenizerUnavailableError):
    """The Hub refused access: a gated repository whose conditions were not accepted, or a missing or
    invalid token."""


class TokenizerFilesMissingError(TokenizerUnavailableError):
    """The repository or directory has no usable ``tokenizer.json`` (for example a tokenizer that needs
    transformers' ``trust_remote_code``), or the file is not a tokenizer."""


class TokenizerFetchError(TokenizerUnavailableError):
    """Any other failure while fetching from the Hub (a server error, a broken download). Retryable."""

    default_category = ErrorCategory.UNKNOWN
    default_retryable = True


class ChatTemplateError(InvalidInputError):
    """A chat could not be rendered: no chat template, a template that does not compile, or a template that
    refused the conversation (its ``raise_exception(...)``; ``template_message`` holds the template's words)."""

    def __init__(self, message: str = "", *, template_message: str | None = None) -> None:
        super().__init__(message)
        self.template_message = template_message
