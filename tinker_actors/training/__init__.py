"""Training helpers that run on the client: chunking and combining outputs, regularizers for custom losses.

``forward_backward_custom`` itself is a TrainingClient method; its machinery is in
``tinker_actors.training.custom_loss`` and the gradient-norm tracker in ``tinker_actors.training.grad_norms``.
"""

from tinker_actors.training.chunking import ChunkLimits, combine_outputs, reduce_metrics, split_batch
from tinker_actors.training.regularizers import (
    L1,
    L2,
    Consistency,
    KLPenalty,
    Regularizer,
    RegularizerError,
    RegularizerTimeoutError,
    TermValue,
    reference_logprobs,
)

__all__ = [
    "L1",
    "L2",
    "ChunkLimits",
    "Consistency",
    "KLPenalty",
    "Regularizer",
    "RegularizerError",
    "RegularizerTimeoutError",
    "TermValue",
    "combine_outputs",
    "reduce_metrics",
    "reference_logprobs",
    "split_batch",
]
