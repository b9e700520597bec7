"""Downloading a checkpoint's files into a directory (``tinker-actors checkpoint download``, and the Hub push).

* external weights (``tinker://<run>/external_weights/<name>``, from 0.38's ``save_weights_external``): each
  file from its own signed URL (``RestClient.get_external_weights_urls``), as the official 0.38 CLI does;
* training and sampler checkpoints: the checkpoint's archive (``get_checkpoint_archive_url``), a tar
  extracted into the directory. The local service's archive holds the checkpoint's files and the weights
  as a PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``).

File names come from the service: one that would land outside the directory (an absolute path, ``..``)
is refused. The caller's thread blocks until every file is written.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tinker_actors.checkpoints.errors import CheckpointDownloadError, InvalidCheckpointPathError
from tinker_actors.errors import ErrorCategory, InvalidInputError
from tinker_actors.http.downloads import DOWNLOAD_TIMEOUT_S, download_to_file
from tinker_actors.http.redirects import origin_of
from tinker_actors.types import ParsedCheckpointTinkerPath

if TYPE_CHECKING:
    from tinker_actors.clients.rest import RestClient

__all__ = ["REST_WAIT_S", "download_checkpoint", "parse_checkpoint_path"]

REST_WAIT_S = 120.0
"""The longest wait for one REST answer (the HTTP layer's own timeouts and retries come first)."""


def parse_checkpoint_path(tinker_path: str) -> ParsedCheckpointTinkerPath:
    """``tinker_path`` parsed, or :class:`InvalidCheckpointPathError` saying what a checkpoint path looks like."""
    try:
        return ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    except InvalidInputError as error:
        raise InvalidCheckpointPathError(
            f"{error}: give a checkpoint path such as tinker://<run-id>/weights/<name>, "
            "tinker://<run-id>/sampler_weights/<name> or tinker://<run-id>/external_weights/<name>") from None


def download_checkpoint(rest: RestClient, tinker_path: str, destination: Path, *,
                        timeout_s: float = DOWNLOAD_TIMEOUT_S) -> int:
    """Write the files of the checkpoint ``tinker_path`` into the directory ``destination`` (created if
    missing); the number of bytes downloaded. ``timeout_s`` bounds each wait for the download servers.

    Raises :class:`InvalidCheckpointPathError` (before any request), the API's errors (an unknown checkpoint:
    ``NotFoundError``), and :class:`CheckpointDownloadError` when a download URL fails.
    """
    parsed = parse_checkpoint_path(tinker_path)
    destination.mkdir(parents=True, exist_ok=True)
    if parsed.checkpoint_type == "external":
        urls = rest.get_external_weights_urls(tinker_path).result(REST_WAIT_S).urls
        root = destination.resolve()
        targets: dict[str, Path] = {}
        for name in urls:
            target = (destination / name).resolve()
            if not target.is_relative_to(root):
                raise CheckpointDownloadError(f"checkpoint {tinker_path} names an unsafe file path {name!r}",
                                              category=ErrorCategory.SERVER)
            targets[name] = target
        size = 0
        for name, target in sorted(targets.items()):
            target.parent.mkdir(parents=True, exist_ok=True)
            size += _fetch(urls[name], target, tinker_path, timeout_s)
        return size
    url = rest.get_checkpoint_archive_url_from_tinker_path(tinker_path).result(REST_WAIT_S).url
    with tempfile.TemporaryDirectory(prefix="tinker-archive-") as scratch:
        archive = Path(scratch) / "archive.tar"
        size = _fetch(url, archive, tinker_path, timeout_s)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(destination, filter="data")  # refuses absolute paths, '..' and links out
        except tarfile.TarError as error:
            raise CheckpointDownloadError(f"the archive of checkpoint {tinker_path} is not a readable tar: {error}",
                                          retryable=True) from None
    return size


def _fetch(url: str, target: Path, tinker_path: str, timeout_s: float) -> int:
    """One download, its failures named by the server's origin only (the URL's path and query are its secret)."""
    try:
        return download_to_file(url, target, timeout_s=timeout_s, what=f"checkpoint {tinker_path}")
    except httpx.HTTPStatusError as error:
        status = error.response.status_code
        raise CheckpointDownloadError(
            f"downloading checkpoint {tinker_path} failed: HTTP {status} from {origin_of(httpx.URL(url))}"
            + (" (the download URL expired or is unknown: ask for the checkpoint again)" if status in (403, 404)
               else ""), retryable=status >= 500 or status == 429) from None
    except httpx.HTTPError as error:
        raise CheckpointDownloadError(
            f"downloading checkpoint {tinker_path} from {origin_of(httpx.URL(url))} failed: "
            f"{type(error).__name__}", retryable=True) from None
