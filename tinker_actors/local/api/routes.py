"""Route table: (method, path pattern) -> endpoint name and handler.

Patterns are paths whose ``{name}`` segments capture one path segment each. Every route has an
endpoint name (``asample``, ``list_training_runs``, ...): fault rules and request counts use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tinker_actors.local.engine.state import Call
from tinker_actors.local.server.http_server import HttpResponse

__all__ = ["Handler", "Route", "RouteMatch", "Router"]

Handler = Callable[[Call], Awaitable[HttpResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    segments: tuple[str, ...]
    endpoint: str
    handler: Handler
    auth: bool = True
    admin: bool = False  # admin routes are never subject to fault rules

    def capture(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for pattern, part in zip(self.segments, parts, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not part:
                    return None
                params[pattern[1:-1]] = part
            elif pattern != part:
                return None
        return params


@dataclass(frozen=True)
class RouteMatch:
    route: Route | None  # None: the path exists but not for this method (405)
    params: dict[str, str]


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._static: dict[tuple[str, str], Route] = {}  # routes without parameters: one dict lookup

    def add(self, method: str, path: str, endpoint: str, handler: Handler, *, auth: bool = True,
            admin: bool = False) -> None:
        segments = tuple(path.strip("/").split("/"))
        route = Route(method.upper(), segments, endpoint, handler, auth, admin)
        self._routes.append(route)
        if not any(s.startswith("{") for s in segments):
            self._static[(route.method, "/".join(segments))] = route

    def match(self, method: str, path: str) -> RouteMatch | None:
        static = self._static.get((method, path.strip("/")))
        if static is not None:
            return RouteMatch(static, {})
        parts = path.strip("/").split("/")
        path_known = False
        for route in self._routes:
            params = route.capture(parts)
            if params is None:
                continue
            if route.method == method:
                return RouteMatch(route, params)
            path_known = True
        return RouteMatch(None, {}) if path_known else None

    def endpoints(self) -> list[str]:
        return sorted({route.endpoint for route in self._routes})
