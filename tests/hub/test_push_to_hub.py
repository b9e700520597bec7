"""``push_checkpoint_to_hub``: a checkpoint of the local service as a PEFT adapter on a 127.0.0.1 Hub."""

from __future__ import annotations

import io
import json
import tarfile

import httpx
import pytest

import tinker_actors
from tinker_actors.checkpoints import (
    HubAccessError,
    HubNotLoggedInError,
    HubRepoConflictError,
    HubUnavailableError,
    InvalidCheckpointPathError,
    InvalidHubOptionError,
    NoPeftAdapterError,
    push_checkpoint_to_hub,
)

from .conftest import WAIT_S, World
from .writable_hub import TOKEN, USER, WritableHub

ADAPTER = {"adapter_config.json", "adapter_model.safetensors"}


def _service_requests(world: World) -> int:
    """Requests about checkpoints the service received (a client's own heartbeats and telemetry left out)."""
    endpoints = world.service.request_counts()["endpoints"]
    return sum(int(counts["received"]) for name, counts in endpoints.items()
               if "checkpoint" in name or "archive" in name or "weights" in name)


def test_a_training_checkpoint_goes_up_as_its_adapter_with_a_model_card(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient) -> None:
    pushed = push_checkpoint_to_hub(rest, world.weights, f"{USER}/tiny-adapter")

    assert pushed.repo_id == f"{USER}/tiny-adapter" and pushed.revision is None and pushed.public is False
    assert pushed.files == ("README.md", "adapter_config.json", "adapter_model.safetensors")
    (commit,) = hub.commits
    assert commit.repo_id == f"{USER}/tiny-adapter" and commit.revision == "main" and not commit.create_pr
    assert set(commit.files) == {*ADAPTER, "README.md"}  # not the service's arrays.npz / checkpoint.json
    # the archive's adapter is the one save_weights_external writes for the same weights, byte for byte
    assert commit.files["adapter_model.safetensors"] == world.exported["adapter_model.safetensors"]
    assert commit.files["adapter_config.json"] == world.exported["adapter_config.json"]
    assert json.loads(commit.files["adapter_config.json"])["base_model_name_or_path"] == "tiny-byte"
    card = commit.files["README.md"].decode()
    assert card.startswith("---\nbase_model: \"tiny-byte\"\nlibrary_name: peft\n")
    assert f'tinker_path: "{world.weights}"' in card and "LoRA rank: 2" in card
    assert f'PeftModel.from_pretrained(base, "{USER}/tiny-adapter")' in card
    assert hub.repos[f"{USER}/tiny-adapter"].private is True
    assert pushed.commit_url.startswith(f"{hub.url}/{USER}/tiny-adapter/commit/") and pushed.pr_url is None


def test_public_revision_commit_message_and_patterns_are_honoured(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient) -> None:
    pushed = push_checkpoint_to_hub(rest, world.external, f"{USER}/exported", public=True, revision="v1",
                                    commit_message="first export", allow_patterns=["adapter_*"],
                                    ignore_patterns=["*.bin"])
    assert pushed.revision == "v1" and pushed.public is True and pushed.files == tuple(sorted(ADAPTER))
    (commit,) = hub.commits
    assert commit.revision == "v1" and commit.summary == "first export"
    assert {name: commit.files[name] for name in ADAPTER} == world.exported and set(commit.files) == ADAPTER
    assert hub.repos[f"{USER}/exported"].private is False
    assert hub.files(f"{USER}/exported", "main") == {}  # the branch was created, main left alone

    again = push_checkpoint_to_hub(rest, world.external, f"{USER}/exported", revision="v1",
                                   ignore_patterns=["README.md", "*.json"])
    assert again.files == ("adapter_model.safetensors",) and set(hub.commits[-1].files) == {
        "adapter_model.safetensors"}
    assert hub.commits[-1].summary == f"Upload {world.external} (tinker-actors)"


def test_without_a_repo_the_repo_and_branch_are_derived_and_a_pull_request_can_be_opened(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient) -> None:
    pushed = push_checkpoint_to_hub(rest, world.sampler)
    run = world.run_id.replace(":", "-")
    assert pushed.repo_id == f"{USER}/tinker-tiny-byte-{run}" and pushed.revision == "sampler_weights-s"
    assert hub.commits[-1].revision == "sampler_weights-s" and hub.repos[pushed.repo_id].private is True

    pr = push_checkpoint_to_hub(rest, world.sampler, pushed.repo_id, create_pr=True, commit_message="review me")
    assert pr.revision is None and pr.pr_url == f"{hub.url}/{pushed.repo_id}/discussions/1"
    assert hub.commits[-1].revision == "refs/pr/1" and hub.commits[-1].create_pr
    assert hub.files(pushed.repo_id, "main") == {}  # the pull request, not main, has the files


