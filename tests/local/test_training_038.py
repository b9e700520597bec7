"""The local service's side of 0.38's training features, over raw HTTP with JSON bodies: [N, K] targets and
sparse tensors, gspo, text settings, and the clear refusals (a Dimuon model or step, stable_reinforce)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.local.support import Api
from tinker_actors import types
from tinker_actors.local import LocalService
from tinker_actors.wire import ForwardBackwardCall, v0_38

TOKENS = list(b"the keeper climbed the stairs")


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


@pytest.fixture(scope="module")
def api(service: LocalService) -> Iterator[Api]:
    client = Api(service)
    yield client
    client.close()


@pytest.fixture(scope="module")
def model_id(api: Api) -> str:
    return api.create_model(api.create_session())


_seq = iter(range(1, 1000))


def _forward(api: Api, model_id: str, loss_fn: str, inputs: dict[str, Any],
             config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A forward pass (0.6.3's JSON body): its result, or the error result."""
    body = {"forward_input": {"data": [{"model_input": {"chunks": [{"tokens": TOKENS[:-1]}]},
                                        "loss_fn_inputs": inputs}], "loss_fn": loss_fn, "loss_fn_config": config},
            "model_id": model_id, "seq_id": next(_seq)}
    response = api.post("/api/v1/forward", body)
    assert response.status_code == 200, response.text
    return api.result(response.json()["request_id"])


def _tensor(array: np.ndarray) -> dict[str, Any]:
    return {"data": array.ravel().tolist(), "dtype": "int64" if array.dtype.kind == "i" else "float32",
            "shape": list(array.shape)}


def _csr(array: np.ndarray) -> dict[str, Any]:
    rows, cols = np.nonzero(array)
    return {**_tensor(array[rows, cols]), "shape": list(array.shape),
            "sparse_crow_indices": np.searchsorted(rows, np.arange(array.shape[0] + 1)).tolist(),
            "sparse_col_indices": cols.tolist()}


def test_top_k_targets_dense_and_sparse_json(api: Api, model_id: str) -> None:
    n, k = len(TOKENS) - 1, 3
    targets = np.zeros((n, k), dtype=np.int64)
    weights = np.zeros((n, k), dtype=np.float32)
    targets[:, 0], weights[:, 0] = TOKENS[1:], 1.0
    targets[2, 1:], weights[2] = [97, 98], [0.5, 0.25, 0.25]
    dense = _forward(api, model_id, "cross_entropy", {"target_tokens": _tensor(targets), "weights": _tensor(weights)})
    sparse = _forward(api, model_id, "cross_entropy", {"target_tokens": _csr(targets), "weights": _csr(weights)})
    assert dense["loss_fn_outputs"][0]["logprobs"]["shape"] == [n, k]
    assert sparse["metrics"]["loss:sum"] == pytest.approx(dense["metrics"]["loss:sum"], rel=1e-6)
    logprobs = np.asarray(dense["loss_fn_outputs"][0]["logprobs"]["data"]).reshape(n, k)
    assert dense["metrics"]["loss:sum"] == pytest.approx(-float(np.sum(weights * logprobs)), rel=1e-5)


def test_a_malformed_sparse_tensor_is_a_400_naming_the_problem(api: Api, model_id: str) -> None:
    n = len(TOKENS) - 1
    bad = {"data": [5, 6], "dtype": "int64", "shape": [n, 2], "sparse_crow_indices": [0, 2] + [2] * (n - 1),
           "sparse_col_indices": [1, 0]}  # row 0 lists column 1 before column 0
    body = {"forward_input": {"data": [{"model_input": {"chunks": [{"tokens": TOKENS[:-1]}]},
                                        "loss_fn_inputs": {"target_tokens": bad}}], "loss_fn": "cross_entropy"},
            "model_id": model_id, "seq_id": next(_seq)}
    response = api.post("/api/v1/forward", body)
    assert response.status_code == 400
    assert "sorted and distinct" in response.json()["error"]


