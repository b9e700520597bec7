"""Sampling endpoints: create_sampling_session, join_sampling_session and asample.

Sampling sessions are keyed by ``(session_id, sampling_session_seq_id)`` (a repeat returns the same
id). Samples need no ordering; a re-send of the same call (same ``(sampling_session_id, seq_id)`` and
the same idempotency key, or body when there is none) returns the original future. With
``max_pending_samples`` set, a full queue answers 429 (the SDK's backpressure signal).

Every sample future names its sequences (``sample_sequence_ids``, one per sample, which 0.38 requires);
older clients ignore the field. 0.38's added sample settings are read: ``prompt_logprobs_last_n`` is
honoured, and those asking for what this service does not compute (top-k of sampled tokens, target
prompt logprobs, alternative prompt tokens, stability records) are refused with a 400 that names them.
The result is JSON or protobuf, as the poll asks.

``join_sampling_session`` (protocol 0.38) gives a new client of an existing sampling session (an unpickled
or handle-built clone, in any process) its own number, so that its seq ids never meet another client's
(:mod:`tinker_actors.local.engine.sampler_clones`); only the session's owner may join it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TypeVar

from tinker_actors.local.api.billing_api import charge_sampling, refuse_if_spent
from tinker_actors.local.api.request_bodies import SampleAdded, read_body_async
from tinker_actors.local.api.routes import Router
from tinker_actors.local.api.session_api import live_session
from tinker_actors.local.engine.backend import Arrays, BaseModelDescription, SampleArgs, SampleOutput, SamplerEngine
from tinker_actors.local.engine.future_store import Result
from tinker_actors.local.engine.sampler_clones import SamplerClones
from tinker_actors.local.engine.sequencer import MAX_REMEMBERED, show_value
from tinker_actors.local.engine.state import ApiError, Call, SamplerSlot, ServiceState, ok
from tinker_actors.local.engine.storage import InvalidNameError, SamplerRecord
from tinker_actors.local.engine.work_limits import OverLimitError, WorkLimits, check_at_most, check_token_ids
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import (
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    EncodedTextChunk,
    SampledSequence,
    SampleRequest,
    SampleResponse,
    encode_json,
)
from tinker_actors.types.join_sampling_session import JoinSamplingSessionRequest, JoinSamplingSessionResponse
from tinker_actors.wire import v0_38

__all__ = ["SamplingApi"]

T = TypeVar("T")


def sample_args(req: SampleRequest) -> SampleArgs:
    tokens: list[int] = []
    for chunk in req.prompt.chunks:
        if not isinstance(chunk, EncodedTextChunk):
            raise ValueError("the local service's text model cannot read image chunks")
        tokens.extend(chunk.tokens)
    params = req.sampling_params
    stop: list[str] | list[int] = params.stop_strings() or params.stop_token_ids()
    return SampleArgs(
        prompt=tokens, num_samples=req.num_samples, max_tokens=params.max_tokens,
        temperature=float(params.temperature), top_k=params.top_k, top_p=float(params.top_p), stop=stop,
        seed=params.seed, prompt_logprobs=bool(req.prompt_logprobs),
        topk_prompt_logprobs=req.topk_prompt_logprobs)


def check_sample(req: SampleRequest, model: BaseModelDescription, limits: WorkLimits) -> None:
    """What one sample request may ask of ``model``: raises :class:`OverLimitError` beyond a limit.

    ``max_tokens`` and the prompt must each fit in the context window; whether both fit together is
    the model's to judge (a ``user`` error result)."""
    check_at_most("num_samples", req.num_samples, limits.max_num_samples)
    check_at_most("topk_prompt_logprobs", req.topk_prompt_logprobs, limits.max_topk_prompt_logprobs)
    max_tokens = req.sampling_params.max_tokens
    if max_tokens is not None:
        check_at_most(f"max_tokens (the context window of {model.name})", max_tokens, model.context_window)
    stop = req.sampling_params.stop
    if stop is not None and not isinstance(stop, str):
        check_at_most("the number of stop sequences", len(stop), limits.max_stop_sequences)
    length = 0
    for chunk in req.prompt.chunks:
        if isinstance(chunk, EncodedTextChunk):
            length += len(chunk.tokens)
            check_token_ids(chunk.tokens, model.vocab_size, "the prompt")
    check_at_most(f"the prompt length (the context window of {model.name})", length, model.context_window)