def test_a_missing_or_rejected_token_is_not_logged_in_and_nothing_is_downloaded(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _service_requests(world)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubNotLoggedInError, match="hf auth login"):
        push_checkpoint_to_hub(rest, world.weights, f"{USER}/nope")
    assert hub.requests == []  # no token: huggingface_hub refuses before sending
    monkeypatch.setenv("HF_TOKEN", "hf_NotTheRightToken0123456789")
    with pytest.raises(HubNotLoggedInError, match="HTTP 401") as caught:
        push_checkpoint_to_hub(rest, world.weights, f"{USER}/nope")
    assert "hf_NotTheRightToken0123456789" not in str(caught.value) + repr(caught.value)
    assert [r.path for r in hub.requests] == ["/api/whoami-v2"] and hub.repos == {}
    assert _service_requests(world) == before


@pytest.mark.parametrize("which", ["plain", "sealed"])
def test_a_checkpoint_without_a_peft_adapter_is_refused_before_the_hub_is_written(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient, which: str) -> None:
    with pytest.raises(NoPeftAdapterError, match="holds no PEFT adapter") as caught:
        push_checkpoint_to_hub(rest, getattr(world, which), f"{USER}/nothing")
    assert ("age-encrypted" in str(caught.value)) is (which == "sealed")
    assert [r.path for r in hub.requests] == ["/api/whoami-v2"] and hub.repos == {} and hub.commits == []


@pytest.mark.parametrize(("path", "options", "error"), [
    ("tinker://run/weights", {}, InvalidCheckpointPathError),
    ("run-1/weights/final", {}, InvalidCheckpointPathError),
    ("tinker://run-1/optimizer/final", {}, InvalidCheckpointPathError),
    ("tinker://run-1/weights/final", {"repo_id": "a/b/c"}, InvalidHubOptionError),
    ("tinker://run-1/weights/final", {"repo_id": "bad name!"}, InvalidHubOptionError),
    ("tinker://run-1/weights/final", {"create_pr": True, "revision": "dev"}, InvalidHubOptionError),
    ("tinker://run-1/weights/final", {"allow_patterns": "*.json"}, InvalidHubOptionError),
])
def test_bad_paths_and_options_are_refused_before_any_request(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient, path: str, options: dict[str, object],
        error: type[Exception]) -> None:
    before = _service_requests(world)
    with pytest.raises(error):
        push_checkpoint_to_hub(rest, path, **options)  # type: ignore[arg-type]
    assert hub.requests == [] and _service_requests(world) == before


def test_patterns_that_leave_nothing_are_refused_before_the_repo_is_created(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient) -> None:
    with pytest.raises(InvalidHubOptionError, match="nothing to upload"):
        push_checkpoint_to_hub(rest, world.external, f"{USER}/empty", allow_patterns=["*.gguf"])
    assert hub.repos == {}


def test_a_repo_holding_another_checkpoint_is_not_overwritten(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient) -> None:
    push_checkpoint_to_hub(rest, world.weights, f"{USER}/shared")
    push_checkpoint_to_hub(rest, world.weights, f"{USER}/shared", commit_message="again")  # the same one: fine
    with pytest.raises(HubRepoConflictError, match=world.weights):
        push_checkpoint_to_hub(rest, world.external, f"{USER}/shared")
    assert [c.summary for c in hub.commits][-1] == "again" and len(hub.commits) == 2


def test_an_upload_the_hub_refuses_is_a_typed_error_without_the_token(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient) -> None:
    with pytest.raises(HubAccessError, match="HTTP 403") as caught:
        push_checkpoint_to_hub(rest, world.weights, "someone-else/adapter")
    assert caught.value.status_code == 403 and TOKEN not in str(caught.value) + repr(caught.value)
    assert hub.commits == []


def test_offline_mode_refuses_before_any_request(
        world: World, hub: WritableHub, rest: tinker_actors.RestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        push_checkpoint_to_hub(rest, world.weights, f"{USER}/offline")
    assert hub.requests == []


def test_the_archive_of_a_training_checkpoint_holds_its_peft_adapter(world: World, rest: tinker_actors.RestClient
                                                                     ) -> None:
    url = rest.get_checkpoint_archive_url_from_tinker_path(world.weights).result(WAIT_S).url
    with tarfile.open(fileobj=io.BytesIO(httpx.get(url).content)) as tar:
        names = set(tar.getnames())
        extracted = tar.extractfile("adapter_model.safetensors")
        assert extracted is not None
        adapter = extracted.read()
    assert names == {"arrays.npz", "checkpoint.json", *ADAPTER}
    assert adapter == world.exported["adapter_model.safetensors"]
