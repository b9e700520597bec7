"""The official tinker==0.38.0 SDK as a witness, in its own virtualenv (see official_038.py).

``make test`` creates ``.venv-tinker038`` (the official 0.38 SDK cannot share a virtualenv with the
0.6.3 one the compat tests use). Tests that need it skip, saying so, when it is absent; set
``TINKER_ACTORS_OFFICIAL_038_PYTHON`` to use an interpreter elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_038_PYTHON = Path(os.environ.get("TINKER_ACTORS_OFFICIAL_038_PYTHON",
                                          REPO / ".venv-tinker038" / "bin" / "python"))
_HELPER = Path(__file__).with_name("official_038.py")


class Official038:
    """One long-lived helper process (importing the SDK takes seconds); one JSON line per call."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def call(self, op: str, **arguments: Any) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the official 0.38 helper exited (code {self._process.poll()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"the official 0.38 helper failed on {op}:\n{answer['error']}")
        return answer["result"]


@pytest.fixture(scope="package")
def official() -> Iterator[Official038]:
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}: "
                    "`make test` creates it (.venv-tinker038)")
    process = subprocess.Popen([str(OFFICIAL_038_PYTHON), str(_HELPER)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=sys.stderr, text=True, cwd=REPO)
    try:
        helper = Official038(process)
        version = helper.call("hello")["tinker"]
        assert version == "0.38.0", f"{OFFICIAL_038_PYTHON} has tinker {version}, not 0.38.0"
        yield helper
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
