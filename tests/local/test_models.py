"""Model lifecycle details: unload_model, sampling backpressure, big bodies, get_info."""

from __future__ import annotations

from tests.local.support import Api, datum
from tinker_actors.local import LocalService


def test_unload_model_frees_it_and_later_calls_say_why(api: Api) -> None:
    model_id = api.create_model(api.create_session())
    unloaded = api.post("/api/v1/unload_model", {"model_id": model_id}).json()
    assert api.result(unloaded["request_id"]) == {"model_id": model_id}
    refused = api.optim_step(model_id, 1)
    assert refused.status_code == 404
    assert "unloaded" in refused.json()["error"]
    info = api.post("/api/v1/get_info", {"model_id": model_id}).json()  # the run is still known
    assert info["model_data"]["tokenizer_id"] == "tinker-actors/tiny-byte"


def test_full_sampling_queue_answers_429_with_retry_after() -> None:
    with LocalService(zero_work=True, max_pending_samples=0) as svc:
        api = Api(svc)
        session_id = api.create_session()
        sampler = api.post("/api/v1/create_sampling_session", {
            "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte",
            "model_path": None}).json()["sampling_session_id"]
        response = api.post("/api/v1/asample", {
            "num_samples": 1, "prompt": {"chunks": [{"tokens": [1]}]}, "sampling_params": {},
            "sampling_session_id": sampler, "seq_id": 0, "prompt_logprobs": False, "topk_prompt_logprobs": 0})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        api.close()


def test_a_megabyte_forward_backward_is_parsed_and_run(api: Api) -> None:
    model_id = api.create_model(api.create_session())
    batch = [datum([100_000 + i for i in range(500)]) for _ in range(64)]  # ~0.8 MB of JSON
    response = api.post("/api/v1/forward_backward", {
        "forward_backward_input": {"data": batch, "loss_fn": "cross_entropy", "loss_fn_config": None},
        "model_id": model_id, "seq_id": 1})
    assert len(response.request.content) > 256 * 1024
    result = api.result(response.json()["request_id"])
    assert len(result["loss_fn_outputs"]) == 64
    assert result["loss_fn_outputs"][0]["logprobs"]["shape"] == [499]


def test_unknown_model_ids_are_404(api: Api) -> None:
    assert api.post("/api/v1/get_info", {"model_id": "nope"}).status_code == 404
    assert api.forward_backward("nope", 1).status_code == 404
    assert api.post("/api/v1/weights_info", {"tinker_path": "tinker://nope/weights/x"}).status_code == 404
