"""``SamplingClientKind`` (protocol 0.38): which weights a sampler saved for sampling follows.

``"snapshot"`` (the default): the weights as saved, fixed. ``"inflight"``: weights shared by the training
model's inflight samplers, updated by each later inflight save (for async RL). Inflight samplers are not
supported yet by tinker-actors: a save that asks for one is refused (``types/unsupported.py``).
"""

from typing import Literal, TypeAlias

__all__ = ["SamplingClientKind"]

SamplingClientKind: TypeAlias = Literal["snapshot", "inflight"]
