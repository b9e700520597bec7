"""Pushing checkpoints to a Hugging Face Hub that runs on 127.0.0.1 (:mod:`tests.hub.writable_hub`).

Nothing can reach the internet: ``HF_ENDPOINT`` names the test's hub, uploads never leave the inline
("regular") mode the hub answers, Xet storage and telemetry are off, and the token stored on this machine by
``hf auth login`` is never read (huggingface_hub's token path points into the test's directory).

``world`` is one local service (module-wide) holding a run with a training checkpoint (``weights``), sampler
weights (``sampler``), an external weights export of the same weights (``external``) and two external
weights checkpoints without a PEFT adapter (``plain``: a text file; ``sealed``: age-encrypted files).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import constants as hub_constants

import tinker_actors
from tinker_actors.local import LocalService
from tinker_actors.local.engine.storage import Storage

from .writable_hub import TOKEN, WritableHub, running_writable_hub

WAIT_S = 60.0


@dataclass
class World:
    service: LocalService
    run_id: str
    weights: str
    sampler: str
    external: str
    plain: str
    sealed: str
    exported: dict[str, bytes]  # the files of ``external``, as its URLs serve them


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("push-hf-data")
    with LocalService(data_dir=data_dir) as first, tinker_actors.ServiceClient(
            base_url=first.base_url, api_key=first.api_key) as client:
        training = client.create_lora_training_client("tiny-byte", rank=2).result(WAIT_S)
        weights = training.save_state("final").result(WAIT_S).path
        sampler = training.save_weights_for_sampler("s").result(WAIT_S).path
        external = training.save_weights_external("x").result(WAIT_S).path  # the same weights as `weights`
        run_id = training.model_id
    storage = Storage(data_dir)
    storage.load()
    plain = storage.write_external_weights(run_id, "plain", {"notes.txt": b"no adapter here"}).tinker_path
    sealed = storage.write_external_weights(run_id, "sealed", {"adapter_config.json.age": b"age",
                                                               "adapter_model.safetensors.age": b"age"}).tinker_path
    with LocalService(data_dir=data_dir) as service, tinker_actors.ServiceClient(
            base_url=service.base_url, api_key=service.api_key) as client:
        urls = client.create_rest_client().get_external_weights_urls(external).result(WAIT_S).urls
        exported = {name: httpx.get(url).content for name, url in urls.items()}
        yield World(service, run_id, weights, sampler, external, plain, sealed, exported)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[WritableHub]:
    """The test's hub, named by HF_ENDPOINT, with HF_TOKEN set to its user's token (delete it to log out)."""
    with running_writable_hub() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        # huggingface_hub read these at its import: set what it uses now
        monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_TELEMETRY", True)
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        yield running


@pytest.fixture
def rest(world: World) -> Iterator[tinker_actors.RestClient]:
    with tinker_actors.ServiceClient(base_url=world.service.base_url, api_key=world.service.api_key) as client:
        yield client.create_rest_client()
