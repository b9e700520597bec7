"""``tinker.lib.public_interfaces.training_client`` of the official SDK 0.6.3: the same objects, re-exported.

``MAX_CHUNK_LEN`` / ``MAX_CHUNK_NUMBER_COUNT`` are our default chunk limits (the same values);
``CustomLossFnV1`` is the shape of the ``loss_fn`` that ``forward_backward_custom`` takes.
"""

from collections.abc import Callable
from typing import Any, TypeAlias

from tinker_actors.clients.training import TrainingClient
from tinker_actors.training.chunking import ChunkLimits
from tinker_actors.types import Datum

MAX_CHUNK_LEN = ChunkLimits().max_datums
MAX_CHUNK_NUMBER_COUNT = ChunkLimits().max_numbers

CustomLossFnV1: TypeAlias = Callable[[list[Datum], list[Any]], tuple[Any, dict[str, float]]]

__all__ = ["MAX_CHUNK_LEN", "MAX_CHUNK_NUMBER_COUNT", "CustomLossFnV1", "TrainingClient"]
