"""``tinker.types.lora_config`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import LoraConfig

__all__ = ["LoraConfig"]
