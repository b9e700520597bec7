"""``DmelChunk.length`` (official 0.38): the first dimension of the DMel tensor, read from its container header;
bytes without a header are a typed error. Checked against the official SDK when it is installed."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from tests.wire.conftest import OFFICIAL_038_PYTHON
from tinker_actors.errors import InvalidInputError
from tinker_actors.types.dmel_chunk import DmelChunk, DmelHeaderError

# dtype byte, ndim, dims (LEB128: 300 = 0xAC 0x02), then payload bytes the header reader never looks at
HEADERS = {
    "2-d": bytes([1, 2, 0xAC, 0x02, 80]) + b"\x00" * 16,
    "constant": bytes([254, 3, 1, 7, 9]),
    "1-d": bytes([0, 1, 5]),
}


def test_the_length_is_the_first_dimension() -> None:
    assert DmelChunk(dmel=HEADERS["2-d"]).length == 300
    assert DmelChunk(dmel=HEADERS["constant"]).length == 7
    assert DmelChunk(dmel=base64.b64encode(HEADERS["1-d"]).decode()).length == 5  # as JSON carries it


@pytest.mark.parametrize("data", [b"", bytes([9, 1, 5]), bytes([1, 2, 0x80]), bytes([254]), bytes([1, 0])])
def test_bytes_without_a_tensor_header_are_a_typed_error(data: bytes) -> None:
    with pytest.raises(DmelHeaderError):
        DmelChunk(dmel=data).length  # noqa: B018
    assert issubclass(DmelHeaderError, InvalidInputError)


def test_the_official_sdk_reads_the_same_lengths() -> None:
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}")
    encoded = {name: base64.b64encode(data).decode() for name, data in HEADERS.items()}
    script = ("import json, sys\nfrom tinker.types import DmelChunk\n"
              "print(json.dumps({k: DmelChunk(dmel=v).length for k, v in json.loads(sys.stdin.read()).items()}))\n")
    done = subprocess.run([str(OFFICIAL_038_PYTHON), "-c", script], input=json.dumps(encoded), capture_output=True,
                          text=True, timeout=120, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                       "TINKER_TELEMETRY": "0", "HOME": "/nonexistent"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {name: DmelChunk(dmel=data).length for name, data in HEADERS.items()}