def test_gspo_and_its_mask(api: Api, model_id: str) -> None:
    n = len(TOKENS) - 1
    inputs = {"target_tokens": _tensor(np.asarray(TOKENS[1:])), "logprobs": _tensor(np.full(n, -3.0)),
              "advantages": _tensor(np.ones(n)), "sequence_ratio_mask": _tensor(np.ones(n))}
    result = _forward(api, model_id, "gspo", inputs, {"clip_low_threshold": 0.0, "clip_high_threshold": 1e6})
    logprobs = np.asarray(result["loss_fn_outputs"][0]["logprobs"]["data"])
    ratio = np.exp(np.mean(logprobs + 3.0))  # one ratio for the whole sequence, every token carrying it
    assert result["metrics"]["loss:sum"] == pytest.approx(-n * ratio, rel=1e-5)
    del inputs["sequence_ratio_mask"]
    failed = _forward(api, model_id, "gspo", inputs)
    assert failed["category"] == "user" and "needs loss input 'sequence_ratio_mask'" in failed["error"]


def test_text_settings_reach_the_losses_which_name_them(api: Api, model_id: str) -> None:
    n = len(TOKENS) - 1
    inputs = {"target_tokens": _tensor(np.asarray(TOKENS[1:])), "logprobs": _tensor(np.full(n, -3.0)),
              "advantages": _tensor(np.ones(n))}
    failed = _forward(api, model_id, "ppo", inputs, {"clip_low_threshold": "tight"})
    assert failed["category"] == "user"
    assert "loss_fn_config['clip_low_threshold'] must be a number, got the text 'tight'" in failed["error"]


def test_an_optimizer_the_model_cannot_reproduce_is_refused_at_creation(api: Api, model_id: str) -> None:
    session_id = api.create_session()
    response = api.post("/api/v1/create_model", {"session_id": session_id, "model_seq_id": 0, "base_model": "tiny-byte",
                                                 "optimizer_config": {"type": "dimuon", "version": 1}})
    assert response.status_code == 400 and "trains with AdamW only" in response.json()["error"]
    assert "reproduce faithfully" in response.json()["error"]
    response = api.post("/api/v1/optim_step", {"model_id": model_id, "seq_id": next(_seq),
                                               "optimizer_params": {"type": "dimuon", "learning_rate": 0.01}})
    assert response.status_code == 400 and "AdamW only" in response.json()["error"]


def test_stable_reinforce_is_refused(api: Api, model_id: str) -> None:
    body = {"forward_input": {"data": [{"model_input": {"chunks": [{"tokens": TOKENS[:-1]}]},
                                        "loss_fn_inputs": {"target_tokens": _tensor(np.asarray(TOKENS[1:]))}}],
                              "loss_fn": "stable_reinforce"}, "model_id": model_id, "seq_id": next(_seq)}
    response = api.post("/api/v1/forward", body)
    error = response.json()["error"]
    assert response.status_code == 400 and "stable_reinforce" in error
    # the server's own words, not the client's refusal (which points at the client's porting guide)
    assert "the local service does not implement" in error and "porting" not in error, error


def test_stable_reinforce_with_provenance_is_refused_over_protobuf_and_the_model_goes_on(api: Api,
                                                                                       model_id: str) -> None:
    """The request the official 0.38 SDK sends (protobuf, spans naming sampled sequences): a 400 at once, and its
    seq_id is used up, so the next request runs without waiting for it. Spans on another loss are read and ignored
    (the official SDK sends them with cross_entropy too, in forward_backward_custom)."""
    tokens = TOKENS[:9]
    datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "advantages": [0.5] * 8})
    datum = datum.with_provenance([types.PromptProvenanceSpan(sequence_id="req-x:0", length=4),
                                   types.SampledProvenanceSpan(sequence_id="req-x:0", length=4)],
                                  [types.PromptProvenanceSpan(sequence_id="req-x:0", offset=1, length=3),
                                   types.SampledProvenanceSpan(sequence_id="req-x:0", length=5)])

    def send(loss_fn: str, inputs: dict[str, Any]) -> Any:
        fb_input = types.ForwardBackwardInput(data=[datum.model_copy(update={"loss_fn_inputs": inputs})],
                                              loss_fn=loss_fn)
        request = v0_38.CODEC.encode_forward_backward(ForwardBackwardCall(model_id, next(_seq), fb_input, False))
        return api.http.post(request.path, content=request.body.content, headers=request.body.headers())

    refused = send("stable_reinforce", datum.loss_fn_inputs)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error.startswith("forward_backward: the local service does not implement stable_reinforce"), error
    assert "objective is not published" in error
    taken = send("cross_entropy", {"target_tokens": datum.loss_fn_inputs["target_tokens"]})
    assert taken.status_code == 200, taken.text
    assert "loss:sum" in api.result(taken.json()["request_id"])["metrics"]
