"""Downloading a signed URL (a checkpoint archive, an exported weights file) into a file.

A signed download URL is its own credential: it is fetched without the API key, on a plain connection
of its own, never through the API's pools. The caller's thread blocks while the body streams to disk
(a CLI command or a user's call, never an actor). Redirects are followed: storage services answer
downloads with them, and no key is sent to be leaked.
"""

from __future__ import annotations

from pathlib import Path

import httpx

__all__ = ["DOWNLOAD_TIMEOUT_S", "download_to_file"]

DOWNLOAD_TIMEOUT_S = 60.0
"""The longest wait for a connection or for the next block of the body (not for the whole download)."""


def download_to_file(url: str, target: Path, *, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> int:
    """GET ``url`` into ``target`` (created or replaced); the number of bytes written.

    Raises ``httpx.HTTPStatusError`` for an error answer and ``httpx.HTTPError`` for a transport failure.
    """
    size = 0
    with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response, target.open("wb") as out:
        response.raise_for_status()
        for block in response.iter_bytes():
            out.write(block)
            size += len(block)
    return size
