"""Pushing a checkpoint to the Hugging Face Hub as a PEFT adapter (``tinker-actors checkpoint push-hf``).

What the official 0.38 CLI's ``tinker checkpoint push-hf`` does, as a function: check the Hub login, download
the checkpoint's files (:func:`~tinker_actors.checkpoints.download.download_checkpoint`), require a PEFT
adapter among them, fill ``base_model_name_or_path`` in ``adapter_config.json`` when missing, write a
``README.md`` model card (unless one is there or ``model_card=False``), create the repository (private unless
``public=True``) and upload the folder in one commit. Without ``repo_id`` the repository is
``<your user>/tinker-<base model>-<run id>`` and, unless a revision or a pull request is asked for, the branch
is named after the checkpoint (``weights-final``), so each checkpoint of a run gets its own branch.

Beyond the official command: a branch that does not exist yet is created first (the Hub refuses commits to
an unknown branch); a repository whose model card names another checkpoint is refused rather than mixed;
bad options fail before anything is downloaded or uploaded; every failure is a typed error
(:mod:`tinker_actors.checkpoints.errors`). The service's own bookkeeping files in an archive
(``arrays.npz``, ``checkpoint.json``, ``checkpoint_complete``) are not uploaded unless ``allow_patterns``
asks for them.

The Hub side is huggingface_hub's ``HfApi``, configured by the environment at call time: the token (the
``token`` argument, else ``HF_TOKEN``, else the one stored by ``hf auth login``; never logged, never in an
error), ``HF_ENDPOINT`` (a mirror or a private Hub) and ``HF_HUB_OFFLINE`` (then nothing is sent: a
:class:`HubUnavailableError`). Blocking, on the caller's thread: a user's call or a CLI command.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import HfApi
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public there, but loaded lazily
    filter_repo_objects,
    validate_repo_id,
)

from tinker_actors.checkpoints import model_card as cards
from tinker_actors.checkpoints.download import REST_WAIT_S, download_checkpoint, parse_checkpoint_path
from tinker_actors.checkpoints.errors import (
    HubAccessError,
    HubNotLoggedInError,
    HubPushError,
    HubRepoConflictError,
    HubUnavailableError,
    InvalidHubOptionError,
    NoPeftAdapterError,
)
from tinker_actors.errors import TinkerError
from tinker_actors.tokenizers.hub import hub_settings, redact_tokens

if TYPE_CHECKING:
    from tinker_actors.clients.rest import RestClient
    from tinker_actors.types import ParsedCheckpointTinkerPath

__all__ = ["SERVICE_FILES", "HubPushResult", "push_checkpoint_to_hub"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_CARD = "README.md"
SERVICE_FILES = ("checkpoint_complete", "arrays.npz", "checkpoint.json")
"""Files of a checkpoint that are the service's bookkeeping, not the adapter: not uploaded by default."""
_DEFAULT_BRANCH = "main"
_LOGIN_HINT = "log in with `hf auth login`, or set HF_TOKEN to a token with write access"


@dataclass(frozen=True)
class HubPushResult:
    """What was pushed where."""

    checkpoint_path: str
    repo_id: str
    revision: str | None
    """The branch the commit went to (None: the default branch, or the pull request's)."""
    public: bool
    commit_url: str
    pr_url: str | None
    files: tuple[str, ...]
    """The paths uploaded, sorted."""


