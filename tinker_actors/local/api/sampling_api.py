"""Sampling endpoints: create_sampling_session, join_sampling_session and asample.

Sampling sessions are keyed by ``(session_id, sampling_session_seq_id)`` (a repeat returns the same
id). Samples need no ordering; a re-send of the same call (same ``(sampling_session_id, seq_id)`` and
the same idempotency key, or body when there is none) returns the original future. With
``max_pending_samples`` set, a full queue answers 429 (the SDK's backpressure signal).

Every sample future names its sequences (``sample_sequence_ids``, one per sample, which 0.38 requires);
older clients ignore the field. What a sample asks (0.38's added settings included) and what its result
says are :mod:`tinker_actors.local.api.sample_io`'s; the result is JSON or protobuf, as the poll asks.

``join_sampling_session`` (protocol 0.38) gives a new client of an existing sampling session (an unpickled
or handle-built clone, in any process) its own number, so that its seq ids never meet another client's
(:mod:`tinker_actors.local.engine.sampler_clones`); only the session's owner may join it.
"""

from __future__ import annotations

import hashlib
import json

from tinker_actors.local.api.billing_api import charge_sampling, refuse_if_spent
from tinker_actors.local.api.request_bodies import SampleAdded, read_body_async
from tinker_actors.local.api.routes import Router
from tinker_actors.local.api.sample_futures_api import SampleFuturesApi
from tinker_actors.local.api.sample_io import SampleAsk, read_sample, sample_result
from tinker_actors.local.api.session_api import live_session
from tinker_actors.local.engine.backend import Arrays, SamplerEngine
from tinker_actors.local.engine.inflight import inflight_of
from tinker_actors.local.engine.sample_work import CANCELLED_MESSAGE, sample_work_of
from tinker_actors.local.engine.sampler_clones import SamplerClones
from tinker_actors.local.engine.sequencer import MAX_REMEMBERED, show_value
from tinker_actors.local.engine.state import ApiError, Call, SamplerSlot, ServiceState, ok
from tinker_actors.local.engine.storage import InvalidNameError, SamplerRecord
from tinker_actors.local.engine.work_limits import OverLimitError
from tinker_actors.local.model.generation_stop import GenerationControl, GenerationStopped, controlled
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import CreateSamplingSessionRequest, CreateSamplingSessionResponse, SampleRequest
from tinker_actors.types.join_sampling_session import JoinSamplingSessionRequest, JoinSamplingSessionResponse

__all__ = ["SamplingApi"]

# Every request of the official 0.38 SDK carries this header; ours carry it from public methods.
_SDK_VERSION = "x-sdk-version"


def sequence_ids(request_id: str, num_samples: int) -> list[str]:
    """The ids of a sample's sequences (0.38's ``sample_sequence_ids``): distinct, and the same for a re-send."""
    return [f"{request_id}:{index}" for index in range(num_samples)]


def _sample_future(request_id: str, num_samples: int) -> HttpResponse:
    return HttpResponse(200, json.dumps({"request_id": request_id,
                                         "sample_sequence_ids": sequence_ids(request_id, num_samples)}).encode())


def _speaks_038(call: Call, added: SampleAdded) -> bool:
    """Whether the request is protocol 0.38's: it names an SDK version, or carries 0.38's sample fields (the
    official 0.38 SDK sends them all, at their defaults; 0.6.3 never sends them)."""
    return _SDK_VERSION in call.request.headers or bool(added.model_fields_set)


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
        SampleFuturesApi(self._state).register(router)  # cancel_future, retrieve_futures

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
            if checkpoint.kind == "external_weights":
                raise ApiError(400, f"checkpoint {model_path} holds external weights (files for use outside the "
                                    "service): sample from a training or sampler checkpoint")
            storage.audit_read(checkpoint, user, "sample")
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
            ask = read_sample(req, added, model, state.config.work_limits, speaks_038=_speaks_038(call, added))
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
            control = sample_work_of(state).begin(request_id, slot.record.sampler_id, req.seq_id, call.user)
            state.spawn(self._run_sample(slot, ask, req.seq_id, request_id, call.endpoint,
                                         call.user, control))
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

    async def _run_sample(self, slot: SamplerSlot, ask: SampleAsk, seq_id: int | None, request_id: str, endpoint: str,
                          user: str, control: GenerationControl) -> None:
        state = self._state
        work = sample_work_of(state)
        try:
            engine = await self._engine(slot)
            args = ask.args
            # stops at its next token once cancelled (cancel_future); never starts if cancelled while queued
            output = await state.run_blocking(lambda: controlled(control, lambda: engine.sample(args)))
            payload = sample_result(output, ask)
        except GenerationStopped:
            state.futures.fail(request_id, CANCELLED_MESSAGE, "user")  # answered so already by cancel_future
            state.stats.executed(endpoint, slot.record.sampler_id, seq_id, ok=False)
            work.finish(request_id, failed=True, payload_size=None)
        except Exception as error:
            message, category = state.classify(error)
            state.futures.fail(request_id, message, category)
            state.stats.executed(endpoint, slot.record.sampler_id, seq_id, ok=False)
            work.finish(request_id, failed=True, payload_size=None)
        else:
            charge_sampling(state, user, prompt_tokens=len(args.prompt),
                            sampled_tokens=sum(len(sequence.tokens) for sequence in output.sequences),
                            base_model=slot.record.base_model, session_id=slot.record.session_id,
                            model_id=slot.record.sampler_id)
            state.futures.resolve(request_id, payload)
            state.stats.executed(endpoint, slot.record.sampler_id, seq_id)
            work.finish(request_id, failed=False, payload_size=payload.size_hint or None)
        finally:
            state.pending_samples -= 1

    async def _engine(self, slot: SamplerSlot) -> SamplerEngine:
        state = self._state
        sampler_id = slot.record.sampler_id
        inflight = inflight_of(state).engine(sampler_id)
        if inflight is not None:  # follows its training model's latest weights (engine/inflight.py)
            return inflight
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
