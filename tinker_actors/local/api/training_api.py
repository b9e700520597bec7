"""Training endpoints: create_model, get_info, forward(_backward), optim_step, save/load weights.

Each model operation answers at once with a future (``{"request_id", "model_id"}``) and runs later,
in ``seq_id`` order, on a worker thread. Repeats of an accepted ``(model_id, seq_id)`` get the
original future back. Model errors (unknown base model, bad shapes, a datum longer than the
context window) become ``{"error", "category": "user"}`` results; malformed requests are 400s.

Both protocols are read per request: a forward_backward body is JSON (0.6.3) or protobuf, optionally
zstd-compressed (0.38, where a forward is a forward_backward with ``forward_only``), and both go
through the same checks. A protobuf request beyond a chunk limit the service announced
(``fwdbwd_max_chunk_len``, ``fwdbwd_max_chunk_bytes_count`` in ``client/config``) is refused: the
client did not follow the flags. 0.38's JSON bodies (defaults included, new fields) are read by
:mod:`.request_bodies`; a load with ``session_id`` and ``model_seq_id`` instead of a ``model_id``
creates its model from the checkpoint (0.38's ``create_training_client_from_state``; ``base_model`` may
name the checkpoint's model under another of its names, anything else is a 400; ``weights_access_token``
reads another account's checkpoint with that account's credential). ``save_weights_external`` exports the
LoRA weights as files (safetensors and an adapter config) served by ``get_external_weights_urls``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.api.billing_api import charge_training, refuse_if_spent, training_tokens
from tinker_actors.local.api.request_bodies import (
    CreateModelAdded,
    CreateViaLoadRequest,
    LoadWeightsAdded,
    OptimStepAdded,
    SaveWeightsAdded,
    SaveWeightsForSamplerAdded,
    adamw_only,
    read_body,
)
from tinker_actors.local.api.routes import Handler, Router
from tinker_actors.local.api.session_api import live_session
from tinker_actors.local.engine.backend import AdamSettings, DatumInput, LoraSpec, StepOutput, Trainer
from tinker_actors.local.engine.external_export import export_files
from tinker_actors.local.engine.future_store import Result
from tinker_actors.local.engine.inflight import inflight_of
from tinker_actors.local.engine.sequencer import ModelSequencer, show_value
from tinker_actors.local.engine.state import (
    PARSE_INLINE_BYTES,
    ApiError,
    Call,
    ModelSlot,
    SamplerSlot,
    ServiceState,
    ok,
)
from tinker_actors.local.engine.storage import (
    CheckpointKind,
    CheckpointRecord,
    InvalidNameError,
    RunRecord,
    SamplerRecord,
    check_name,
    parse_tinker_path,
)
from tinker_actors.local.engine.work_limits import (
    MAX_TOKEN_ID,
    OverLimitError,
    WorkLimits,
    check_at_most,
    check_token_ids,
)
from tinker_actors.local.model.losses import UNSERVED_LOSSES
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import (
    CreateModelRequest,
    CreateModelResponse,
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    GetInfoRequest,
    GetInfoResponse,
    ImageChunk,
    LoadWeightsRequest,
    LoadWeightsResponse,
    ModelData,
    OptimStepRequest,
    OptimStepResponse,
    SaveWeightsExternalRequest,
    SaveWeightsExternalResponseInternal,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
    TensorData,
    UnloadModelRequest,
    UnloadModelResponse,
    UntypedAPIFuture,
    WeightsInfoRequest,
    WeightsInfoResponse,
    encode_json,
)
from tinker_actors.wire import v0_38
from tinker_actors.wire.codec import CONTENT_TYPE_PROTOBUF, ForwardBackwardCall, media_type
from tinker_actors.wire.v0_38.array_results import encode_forward_backward_arrays

__all__ = ["TrainingApi"]

DEFAULT_LORA_RANK = 32
REFUSED = "refused"  # the "endpoint" of a seq_id whose request was refused (a valid re-send may use it)
OUTPUT_TYPE = "target_token_logprobs"


# 0.38's estimate of a datum's size in a protobuf request (what its chunk limit counts): 4 bytes per
# token, the bytes of each loss input's values, and 8 per index of a sparse one.
_TOKEN_BYTES = 4
_DTYPE_BYTES = {"float32": 4, "int64": 8}


@dataclass(frozen=True)
class _Done:
    """An operation's result, and what to do on the service loop before it is published."""

    payload: bytes | Result
    then: Callable[[], None] | None = None


Work = Callable[[Trainer], _Done]


@dataclass(frozen=True)
class _Loaded:
    """The checkpoint a model created by a load starts from."""

    record: CheckpointRecord
    path: str
    optimizer: bool


