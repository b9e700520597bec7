"""The sampling outputs of 0.38 (S6) as the official tinker==0.38.0 SDK uses them, against the local service;
and the same journey on tinker-actors by changing the import, on protocol 0.38 (the same numbers) and 0.6.3
(each 0.38 setting refused, typed, before anything is sent; ``stop=[]`` keeps its 0.6.3 meaning).

``journey_sampling.py`` samples the base model ``tiny-byte`` with top-k logprobs of the sampled tokens,
target prompt logprobs (dense and sparse), the last N prompt logprobs, alternative prompt tokens and a
prompt sampled twice (prefix-cache hits), then a model trained to say end-of-text with ``stop`` left out
and ``stop=[]``. Every number is checked against the tiny model's own forward pass, computed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.compat038 import journey_sampling as journey
from tests.compat038.conftest import (
    ScriptRun,
    official_python,
    run_official,
    run_ours,
    service_with_flags,
)
from tests.compat038.test_wire_capture import wire_requests
from tinker_actors.local.model import DatumArrays, LoraTrainer, PrefixCache
from tinker_actors.local.server.wire_log import WireRecord

JOURNEY = "journey_sampling.py"
FEATURE_STEPS = ("topk_sample_logprobs", "target_prompt_logprobs_dense", "target_prompt_logprobs_sparse",
                 "prompt_logprobs_last_n", "prompt_alt_tokens")
ATOL = 2e-4  # float32 on the wire, KV-cache decoding against a full forward pass


class _Outcome:
    def __init__(self, run: ScriptRun, records: list[WireRecord]) -> None:
        self.run = run
        self.records = records

    def sample_bodies(self) -> list[dict[str, Any]]:
        """The accepted asample bodies, without the ids each client numbers its own way."""
        return [{k: v for k, v in r["body"].items() if k not in ("seq_id", "sampling_session_id")}
                for r in wire_requests(self.records) if r["path"] == "/api/v1/asample" and r["status"] == 200]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    official_python()
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_official(JOURNEY, service, tmp_path_factory.mktemp("sampling-official"))
    yield _Outcome(run, capture.snapshot())


@pytest.fixture(scope="module", params=["0.38", "0.6.3"])
def ours(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_ours(JOURNEY, service, tmp_path_factory.mktemp(f"sampling-ours-{request.param}"),
                       protocol=request.param)
    yield _Outcome(run, capture.snapshot())


def _distributions(tokens: list[int]) -> npt.NDArray[np.float64]:
    """log p(v | tokens[:i + 1]) for every position i and token v: the base model's forward pass (a fresh
    adapter's B is 0, so the trainer computes the base model)."""
    trainer = LoraTrainer(journey.BASE, rank=1)
    vocab = trainer.info.vocab_size
    targets = np.tile(np.arange(vocab, dtype=np.int64), (len(tokens), 1))
    datum = DatumArrays(tokens=np.asarray(tokens, dtype=np.int64), loss_inputs={"target_tokens": targets})
    logprobs: npt.NDArray[np.float64] = trainer.forward([datum], "cross_entropy").outputs[0]["logprobs"]
    return logprobs.astype(np.float64)


def _assert_every_step_passes(run: ScriptRun) -> None:
    failed = {name: error for name, error in run.steps.items() if error != "ok"}
    assert not failed, "\n".join(f"--- {name}\n{error}" for name, error in failed.items())


