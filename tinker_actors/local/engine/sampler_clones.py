"""The numbers the service hands to clients joining a sampling session (``join_sampling_session``).

Each client of a sampling session numbers its samples in a block of seq ids of its own (the SDKs put
client ``n``'s samples at ``n * 1_000_000_000 + k``); the client that created the session is number 0, and
each join gets the next free number, so no two clients of a session ever send the same seq id (which the
service would otherwise read as a re-send of the same sample).

Numbers must stay unique across a restart of the service, while clones from before it keep sampling: the
highest number reserved for each session is kept in ``<data_dir>/sampler_clones.json``. Numbers are
reserved in chunks (one file write per :data:`RESERVE_CHUNK` joins); a restart skips what was reserved and
not handed out. Used from the service loop only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from tinker_actors.local.engine.storage import write_json_atomic

__all__ = ["RESERVE_CHUNK", "SamplerClones"]

_log = logging.getLogger(__name__)

RESERVE_CHUNK = 256
FILE_NAME = "sampler_clones.json"


class SamplerClones:
    """The next client number of each sampling session, and how far the file has reserved."""

    def __init__(self, data_dir: Path, exists: Callable[[str], bool]) -> None:
        """``exists(sampler_id)``: whether a sampling session is still known (others are dropped on load)."""
        self._path = data_dir / FILE_NAME
        self._reserved = {sampler_id: top for sampler_id, top in self._load().items() if exists(sampler_id)}
        # After a restart, numbering resumes above everything reserved before it.
        self._next = {sampler_id: top + 1 for sampler_id, top in self._reserved.items()}

    def join(self, sampler_id: str) -> int:
        """A new client number for ``sampler_id`` (1, 2, ...: 0 is the creating client's)."""
        number = self._next.get(sampler_id, 1)
        self._next[sampler_id] = number + 1
        if number > self._reserved.get(sampler_id, 0):
            self._reserved[sampler_id] = number + RESERVE_CHUNK - 1
            write_json_atomic(self._path, self._reserved)
        return number

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            # Unreadable: numbering restarts at 1, which may collide with clones from before (a warning, not a stop).
            _log.warning("cannot read %s (%s): sampling session clients are numbered from 1 again", self._path, error)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(key): value for key, value in data.items() if isinstance(value, int) and value > 0}
