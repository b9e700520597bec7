"""Fetching a tokenizer's files from the Hugging Face Hub into its cache, with huggingface_hub.

Only the files a tokenizer needs are fetched (:data:`TOKENIZER_FILES`: a few hundred KB to a few MB,
never weights), into the standard Hub cache (``models--org--name/snapshots/<commit>/...``), so
transformers and the ``hf`` CLI share them. The environment is read at call time, not at import:

* cache directory: the ``cache_dir`` argument, else ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
  huggingface_hub's default (``~/.cache/huggingface/hub``);
* offline: ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) or ``local_files_only=True``: the cache
  only, nothing goes on the network;
* token: the ``token`` argument, else huggingface_hub's own (``HF_TOKEN``, then the token stored by
  ``hf auth login``); never logged, never in an error;
* endpoint: ``HF_ENDPOINT`` (a mirror), else the Hub.

This runs on the caller's thread and may block while downloading: it is reached from
``get_tokenizer``, a user call, never from an actor. A process asks the Hub at most once per
repository and revision; later calls use the cached snapshot.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors
from huggingface_hub import snapshot_download

from tinker_actors._version import __version__
from tinker_actors.errors import ErrorCategory
from tinker_actors.logs import REDACTED, get_logger, level_enabled
from tinker_actors.tokenizers.errors import (
    TokenizerAccessError,
    TokenizerFetchError,
    TokenizerNotCachedError,
    TokenizerRepoNotFoundError,
    TokenizerUnavailableError,
)

__all__ = [
    "TOKENIZER_FILES", "HubSettings", "fetch_tokenizer_files", "forget_snapshots", "hub_settings", "redact_tokens",
]

log = get_logger("tinker_actors.tokenizers")

TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "additional_chat_templates/*.jinja",
)
"""What is fetched of a repository: the fast tokenizer, its config (special tokens, chat template) and the
chat template files of the newer layout. ``fnmatch`` patterns, relative to the repository root."""

_TRUTHY = frozenset({"1", "ON", "YES", "TRUE"})  # huggingface_hub's reading of a boolean variable
# What a Hugging Face token looks like (user and organisation tokens), for redacting quoted Hub text.
_HF_TOKEN_PATTERN = re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{8,}")


@dataclass(frozen=True)
class HubSettings:
    """Where and how to fetch, as the arguments and the environment say right now."""

    cache_dir: Path
    offline: bool
    offline_reason: str
    endpoint: str | None


def hub_settings(cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False) -> HubSettings:
    if cache_dir is not None:
        directory = Path(cache_dir)
    elif os.environ.get("HF_HUB_CACHE"):
        directory = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        directory = Path(os.environ["HF_HOME"]) / "hub"
    else:
        directory = Path(hub_constants.HF_HUB_CACHE)
    reason = ""
    if local_files_only:
        reason = "local_files_only=True"
    elif os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUTHY:
        reason = "HF_HUB_OFFLINE=1"
    elif os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in _TRUTHY:
        reason = "TRANSFORMERS_OFFLINE=1"
    elif hub_constants.HF_HUB_OFFLINE:  # read by huggingface_hub at its import: it refuses the network anyway
        reason = "HF_HUB_OFFLINE=1 when huggingface_hub was imported"
    return HubSettings(cache_dir=directory.expanduser(), offline=bool(reason), offline_reason=reason,
                       endpoint=os.environ.get("HF_ENDPOINT") or None)


def redact_tokens(text: str, token: str | None = None) -> str:
    """``text`` with the given token, the token of the environment and anything shaped like a Hugging Face
    token replaced: Hub error text is quoted in our errors, and a token must never be."""
    for secret in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        if secret:
            text = text.replace(secret, REDACTED)
    return _HF_TOKEN_PATTERN.sub(REDACTED, text)


_snapshots: dict[tuple[str, str, Path], Path] = {}
_snapshot_locks: dict[tuple[str, str, Path], threading.Lock] = {}
_snapshots_guard = threading.Lock()


def fetch_tokenizer_files(repo_id: str, *, revision: str | None = None,
                          cache_dir: str | os.PathLike[str] | None = None, token: str | None = None,
                          local_files_only: bool = False) -> Path:
    """The snapshot directory holding ``repo_id``'s tokenizer files, downloaded first if not cached.

    Raises a :class:`~tinker_actors.tokenizers.errors.TokenizerUnavailableError` subclass naming the
    repository and what to do. The directory may lack some files (a repository without a chat template);
    the caller checks for ``tokenizer.json``.
    """
    settings = hub_settings(cache_dir, local_files_only)
    key = (repo_id, revision or "main", settings.cache_dir.resolve())
    with _snapshots_guard:
        lock = _snapshot_locks.setdefault(key, threading.Lock())
    with lock:  # two threads asking for the same tokenizer download it once
        known = _snapshots.get(key)
        if known is not None and (known / "tokenizer.json").is_file():
            return known
        snapshot = _download(repo_id, revision, settings, token)
        if (snapshot / "tokenizer.json").is_file():
            _snapshots[key] = snapshot
        return snapshot


def forget_snapshots() -> None:
    """Forget which snapshots this process already resolved (tests; a cache emptied under a process)."""
    with _snapshots_guard:
        _snapshots.clear()


def _download(repo_id: str, revision: str | None, settings: HubSettings, token: str | None) -> Path:
    if not settings.offline and level_enabled(os.environ.get("TINKER_LOG", "warning").strip().lower(), "info"):
        log.info("tokenizer.fetch", repo=repo_id, revision=revision or "main", cache_dir=str(settings.cache_dir),
                 endpoint=settings.endpoint or hub_constants.ENDPOINT)
    try:
        path = snapshot_download(
            repo_id, revision=revision, cache_dir=settings.cache_dir, token=token,
            local_files_only=settings.offline, allow_patterns=list(TOKENIZER_FILES), endpoint=settings.endpoint,
            library_name="tinker-actors", library_version=__version__)
    except Exception as error:  # every failure of the Hub client becomes one typed, token-free error
        raise _translate(error, repo_id, revision, settings, token) from None
    if not isinstance(path, str):  # only a dry run returns a listing
        raise TokenizerFetchError(f"huggingface_hub returned no snapshot directory for {repo_id!r}",
                                  tokenizer_id=repo_id)
    return Path(path)


def _translate(error: Exception, repo_id: str, revision: str | None, settings: HubSettings,
               token: str | None) -> TokenizerUnavailableError:
    at = f"{repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    endpoint = (settings.endpoint or hub_constants.ENDPOINT).rstrip("/")
    cache = settings.cache_dir
    login = "log in with `hf auth login` or set HF_TOKEN (or pass token=...)"
    if isinstance(error, hub_errors.LocalEntryNotFoundError | hub_errors.OfflineModeIsEnabled):
        if settings.offline:
            return TokenizerNotCachedError(
                f"the tokenizer of {at} is not in the Hugging Face cache ({cache}) and downloads are off "
                f"({settings.offline_reason}). Fetch it once on a machine with network access, e.g. "
                f"`hf download {repo_id} --include 'tokenizer*' 'special_tokens_map.json' '*.jinja'` into the same "
                "cache (HF_HUB_CACHE / HF_HOME, or cache_dir=), or allow downloads (unset HF_HUB_OFFLINE).",
                tokenizer_id=repo_id)
        return TokenizerNotCachedError(
            f"could not reach the Hugging Face Hub ({endpoint}) to download the tokenizer of {at}, and it is not "
            f"in the cache ({cache}): {_quote(error, token)}. Check the network connection (or the proxy, "
            "HTTPS_PROXY) and try again.",
            tokenizer_id=repo_id, category=ErrorCategory.UNKNOWN, retryable=True)
    if isinstance(error, hub_errors.GatedRepoError):
        return TokenizerAccessError(
            f"{repo_id!r} is a gated repository: accept its conditions at {endpoint}/{repo_id} with your Hugging "
            f"Face account, then {login}.", tokenizer_id=repo_id)
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return TokenizerRepoNotFoundError(
            f"the Hugging Face Hub repository {repo_id!r} has no revision {revision or 'main'!r}: check the "
            "branch, tag or commit.", tokenizer_id=repo_id)
    if isinstance(error, hub_errors.RepositoryNotFoundError | hub_errors.HFValidationError):
        return TokenizerRepoNotFoundError(
            f"the Hugging Face Hub has no repository {repo_id!r} that this account can see: check the name "
            f"(a base model such as 'Qwen/Qwen3-8B'); if the repository is private, {login}.",
            tokenizer_id=repo_id)
    if isinstance(error, hub_errors.HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return TokenizerAccessError(
                f"the Hugging Face Hub refused access to {at} (HTTP {status}): the token is missing, invalid or "
                f"lacks read access; {login}.", tokenizer_id=repo_id)
        return TokenizerFetchError(
            f"the Hugging Face Hub failed while fetching the tokenizer of {at} (HTTP {status}): "
            f"{_quote(error, token)}. Try again later.", tokenizer_id=repo_id)
    return TokenizerFetchError(
        f"fetching the tokenizer of {at} from the Hugging Face Hub ({endpoint}) into {cache} failed: "
        f"{_quote(error, token)}", tokenizer_id=repo_id)


def _quote(error: Exception, token: str | None) -> str:
    """The root cause's type and first line (huggingface_hub wraps a connection error in its own), token-free."""
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    first_line = (str(root).strip().splitlines() or [""])[0][:300]
    return redact_tokens(f"{type(root).__name__}: {first_line}", token)
