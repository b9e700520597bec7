"""``tinker.types.tensor_data`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.tensor import TensorData

__all__ = ["TensorData"]