def push_checkpoint_to_hub(
    rest: RestClient,
    tinker_path: str,
    repo_id: str | None = None,
    *,
    public: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    allow_patterns: Sequence[str] | None = None,
    ignore_patterns: Sequence[str] | None = None,
    model_card: bool = True,
    token: str | None = None,
) -> HubPushResult:
    """Upload the checkpoint ``tinker_path`` (training, sampler or external weights) to the Hub repository
    ``repo_id`` as a PEFT adapter; see the module's description for every step.

    Raises, before anything is downloaded or uploaded: :class:`InvalidCheckpointPathError`,
    :class:`InvalidHubOptionError`, :class:`HubNotLoggedInError`, :class:`HubUnavailableError` (offline);
    then :class:`NoPeftAdapterError` (nothing uploaded), the API's and download errors, and the Hub's
    refusals (:class:`HubAccessError`, :class:`HubRepoConflictError`, :class:`HubPushError`).
    """
    parsed = parse_checkpoint_path(tinker_path)
    allow = _patterns(allow_patterns, "allow_patterns")
    ignore = _patterns(ignore_patterns, "ignore_patterns")
    if repo_id is not None:
        _check_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise InvalidHubOptionError("revision must name a branch (or be left out for the default branch)")
    if create_pr and revision not in (None, _DEFAULT_BRANCH):
        raise InvalidHubOptionError(f"create_pr opens a pull request against the default branch: leave revision "
                                    f"out (got {revision!r})")
    settings = hub_settings()
    if settings.offline:
        raise HubUnavailableError(f"cannot push {tinker_path} to the Hugging Face Hub: the Hub is off "
                                  f"({settings.offline_reason}); unset it to upload", retryable=False)
    api = HfApi(endpoint=settings.endpoint, token=token, library_name="tinker-actors")
    user = _whoami(api, token)

    with tempfile.TemporaryDirectory(prefix="tinker-push-hf-") as scratch:
        folder = Path(scratch)
        download_checkpoint(rest, tinker_path, folder)
        config = _require_adapter(folder, tinker_path)
        facts = _adapter_facts(rest, tinker_path, config)
        if facts.get("base_model") and not isinstance(config.get("base_model_name_or_path"), str):
            config["base_model_name_or_path"] = facts["base_model"]
            (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if repo_id is None:
            repo_id = f"{user}/{_derived_repo_name(facts.get('base_model'), parsed)}"
            if revision is None and not create_pr:
                revision = _safe_name(parsed.checkpoint_id.replace("/", "-"))
        if model_card and not (folder / MODEL_CARD).exists():
            card = cards.AdapterFacts(tinker_path=tinker_path, repo_id=repo_id, base_model=facts.get("base_model"),
                                lora_rank=facts.get("lora_rank"), train_attn=facts.get("train_attn"),
                                train_mlp=facts.get("train_mlp"), train_unembed=facts.get("train_unembed"))
            (folder / MODEL_CARD).write_text(cards.model_card(card), encoding="utf-8")
        if allow is None:
            ignore = [*(ignore or []), *(name for name in SERVICE_FILES if name not in (ignore or []))]
        files = tuple(sorted(filter_repo_objects(
            (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
            allow_patterns=allow, ignore_patterns=ignore)))
        if not files:
            raise InvalidHubOptionError(f"no file of checkpoint {tinker_path} matches the allow/ignore patterns: "
                                        "nothing to upload")
        branch = revision if revision not in (None, _DEFAULT_BRANCH) else None
        commit = _upload(api, token, folder, repo_id, tinker_path, public=public, branch=branch,
                         commit_message=commit_message or f"Upload {tinker_path} (tinker-actors)",
                         create_pr=create_pr, allow=allow, ignore=ignore)
    return HubPushResult(checkpoint_path=tinker_path, repo_id=repo_id, revision=branch, public=public,
                         commit_url=str(commit.commit_url), pr_url=commit.pr_url, files=files)


# ---- checks before anything is sent ----------------------------------------------------------------

def _patterns(patterns: Sequence[str] | None, name: str) -> list[str] | None:
    if patterns is None or len(patterns) == 0:
        return None
    if isinstance(patterns, str) or not all(isinstance(p, str) and p for p in patterns):
        raise InvalidHubOptionError(f"{name} must be a list of non-empty glob patterns, got {patterns!r}")
    return list(patterns)


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except hub_errors.HFValidationError as error:
        raise InvalidHubOptionError(f"invalid Hugging Face repository id {repo_id!r}: {error}") from None
    if repo_id.count("/") > 1:
        raise InvalidHubOptionError(f"invalid Hugging Face repository id {repo_id!r}: use <namespace>/<name>")


def _safe_name(value: str) -> str:
    """``value`` as a repository or branch name: letters, digits, ``-``, ``_`` and ``.``, no runs of ``-``."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]", "-", value)).strip("-_. ")
    return name[:96] or "adapter"


def _derived_repo_name(base_model: str | None, parsed: ParsedCheckpointTinkerPath) -> str:
    base = base_model.rsplit("/", 1)[-1] if base_model else "adapter"
    return _safe_name(f"tinker-{base}-{parsed.training_run_id}")


# ---- the checkpoint's files ------------------------------------------------------------------------

def _require_adapter(folder: Path, tinker_path: str) -> dict[str, Any]:
    """The adapter's config, or :class:`NoPeftAdapterError` naming what the checkpoint holds instead."""
    config_file = folder / ADAPTER_CONFIG
    if config_file.is_file() and any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise NoPeftAdapterError(f"checkpoint {tinker_path} has an unreadable {ADAPTER_CONFIG}: {error}") from None
        if isinstance(config, dict):
            return config
        raise NoPeftAdapterError(f"checkpoint {tinker_path} has an {ADAPTER_CONFIG} that is not a JSON object")
    held = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    encrypted = any(name.endswith(".age") for name in held)
    raise NoPeftAdapterError(
        f"checkpoint {tinker_path} holds no PEFT adapter ({ADAPTER_CONFIG} with {' or '.join(ADAPTER_WEIGHTS)}); "
        f"it holds {', '.join(held) or 'no files'}. "
        + ("Its files are age-encrypted: decrypt them and upload them yourself. " if encrypted else "")
        + "Export the weights with TrainingClient.save_weights_external() and push the external_weights path.")


def _adapter_facts(rest: RestClient, tinker_path: str, config: dict[str, Any]) -> dict[str, Any]:
    """Base model, rank and adapted layers: the service's weights info, else the adapter's own config."""
    facts: dict[str, Any] = {}
    base = config.get("base_model_name_or_path")
    if isinstance(base, str) and base:
        facts["base_model"] = base
    rank = config.get("r")
    if isinstance(rank, int):
        facts["lora_rank"] = rank
    try:
        info = rest.get_weights_info_by_tinker_path(tinker_path).result(REST_WAIT_S)
    except TinkerError:  # the card and config then say what the files say; the upload does not need it
        return facts
    facts["base_model"] = info.base_model or facts.get("base_model")
    for name in ("lora_rank", "train_attn", "train_mlp", "train_unembed"):
        value = getattr(info, name)
        if value is not None:
            facts[name] = value
    return facts


# ---- the Hub -------------------------------------------------------------------------------------

def _whoami(api: HfApi, token: str | None) -> str:
    """The token's user name; :class:`HubNotLoggedInError` without a usable token."""
    try:
        answer = api.whoami()
    except hub_errors.LocalTokenNotFoundError:
        raise HubNotLoggedInError(f"not logged in to the Hugging Face Hub: {_LOGIN_HINT}") from None
    except Exception as error:
        raise _translate(error, "checking the Hugging Face login", token) from None
    name = answer.get("name") if isinstance(answer, dict) else None
    if not isinstance(name, str) or not name:
        raise HubPushError("the Hugging Face Hub answered whoami without a user name", retryable=False)
    return name


def _upload(api: HfApi, token: str | None, folder: Path, repo_id: str, tinker_path: str, *, public: bool,
            branch: str | None, commit_message: str, create_pr: bool, allow: list[str] | None,
            ignore: list[str] | None) -> Any:
    step = f"creating the repository {repo_id}"
    try:
        api.create_repo(repo_id, private=not public, exist_ok=True)
        step = f"reading the model card of {repo_id}"
        existing = _card_of(api, repo_id, branch, Path(folder.parent))
        if existing is not None and existing != tinker_path:
            raise HubRepoConflictError(
                f"the Hugging Face repository {repo_id} already holds checkpoint {existing} (its model card says "
                f"so), not {tinker_path}: choose another repository or branch")
        if branch is not None and not branch.startswith("refs/"):
            step = f"creating the branch {branch} of {repo_id}"
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        step = f"uploading {tinker_path} to {repo_id}"
        return api.upload_folder(folder_path=folder, repo_id=repo_id, path_in_repo="", revision=branch,
                                 commit_message=commit_message, create_pr=create_pr, allow_patterns=allow,
                                 ignore_patterns=ignore)
    except HubPushError:
        raise
    except Exception as error:
        raise _translate(error, step, token) from None


def _card_of(api: HfApi, repo_id: str, branch: str | None, scratch: Path) -> str | None:
    """The tinker path the repository's model card names on ``branch``; None without a card (or branch)."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix="card-") as into:
        try:
            path = api.hf_hub_download(repo_id, MODEL_CARD, revision=branch, local_dir=into)
        except (hub_errors.EntryNotFoundError, hub_errors.RevisionNotFoundError, hub_errors.RepositoryNotFoundError):
            return None
        return cards.tinker_path_in_card(Path(path).read_text(encoding="utf-8", errors="replace"))


def _translate(error: Exception, step: str, token: str | None) -> HubPushError:
    """A huggingface_hub failure as one typed, token-free error."""
    if isinstance(error, hub_errors.OfflineModeIsEnabled):
        return HubUnavailableError(f"{step} failed: the Hugging Face Hub is off (HF_HUB_OFFLINE=1)", retryable=False)
    if isinstance(error, ValueError) and not isinstance(error, hub_errors.HfHubHTTPError):
        # huggingface_hub's own checks (a model card whose YAML the Hub rejected, a bad option)
        return HubPushError(f"{step} failed: {_quote(error, token)}", retryable=False)
    if isinstance(error, hub_errors.HfHubHTTPError):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        quoted = _quote(error, token)
        if status == 401:
            return HubNotLoggedInError(f"{step} failed: the Hugging Face Hub rejected the token (HTTP 401); "
                                       f"{_LOGIN_HINT}", status_code=status)
        if status in (403, 404, 409, 400, 422) or isinstance(error, hub_errors.RepositoryNotFoundError):
            return HubAccessError(f"{step} failed: the Hugging Face Hub refused it (HTTP {status}): {quoted}. "
                                  "Check the repository name and that your token may write to it.", status_code=status)
        return HubUnavailableError(f"{step} failed: the Hugging Face Hub answered HTTP {status}: {quoted}",
                                   status_code=status, retryable=status is None or status >= 500 or status == 429)
    return HubUnavailableError(f"{step} failed: could not reach the Hugging Face Hub: {_quote(error, token)}")


def _quote(error: BaseException, token: str | None) -> str:
    """The error's text on one line, without any token (the Hub's text may echo request details)."""
    first = " ".join(str(error).split())[:300] or type(error).__name__
    secret = token or os.environ.get("HF_TOKEN")
    return redact_tokens(f"{type(error).__name__}: {first}", secret)
