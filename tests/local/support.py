"""Helpers for the local service's tests: a small JSON client and a recording backend."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from tinker_actors.local import LocalService
from tinker_actors.local.engine.backend import (
    AdamSettings,
    Arrays,
    BaseModelDescription,
    DatumInput,
    LoraSpec,
    SamplerEngine,
    StepOutput,
    Trainer,
    ZeroWorkBackend,
)

SESSION_BODY = {"tags": [], "user_metadata": {}, "sdk_version": "0.6.3"}


def datum(tokens: list[int]) -> dict[str, Any]:
    return {"model_input": {"chunks": [{"tokens": tokens[:-1]}]},
            "loss_fn_inputs": {"target_tokens": {"data": tokens[1:], "dtype": "int64", "shape": [len(tokens) - 1]}}}


class Api:
    """Speaks the wire protocol over a real socket, the way an SDK would."""

    def __init__(self, service: LocalService, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.service = service
        self.http = httpx.Client(base_url=service.base_url, timeout=timeout,
                                 headers={"X-API-Key": api_key or service.api_key})

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(path, json=body)

    def create_session(self) -> str:
        response = self.post("/api/v1/create_session", SESSION_BODY)
        assert response.status_code == 200, response.text
        session_id: str = response.json()["session_id"]
        return session_id

    def submit_model(self, session_id: str, model_seq_id: int = 0, base_model: str = "tiny-byte",
                     rank: int = 4) -> dict[str, Any]:
        response = self.post("/api/v1/create_model", {
            "session_id": session_id, "model_seq_id": model_seq_id, "base_model": base_model,
            "user_metadata": None, "lora_config": {"rank": rank, "seed": None, "train_unembed": True,
                                                   "train_mlp": True, "train_attn": True}})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def create_model(self, session_id: str, model_seq_id: int = 0, base_model: str = "tiny-byte") -> str:
        future = self.submit_model(session_id, model_seq_id, base_model)
        result = self.result(future["request_id"])
        model_id: str = result["model_id"]
        return model_id

    def poll(self, request_id: str) -> httpx.Response:
        return self.post("/api/v1/retrieve_future", {"request_id": request_id})

    def result(self, request_id: str, attempts: int = 50) -> dict[str, Any]:
        for _ in range(attempts):
            response = self.poll(request_id)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            assert response.status_code == 408, response.text
        raise AssertionError(f"future {request_id} did not finish")

    def forward_backward(self, model_id: str, seq_id: int, tokens: list[int] | None = None) -> httpx.Response:
        return self.post("/api/v1/forward_backward", {
            "forward_backward_input": {"data": [datum(tokens or [1, 2, 3, 4])], "loss_fn": "cross_entropy",
                                       "loss_fn_config": None},
            "model_id": model_id, "seq_id": seq_id})

    def optim_step(self, model_id: str, seq_id: int) -> httpx.Response:
        return self.post("/api/v1/optim_step", {"adam_params": {}, "model_id": model_id, "seq_id": seq_id})

    def save_weights(self, model_id: str, seq_id: int, name: str) -> httpx.Response:
        return self.post("/api/v1/save_weights", {"model_id": model_id, "path": name, "seq_id": seq_id})

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, f"/local/v1/{path}", json=body)


@dataclass
class RecordingBackend:
    """Zero-work models that record the order of operations, and can be held at a gate."""

    instant: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)  # (model tag, operation)
    gate: threading.Event = field(default_factory=threading.Event)
    _zero: ZeroWorkBackend = field(default_factory=ZeroWorkBackend)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()  # open unless a test closes it

    def base_models(self) -> list[BaseModelDescription]:
        return self._zero.base_models()

    def describe(self, base_model: str) -> BaseModelDescription:
        return self._zero.describe(base_model)

    def new_trainer(self, base_model: str, lora: LoraSpec) -> Trainer:
        return RecordingTrainer(self, self._zero.new_trainer(base_model, lora))

    def new_sampler(self, base_model: str, lora_arrays: Arrays | None) -> SamplerEngine:
        return self._zero.new_sampler(base_model, lora_arrays)

    def record(self, operation: str) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        with self._lock:
            self.calls.append(("model", operation))

    @property
    def operations(self) -> list[str]:
        with self._lock:
            return [op for _, op in self.calls]


@dataclass
class RecordingTrainer:
    backend: RecordingBackend
    inner: Trainer

    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float | str] | None,
            *, backward: bool) -> StepOutput:
        self.backend.record(f"fwdbwd:{len(batch[0].tokens)}" if backward else f"fwd:{len(batch[0].tokens)}")
        return self.inner.run(batch, loss_fn, loss_fn_config, backward=backward)

    def optim_step(self, adam: AdamSettings) -> dict[str, float]:
        self.backend.record(f"optim:{adam.learning_rate:g}")
        return self.inner.optim_step(adam)

    def state(self, *, with_optimizer: bool) -> Arrays:
        return self.inner.state(with_optimizer=with_optimizer)

    def load_state(self, arrays: Arrays, *, with_optimizer: bool) -> None:
        self.inner.load_state(arrays, with_optimizer=with_optimizer)

    def sampler(self) -> SamplerEngine:
        return self.inner.sampler()

