"""``tinker-actors checkpoint push-hf`` and the official 0.38 CLI's ``tinker checkpoint push-hf``, each in a
subprocess as a user runs it, against the local service and a Hub on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.compat038.conftest import official_env, official_python

from .conftest import World
from .writable_hub import TOKEN, USER, WritableHub

RUN_TIMEOUT_S = 120.0


def _hub_env(hub: WritableHub, home: Path, *, token: bool = True) -> dict[str, str]:
    """The Hub settings of a user of the test's hub: nothing else of this process's Hugging Face setup."""
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf-home"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return env | ({"HF_TOKEN": TOKEN} if token else {})


def _ours(world: World, hub: WritableHub, home: Path, *args: str, token: bool = True
          ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "TRANSFORMERS_"))}
    env = base | {"TINKER_BASE_URL": world.service.base_url, "TINKER_API_KEY": world.service.api_key,
                  "TINKER_TELEMETRY": "0", "HOME": str(home)} | _hub_env(hub, home, token=token)
    return subprocess.run([sys.executable, "-m", "tinker_actors.cli", "checkpoint", "push-hf", *args],
                          capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S, check=False)


def test_our_cli_pushes_with_the_official_options_and_prints_json(world: World, hub: WritableHub,
                                                                  tmp_path: Path) -> None:
    done = _ours(world, hub, tmp_path, world.weights, "-r", f"{USER}/cli", "--public", "--revision", "dev",
                 "--commit-message", "from the CLI", "--allow-pattern", "adapter_*", "--allow-pattern", "*.md",
                 "--ignore-pattern", "*.bin", "-f", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {k: out[k] for k in ("checkpoint_path", "repo_id", "revision", "public")} == {
        "checkpoint_path": world.weights, "repo_id": f"{USER}/cli", "revision": "dev", "public": True}
    assert out["files"] == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    (commit,) = hub.commits
    assert commit.revision == "dev" and commit.summary == "from the CLI" and not hub.repos[f"{USER}/cli"].private
    assert commit.files["adapter_model.safetensors"] == world.exported["adapter_model.safetensors"]

    card_less = _ours(world, hub, tmp_path, world.external, "--repo", f"{USER}/bare", "--no-model-card", "-f", "json")
    assert card_less.returncode == 0, card_less.stderr
    assert set(hub.commits[-1].files) == {"adapter_config.json", "adapter_model.safetensors"}
    assert hub.repos[f"{USER}/bare"].private


def test_our_cli_says_not_logged_in_and_refuses_bad_paths(world: World, hub: WritableHub, tmp_path: Path) -> None:
    logged_out = _ours(world, hub, tmp_path, world.weights, "-r", f"{USER}/x", token=False)
    assert logged_out.returncode == 1 and "Error: not logged in to the Hugging Face Hub" in logged_out.stderr
    bad = _ours(world, hub, tmp_path, "tinker://run/nope/x", "-r", f"{USER}/x")
    assert bad.returncode == 1 and "Error: Invalid tinker path" in bad.stderr
    assert hub.requests == [] and hub.commits == []


def test_the_official_038_cli_pushes_a_checkpoint_of_the_local_service(world: World, hub: WritableHub,
                                                                       tmp_path: Path) -> None:
    command = official_python().parent / "tinker"
    env = official_env(world.service, tmp_path) | _hub_env(hub, tmp_path)
    del env["HF_HUB_OFFLINE"]

    def tinker(*args: str) -> dict[str, object]:
        done = subprocess.run([str(command), "-f", "json", "checkpoint", "push-hf", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    # a training checkpoint: the official CLI exports it through temporary external weights, then uploads
    assert tinker(world.weights, "--repo", f"{USER}/official") == {
        "checkpoint_path": world.weights, "repo_id": f"{USER}/official", "public": False}
    commit = hub.commits[-1]
    assert set(commit.files) == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert commit.files["adapter_model.safetensors"] == world.exported["adapter_model.safetensors"]
    assert "base_model: tiny-byte" in commit.files["README.md"].decode() and hub.repos[f"{USER}/official"].private

    assert tinker(world.external, "-r", f"{USER}/official-public", "--public", "--commit-message", "0.38 push",
                  "--no-model-card") == {"checkpoint_path": world.external, "repo_id": f"{USER}/official-public",
                                         "public": True}
    commit = hub.commits[-1]
    assert commit.summary == "0.38 push" and set(commit.files) == {"adapter_config.json", "adapter_model.safetensors"}
    assert {name: commit.files[name] for name in commit.files} == world.exported
    assert not hub.repos[f"{USER}/official-public"].private
