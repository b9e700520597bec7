"""``tinker.types.checkpoint`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import Checkpoint, CheckpointType, ParsedCheckpointTinkerPath

__all__ = ["Checkpoint", "CheckpointType", "ParsedCheckpointTinkerPath"]