def check_added(added: SampleAdded, req: SampleRequest) -> None:
    """0.38's added sample settings: a :class:`ValueError` for what the local service does not compute."""
    unserved = {"topk_sample_logprobs": added.topk_sample_logprobs != 0,
                "prompt_alt_tokens_k": added.prompt_alt_tokens_k != 0,
                "target_prompt_logprobs": added.target_prompt_logprobs is not None,
                "record_stability_info": bool(added.record_stability_info)}
    asked = [name for name, set_ in unserved.items() if set_]
    if asked:
        raise ValueError(f"the local service does not compute {', '.join(asked)} (leave them at 0 / unset)")
    last_n = added.prompt_logprobs_last_n
    if last_n is not None:
        length = sum(len(c.tokens) for c in req.prompt.chunks if isinstance(c, EncodedTextChunk))
        if not req.prompt_logprobs:
            raise ValueError("prompt_logprobs_last_n needs prompt_logprobs")
        if not 1 <= last_n <= length - 1:
            raise ValueError(f"prompt_logprobs_last_n must be between 1 and the prompt length - 1 ({length - 1}), "
                             f"got {last_n}")


def _last_n(values: list[T] | None, last_n: int | None) -> list[T | None] | None:
    """Only the last ``last_n`` positions kept (0.38's ``prompt_logprobs_last_n``), the others None."""
    if values is None:
        return None
    if last_n is None:
        return list(values)
    cut = len(values) - last_n
    return [None] * cut + list(values[cut:])


def sample_response(output: SampleOutput, req: SampleRequest, last_n: int | None = None) -> SampleResponse:
    sequences = [SampledSequence(stop_reason=s.stop_reason, tokens=s.tokens, logprobs=s.logprobs)
                 for s in output.sequences]
    fields: dict[str, object] = {"sequences": sequences}
    if req.prompt_logprobs and output.prompt_logprobs is not None:
        fields["prompt_logprobs"] = _last_n(output.prompt_logprobs, last_n)
    if req.topk_prompt_logprobs > 0 and output.topk_prompt_logprobs is not None:
        fields["topk_prompt_logprobs"] = _last_n(output.topk_prompt_logprobs, last_n)
    return SampleResponse.model_validate(fields)


def encode_sample(output: SampleOutput, req: SampleRequest) -> bytes:
    return encode_json(sample_response(output, req))


def sample_result(output: SampleOutput, req: SampleRequest, last_n: int | None) -> Result:
    """A sample result: JSON for 0.6.3 polls, protobuf for 0.38 ones, each encoded when first asked."""
    built: list[SampleResponse] = []

    def response() -> SampleResponse:
        if not built:
            built.append(sample_response(output, req, last_n))
        return built[0]

    tokens = sum(len(sequence.tokens) for sequence in output.sequences)
    prompt = len(output.prompt_logprobs or ()) * (1 + req.topk_prompt_logprobs)
    return Result(lambda: encode_json(response()),
                  protobuf=lambda: v0_38.CODEC.encode_sample_response(response()).content,
                  size_hint=24 * (tokens + prompt))


def sequence_ids(request_id: str, num_samples: int) -> list[str]:
    """The ids of a sample's sequences (0.38's ``sample_sequence_ids``): distinct, and the same for a re-send."""
    return [f"{request_id}:{index}" for index in range(num_samples)]


def _sample_future(request_id: str, num_samples: int) -> HttpResponse:
    return HttpResponse(200, json.dumps({"request_id": request_id,
                                         "sample_sequence_ids": sequence_ids(request_id, num_samples)}).encode())


def _attempt_token(call: Call) -> str:
    """What makes a repeated ``(sampling_session_id, seq_id)`` a re-send of the same call: the same
    ``X-Idempotency-Key`` (kept across a client's retries of one call), or without one the same body.
    Two processes sharing a sampling session may number their samples alike; their calls differ."""
    key = call.request.headers.get("x-idempotency-key")
    if key:
        return f"key:{key}"
    return "body:" + hashlib.blake2b(call.request.body, digest_size=16).hexdigest()


