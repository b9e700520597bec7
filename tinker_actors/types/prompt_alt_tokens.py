"""``PromptAltTokens`` (protocol 0.38): tokens drawn from the model at every prompt position after the first.

What ``SampleRequest.prompt_alt_tokens_k`` asks for: row ``i`` holds ``k`` independent draws (at the request's
temperature) from the distribution over prompt token ``i + 1``, and their logprobs. Not supported yet by
tinker-actors (a request asking for them is refused), so a response never holds one here.
"""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel
from tinker_actors.types.tensor import TensorData

__all__ = ["PromptAltTokens"]


class PromptAltTokens(ResponseModel):
    tokens: TensorData
    """int64 token ids, shape ``[len(prompt) - 1, k]``."""
    logprobs: TensorData
    """float32 logprobs of ``tokens``, same shape."""
