"""Offline by construction: every test here runs with ``HF_HUB_OFFLINE=1``, an empty Hub cache of its own,
no token, and ``HF_ENDPOINT`` on a closed 127.0.0.1 port, so nothing can reach the internet even if offline
mode were ignored. Tests that exercise a download turn offline mode off themselves and point
``HF_ENDPOINT`` at :mod:`tests.tokenizers.fake_hub` (127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from tinker_actors.tokenizers import hub

from .helpers import CLOSED_PORT_ENDPOINT


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The test's own empty Hub cache (also HF_HUB_CACHE), offline, without a token."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT_ENDPOINT)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    # A token stored on this machine by `hf auth login` must not be used (huggingface_hub read the path at import).
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    hub.forget_snapshots()
    yield cache
    hub.forget_snapshots()
