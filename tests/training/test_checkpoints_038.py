"""Checkpoint saves and loads of protocol 0.38 with our SDK over real HTTP (LocalService): ``save_state``'s
``ttl_seconds`` / ``overwrite`` / ``user_metadata`` (and ``save_weights_for_sampler``'s), ``from_state`` as one
``/load_weights`` call (base-model override, another account's checkpoint through ``weights_access_token``),
``save_weights_external`` with downloadable, expiring URLs; on 0.6.3 the 0.38-only arguments are refused
before anything is sent."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

import tinker_actors as tinker
from tinker_actors import types
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import InvalidInputError, RequestFailedError, TinkerError
from tinker_actors.local import LocalService

KEYS = {"alice": "tml-alice-ckpt-key-0001", "bob": "tml-bob-ckpt-key-0002"}
WAIT_S = 60.0
LINK_LIFETIME_S = 4.0
SEQUENCE = list(b"the cat sat on the mat")


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(api_keys=KEYS, long_poll_s=0.5, archive_lifetime_s=LINK_LIFETIME_S) as svc:
        yield svc


def _client(service: LocalService, protocol: str, user: str = "alice") -> tinker.ServiceClient:
    config = Config(api_key=KEYS[user], base_url=service.base_url, telemetry_enabled=False, protocol=protocol,
                    retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05))
    return tinker.ServiceClient(config=config)


@pytest.fixture
def alice(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with _client(service, "0.38") as client:
        yield client


@pytest.fixture
def bob(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with _client(service, "0.38", "bob") as client:
        yield client


def _datum() -> tinker.Datum:
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(SEQUENCE[:-1]),
                        loss_fn_inputs={"target_tokens": SEQUENCE[1:], "weights": [1.0] * (len(SEQUENCE) - 1)})


def _trained(client: tinker.ServiceClient, steps: int = 2) -> tinker.TrainingClient:
    training: tinker.TrainingClient = client.create_lora_training_client("tiny-byte", rank=4, seed=3).result(WAIT_S)
    for _ in range(steps):
        _step(training)
    return training


def _step(training: tinker.TrainingClient) -> None:
    training.forward_backward([_datum()], "cross_entropy").result(WAIT_S)
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result(WAIT_S)


def _logprobs(training: tinker.TrainingClient) -> np.ndarray:
    out = training.forward([_datum()], "cross_entropy").result(WAIT_S)
    return np.asarray(out.loss_fn_outputs[0]["logprobs"].to_numpy())


def _listed(client: tinker.ServiceClient, model_id: str) -> dict[str, Any]:
    rest = client.create_rest_client()
    return {c.tinker_path: c for c in rest.list_checkpoints(model_id).result(WAIT_S).checkpoints}


def _received(service: LocalService, endpoint: str) -> int:
    counts: dict[str, Any] = service.stats.snapshot()["endpoints"].get(endpoint, {})
    return int(counts.get("received", 0))


# ---- save_state / save_weights_for_sampler: metadata, expiry, overwrite ---------------------------------------

def test_metadata_is_kept_and_a_short_ttl_expires_the_checkpoint(alice: tinker.ServiceClient) -> None:
    training = _trained(alice, steps=1)
    saved_at = datetime.now(UTC)
    kept = training.save_state("kept", user_metadata={"stage": "sft", "step": "1"}).result(WAIT_S).path
    brief = training.save_state("brief", ttl_seconds=3, user_metadata={"why": "scratch"}).result(WAIT_S).path
    sampler = training.save_weights_for_sampler("brief-sampler", ttl_seconds=3,
                                                user_metadata={"for": "eval"}).result(WAIT_S).path
    listed = _listed(alice, training.model_id)
    assert listed[kept].user_metadata == {"stage": "sft", "step": "1"} and listed[kept].expires_at is None
    assert listed[brief].user_metadata == {"why": "scratch"}
    assert listed[sampler].user_metadata == {"for": "eval"} and listed[sampler].checkpoint_type == "sampler"
    for path in (brief, sampler):
        expires_at = listed[path].expires_at
        assert expires_at is not None
        assert saved_at + timedelta(seconds=2) < expires_at < saved_at + timedelta(seconds=3 + WAIT_S)
    deadline = time.monotonic() + 30
    while {brief, sampler} & set(_listed(alice, training.model_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    remaining = _listed(alice, training.model_id)
    assert brief not in remaining and sampler not in remaining and kept in remaining
    with pytest.raises(TinkerError, match="not found"):  # really gone: it cannot be loaded either
        training.load_state(brief).result(WAIT_S)


def test_a_used_name_is_refused_without_overwrite_and_replaced_with_it(alice: tinker.ServiceClient) -> None:
    training = _trained(alice, steps=1)
    first = training.save_state("same", user_metadata={"version": "1"}).result(WAIT_S).path
    before = _logprobs(training)
    _step(training)
    with pytest.raises(RequestFailedError, match=r"already exists.*overwrite=True"):
        training.save_state("same", user_metadata={"version": "2"}).result(WAIT_S)
    listed = _listed(alice, training.model_id)[first]
    assert listed.user_metadata == {"version": "1"}  # untouched
    restored = alice.create_training_client_from_state(first).result(WAIT_S)
    np.testing.assert_allclose(_logprobs(restored), before, rtol=1e-6)  # still the first save's weights
    # overwrite=True replaces the checkpoint and its whole metadata (none given: none kept)
    after = _logprobs(training)
    assert training.save_state("same", overwrite=True).result(WAIT_S).path == first
    replaced = _listed(alice, training.model_id)[first]
    assert replaced.user_metadata is None and replaced.time > listed.time
    restored = alice.create_training_client_from_state(first).result(WAIT_S)
    np.testing.assert_allclose(_logprobs(restored), after, rtol=1e-6)


def test_bad_save_options_are_typed_errors_before_sending(alice: tinker.ServiceClient, service: LocalService) -> None:
    training = _trained(alice, steps=0)
    sent = _received(service, "save_weights")
    for options in ({"ttl_seconds": -1}, {"ttl_seconds": 1.5}, {"user_metadata": {"k": 1}}, {"overwrite": "yes"}):
        with pytest.raises(InvalidInputError):
            training.save_state("bad", **options)
    assert _received(service, "save_weights") == sent


# ---- from_state: one load ------------------------------------------------------------------------------------

def test_from_state_is_one_load_call_and_restores_weights_and_optimizer(alice: tinker.ServiceClient,
                                                                      service: LocalService) -> None:
    training = _trained(alice)
    path = training.save_state("resume").result(WAIT_S).path
    expected = _logprobs(training)
    counts = {e: _received(service, e) for e in ("load_weights", "create_model", "weights_info")}
    restored = alice.create_training_client_from_state_with_optimizer(path, user_metadata={"run": "b"}
                                                                      ).result(WAIT_S)
    assert {e: _received(service, e) - n for e, n in counts.items()} == {
        "load_weights": 1, "create_model": 0, "weights_info": 0}
    assert restored.model_id != training.model_id and restored.get_info().model_data.model_name == "tiny-byte"
    np.testing.assert_allclose(_logprobs(restored), expected, rtol=1e-6)
    # The optimizer state came along: the same next step gives the same weights as the original's.
    _step(training)
    _step(restored)
    np.testing.assert_allclose(_logprobs(restored), _logprobs(training), rtol=1e-5)
    run = alice.create_rest_client().get_training_run(restored.model_id).result(WAIT_S)
    assert run.user_metadata == {"run": "b"}


def test_base_model_override_must_fit_the_checkpoint(alice: tinker.ServiceClient) -> None:
    training = _trained(alice, steps=1)
    path = training.save_state("base").result(WAIT_S).path
    # Another name of the same model fits (the official service: e.g. another context length of it).
    same = alice.create_training_client_from_state(path, base_model="tinker-actors/tiny-byte").result(WAIT_S)
    assert same.get_info().model_data.model_name == "tiny-byte"
    np.testing.assert_allclose(_logprobs(same), _logprobs(training), rtol=1e-6)
    with pytest.raises(TinkerError, match="not compatible") as refused:
        alice.create_training_client_from_state(path, base_model="tiny-bpe").result(WAIT_S)
    assert "400" in str(refused.value) or getattr(refused.value, "status_code", 400) == 400
    with pytest.raises(TinkerError, match="unknown base model"):
        alice.create_training_client_from_state(path, base_model="no-such-model").result(WAIT_S)


def test_another_accounts_checkpoint_loads_with_its_access_token(alice: tinker.ServiceClient,
                                                                 bob: tinker.ServiceClient) -> None:
    theirs = _trained(bob)
    path = theirs.save_state("private").result(WAIT_S).path
    with pytest.raises(TinkerError, match="not found"):  # private: as if it did not exist
        alice.create_training_client_from_state(path).result(WAIT_S)
    with pytest.raises(TinkerError, match="not found"):  # a token that is no credential opens nothing
        alice.create_training_client_from_state(path, weights_access_token="tml-not-a-key").result(WAIT_S)
    mine = alice.create_training_client_from_state(path, weights_access_token=KEYS["bob"]).result(WAIT_S)
    np.testing.assert_allclose(_logprobs(mine), _logprobs(theirs), rtol=1e-6)
    assert mine.model_id.startswith(alice.session_id)  # alice's model, in alice's session


# ---- save_weights_external ----------------------------------------------------------------------------------

def _read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """A safetensors file read by the format's rules (no package needed)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    body = data[8 + length:]
    dtypes = {"F32": np.float32, "F64": np.float64}
    return {name: np.frombuffer(body[start:end], dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
            for name, entry in header.items() for start, end in [entry["data_offsets"]]}


def test_external_weights_download_as_an_adapter_and_the_urls_expire(alice: tinker.ServiceClient) -> None:
    training = _trained(alice, steps=1)
    saved = training.save_weights_external("export", ttl_seconds=3600).result(WAIT_S)
    assert saved.path == f"tinker://{training.model_id}/external_weights/export"
    listed = _listed(alice, training.model_id)[saved.path]
    assert listed.checkpoint_type == "external" and listed.expires_at is not None
    answer = alice.create_rest_client().get_external_weights_urls(saved.path).result(WAIT_S)
    assert set(answer.urls) == {"adapter_config.json", "adapter_model.safetensors"}
    assert all(url.startswith("http://127.0.0.1:") for url in answer.urls.values())
    files = {name: httpx.get(url, timeout=WAIT_S) for name, url in answer.urls.items()}  # no key needed
    assert all(response.status_code == 200 for response in files.values())
    config = json.loads(files["adapter_config.json"].content)
    assert config["r"] == 4 and config["base_model_name_or_path"] == "tiny-byte" and config["peft_type"] == "LORA"
    tensors = _read_safetensors(files["adapter_model.safetensors"].content)
    assert tensors and all(array.dtype == np.float32 for array in tensors.values())
    assert all(4 in array.shape for array in tensors.values())  # every LoRA factor has the rank as a side
    assert any(np.abs(array).max() > 0 for name, array in tensors.items() if name.endswith(".b"))  # trained
    assert listed.size_bytes == sum(len(r.content) for r in files.values())
    try:
        from safetensors.numpy import load
    except ImportError:
        pass
    else:  # the real reader agrees
        loaded = load(files["adapter_model.safetensors"].content)
        assert set(loaded) == set(tensors) and all(np.array_equal(loaded[k], tensors[k]) for k in tensors)
    time.sleep(LINK_LIFETIME_S + 0.5)
    assert httpx.get(answer.urls["adapter_config.json"], timeout=WAIT_S).status_code == 404


def test_external_weights_cannot_be_loaded_and_encryption_is_refused(alice: tinker.ServiceClient) -> None:
    training = _trained(alice, steps=0)
    path = training.save_weights_external("files").result(WAIT_S).path
    with pytest.raises(TinkerError, match="external weights"):
        alice.create_training_client_from_state(path).result(WAIT_S)
    with pytest.raises(InvalidInputError):
        training.save_weights_external("x", age_encryption_recipients=["age1"] * 11)
    with pytest.raises(TinkerError, match="age_encryption_recipients"):
        training.save_weights_external("enc", age_encryption_recipients=["age1qqq"]).result(WAIT_S)


# ---- protocol 0.6.3 -------------------------------------------------------------------------------------------

def test_on_063_the_038_arguments_are_refused_before_sending(service: LocalService) -> None:
    with _client(service, "0.6.3") as client:
        training = _trained(client, steps=1)
        path = training.save_state("old").result(WAIT_S).path
        sent = {e: _received(service, e) for e in ("save_weights", "save_weights_for_sampler",
                                                   "save_weights_external", "load_weights", "weights_info")}
        refusals: list[Callable[[], object]] = [
            lambda: training.save_state("x", ttl_seconds=3600),
            lambda: training.save_state("x", overwrite=True),
            lambda: training.save_state("x", user_metadata={"k": "v"}),
            lambda: training.save_weights_for_sampler("x", ttl_seconds=3600),
            lambda: training.save_weights_external("x"),
            lambda: client.create_training_client_from_state(path, base_model="tiny-byte"),
            lambda: client.create_training_client_from_state(path, weights_access_token=KEYS["bob"]),
        ]
        for refusal in refusals:
            with pytest.raises(InvalidInputError, match=r"0\.38"):
                refusal()
        assert {e: _received(service, e) for e in sent} == sent
        # What 0.6.3 has still works: a used name is replaced (no overwrite field on its wire), from_state in
        # three calls (weights_info, create_model, load_weights), user_metadata given positionally as there.
        assert training.save_state("old").result(WAIT_S).path == path
        restored = client.create_training_client_from_state(path, {"from": "old"}).result(WAIT_S)
        np.testing.assert_allclose(_logprobs(restored), _logprobs(training), rtol=1e-6)
        assert _received(service, "weights_info") == sent["weights_info"] + 1
