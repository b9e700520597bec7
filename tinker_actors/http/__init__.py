"""Async HTTP for the Tinker API: pools per purpose, retries, headers, typed errors, statistics.

Entry point: :class:`HttpLayer` (``await layer.request(Purpose.TRAINING, "POST", "/api/v1/...",
content=body, response_model=Model)``). See :mod:`tinker_actors.http.layer` for the rules.
"""

from tinker_actors.http.breaker import CircuitOpenError
from tinker_actors.http.headers import USER_AGENT
from tinker_actors.http.layer import HttpLayer
from tinker_actors.http.pools import Purpose
from tinker_actors.http.response import HttpResponse
from tinker_actors.http.stats import EndpointStats

__all__ = ["USER_AGENT", "CircuitOpenError", "EndpointStats", "HttpLayer", "HttpResponse", "Purpose"]