class SamplingApi:
    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._clones = SamplerClones(state.config.data_dir,
                                     lambda sampler_id: state.storage.sampler(sampler_id) is not None)

    def register(self, router: Router) -> None:
        router.add("POST", "/api/v1/create_sampling_session", "create_sampling_session",
                   self.create_sampling_session)
        router.add("POST", "/api/v1/join_sampling_session", "join_sampling_session", self.join_sampling_session)
        router.add("POST", "/api/v1/asample", "asample", self.asample)

    async def create_sampling_session(self, call: Call) -> HttpResponse:
        state = self._state
        req = call.parse(CreateSamplingSessionRequest)
        live_session(state, call, req.session_id)  # the caller's, not finished
        sampler_id = f"{req.session_id}:sample:{req.sampling_session_seq_id}"
        if state.sampler_slot(sampler_id) is not None:
            state.stats.duplicate(call.endpoint)
            return ok(CreateSamplingSessionResponse(sampling_session_id=sampler_id))
        record = self._new_record(call.user, sampler_id, req.session_id, req.base_model, req.model_path)
        state.storage.add_sampler(record)
        state.samplers[sampler_id] = SamplerSlot(record)
        return ok(CreateSamplingSessionResponse(sampling_session_id=sampler_id))

    async def join_sampling_session(self, call: Call) -> HttpResponse:
        """A number for a new client of the caller's sampling session (another user's answers as an unknown one)."""
        state = self._state
        req = call.parse(JoinSamplingSessionRequest)
        slot = state.sampler_slot(req.sampling_session_id)
        if slot is None or slot.record.owner != call.user or not slot.record.session_id:
            raise ApiError(404, f"unknown or expired sampling session {req.sampling_session_id!r}")
        state.sessions.touch(slot.record.session_id)
        return ok(JoinSamplingSessionResponse(client_counter=self._clones.join(slot.record.sampler_id)))

    def _new_record(self, user: str, sampler_id: str, session_id: str, base_model: str | None,
                    model_path: str | None) -> SamplerRecord:
        """A sampler of ``user``: from ``model_path`` (``user``'s checkpoint or a published one) or a base model."""
        storage = self._state.storage
        if model_path is not None:
            try:
                checkpoint = storage.checkpoint_by_path(model_path, user)
            except InvalidNameError as error:
                raise ApiError(400, str(error)) from error
            run = storage.run(checkpoint.run_id) if checkpoint is not None else None
            if checkpoint is None or run is None:
                raise ApiError(404, f"checkpoint {model_path} not found")
            return SamplerRecord(sampler_id=sampler_id, session_id=session_id, base_model=run.base_model,
                                 model_path=model_path, owner=user)
        if base_model is None:
            raise ApiError(400, "create_sampling_session needs a base_model or a model_path")
        try:
            name = self._state.backend.describe(base_model).name
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        return SamplerRecord(sampler_id=sampler_id, session_id=session_id, base_model=name, owner=user)

    async def asample(self, call: Call) -> HttpResponse:
        state = self._state
        req, added = await read_body_async(call, SampleRequest, SampleAdded)
        if req.seq_id is not None:
            raw_seq_id = call.raw_field("seq_id")
            if isinstance(raw_seq_id, bool) or not isinstance(raw_seq_id, int):
                raise ApiError(400, f"asample: seq_id must be an integer, got {show_value(raw_seq_id)}")
        slot = self._resolve_slot(req, call.user)
        try:
            model = state.backend.describe(slot.record.base_model)
            check_sample(req, model, state.config.work_limits)
            check_added(added, req)
        except OverLimitError as error:
            raise ApiError(400, f"asample: {error}") from None
        except ValueError as error:  # an unknown base model, an added setting not served here
            raise ApiError(400, f"asample: {error}") from None
        owner = slot.record.sampler_id
        state.stats.sequenced_received(owner, req.seq_id, call.endpoint)
        token = _attempt_token(call)
        seen = slot.seen.get(req.seq_id) if req.seq_id is not None else None
        if seen is not None and seen[0] == token:
            state.stats.duplicate(call.endpoint)
            return _sample_future(seen[1], req.num_samples)
        refuse_if_spent(state, call)  # a new sample (a re-send of an accepted one got its future above)
        limit = state.config.max_pending_samples
        if limit is not None and state.pending_samples >= limit:
            raise ApiError(429, f"too many samples in flight ({limit}); retry shortly", "server",
                           headers=[("Retry-After", "1")])
        request_id = state.futures.create("Sample", None, call.user)
        if req.seq_id is not None:
            slot.seen[req.seq_id] = (token, request_id)
            if len(slot.seen) > MAX_REMEMBERED:
                del slot.seen[next(iter(slot.seen))]
        if not call.never_complete:
            state.pending_samples += 1
            state.spawn(self._run_sample(slot, req, request_id, call.endpoint, added.prompt_logprobs_last_n,
                                         call.user))
        return _sample_future(request_id, req.num_samples)

    def _resolve_slot(self, req: SampleRequest, user: str) -> SamplerSlot:
        """``user``'s sampler: another user's answers exactly as an unknown one."""
        state = self._state
        if req.sampling_session_id is not None:
            slot = state.sampler_slot(req.sampling_session_id)
            if slot is None or slot.record.owner != user:
                raise ApiError(404, f"unknown or expired sampling session {req.sampling_session_id!r}")
            state.sessions.touch(slot.record.session_id)
            return slot
        # A sample addressed by base_model / model_path directly (no sampling session): one per user, so
        # that access to a published checkpoint is checked for each user (the key never leaves the service).
        key = f"direct:{user}:{req.model_path or req.base_model}"
        existing = state.samplers.get(key)
        if existing is not None:
            return existing
        record = self._new_record(user, key, "", req.base_model, req.model_path)
        slot = state.samplers[key] = SamplerSlot(record)
        return slot

    async def _run_sample(self, slot: SamplerSlot, req: SampleRequest, request_id: str, endpoint: str,
                          last_n: int | None, user: str) -> None:
        state = self._state
        try:
            engine = await self._engine(slot)
            args = sample_args(req)
            output = await state.run_blocking(lambda: engine.sample(args))
            payload = sample_result(output, req, last_n)
        except Exception as error:
            message, category = state.classify(error)
            state.futures.fail(request_id, message, category)
            state.stats.executed(endpoint, slot.record.sampler_id, req.seq_id, ok=False)
        else:
            charge_sampling(state, user, prompt_tokens=len(args.prompt),
                            sampled_tokens=sum(len(sequence.tokens) for sequence in output.sequences),
                            base_model=slot.record.base_model, session_id=slot.record.session_id,
                            model_id=slot.record.sampler_id)
            state.futures.resolve(request_id, payload)
            state.stats.executed(endpoint, slot.record.sampler_id, req.seq_id)
        finally:
            state.pending_samples -= 1

    async def _engine(self, slot: SamplerSlot) -> SamplerEngine:
        state = self._state
        sampler_id = slot.record.sampler_id
        engine = state.cached_engine(sampler_id)
        if engine is not None:
            return engine
        async with slot.building:
            engine = state.cached_engine(sampler_id)
            if engine is None:
                record = slot.record
                engine = await state.run_blocking(lambda: self._build_engine(record))
                state.cache_engine(sampler_id, engine)
            return engine

    def _build_engine(self, record: SamplerRecord) -> SamplerEngine:
        storage = self._state.storage
        arrays: Arrays | None = None
        if record.ephemeral_of is not None:
            arrays = storage.sampler_arrays(record.sampler_id)
            if arrays is None:
                raise ValueError(f"the weights of sampling session {record.sampler_id} are gone")
        elif record.model_path is not None:
            # access was checked when the sampler was created: one made from a published checkpoint keeps
            # sampling it after an unpublish (until the checkpoint is deleted), whether its engine is cached or not
            checkpoint = storage.checkpoint_by_path(record.model_path)
            if checkpoint is None:
                raise ValueError(f"checkpoint {record.model_path} no longer exists")
            arrays = storage.read_checkpoint(checkpoint)
        return self._state.backend.new_sampler(record.base_model, arrays)
