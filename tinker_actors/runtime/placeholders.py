"""Stand-ins for the root slots until the issues that own them provide real actors.

A placeholder starts, answers every message with ``None`` and stops cleanly, so the root tree has
its final shape (and its shutdown order) from day one.
"""

from __future__ import annotations

import logging
from typing import Any

from supervisors import SupervisedActor

__all__ = ["PlaceholderActor"]

logger = logging.getLogger(__name__)


class PlaceholderActor(SupervisedActor):
    """Accepts and drops every message for a slot that has no real actor yet."""

    def __init__(self, slot: str) -> None:
        super().__init__()
        self.slot = slot
        self.dropped = 0

    def on_receive(self, message: Any) -> Any:
        self.dropped += 1
        logger.debug("placeholder %s dropped %r", self.slot, type(message).__name__)
        return None
