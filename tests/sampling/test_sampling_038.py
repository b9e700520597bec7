"""Protocol 0.38's sampling outputs with tinker-actors over real HTTP against the local service: every number
checked against the tiny model's own forward pass; the prefix cache's hits (counted once per prompt, limited
by what the prompt outputs need, none after new weights, measurably cheaper); ``stop=[]``; sequence ids; the
JSON result beside the protobuf one; and protocol 0.6.3, where each 0.38 setting is refused, typed, before
anything is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff
from tinker_actors.errors import InvalidInputError, TinkerError, UnsupportedFeatureError
from tinker_actors.local import LocalService
from tinker_actors.local.engine.numpy_backend import NumpyBackend
from tinker_actors.local.model import DatumArrays, LoraTrainer, PrefixCache
from tinker_actors.types import SampleRequest, SampleResponse, TensorData
from tinker_actors.wire import v0_6_3, v0_38

BASE = "tiny-byte"
EOS = 256
PROMPT = list(b"the quick brown fox jumps over the lazy dog. the quick")
LONG = list(b"the river runs to the sea, and the sea is never full. ") * 6
ATOL = 2e-4
TIMEOUT = 60


@pytest.fixture(scope="module")
def cache() -> PrefixCache:
    return PrefixCache()


@pytest.fixture(scope="module")
def service(cache: PrefixCache) -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5, backend=NumpyBackend(prefix_cache=cache)) as svc:
        yield svc


def _done(value: Any) -> Any:
    """A client-creation call's client (0.38's call style returns a future of it)."""
    return value.result(TIMEOUT) if hasattr(value, "result") else value


def _client(service: LocalService, protocol: str) -> tinker.ServiceClient:
    return tinker.ServiceClient(config=Config(api_key=service.api_key, base_url=service.base_url,
                                              telemetry_enabled=False, protocol=protocol,
                                              poll_backoff=PollBackoff(initial=0.005, max=0.02)))


@pytest.fixture(scope="module")
def client(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with _client(service, "0.38") as svc:
        yield svc


@pytest.fixture(scope="module")
def sampler(client: tinker.ServiceClient) -> tinker.SamplingClient:
    client_: tinker.SamplingClient = _done(client.create_sampling_client(base_model=BASE))
    return client_


def _distributions(tokens: list[int]) -> npt.NDArray[np.float64]:
    """log p(v | tokens[:i + 1]) for every position i and token v, by the trainer's forward pass of the base
    model (a fresh adapter's B is 0)."""
    trainer = LoraTrainer(BASE, rank=1)
    vocab = trainer.info.vocab_size
    targets = np.tile(np.arange(vocab, dtype=np.int64), (len(tokens), 1))
    datum = DatumArrays(tokens=np.asarray(tokens, dtype=np.int64), loss_inputs={"target_tokens": targets})
    logprobs: npt.NDArray[np.float64] = trainer.forward([datum], "cross_entropy").outputs[0]["logprobs"]
    return logprobs.astype(np.float64)


def _sample(sampler: tinker.SamplingClient, prompt: list[int], num_samples: int = 1, **kwargs: Any) -> SampleResponse:
    params = kwargs.pop("params", tinker.SamplingParams(max_tokens=1, seed=0))
    return sampler.sample(tinker.ModelInput.from_ints(prompt), num_samples, params, **kwargs).result(TIMEOUT)


# ---- outputs ------------------------------------------------------------------------------------------

def test_topk_sample_logprobs_and_sequence_ids(sampler: tinker.SamplingClient) -> None:
    result = _sample(sampler, PROMPT, 3, params=tinker.SamplingParams(max_tokens=80, seed=2, stop=[]),
                     topk_sample_logprobs=4)
    ids = [s.sequence_id for s in result.sequences]
    assert all(ids) and len(set(ids)) == 3
    again = _sample(sampler, PROMPT, 2, params=tinker.SamplingParams(max_tokens=2, seed=2))
    assert not {s.sequence_id for s in again.sequences} & set(ids)  # distinct across samples too
    for sequence in result.sequences:
        top = sequence.topk_logprobs_np
        assert top is not None and top.token_ids.shape == (80, 4) and top.token_ids.dtype == np.int32
        full = _distributions(PROMPT + sequence.tokens)[len(PROMPT) - 1: -1]
        expected = np.argsort(-full, axis=1, kind="stable")[:, :4]
        assert np.array_equal(top.token_ids, expected)
        np.testing.assert_allclose(top.logprobs, np.take_along_axis(full, expected, axis=1), atol=ATOL)
        assert sequence.topk_logprobs is not None and sequence.topk_logprobs[0] == list(
            zip(top.token_ids[0].tolist(), top.logprobs[0].tolist(), strict=True))
    plain = _sample(sampler, PROMPT)
    assert plain.sequences[0].topk_logprobs is None and plain.sequences[0].topk_logprobs_np is None


def test_target_prompt_logprobs_dense_and_sparse(sampler: tinker.SamplingClient) -> None:
    full = _distributions(PROMPT)[:-1]
    ids = np.full((len(PROMPT) - 1, 3), -1, dtype=np.int64)
    cells = [(0, 0, 5), (7, 2, 100), (30, 1, 256), (len(PROMPT) - 2, 0, 44)]
    for row, column, token in cells:
        ids[row, column] = token
    expected = np.zeros(ids.shape)
    for row, column, token in cells:
        expected[row, column] = full[row, token]
    dense = _sample(sampler, PROMPT, target_prompt_logprobs=TensorData.from_numpy(ids)).target_prompt_logprobs
    assert dense is not None and not dense.is_sparse and dense.dtype == "float32" and dense.shape == list(ids.shape)
    np.testing.assert_allclose(dense.to_numpy(), expected, atol=ATOL)
    sparse_ids = TensorData.from_numpy_sparse(ids, pad_value=-1)
    assert sparse_ids.is_sparse
    sparse = _sample(sampler, PROMPT, target_prompt_logprobs=sparse_ids).target_prompt_logprobs
    assert sparse is not None and sparse.is_sparse and sparse.shape == list(ids.shape)
    assert sparse.sparse_crow_indices == sparse_ids.sparse_crow_indices
    assert sparse.sparse_col_indices == sparse_ids.sparse_col_indices
    np.testing.assert_allclose(sparse.to_numpy(), expected, atol=ATOL)


def test_prompt_logprobs_of_the_last_n_tokens(sampler: tinker.SamplingClient) -> None:
    full = _distributions(PROMPT)[:-1]
    scored = sampler.compute_logprobs(tinker.ModelInput.from_ints(PROMPT), prompt_logprobs_last_n=5).result(TIMEOUT)
    assert scored[:-5] == [None] * (len(PROMPT) - 5)
    expected = full[np.arange(len(PROMPT) - 6, len(PROMPT) - 1), PROMPT[-5:]]
    np.testing.assert_allclose(np.asarray(scored[-5:], dtype=float), expected, atol=ATOL)
    with_topk = _sample(sampler, PROMPT, include_prompt_logprobs=True, topk_prompt_logprobs=3, prompt_logprobs_last_n=2)
    assert with_topk.topk_prompt_logprobs is not None
    assert [row is None for row in with_topk.topk_prompt_logprobs] == [True] * (len(PROMPT) - 2) + [False, False]


def test_prompt_alt_tokens(sampler: tinker.SamplingClient) -> None:
    full = _distributions(PROMPT)[:-1]
    result = _sample(sampler, PROMPT, prompt_alt_tokens_k=5,
                     params=tinker.SamplingParams(max_tokens=1, seed=4, temperature=1.2))
    alt = result.prompt_alt_tokens
    assert alt is not None and alt.tokens.shape == alt.logprobs.shape == [len(PROMPT) - 1, 5]
    tokens = alt.tokens.to_numpy()
    assert tokens.dtype == np.int64
    np.testing.assert_allclose(alt.logprobs.to_numpy(), np.take_along_axis(full, tokens, axis=1), atol=ATOL)
    greedy = _sample(sampler, PROMPT, prompt_alt_tokens_k=2,
                     params=tinker.SamplingParams(max_tokens=1, temperature=0)).prompt_alt_tokens
    assert greedy is not None
    assert greedy.tokens.to_numpy().tolist() == [[int(np.argmax(row))] * 2 for row in full]


def test_bad_settings_are_typed_errors(sampler: tinker.SamplingClient) -> None:
    prompt = tinker.ModelInput.from_ints(PROMPT)
    params = tinker.SamplingParams(max_tokens=1)
    for kwargs in ({"target_prompt_logprobs": TensorData.from_numpy(np.zeros((3, 2), np.float32))},
                   {"target_prompt_logprobs": TensorData.from_numpy(np.zeros(3, np.int64))},
                   {"prompt_alt_tokens_k": -1}, {"prompt_logprobs_last_n": 2},
                   {"include_prompt_logprobs": True, "prompt_logprobs_last_n": 0},
                   {"include_prompt_logprobs": True, "prompt_logprobs_last_n": len(PROMPT)}):
        with pytest.raises(InvalidInputError):
            sampler.sample(prompt, 1, params, **kwargs)
    # what only the server can check (it knows the prompt's length and the limits): a 400, typed
    wrong_rows = TensorData.from_numpy(np.zeros((4, 1), np.int64))
    nothing_asked = TensorData.from_numpy(np.full((len(PROMPT) - 1, 1), -1))
    for kwargs, words in (({"target_prompt_logprobs": wrong_rows}, "must be 2-D"),
                          ({"target_prompt_logprobs": nothing_asked}, "names no token id"),
                          ({"topk_sample_logprobs": 65}, "topk_sample_logprobs")):
        with pytest.raises(TinkerError, match=words) as refused:
            sampler.sample(prompt, 1, params, **kwargs).result(TIMEOUT)
        assert getattr(refused.value, "status_code", None) == 400


# ---- prefix cache -------------------------------------------------------------------------------------

def test_prefix_cache_hits_are_counted_once_and_limited_by_prompt_outputs(
        client: tinker.ServiceClient, sampler: tinker.SamplingClient, cache: PrefixCache) -> None:
    prompt = [66, *LONG]  # not sampled before in this module
    block = cache.block_tokens
    whole = (len(prompt) - 1) // block * block
    assert _sample(sampler, prompt, 4).prompt_cache_hit_tokens == 0
    assert _sample(sampler, prompt, 4).prompt_cache_hit_tokens == whole  # not multiplied by num_samples
    # another sampling client of the same weights shares the cache
    other = _done(client.create_sampling_client(base_model=BASE))
    assert _sample(other, prompt).prompt_cache_hit_tokens == whole
    # a prefix: the shared whole blocks
    assert _sample(sampler, prompt[:100] + PROMPT).prompt_cache_hit_tokens == 96
    # prompt outputs need the logits of the positions they score: those cannot come from the cache
    assert _sample(sampler, prompt, include_prompt_logprobs=True).prompt_cache_hit_tokens == 0
    last = _sample(sampler, prompt, include_prompt_logprobs=True, prompt_logprobs_last_n=30)
    assert last.prompt_cache_hit_tokens == (len(prompt) - 31) // block * block
    full = _distributions(prompt)
    assert last.prompt_logprobs is not None
    np.testing.assert_allclose(np.asarray(last.prompt_logprobs[-30:], dtype=float),
                               full[np.arange(len(prompt) - 31, len(prompt) - 1), prompt[-30:]], atol=ATOL)
    assert _sample(sampler, prompt, prompt_alt_tokens_k=1).prompt_cache_hit_tokens == 0


def test_a_cache_hit_is_measurably_cheaper_over_http(sampler: tinker.SamplingClient) -> None:
    def timed(prompt: list[int]) -> tuple[float, int]:
        start = time.perf_counter()
        hits = _sample(sampler, prompt).prompt_cache_hit_tokens
        return time.perf_counter() - start, hits

    firsts, seconds = [], []
    for lead in range(3):
        prompt = [70 + lead, *(LONG * 2)[:480]]
        first, first_hits = timed(prompt)
        second, second_hits = timed(prompt)
        assert first_hits == 0 and second_hits == 480
        firsts.append(first)
        seconds.append(second)
    assert min(seconds) < min(firsts) / 2, (firsts, seconds)


def test_new_weights_start_with_an_empty_cache(client: tinker.ServiceClient) -> None:
    training = _done(client.create_lora_training_client(base_model=BASE, rank=4, seed=3))
    datum = tinker.Datum(model_input=tinker.ModelInput.from_ints(LONG[:-1]),
                         loss_fn_inputs={"target_tokens": LONG[1:], "weights": [1.0] * (len(LONG) - 1)})
    prompt = [67, *LONG]
    hits = []
    for _ in range(2):
        training.forward_backward([datum], "cross_entropy").result(TIMEOUT)
        training.optim_step(tinker.AdamParams(learning_rate=0.01)).result(TIMEOUT)
        weights = _done(training.save_weights_and_get_sampling_client())
        hits.append([_sample(weights, prompt).prompt_cache_hit_tokens for _ in range(2)])
    whole = (len(prompt) - 1) // 16 * 16
    assert hits == [[0, whole], [0, whole]]


# ---- stop=[] --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ends_text(client: tinker.ServiceClient) -> str:
    """A sampler checkpoint of a model trained to say end-of-text (its path)."""
    training = _done(client.create_lora_training_client(base_model=BASE, rank=4, seed=0))
    text = list(b"the quick brown fox jumps over the lazy dog. ")
    datum = tinker.Datum(model_input=tinker.ModelInput.from_ints(text),
                         loss_fn_inputs={"target_tokens": [EOS] * len(text), "weights": [1.0] * len(text)})
    for _ in range(5):
        training.forward_backward([datum], "cross_entropy").result(TIMEOUT)
        training.optim_step(tinker.AdamParams(learning_rate=0.05)).result(TIMEOUT)
    path: str = training.save_weights_for_sampler("ends-text").result(TIMEOUT).path
    return path


def _stops(sampler: tinker.SamplingClient, stop: Any) -> list[tuple[list[int], str]]:
    params = tinker.SamplingParams(max_tokens=6, seed=1, stop=stop)
    return [(s.tokens, s.stop_reason) for s in _sample(sampler, list(b"the "), 2, params=params).sequences]


def test_stop_empty_list_turns_end_of_text_off_on_038(client: tinker.ServiceClient, ends_text: str) -> None:
    sampler = _done(client.create_sampling_client(model_path=ends_text))
    assert _stops(sampler, None) == [([EOS], "stop")] * 2
    assert _stops(sampler, ["never there"]) == [([EOS], "stop")] * 2  # given stops, and end-of-text
    assert _stops(sampler, []) == [([EOS] * 6, "length")] * 2


def test_on_0_6_3_stop_empty_list_keeps_its_old_meaning(service: LocalService, ends_text: str) -> None:
    with _client(service, "0.6.3") as old:
        sampler = _done(old.create_sampling_client(model_path=ends_text))
        assert _stops(sampler, []) == _stops(sampler, None) == [([EOS], "stop")] * 2


# ---- protocol 0.6.3 and the JSON result -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"topk_sample_logprobs": 2},
    {"target_prompt_logprobs": TensorData.from_numpy(np.full((len(PROMPT) - 1, 1), 3))},
    {"prompt_alt_tokens_k": 1},
    {"include_prompt_logprobs": True, "prompt_logprobs_last_n": 2},
])
def test_0_6_3_refuses_each_038_setting_before_sending(service: LocalService, kwargs: dict[str, Any]) -> None:
    field = next(name for name in kwargs if name != "include_prompt_logprobs")
    with _client(service, "0.6.3") as old:
        sampler = _done(old.create_sampling_client(base_model=BASE))
        words = f"SampleRequest.{field} needs protocol 0.38"
        with service.wire_log.capture() as capture, pytest.raises(UnsupportedFeatureError, match=words) as refused:
            sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=1),
                           **kwargs).result(TIMEOUT)
        assert refused.value.feature == f"SampleRequest.{field}"
        assert not [r for r in capture.snapshot() if r.path == "/api/v1/asample"]
        # without it, the same client samples (and the service's sequence ids reach 0.6.3 clients too)
        plain = _sample(sampler, PROMPT, 2)
        assert all(s.sequence_id for s in plain.sequences)


