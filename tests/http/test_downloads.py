"""Signed-URL downloads (tinker_actors.http.downloads) against a server on 127.0.0.1 that stalls mid-body: a
download that stops moving says so once, naming the origin but never the URL's secret path and query."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, MutableMapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from tests.loopback_http import serving_on_loopback
from tinker_actors.http.downloads import download_to_file

BODY = bytes(range(256)) * 64  # 16 KiB
SECRET_QUERY = "X-Amz-Signature=cafe0123456789"


class _Stalls:
    """How the next answer behaves: seconds of silence after the first half of the body."""

    def __init__(self) -> None:
        self.pause_s = 0.0
        self.released = threading.Event()


def _handler(stalls: _Stalls) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            half = len(BODY) // 2
            self.wfile.write(BODY[:half])
            self.wfile.flush()
            stalls.released.wait(stalls.pause_s)
            with contextlib.suppress(OSError):  # the client may have given up
                self.wfile.write(BODY[half:])

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, _Stalls]]:
    stalls = _Stalls()
    with serving_on_loopback(_handler(stalls), "stalling-download") as url:
        yield url, stalls
        stalls.released.set()


def _stalled(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "wait.stalled"]


def test_a_download_that_stalls_says_so_once_then_completes(server: tuple[str, _Stalls], tmp_path: Path) -> None:
    url, stalls = server
    stalls.pause_s = 2.0  # four warning periods of silence
    with structlog.testing.capture_logs() as logs:
        size = download_to_file(f"{url}/archive/run-1.tar?{SECRET_QUERY}", tmp_path / "a.tar",
                                what="checkpoint tinker://run-1/weights/final", warn_after_s=0.5)
    assert size == len(BODY) and (tmp_path / "a.tar").read_bytes() == BODY
    warnings = _stalled(logs)
    assert len(warnings) == 1, warnings  # one line for the stall, not one per check
    warning = warnings[0]
    assert warning["log_level"] == "warning" and warning["request_type"] == "download"
    assert warning["what"] == "checkpoint tinker://run-1/weights/final" and warning["origin"] == url
    assert warning["received_bytes"] == len(BODY) // 2
    assert warning["last_answer"] == f"HTTP 200, {len(BODY)} bytes announced"
    assert warning["no_progress_for"] >= 0.5 and 0 < warning["gives_up_in"] <= 60.0 and warning["gives_up_at"]
    assert SECRET_QUERY not in str(logs) and "/archive/" not in str(logs)


def test_a_download_that_keeps_moving_logs_nothing(server: tuple[str, _Stalls], tmp_path: Path) -> None:
    url, _ = server
    with structlog.testing.capture_logs() as logs:
        assert download_to_file(f"{url}/a?{SECRET_QUERY}", tmp_path / "a", warn_after_s=2.0) == len(BODY)
    time.sleep(2.5)  # the watch is gone with the download: nothing comes later either
    assert _stalled(logs) == []


def test_a_download_stalled_past_its_timeout_fails_after_one_warning(server: tuple[str, _Stalls],
                                                                      tmp_path: Path) -> None:
    url, stalls = server
    stalls.pause_s = 8.0
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs, pytest.raises(httpx.ReadTimeout):
        download_to_file(f"{url}/a?{SECRET_QUERY}", tmp_path / "a", timeout_s=1.5, warn_after_s=0.5)
    assert time.monotonic() - started < 6.0  # the read timeout, not the server's pause
    warnings = _stalled(logs)
    assert len(warnings) == 1 and warnings[0]["gives_up_in"] <= 1.0