def datum_input(datum: Datum, loss_fn: str) -> DatumInput:
    """A wire Datum as arrays. Cross-entropy without ``weights`` weighs every target token 1."""
    runs: list[npt.NDArray[Any]] = []
    for chunk in datum.model_input.chunks:
        if not isinstance(chunk, EncodedTextChunk):
            raise ValueError("the local service's text model cannot read image chunks")
        runs.append(_token_array(chunk))
    inputs = {key: tensor.to_numpy() for key, tensor in datum.loss_fn_inputs.items()}
    if loss_fn == "cross_entropy" and "weights" not in inputs and "target_tokens" in inputs:
        inputs["weights"] = np.ones(inputs["target_tokens"].shape, dtype=np.float32)
    if len(runs) == 1:  # the common case: one copy, widened (concatenate would copy first)
        tokens = runs[0].astype(np.int64)
    else:
        tokens = np.concatenate(runs).astype(np.int64, copy=False) if runs else np.zeros(0, dtype=np.int64)
    return DatumInput(tokens=tokens, loss_fn_inputs=inputs)


def _token_array(chunk: EncodedTextChunk) -> npt.NDArray[Any]:
    """A text chunk's ids as an array: the one a protobuf request's chunk holds (no list made), or its list's."""
    held = chunk.held_array()
    return held if held is not None else np.asarray(chunk.tokens, dtype=np.int64)


def check_batch(data: ForwardBackwardInput, vocab_size: int | None, limits: WorkLimits) -> None:
    """The batch's size within ``limits``; its token ids (inputs and ``target_tokens``) within the
    vocabulary (when known). Raises :class:`OverLimitError`. Lengths against the context window are
    the model's to check (a ``user`` error result, like its other judgements of the data)."""
    check_at_most("the number of datums", len(data.data), limits.max_batch_datums)
    total = 0
    for datum in data.data:
        for chunk in datum.model_input.chunks:
            if isinstance(chunk, EncodedTextChunk):
                total += chunk.length
    check_at_most("the number of tokens in the batch", total, limits.max_batch_tokens)
    bound = vocab_size if vocab_size is not None else MAX_TOKEN_ID + 1
    if _held_ids_within(data, bound):
        return
    for index, datum in enumerate(data.data):
        for chunk in datum.model_input.chunks:
            if isinstance(chunk, EncodedTextChunk):
                held = chunk.held_array()  # a protobuf request's run: checked on its array, no list made
                check_token_ids(chunk.tokens if held is None else held, bound, f"datum {index}: model_input")
        targets = datum.loss_fn_inputs.get("target_tokens")
        if targets is not None and targets.dtype == "int64":  # an array, not a list: read from protobuf, it is one
            check_token_ids(targets.to_numpy(), bound, f"datum {index}: target_tokens")


def _held_ids_within(data: ForwardBackwardInput, bound: int) -> bool:
    """Whether the batch's ids all lie in ``[0, bound)``, checked in one pass over all of them, when every token
    run and ``target_tokens`` holds an array (a protobuf request's do): a datum at a time, min and max cost more
    than the ids. False means "look datum by datum" (out of range somewhere, or lists), which finds the first
    id out of range and words the error."""
    arrays: list[npt.NDArray[Any]] = []
    for datum in data.data:
        for chunk in datum.model_input.chunks:
            if isinstance(chunk, EncodedTextChunk):
                held = chunk.held_array()
                if held is None:
                    return False
                arrays.append(held)
        targets = datum.loss_fn_inputs.get("target_tokens")
        if targets is not None and targets.dtype == "int64":
            if targets.is_sparse or (held := targets.held_array()) is None:
                return False
            arrays.append(held)
    by_dtype: dict[np.dtype[Any], list[npt.NDArray[Any]]] = {}
    for array in arrays:
        if array.size:
            by_dtype.setdefault(array.dtype, []).append(array)
    for same in by_dtype.values():
        ids = np.concatenate(same)
        if int(ids.min()) < 0 or int(ids.max()) >= bound:
            return False
    return True


def step_output(step: StepOutput) -> ForwardBackwardOutput:
    outputs = [{name: TensorData.from_numpy(np.asarray(value)) for name, value in out.items()}
               for out in step.outputs]
    metrics = {name: float(value) for name, value in step.metrics.items()}
    return ForwardBackwardOutput(loss_fn_output_type=OUTPUT_TYPE, loss_fn_outputs=outputs, metrics=metrics)


def encode_step(step: StepOutput) -> bytes:
    return encode_json(step_output(step))


def step_result(step: StepOutput) -> Result:
    """A forward(_backward) result: JSON for 0.6.3 polls, protobuf for 0.38 ones, each encoded when first asked."""
    size = sum(np.asarray(value).nbytes for out in step.outputs for value in out.values())
    return Result(lambda: encode_step(step),
                  protobuf=lambda: encode_forward_backward_arrays(step.outputs, step.metrics, OUTPUT_TYPE).content,
                  size_hint=2 * size)