def test_the_json_result_says_what_the_protobuf_one_says(service: LocalService, sampler: tinker.SamplingClient) -> None:
    ids = np.full((len(PROMPT) - 1, 2), -1, dtype=np.int64)
    ids[3, 1], ids[9, 0] = 40, 41
    request = SampleRequest(num_samples=2, prompt=tinker.ModelInput.from_ints(PROMPT), seq_id=10_000,
                            sampling_session_id=sampler.sampling_session_id,
                            sampling_params=tinker.SamplingParams(max_tokens=5, seed=3),
                            prompt_logprobs=True, topk_prompt_logprobs=2, topk_sample_logprobs=3,
                            target_prompt_logprobs=TensorData.from_numpy_sparse(ids, pad_value=-1),
                            prompt_alt_tokens_k=2, prompt_logprobs_last_n=10)
    headers = {"X-API-Key": service.api_key, "Content-Type": "application/json"}
    with httpx.Client(base_url=service.base_url, headers=headers, timeout=TIMEOUT) as http:
        submitted = http.post("/api/v1/asample", content=v0_38.CODEC.encode_json(request))
        assert submitted.status_code == 200, submitted.text
        request_id = submitted.json()["request_id"]

        def poll(accept: str) -> httpx.Response:
            for _ in range(200):
                answer = http.post("/api/v1/retrieve_future", json={"request_id": request_id},
                                   headers={"Accept": accept})
                if answer.status_code != 408 and "try_again" not in answer.text[:64]:
                    return answer
            raise AssertionError("the sample did not finish")

        as_json = v0_6_3.CODEC.decode_sample_response(poll("application/json").content, "application/json")
        protobuf = poll("application/x-protobuf")
    as_proto = v0_38.CODEC.decode_sample_response(protobuf.content, protobuf.headers["content-type"])
    _assert_close(as_json.model_dump(), as_proto.model_dump())  # JSON: the model's float64, protobuf: float32
    assert as_json.sequences[0].topk_logprobs is not None and len(as_json.sequences[0].topk_logprobs) == 5
    assert as_json.target_prompt_logprobs is not None and as_json.target_prompt_logprobs.is_sparse
    assert as_json.prompt_alt_tokens is not None and as_json.prompt_alt_tokens.tokens.shape == [len(PROMPT) - 1, 2]
    assert as_json.prompt_logprobs is not None and as_json.prompt_logprobs[:-10] == [None] * (len(PROMPT) - 10)


def _assert_close(json_side: Any, proto_side: Any, where: str = "response") -> None:
    """The same structure and integers, and floats equal to float32 precision."""
    if isinstance(json_side, dict):
        assert isinstance(proto_side, dict) and json_side.keys() == proto_side.keys(), where
        for key in json_side:
            _assert_close(json_side[key], proto_side[key], f"{where}.{key}")
    elif isinstance(json_side, list | tuple):
        assert isinstance(proto_side, list | tuple) and len(json_side) == len(proto_side), where
        for index, (a, b) in enumerate(zip(json_side, proto_side, strict=True)):
            _assert_close(a, b, f"{where}[{index}]")
    elif isinstance(json_side, float):
        assert json_side == pytest.approx(proto_side, rel=1e-6, abs=1e-6), where
    else:
        assert json_side == proto_side, where
