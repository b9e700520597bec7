"""``tinker.types.tensor_dtype`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.tensor import TensorDtype

__all__ = ["TensorDtype"]
