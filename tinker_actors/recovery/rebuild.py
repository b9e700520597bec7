"""Recreating a lost model from a checkpoint, with its optimizer state (run in the IoLoop).

The same three requests as ``ServiceClient.create_training_client_from_state_with_optimizer``: the
checkpoint's base model and LoRA rank (``weights_info``), a new model in the client's session
(``create_model``), and the checkpoint loaded into it (``load_weights`` with ``optimizer: true``, the new
model's first operation, seq id 1). A model created for an attempt that then fails is unloaded (best effort),
so failed attempts leave nothing behind on the service.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from tinker_actors.clients.context import ClientContext
from tinker_actors.config import RetryPolicy
from tinker_actors.errors import InvalidInputError
from tinker_actors.futures import poll_future
from tinker_actors.http import Purpose
from tinker_actors.types import (
    CreateModelRequest,
    CreateModelResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    LoraConfig,
    UnloadModelRequest,
    UntypedAPIFuture,
    WeightsInfoRequest,
    WeightsInfoResponse,
)

__all__ = ["FIRST_SEQ_ID_AFTER_LOAD", "Rebuilt", "rebuild_model"]

FIRST_SEQ_ID_AFTER_LOAD = 2
"""The load is the new model's operation 1: the client's next request is numbered 2."""


_CLEAN_UP_RETRY = RetryPolicy(max_retries=1, base_delay=0.2, max_delay=1.0, deadline=10.0)


@dataclass(frozen=True)
class Rebuilt:
    model_id: str
    checkpoint: str


async def rebuild_model(context: ClientContext, *, checkpoint: str, base_model: str, model_seq_id: int) -> Rebuilt:
    """A new model of the client's session holding ``checkpoint``'s weights and optimizer state."""
    http, codec = context.http, context.profile.codec
    info = (await http.request(Purpose.TRAINING, "POST", "/api/v1/weights_info",
                               content=codec.encode_json(WeightsInfoRequest(tinker_path=checkpoint)),
                               response_model=WeightsInfoResponse, endpoint="weights_info")).data
    if info.base_model != base_model or not info.is_lora or info.lora_rank is None:
        raise InvalidInputError(f"checkpoint {checkpoint} is not a LoRA checkpoint of {base_model!r} "
                                f"(it is of {info.base_model!r})")
    request = CreateModelRequest(session_id=context.session_id, model_seq_id=model_seq_id, base_model=base_model,
                                 lora_config=LoraConfig(rank=info.lora_rank))
    submitted = await http.request(Purpose.TRAINING, "POST", "/api/v1/create_model",
                                   content=codec.encode_json(request), response_model=UntypedAPIFuture,
                                   endpoint="create_model")
    created = await poll_future(http, submitted.data.request_id, "CreateModel", CreateModelResponse.model_validate,
                                settings=context.poll, codec=codec, response_budget=context.response_budget)
    model_id = created.model_id
    try:
        load = LoadWeightsRequest(model_id=model_id, path=checkpoint, optimizer=True, seq_id=1)
        submitted = await http.request(Purpose.TRAINING, "POST", "/api/v1/load_weights",
                                       content=codec.encode_json(load), response_model=UntypedAPIFuture,
                                       endpoint="load_weights")
        await poll_future(http, submitted.data.request_id, "LoadWeights", LoadWeightsResponse.model_validate,
                          settings=context.poll, codec=codec, response_budget=context.response_budget)
    except Exception:
        with contextlib.suppress(Exception):
            await http.request(Purpose.TRAINING, "POST", "/api/v1/unload_model",
                               content=codec.encode_json(UnloadModelRequest(model_id=model_id)),
                               response_model=UntypedAPIFuture, endpoint="unload_model", retry=_CLEAN_UP_RETRY)
        raise
    return Rebuilt(model_id, checkpoint)
