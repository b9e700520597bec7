"""Names the official SDK gives to plain types: ids, the loss tensors, the answers of a poll."""

from __future__ import annotations

from typing import TypeAlias

from tinker_actors.types.checkpoints import LoadWeightsResponse, SaveWeightsForSamplerResponse, SaveWeightsResponse
from tinker_actors.types.futures import RequestFailedResponse, TryAgainResponse
from tinker_actors.types.tensor import TensorData
from tinker_actors.types.training import (
    CreateModelResponse,
    ForwardBackwardOutput,
    OptimStepResponse,
    UnloadModelResponse,
)

__all__ = ["FutureRetrieveResponse", "LossFnInputs", "LossFnOutput", "ModelID", "RequestID"]

ModelID: TypeAlias = str
RequestID: TypeAlias = str

LossFnInputs: TypeAlias = dict[str, TensorData]
"""What ``Datum.loss_fn_inputs`` holds: named tensors the loss reads (``target_tokens``, ``weights``, ...)."""

LossFnOutput: TypeAlias = dict[str, TensorData]
"""One datum's entry of ``ForwardBackwardOutput.loss_fn_outputs`` (``logprobs``, ...)."""

FutureRetrieveResponse: TypeAlias = (
    TryAgainResponse | ForwardBackwardOutput | OptimStepResponse | SaveWeightsResponse | LoadWeightsResponse
    | SaveWeightsForSamplerResponse | CreateModelResponse | UnloadModelResponse | RequestFailedResponse
)
"""Whatever ``retrieve_future`` may answer: still pending, a result, or the request's failure."""