def estimated_proto_bytes(datum: Datum) -> int:
    """0.38's estimate of one datum's size in a protobuf request (what ``fwdbwd_max_chunk_bytes_count`` counts)."""
    total = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            total += chunk.length * _TOKEN_BYTES
        elif isinstance(chunk, ImageChunk):
            total += len(chunk.data)
    for tensor in datum.loss_fn_inputs.values():
        total += tensor.size * _DTYPE_BYTES.get(tensor.dtype, 8)
        csr = tensor.csr_arrays() if tensor.is_sparse else None
        if csr is not None:  # a sparse tensor's indices: 8 bytes each
            total += 8 * (csr[1].size + csr[2].size)
    return total


def check_announced_chunk(data: ForwardBackwardInput, max_datums: int | None, max_bytes: int | None) -> None:
    """The chunk limits the service announced in ``client/config``, for a protobuf request (a client that
    reads the flags must follow them). A single datum may exceed the byte limit, as 0.38 sends it alone."""
    if max_datums is not None:
        check_at_most("the number of datums in one request (the announced fwdbwd_max_chunk_len)",
                      len(data.data), max_datums)
    if max_bytes is not None and len(data.data) > 1:
        total = sum(estimated_proto_bytes(datum) for datum in data.data)
        check_at_most("the estimated bytes of one request (the announced fwdbwd_max_chunk_bytes_count)",
                      total, max_bytes)


def _string_metadata(metadata: dict[str, Any] | None) -> dict[str, str] | None:
    """TrainingRun.user_metadata holds strings only; other JSON values are kept as their JSON text."""
    if metadata is None:
        return None
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def _future(request_id: str, model_id: str | None) -> HttpResponse:
    return ok(UntypedAPIFuture(request_id=request_id, model_id=model_id))