def _assert_right_numbers(values: dict[str, Any]) -> None:
    prompt = journey.PROMPT
    full = _distributions(prompt)[:-1]  # row i: the distribution over prompt token i + 1

    topk = values["topk_sample_logprobs"]
    assert topk["topk_np_shapes"] == [[6, 4], [6, 4]] and topk["stop_reasons"] == ["length", "length"]
    assert len(set(topk["sequence_ids"])) == 2 and all(topk["sequence_ids"])
    for tokens, logprobs, rows in zip(topk["tokens"], topk["logprobs"], topk["topk"], strict=True):
        generated = _distributions(prompt + tokens)[len(prompt) - 1: -1]
        for position, row in enumerate(rows):
            expected = np.argsort(-generated[position], kind="stable")[:4]
            assert [token for token, _ in row] == expected.tolist()
            np.testing.assert_allclose([lp for _, lp in row], generated[position, expected], atol=ATOL)
        np.testing.assert_allclose(logprobs, generated[np.arange(len(tokens)), tokens], atol=ATOL)

    dense = values["target_prompt_logprobs_dense"]
    assert dense["shape"] == [len(prompt) - 1, 2] and dense["dtype"] == "float32"
    expected_dense = np.zeros((len(prompt) - 1, 2))
    for row, column, token in journey.TARGETS:
        expected_dense[row, column] = full[row, token]
    np.testing.assert_allclose(dense["values"], expected_dense, atol=ATOL)  # 0.0 where nothing was asked
    np.testing.assert_allclose(dense["prompt_logprobs"][1:], full[np.arange(len(prompt) - 1), prompt[1:]], atol=ATOL)

    sparse = values["target_prompt_logprobs_sparse"]
    assert sparse["shape"] == [len(prompt) - 1, 2]
    cells = sorted(journey.TARGETS)
    assert sparse["col"] == [column for _, column, _ in cells]
    assert np.diff(sparse["crow"]).tolist() == np.bincount([r for r, _, _ in cells], minlength=len(prompt) - 1).tolist()
    np.testing.assert_allclose(sparse["data"], [full[row, token] for row, _, token in cells], atol=ATOL)

    last = values["prompt_logprobs_last_n"]
    n = journey.LAST_N
    for scored in (last["prompt_logprobs"], last["compute_logprobs"]):
        assert scored[:-n] == [None] * (len(prompt) - n)
        np.testing.assert_allclose(scored[-n:], full[np.arange(len(prompt) - 1 - n, len(prompt) - 1), prompt[-n:]],
                                   atol=ATOL)
    assert last["topk_prompt_logprobs"][:-n] == [None] * (len(prompt) - n)
    for position, row in zip(range(len(prompt) - n, len(prompt)), last["topk_prompt_logprobs"][-n:], strict=True):
        assert [token for token, _ in row] == np.argsort(-full[position - 1], kind="stable")[:2].tolist()

    alt = values["prompt_alt_tokens"]
    assert alt["shape"] == [len(prompt) - 1, journey.ALT_K] and alt["dtypes"] == ["int64", "float32"]
    tokens = np.asarray(alt["tokens"])
    np.testing.assert_allclose(alt["logprobs"], np.take_along_axis(full, tokens, axis=1), atol=ATOL)

    block = PrefixCache().block_tokens
    cached = (len(journey.LONG) - 1) // block * block
    assert values["prompt_cache_hits"]["hits"] == [0, cached]  # counted once for num_samples=3
    assert values["new_weights_cache_hits"] == [0, cached]  # new weights: nothing from the base model's cache


def _assert_end_of_text(values: dict[str, Any], *, empty_list_turns_it_off: bool) -> None:
    eos = journey.EOS
    for name in ("stop_left_out", "stop_none", "stop_listed"):
        assert values[name] == {"tokens": [[eos], [eos]], "stop_reasons": ["stop", "stop"]}, name
    if empty_list_turns_it_off:
        assert values["stop_empty_list"] == {"tokens": [[eos] * 8] * 2, "stop_reasons": ["length", "length"]}
    else:
        assert values["stop_empty_list"] == values["stop_left_out"]


def test_the_official_sdk_gets_every_output_with_the_right_numbers(official: _Outcome) -> None:
    _assert_every_step_passes(official.run)
    _assert_right_numbers(official.run.values)
    _assert_end_of_text(official.run.values, empty_list_turns_it_off=True)


def test_tinker_actors_runs_the_same_journey(ours: _Outcome, official: _Outcome,
                                             request: pytest.FixtureRequest) -> None:
    protocol = request.node.callspec.params["ours"]
    values = ours.run.values
    if protocol == "0.38":
        _assert_every_step_passes(ours.run)
        _assert_right_numbers(values)
        _assert_end_of_text(values, empty_list_turns_it_off=True)
        # the very same numbers as the official SDK's run (the same seeds on the same model)
        theirs = official.run.values
        for name in values:
            if name == "topk_sample_logprobs":
                assert {**values[name], "sequence_ids": None} == {**theirs[name], "sequence_ids": None}
            else:
                assert values[name] == theirs[name], name
        return
    for step in (*FEATURE_STEPS, "prompt_cache_hits"):
        error = ours.run.steps[step]
        if step == "prompt_cache_hits":  # nothing 0.38-only is asked: it runs, and the service counts hits
            assert error == "ok"
            continue
        assert "UnsupportedFeatureError" in error and "needs protocol 0.38" in error, error
    _assert_end_of_text(values, empty_list_turns_it_off=False)


def test_the_official_sdk_and_ours_send_the_same_sample_requests(ours: _Outcome, official: _Outcome,
                                                                  request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["ours"] != "0.38":
        pytest.skip("0.6.3 sends 0.6.3's bodies")
    assert ours.sample_bodies() == official.sample_bodies()
    bodies = official.sample_bodies()
    targets = [b["target_prompt_logprobs"] for b in bodies if "target_prompt_logprobs" in b]
    sparse = [target for target in targets if "sparse_crow_indices" in target]
    assert len(sparse) == 1 and sparse[0]["shape"] == [len(journey.PROMPT) - 1, 2]
    assert [b["sampling_params"].get("stop") for b in bodies if "stop" in b["sampling_params"]] == [[], ["never there"]]
