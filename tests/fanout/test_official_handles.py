"""join_sampling_session and sampler handles with the official tinker==0.38.0 SDK (its own virtualenv)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import tinker_actors as tinker
from tests.compat038.conftest import official_env, official_python
from tinker_actors.fanout.seq_blocks import BLOCK
from tinker_actors.local import LocalService

SCRIPT = Path(__file__).resolve().parent / "official_handles.py"
REPO = SCRIPT.parents[2]


@pytest.fixture
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5, protocol_flags={"sample_join_sampling_session": True}) as svc:
        yield svc


def test_official_clones_join_the_session_and_handles_go_both_ways(service: LocalService, tmp_path: Path) -> None:
    python = official_python()
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key) as ours:
        our_sampler = ours.create_sampling_client_future(base_model="tiny-byte").result(60)
        done = subprocess.run([str(python), str(SCRIPT), our_sampler.get_sampler_handle()], cwd=REPO,
                              env=official_env(service, tmp_path), capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["sampled"] == [1, 1, 1]
        # The official SDK does not read our handles (docs/guides/fan_out.md: its format has no model path field).
        assert "KeyError" in str(summary["ours"]), summary["ours"]
        # Its clones asked the service for their numbers: three clients, three blocks, no seq id twice.
        official_session = json.loads(base64.urlsafe_b64decode(summary["handle"]))["sampling_session_id"]
        seen = [e["seq_id"] for e in service.stats.snapshot()["sequenced"] if e["id"] == official_session]
        assert len(seen) == 3 and sorted(seq_id // BLOCK for seq_id in seen) == [0, 1, 2]
        # Its handle works here, and a clone made here takes the next number.
        clone = tinker.SamplingClient.from_sampler_handle(summary["handle"], api_key=service.api_key)
        assert clone.sample(tinker.ModelInput.from_ints([1, 2]), 1, tinker.SamplingParams(max_tokens=2)).result(30)
        seen = [e["seq_id"] for e in service.stats.snapshot()["sequenced"] if e["id"] == official_session]
        assert sorted({seq_id // BLOCK for seq_id in seen}) == [0, 1, 2, 3]