class TrainingApi:
    def __init__(self, state: ServiceState, *, user_of_credential: Callable[[str], str | None] | None = None) -> None:
        """``user_of_credential``: the user a credential (API key or token of this service) belongs to, or None;
        what a load's ``weights_access_token`` is read with (without it, access tokens open nothing)."""
        self._state = state
        self._user_of_credential = user_of_credential

    def register(self, router: Router) -> None:
        for name, handler in (
            ("create_model", self.create_model), ("get_info", self.get_info),
            ("unload_model", self.unload_model), ("weights_info", self.weights_info),
        ):
            router.add("POST", f"/api/v1/{name}", name, handler)
        for name, handler in (
            ("forward_backward", self.forward_backward), ("forward", self.forward),
            ("optim_step", self.optim_step), ("save_weights", self.save_weights),
            ("save_weights_for_sampler", self.save_weights_for_sampler), ("load_weights", self.load_weights),
            ("save_weights_external", self.save_weights_external),
        ):
            router.add("POST", f"/api/v1/{name}", name, self._releasing_refused_seq_ids(handler))

    def _releasing_refused_seq_ids(self, handler: Handler) -> Handler:
        """A request refused with 400 still used up its ``seq_id`` on the client: mark it taken, so the
        model does not wait ``gap_timeout_s`` for it before running the next operations."""

        async def handle(call: Call) -> HttpResponse:
            try:
                return await handler(call)
            except ApiError as error:
                if error.status == 400:
                    self._release_seq_id(call)
                raise

        return handle

    def _release_seq_id(self, call: Call) -> None:
        try:
            model_id, seq_id = call.raw_field("model_id"), call.raw_field("seq_id")
        except ApiError:
            return  # not JSON: names no seq_id
        slot = self._state.models.get(model_id) if isinstance(model_id, str) else None
        if slot is None or slot.owner != call.user or slot.sequencer.refusal(seq_id) is not None:
            return  # a seq_id outside the model's window is refused without taking a place in it
        assert isinstance(seq_id, int)
        if slot.sequencer.seen(seq_id) is None:
            slot.sequencer.consume(seq_id, REFUSED, "")

    # ---- models ------------------------------------------------------------------------------
    def _model_slot(self, call: Call, session_id: str,
                    model_seq_id: int) -> tuple[tuple[str, int], str, HttpResponse | None]:
        """The key and id of the model a creating request names, and the answer to give when it repeats an
        earlier one (the same future); 404 for an unknown session (or another user's), 410 for a finished one."""
        state = self._state
        live_session(state, call, session_id)
        key = (session_id, model_seq_id)
        model_id = f"{session_id}:train:{model_seq_id}"
        existing = state.model_requests.get(key)
        if existing is None:
            return key, model_id, None
        state.stats.duplicate(call.endpoint)
        return key, model_id, _future(existing, model_id)

    async def create_model(self, call: Call) -> HttpResponse:
        state = self._state
        req, added = read_body(call, CreateModelRequest, CreateModelAdded)
        adamw_only(added.optimizer_config, call.endpoint)
        key, model_id, repeat = self._model_slot(call, req.session_id, req.model_seq_id)
        if repeat is not None:
            return repeat
        lora_config = req.lora_config
        lora = LoraSpec(
            rank=lora_config.rank if lora_config else DEFAULT_LORA_RANK,
            seed=lora_config.seed if lora_config else None,
            train_mlp=lora_config.train_mlp if lora_config else True,
            train_attn=lora_config.train_attn if lora_config else True,
            train_unembed=lora_config.train_unembed if lora_config else True,
        )
        request_id = state.futures.create("CreateModel", model_id, call.user)
        sequencer = ModelSequencer(gap_timeout_s=state.config.gap_timeout_s,
                                   max_ahead=state.config.work_limits.max_seq_id_ahead)
        slot = ModelSlot(model_id=model_id, session_id=req.session_id, base_model=req.base_model,
                         lora=lora, sequencer=sequencer, owner=call.user)
        state.models[model_id] = slot
        state.model_requests[key] = request_id
        if not call.never_complete:
            state.spawn(self._build_model(slot, request_id, req.user_metadata))
        return _future(request_id, model_id)

    async def _build_model(self, slot: ModelSlot, request_id: str, metadata: dict[str, Any] | None,
                           load: _Loaded | None = None) -> None:
        state = self._state
        endpoint = "create_model" if load is None else "load_weights"
        try:
            base = state.backend.describe(slot.base_model).name
            trainer = await state.run_blocking(lambda: state.backend.new_trainer(base, slot.lora))
            if load is not None:
                await state.run_blocking(lambda: self._load_into(trainer, load))
            now = datetime.now(UTC)
            state.storage.add_run(RunRecord(
                run_id=slot.model_id, session_id=slot.session_id, base_model=base, lora_rank=slot.lora.rank,
                seed=slot.lora.seed, train_mlp=slot.lora.train_mlp, train_attn=slot.lora.train_attn,
                train_unembed=slot.lora.train_unembed, model_owner=slot.owner, created=now,
                last_request_time=now, user_metadata=_string_metadata(metadata), owner=slot.owner))
        except Exception as error:
            message, category = state.classify(error)
            slot.release(f"model creation failed: {message}")
            state.futures.fail(request_id, message, category)
            state.stats.executed(endpoint, ok=False)
            return
        slot.base_model = base
        slot.trainer = trainer
        slot.ready.set()
        if load is None:
            state.futures.resolve(request_id, encode_json(CreateModelResponse(model_id=slot.model_id)))
        else:  # 0.38's LoadWeightsResponse names the model it created
            state.futures.resolve(request_id, json.dumps({"path": load.path, "model_id": slot.model_id,
                                                          "type": "load_weights"}).encode())
        state.stats.executed(endpoint)

    def _load_into(self, trainer: Trainer, load: _Loaded) -> None:
        storage = self._state.storage
        if load.optimizer and not load.record.with_optimizer:
            raise ValueError(f"checkpoint {load.path} holds no optimizer state (sampler weights); "
                             "load it without the optimizer")
        trainer.load_state(storage.read_checkpoint(load.record), with_optimizer=load.optimizer)

    async def get_info(self, call: Call) -> HttpResponse:
        state = self._state
        req = call.parse(GetInfoRequest)
        run = state.storage.run(req.model_id, call.user)
        slot = state.models.get(req.model_id)
        if slot is not None and slot.owner != call.user:
            slot = None
        if run is None and slot is None:
            raise ApiError(404, f"unknown model_id {req.model_id!r}")
        base = run.base_model if run is not None else slot.base_model if slot is not None else ""
        rank = run.lora_rank if run is not None else slot.lora.rank if slot is not None else 0
        try:
            description = state.backend.describe(base)
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        return ok(GetInfoResponse(
            model_id=req.model_id, is_lora=True, lora_rank=rank, model_name=description.name,
            model_data=ModelData(arch=description.arch, model_name=description.name,
                                 tokenizer_id=description.tokenizer_id)))

    async def unload_model(self, call: Call) -> HttpResponse:
        req = call.parse(UnloadModelRequest)
        slot = self._slot(req.model_id, call.user)

        def unload(trainer: Trainer) -> _Done:
            return _Done(encode_json(UnloadModelResponse(model_id=req.model_id)),
                         lambda: slot.release(f"model {req.model_id} was unloaded"))

        return self._submit(call, slot, None, "UnloadModel", unload)

    # ---- sequenced operations ----------------------------------------------------------------
    async def forward_backward(self, call: Call) -> HttpResponse:
        if media_type(call.request.headers.get("content-type")) == CONTENT_TYPE_PROTOBUF:
            return await self._forward_backward_protobuf(call)
        req = await call.parse_async(ForwardBackwardRequest)
        return await self._submit_pass(call, req.model_id, req.seq_id, req.forward_backward_input,
                                       backward=True, request_type="ForwardBackward")

    async def _forward_backward_protobuf(self, call: Call) -> HttpResponse:
        """Protocol 0.38: a ``ForwardBackwardRequest`` message, zstd-compressed or not; ``forward_only``
        makes it a forward."""
        headers = call.request.headers
        limit = self._state.config.max_body_bytes  # inflated, a body may be as large as a plain one

        def decode() -> ForwardBackwardCall:
            return v0_38.CODEC.decode_forward_backward(call.request.body, content_type=headers.get("content-type"),
                                                       content_encoding=headers.get("content-encoding"),
                                                       max_decompressed_bytes=limit)

        try:
            if len(call.request.body) < PARSE_INLINE_BYTES and "content-encoding" not in headers:
                decoded = decode()
            else:  # megabytes of tokens, or an unknown inflated size: off the service loop
                decoded = await asyncio.to_thread(decode)
        except InvalidInputError as error:
            raise ApiError(400, f"{call.endpoint}: {error}") from None
        call.decoded = {"model_id": decoded.model_id, "seq_id": decoded.seq_id}
        protocol = self._state.protocol
        try:
            check_announced_chunk(decoded.input, protocol.value("fwdbwd_max_chunk_len"),
                                  protocol.value("fwdbwd_max_chunk_bytes_count"))
        except OverLimitError as error:
            raise ApiError(400, f"{call.endpoint}: {error}") from None
        return await self._submit_pass(call, decoded.model_id, decoded.seq_id, decoded.input,
                                       backward=not decoded.forward_only,
                                       request_type="Forward" if decoded.forward_only else "ForwardBackward")

    async def forward(self, call: Call) -> HttpResponse:
        req = await call.parse_async(ForwardRequest)
        return await self._submit_pass(call, req.model_id, req.seq_id, req.forward_input,
                                       backward=False, request_type="Forward")

    async def _submit_pass(self, call: Call, model_id: str, seq_id: int | None, data: ForwardBackwardInput,
                           *, backward: bool, request_type: str) -> HttpResponse:
        slot = self._slot(model_id, call.user)
        unserved = UNSERVED_LOSSES.get(data.loss_fn)
        if unserved is not None:  # refused at once, in the service's words, rather than as a failed future
            raise ApiError(400, f"{call.endpoint}: {unserved}")
        vocab_size = self._vocab_size(slot)
        limits = self._state.config.work_limits
        try:
            if len(call.request.body) < PARSE_INLINE_BYTES:
                check_batch(data, vocab_size, limits)
            else:  # a long token list: checked off the service loop, like its parsing
                await asyncio.to_thread(check_batch, data, vocab_size, limits)
        except OverLimitError as error:
            raise ApiError(400, f"{call.endpoint}: {error}") from None
        charge = charge_training(self._state, call, tokens=training_tokens(data), base_model=slot.base_model,
                                 session_id=slot.session_id, model_id=slot.model_id)

        def run_pass(trainer: Trainer) -> _Done:
            batch = [datum_input(datum, data.loss_fn) for datum in data.data]
            step = trainer.run(batch, data.loss_fn, data.loss_fn_config, backward=backward)
            if len(step.outputs) != len(batch):
                raise RuntimeError(f"the model returned {len(step.outputs)} outputs for {len(batch)} datums")
            return _Done(step_result(step), then=charge)

        return self._submit(call, slot, seq_id, request_type, run_pass, billed=True)

    async def optim_step(self, call: Call) -> HttpResponse:
        data = call.json()
        if isinstance(data, dict) and data.get("optimizer_params") is not None:  # 0.38, a non-Adam optimizer
            raise ApiError(400, f"{call.endpoint}: the local service trains with AdamW only (adam_params), "
                                f"not optimizer_params {show_value(data['optimizer_params'])}")
        req, _ = read_body(call, OptimStepRequest, OptimStepAdded)
        slot = self._slot(req.model_id, call.user)
        adam = req.adam_params
        settings = AdamSettings(learning_rate=adam.learning_rate, beta1=adam.beta1, beta2=adam.beta2,
                                eps=adam.eps, weight_decay=adam.weight_decay, grad_clip_norm=adam.grad_clip_norm)

        def step(trainer: Trainer) -> _Done:
            metrics = {name: float(value) for name, value in trainer.optim_step(settings).items()}
            return _Done(encode_json(OptimStepResponse(metrics=metrics)),
                         inflight_of(self._state).after_update(slot.model_id, trainer))

        return self._submit(call, slot, req.seq_id, "OptimStep", step)

    async def save_weights(self, call: Call) -> HttpResponse:
        # user_metadata and ttl_seconds are kept with the checkpoint (Checkpoint.user_metadata / expires_at).
        # overwrite (0.38 always sends it): without it, a name already used fails the save's future as a user
        # error and the checkpoint stays as it was; with it, the new version replaces the old one (its
        # metadata and expiry too). A 0.6.3 body has no such field: a used name is replaced, as before.
        req, added = read_body(call, SaveWeightsRequest, SaveWeightsAdded)
        slot = self._slot(req.model_id, call.user)
        name = self._checkpoint_name(req.path, req.seq_id)
        ttl_seconds = self._ttl(added.ttl_seconds, call.endpoint)
        refuse_existing = "overwrite" in added.model_fields_set and not added.overwrite
        storage = self._state.storage

        def save(trainer: Trainer) -> _Done:
            if refuse_existing:  # looked up when the save runs: an earlier save of the name must be seen
                existing = storage.checkpoint(slot.model_id, f"weights/{name}")
                if existing is not None:
                    raise ValueError(f"checkpoint {existing.tinker_path} already exists; save with "
                                     "overwrite=True to replace it, or choose another name")
            record = storage.write_checkpoint(slot.model_id, "weights", name, trainer.state(with_optimizer=True),
                                              with_optimizer=True, ttl_seconds=ttl_seconds,
                                              user_metadata=added.user_metadata)
            return _Done(encode_json(SaveWeightsResponse(path=record.tinker_path)))

        return self._submit(call, slot, req.seq_id, "SaveWeights", save)

    async def save_weights_for_sampler(self, call: Call) -> HttpResponse:
        req, added = read_body(call, SaveWeightsForSamplerRequest, SaveWeightsForSamplerAdded)
        slot = self._slot(req.model_id, call.user)
        if added.kind == "inflight" and req.path is not None:
            raise ApiError(400, f"{call.endpoint}: an inflight sampler follows the model's weights; it has no "
                                "path (give a sampling_session_seq_id)")
        if req.path is None and req.sampling_session_seq_id is None:
            raise ApiError(400, "save_weights_for_sampler needs a path (a name) or a sampling_session_seq_id")
        ttl_seconds = self._ttl(added.ttl_seconds, call.endpoint)
        state = self._state
        if req.path is not None:
            name = self._checkpoint_name(req.path, req.seq_id)

            def save_named(trainer: Trainer) -> _Done:
                kind: CheckpointKind = "sampler_weights"
                record = state.storage.write_checkpoint(
                    slot.model_id, kind, name, trainer.state(with_optimizer=False), with_optimizer=False,
                    ttl_seconds=ttl_seconds, user_metadata=added.user_metadata)
                return _Done(encode_json(SaveWeightsForSamplerResponseInternal(path=record.tinker_path)))

            return self._submit(call, slot, req.seq_id, "SaveWeightsForSampler", save_named)

        sampler_id = f"{slot.session_id}:sample:{req.sampling_session_seq_id}"

        def save_ephemeral(trainer: Trainer) -> _Done:
            engine = trainer.sampler()
            record = SamplerRecord(sampler_id=sampler_id, session_id=slot.session_id,
                                   base_model=slot.base_model, ephemeral_of=slot.model_id, owner=slot.owner)
            state.storage.add_sampler(record, trainer.state(with_optimizer=False))

            def register() -> None:
                state.samplers[sampler_id] = SamplerSlot(record)
                state.cache_engine(sampler_id, engine)
                if added.kind == "inflight":  # follows the model's later steps (engine/inflight.py)
                    inflight_of(state).follow(sampler_id, slot.model_id, engine)

            return _Done(encode_json(SaveWeightsForSamplerResponseInternal(sampling_session_id=sampler_id)),
                         register)

        return self._submit(call, slot, req.seq_id, "SaveWeightsForSampler", save_ephemeral)

    async def save_weights_external(self, call: Call) -> HttpResponse:
        """0.38's ``save_weights_external``: the model's LoRA weights as files for use outside the service
        (``adapter_model.safetensors`` and ``adapter_config.json``, ``engine/external_export.py``) at
        ``tinker://<model>/external_weights/<name>``, downloadable through ``get_external_weights_urls``.
        A used name is replaced (0.38 has no ``overwrite`` here). age encryption is refused: the local
        service has no age implementation, and exporting in the clear what was asked encrypted is not an option."""
        req = call.parse(SaveWeightsExternalRequest)
        if req.age_encryption_recipients:
            raise ApiError(400, f"{call.endpoint}: age_encryption_recipients is not supported by the local service "
                                "(it cannot encrypt to age recipients); leave it unset to export unencrypted files")
        slot = self._slot(req.model_id, call.user)
        name = self._checkpoint_name(req.path, req.seq_id)
        ttl_seconds = self._ttl(req.ttl_seconds, call.endpoint)
        storage = self._state.storage

        def export(trainer: Trainer) -> _Done:
            lora = slot.lora
            files = export_files(trainer.state(with_optimizer=False), base_model=slot.base_model, rank=lora.rank,
                                 train_mlp=lora.train_mlp, train_attn=lora.train_attn,
                                 train_unembed=lora.train_unembed)
            record = storage.write_external_weights(slot.model_id, name, files, ttl_seconds=ttl_seconds)
            return _Done(encode_json(SaveWeightsExternalResponseInternal(path=record.tinker_path,
                                                                         size_bytes=record.size_bytes)))

        return self._submit(call, slot, req.seq_id, "SaveWeightsExternal", export)

    async def load_weights(self, call: Call) -> HttpResponse:
        data = call.json()
        if isinstance(data, dict) and data.get("model_id") is None and data.get("session_id") is not None:
            return await self._create_via_load(call)
        req, added = read_body(call, LoadWeightsRequest, LoadWeightsAdded)
        if added.session_id is not None or added.model_seq_id is not None:
            raise ApiError(400, f"{call.endpoint}: give either model_id (load into a model) or session_id and "
                                "model_seq_id (create a model from the checkpoint), not both")
        adamw_only(added.optimizer_config, call.endpoint)
        if req.model_id is None:
            raise ApiError(400, f"{call.endpoint}: give model_id (load into a model) or session_id and "
                                "model_seq_id (create a model from the checkpoint)")
        slot = self._slot(req.model_id, call.user)
        try:
            parse_tinker_path(req.path)
        except InvalidNameError as error:
            raise ApiError(400, str(error)) from error
        storage = self._state.storage
        token = added.weights_access_token

        def load(trainer: Trainer) -> _Done:
            # Looked up when the operation runs: a save queued just before it must be visible.
            record = self._readable(req.path, slot.owner, token)
            if record is None:
                raise ValueError(f"checkpoint {req.path} not found")
            if req.optimizer and not record.with_optimizer:
                raise ValueError(f"checkpoint {req.path} holds no optimizer state (sampler weights); "
                                 "load it without the optimizer")
            trainer.load_state(storage.read_checkpoint(record, reader=slot.owner, purpose="load"),
                               with_optimizer=req.optimizer)
            return _Done(encode_json(LoadWeightsResponse(path=req.path)),
                         inflight_of(self._state).after_update(slot.model_id, trainer))

        return self._submit(call, slot, req.seq_id, "LoadWeights", load)

    async def _create_via_load(self, call: Call) -> HttpResponse:
        """0.38's ``create_training_client_from_state``: one load that creates the model
        ``<session_id>:train:<model_seq_id>`` with the checkpoint's LoRA settings and loads it (the
        model's first operation; its next ones are numbered from 1). A repeat gets the same future."""
        state = self._state
        req = call.parse(CreateViaLoadRequest)
        adamw_only(req.optimizer_config, call.endpoint)
        key, model_id, repeat = self._model_slot(call, req.session_id, req.model_seq_id)
        if repeat is not None:
            return repeat
        try:
            record = self._readable(req.path, call.user, req.weights_access_token)
        except InvalidNameError as error:
            raise ApiError(400, str(error)) from error
        run = state.storage.run(record.run_id) if record is not None else None
        if record is None or run is None:
            raise ApiError(404, f"checkpoint {req.path} not found")
        if record.kind == "external_weights":
            raise ApiError(400, f"{call.endpoint}: checkpoint {req.path} holds external weights (files for use "
                                "outside the service); load a training or sampler checkpoint")
        self._check_base_model_override(req.base_model, run.base_model, req.path, call.endpoint)
        state.storage.audit_read(record, call.user, "load")
        lora = LoraSpec(rank=run.lora_rank, seed=run.seed, train_mlp=run.train_mlp, train_attn=run.train_attn,
                        train_unembed=run.train_unembed)
        request_id = state.futures.create("LoadWeights", model_id, call.user)
        slot = ModelSlot(model_id=model_id, session_id=req.session_id, base_model=run.base_model, lora=lora,
                         sequencer=ModelSequencer(gap_timeout_s=state.config.gap_timeout_s,
                                                  max_ahead=state.config.work_limits.max_seq_id_ahead),
                         owner=call.user)
        state.models[model_id] = slot
        state.model_requests[key] = request_id
        if not call.never_complete:
            loaded = _Loaded(record, req.path, req.optimizer)
            state.spawn(self._build_model(slot, request_id, req.user_metadata, loaded))
        return _future(request_id, model_id)

    async def weights_info(self, call: Call) -> HttpResponse:
        req = call.parse(WeightsInfoRequest)
        storage = self._state.storage
        try:
            record = storage.checkpoint_by_path(req.tinker_path, call.user)
        except InvalidNameError as error:
            raise ApiError(400, str(error)) from error
        run = storage.run(record.run_id) if record is not None else None
        if record is None or run is None:
            raise ApiError(404, f"checkpoint {req.tinker_path} not found")
        return ok(WeightsInfoResponse(base_model=run.base_model, is_lora=True, lora_rank=run.lora_rank))

    # ---- helpers -----------------------------------------------------------------------------
    def _slot(self, model_id: str, user: str) -> ModelSlot:
        """``user``'s model: another user's answers exactly as an unknown one."""
        slot = self._state.models.get(model_id)
        if slot is not None and slot.owner != user:
            slot = None
        if slot is None:
            known = self._state.storage.run(model_id, user) is not None
            detail = (" (the service restarted since it was created; load a checkpoint into a new model)"
                      if known else "")
            raise ApiError(404, f"unknown model_id {model_id!r}{detail}")
        if slot.gone is not None:
            raise ApiError(404, f"model {model_id!r} is not available: {slot.gone}")
        return slot

    def _vocab_size(self, slot: ModelSlot) -> int | None:
        """The slot's vocabulary size; None while its base model is unknown (creation will fail)."""
        try:
            return self._state.backend.describe(slot.base_model).vocab_size
        except ValueError:
            return None

    def _readable(self, path: str, user: str, access_token: str | None) -> CheckpointRecord | None:
        """The checkpoint at ``path`` if ``user`` may read it (their own, or published) or, with
        ``access_token`` (0.38's ``weights_access_token``: another account's API key or token of this
        service), if that account may; None otherwise, as for an unknown checkpoint."""
        storage = self._state.storage
        record = storage.checkpoint_by_path(path, user)
        if record is None and access_token and self._user_of_credential is not None:
            other = self._user_of_credential(access_token)
            if other is not None:
                record = storage.checkpoint_by_path(path, other)
        return record

    def _check_base_model_override(self, base_model: str | None, checkpoint_base: str, path: str,
                                   endpoint: str) -> None:
        """0.38's ``base_model`` override of create-via-load: it must name a model the checkpoint's weights fit
        (here: the same model, under any of its names); otherwise a 400 saying why."""
        if base_model is None:
            return
        try:
            override = self._state.backend.describe(base_model).name
        except ValueError as error:
            raise ApiError(400, f"{endpoint}: base_model override {base_model!r}: {error}") from None
        if override != checkpoint_base:
            raise ApiError(400, f"{endpoint}: base_model override {base_model!r} is not compatible with checkpoint "
                                f"{path} (of base model {checkpoint_base!r}): its LoRA weights have the shapes of "
                                f"{checkpoint_base!r}, so the local service cannot load them onto {override!r}")

    def _ttl(self, ttl_seconds: int | None, endpoint: str) -> int | None:
        """A save's ``ttl_seconds`` (newer SDKs), checked as ``set_checkpoint_ttl`` checks it."""
        limit = self._state.config.work_limits.max_ttl_seconds
        if ttl_seconds is not None and not 0 <= ttl_seconds <= limit:
            raise ApiError(400, f"{endpoint}: ttl_seconds must be between 0 and {limit}, got {ttl_seconds}")
        return ttl_seconds

    @staticmethod
    def _checkpoint_name(path: str | None, seq_id: int | None) -> str:
        name = path if path is not None else f"{seq_id or 0:06d}"
        try:
            return check_name(name)
        except InvalidNameError as error:
            raise ApiError(400, str(error)) from error

    def _submit(self, call: Call, slot: ModelSlot, seq_id: int | None, request_type: str,
                work: Work, *, billed: bool = False) -> HttpResponse:
        state = self._state
        endpoint = call.endpoint
        if seq_id is not None:
            refusal = slot.sequencer.refusal(call.raw_field("seq_id"))
            if refusal is not None:
                raise ApiError(400, f"{endpoint}: {refusal}")
        state.stats.sequenced_received(slot.model_id, seq_id, endpoint)
        if seq_id is not None:
            seen = slot.sequencer.seen(seq_id)
            if seen is not None and seen.endpoint != REFUSED:
                if seen.endpoint != endpoint:
                    raise ApiError(400, f"seq_id {seq_id} of model {slot.model_id} was already used "
                                        f"by a {seen.endpoint} request")
                state.stats.duplicate(endpoint)
                return _future(seen.request_id, slot.model_id)
        if billed:  # a new submission (a repeat of an accepted one got its future above): the budget gate
            refuse_if_spent(state, call)
        request_id = state.futures.create(request_type, slot.model_id, slot.owner)
        state.storage.touch_run(slot.model_id)
        if call.never_complete:
            if seq_id is not None:
                slot.sequencer.consume(seq_id, endpoint, request_id)
            return _future(request_id, slot.model_id)

        async def operation() -> None:
            await slot.ready.wait()
            trainer = slot.trainer
            if trainer is None:
                state.futures.fail(request_id, f"model {slot.model_id} is not available: {slot.gone}", "user")
                state.stats.executed(endpoint, slot.model_id, seq_id, ok=False)
                return
            try:
                done = await state.run_blocking(lambda: work(trainer))
            except Exception as error:
                message, category = state.classify(error)
                state.futures.fail(request_id, message, category)
                state.stats.executed(endpoint, slot.model_id, seq_id, ok=False)
                return
            if done.then is not None:
                done.then()
            state.futures.resolve(request_id, done.payload)
            state.stats.executed(endpoint, slot.model_id, seq_id)

        slot.sequencer.submit(seq_id, endpoint, request_id, operation)
        return _future(request_id, slot.model_id)
