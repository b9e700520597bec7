"""Training helpers that run on the client: chunking of large batches and combining chunk outputs."""

from tinker_actors.training.chunking import ChunkLimits, combine_outputs, reduce_metrics, split_batch

__all__ = ["ChunkLimits", "combine_outputs", "reduce_metrics", "split_batch"]
