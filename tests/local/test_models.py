"""Model lifecycle details: unload_model, sampling backpressure, big bodies, get_info."""

from __future__ import annotations

from pathlib import Path

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
    batch = [datum([100 + i % 150 for i in range(500)]) for _ in range(128)]  # ~0.6 MB of JSON
    response = api.post("/api/v1/forward_backward", {
        "forward_backward_input": {"data": batch, "loss_fn": "cross_entropy", "loss_fn_config": None},
        "model_id": model_id, "seq_id": 1})
    assert len(response.request.content) > 256 * 1024
    result = api.result(response.json()["request_id"])
    assert len(result["loss_fn_outputs"]) == 128
    assert result["loss_fn_outputs"][0]["logprobs"]["shape"] == [499]


def test_unknown_model_ids_are_404(api: Api) -> None:
    assert api.post("/api/v1/get_info", {"model_id": "nope"}).status_code == 404
    assert api.forward_backward("nope", 1).status_code == 404
    assert api.post("/api/v1/weights_info", {"tinker_path": "tinker://nope/weights/x"}).status_code == 404


def _sample(api: Api, sampler_id: str, seq_id: int) -> dict[str, object]:
    submitted = api.post("/api/v1/asample", {
        "num_samples": 1, "prompt": {"chunks": [{"tokens": list(b"the ")}]},
        "sampling_params": {"max_tokens": 4, "temperature": 0.0}, "sampling_session_id": sampler_id,
        "seq_id": seq_id, "prompt_logprobs": False, "topk_prompt_logprobs": 0})
    assert submitted.status_code == 200, submitted.text
    return api.result(submitted.json()["request_id"])


def test_real_model_samplers_from_training_checkpoints_and_after_restart(tmp_path: Path) -> None:
    with LocalService(data_dir=tmp_path, long_poll_s=5.0) as svc:
        api = Api(svc)
        session_id = api.create_session()
        model_id = api.create_model(session_id)
        for seq_id in (1, 3):
            api.result(api.forward_backward(model_id, seq_id, tokens=list(b"the cat sat")).json()["request_id"])
            api.result(api.post("/api/v1/optim_step", {"adam_params": {"learning_rate": 0.05},
                                                       "model_id": model_id, "seq_id": seq_id + 1}).json()[
                "request_id"])
        path = api.result(api.save_weights(model_id, 5, "full").json()["request_id"])["path"]
        ephemeral = api.result(api.post("/api/v1/save_weights_for_sampler", {
            "model_id": model_id, "seq_id": 6, "sampling_session_seq_id": 0}).json()["request_id"])
        from_training = api.post("/api/v1/create_sampling_session", {
            "session_id": session_id, "sampling_session_seq_id": 1, "base_model": None,
            "model_path": path}).json()["sampling_session_id"]
        greedy = _sample(api, ephemeral["sampling_session_id"], 0)
        assert _sample(api, from_training, 0) == greedy  # same adapters, greedy decoding
        svc.restart()
        # Both samplers are rebuilt from disk after the restart.
        assert _sample(api, ephemeral["sampling_session_id"], 1) == greedy
        assert _sample(api, from_training, 1) == greedy
        api.close()
