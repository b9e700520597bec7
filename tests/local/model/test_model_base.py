"""Base models: registry, shipped tokenizers, and base weights identical in every process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from tinker_actors.local.model import (
    BASE_MODELS,
    CORPUS_PATH,
    DatumArrays,
    LoraTrainer,
    UnknownBaseModel,
    get_base_model,
    load_tokenizer,
)

REPO = Path(__file__).resolve().parents[3]

# Prints a digest of the base weights and of a forward pass, for comparison across processes.
_DIGEST_SCRIPT = """
import hashlib, json, numpy as np
from tinker_actors.local.model import DatumArrays, LoraTrainer
from tinker_actors.local.model.weights import base_weights
from tinker_actors.local.model import get_base_model
out = {}
for name in ("tiny-byte", "tiny-bpe"):
    w = base_weights(get_base_model(name), "float64")
    h = hashlib.sha256(w.embed.tobytes() + w.positions.tobytes())
    for key in sorted(w.matrices):
        h.update(w.matrices[key].tobytes())
    lora = LoraTrainer(name, rank=4, seed=11).state(with_optimizer=False)
    for key in sorted(lora):
        h.update(np.ascontiguousarray(lora[key]).tobytes())
    datum = DatumArrays.next_token(list(range(1, 30)))
    logprobs = LoraTrainer(name, rank=4).forward([datum], "cross_entropy").outputs[0]["logprobs"]
    out[name] = {"digest": h.hexdigest(), "logprobs": logprobs.tolist()}
print(json.dumps(out))
"""


def _digests() -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT], capture_output=True, text=True, check=True, timeout=60, cwd=REPO
    )
    parsed: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return parsed


def test_base_weights_are_the_same_in_every_process() -> None:
    first, second = _digests(), _digests()
    assert first.keys() == {"tiny-byte", "tiny-bpe"}
    for name in first:
        assert first[name]["digest"] == second[name]["digest"]
        np.testing.assert_allclose(first[name]["logprobs"], second[name]["logprobs"], rtol=1e-6)
    assert first["tiny-byte"]["digest"] != first["tiny-bpe"]["digest"]
    # and in this process too
    local = LoraTrainer("tiny-bpe", rank=4).forward([DatumArrays.next_token(list(range(1, 30)))], "cross_entropy")
    np.testing.assert_allclose(local.outputs[0]["logprobs"], first["tiny-bpe"]["logprobs"], rtol=1e-6)


def test_registry_names_aliases_and_errors() -> None:
    assert set(BASE_MODELS) == {"tiny-byte", "tiny-bpe"}
    for name, info in BASE_MODELS.items():
        assert get_base_model(name) is info
        assert get_base_model(info.tokenizer_id) is info
        assert get_base_model(name.upper()) is info
        assert info.tokenizer_path.is_file()
        assert info.context_window == 512
        assert info.d_model % info.n_heads == 0
    assert get_base_model("tiny") is BASE_MODELS["tiny-byte"]
    assert get_base_model("bpe") is BASE_MODELS["tiny-bpe"]
    with pytest.raises(UnknownBaseModel, match="tiny-bpe"):
        get_base_model("Qwen/Qwen3-8B")
    assert isinstance(UnknownBaseModel("x"), ValueError)


@pytest.mark.parametrize("name", sorted(BASE_MODELS))
def test_shipped_tokenizers_load_with_tokenizers_and_round_trip(name: str) -> None:
    info = BASE_MODELS[name]
    plain = Tokenizer.from_file(str(info.tokenizer_path))  # the way an SDK user loads it
    tokenizer = load_tokenizer(info.tokenizer_id)
    assert load_tokenizer(name) is tokenizer  # cached
    assert plain.get_vocab_size() == tokenizer.get_vocab_size() == info.vocab_size
    assert tokenizer.token_to_id("<|endoftext|>") == info.eos_token_id
    text = "Q: What is 5 plus 2?\nA: 5 plus 2 is 7. Caf\u00e9 \u2603 \t end"
    ids = tokenizer.encode(text).ids
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < info.vocab_size for i in ids)


def test_the_byte_tokenizer_maps_each_byte_to_its_value() -> None:
    tokenizer = load_tokenizer("tiny-byte")
    text = "Hello \u00e9!\n"
    assert tokenizer.encode(text).ids == list(text.encode("utf-8"))


def test_bpe_compresses_the_corpus_and_the_corpus_is_a_sensible_size() -> None:
    corpus = CORPUS_PATH.read_text(encoding="utf-8")
    assert 20_000 <= len(corpus.encode("utf-8")) <= 60_000
    assert "Q: " in corpus and "A: " in corpus
    byte_tokens = len(load_tokenizer("tiny-byte").encode(corpus).ids)
    bpe_tokens = len(load_tokenizer("tiny-bpe").encode(corpus).ids)
    assert bpe_tokens < 0.5 * byte_tokens


def test_train_tokenizer_script_reproduces_the_shipped_files() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_tokenizer.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr

