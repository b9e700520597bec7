"""Fixtures of the credential tests: a home directory of their own, and an environment without credentials.

Every test here runs with ``HOME`` pointed at a temporary directory (so ``~/.tinker/credentials.json`` is
the test's) and without ``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD`` and ``TINKER_BASE_URL``, whatever the
machine has.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wire.conftest import OFFICIAL_038_PYTHON

CREDENTIAL_VARS = ("TINKER_API_KEY", "TINKER_CREDENTIAL_CMD", "TINKER_BASE_URL", "TINKER_PROJECT_ID")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    yield home


def credentials_path(home: Path) -> Path:
    return home / ".tinker" / "credentials.json"


def write_official_file(home: Path, data: dict[str, Any]) -> Path:
    """A credentials file as the official CLI writes it (0700 directory, 0600 file, 2-space JSON)."""
    path = credentials_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return path


def official_python() -> Path:
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}: "
                    "`make test` creates it (.venv-tinker038)")
    return OFFICIAL_038_PYTHON


def run_official(args: list[str], *, home: Path, base_url: str, stdin: str = "",
                 extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The official 0.38 interpreter with only what it needs in its environment (127.0.0.1 service)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "TINKER_BASE_URL": base_url, "TINKER_TELEMETRY": "0", "NO_PROXY": "127.0.0.1",
           "PYTHONDONTWRITEBYTECODE": "1", **(extra_env or {})}
    return subprocess.run([str(official_python()), *args], input=stdin, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
