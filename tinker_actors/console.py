"""Links into a Tinker service's web console: the pages of a session, a training run, a checkpoint, and the
playground with a checkpoint loaded, in the URL shapes of the official SDK 0.38's hosted console.

Which console: ``Config.console_url`` when set; else the hosted console (:data:`HOSTED_CONSOLE_URL`) for the
hosted service (the default ``base_url``'s host); else none: the local service (and any other service without a
configured console) has no web console, and asking for a link raises :class:`NoConsoleError` rather than giving
a link to a page that is not there (docs/porting-from-official-sdk.md, "Console links").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tinker_actors.config import DEFAULT_BASE_URL, Config
from tinker_actors.errors import ErrorCategory, TinkerError

__all__ = ["HOSTED_CONSOLE", "HOSTED_CONSOLE_URL", "Console", "NoConsoleError", "console_for"]

HOSTED_CONSOLE_URL = "https://tinker.thinkingmachines.ai"
"""The hosted service's web console (the official SDK's)."""


class NoConsoleError(TinkerError):
    """The service has no web console to link to (the local service has none): set ``Config.console_url`` to the
    console's address to get links."""

    default_category = ErrorCategory.USER


@dataclass(frozen=True, slots=True)
class Console:
    """The web console of one service: ``base`` its address, None when it has none (``service_url`` then says
    which service, in the error)."""

    base: str | None
    service_url: str = ""

    def sessions(self) -> str:
        return self._page("/sessions")

    def session(self, session_id: str) -> str:
        return self._page(f"/sessions/{session_id}")

    def training_run(self, training_run_id: str) -> str:
        return self._page(f"/training_runs/{training_run_id}")

    def checkpoint(self, training_run_id: str, checkpoint_id: str) -> str:
        return self._page(f"/checkpoints/{quote(training_run_id, safe='')}/{quote(checkpoint_id, safe='')}")

    def playground(self, tinker_path: str) -> str:
        return self._page(f"/playground?mode=checkpoint&checkpoint={quote(tinker_path, safe='')}")

    def _page(self, tail: str) -> str:
        if self.base is None:
            raise NoConsoleError(
                f"the service at {self.service_url or 'this address'} has no web console to link to (the local "
                "service has none); set Config.console_url to the console's address to get links")
        return self.base + tail


HOSTED_CONSOLE = Console(HOSTED_CONSOLE_URL)


def console_for(config: Config) -> Console:
    """The console of the service ``config`` talks to (see the module docstring)."""
    if config.console_url is not None:
        return Console(config.console_url)
    if urlsplit(config.base_url).hostname == urlsplit(DEFAULT_BASE_URL).hostname:
        return HOSTED_CONSOLE
    return Console(None, config.base_url)
