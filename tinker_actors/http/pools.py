"""One set of httpx clients per purpose, so that one kind of traffic cannot starve another.

Each purpose (session, training, sampling, futures, telemetry) gets ``PoolLimits.clients``
independent ``httpx.AsyncClient`` instances used round-robin. Several small pools are cheaper than
one big one: httpx re-scans every connection and queued request of a pool whenever a request starts
or ends, so a single pool with hundreds of requests in flight spends much of a core on that scan
(PERFORMANCE.md measured ~3x more samples per second with 16 clients instead of 1).

Each client is a :class:`~tinker_actors.http.lean_client.LeanClient` on a
:class:`~tinker_actors.http.transport.LeanTransport` (HTTP/1.1 over asyncio protocols, measured in
docs/performance.md). When the environment names a proxy (``HTTPS_PROXY``, ``ALL_PROXY``, ...; never
for a loopback base URL), the clients are plain httpx clients instead, whose transports speak to
proxies, on the lean network backend of :mod:`tinker_actors.http.network`.

Clients are created on first use. All of them must be used from one event loop (the IoLoop).
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.request
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import httpx

from tinker_actors.config import Config, PoolLimits
from tinker_actors.http.lean_client import LeanClient
from tinker_actors.http.network import LeanBackend, install
from tinker_actors.http.transport import LeanTransport

__all__ = ["ClientPools", "Purpose"]


class Purpose(StrEnum):
    """What a request is for; each purpose has its own connection pools."""

    SESSION = "session"          # create_session, heartbeat, create_sampling_session, capabilities
    TRAINING = "training"        # training submissions, get_info, REST calls
    SAMPLING = "sampling"        # asample
    FUTURES = "futures"          # retrieve_future polls (long-polled, so many stay open)
    TELEMETRY = "telemetry"      # telemetry batches


class _RoundRobin:
    """A fixed list of clients handed out in turn."""

    __slots__ = ("_clients", "_next")

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self._clients = clients
        self._next = 0

    def pick(self) -> httpx.AsyncClient:
        index = self._next
        self._next = index + 1 if index + 1 < len(self._clients) else 0
        return self._clients[index]

    @property
    def clients(self) -> list[httpx.AsyncClient]:
        return self._clients


class ClientPools:
    """The httpx clients of one HTTP layer, keyed by :class:`Purpose`."""

    def __init__(self, config: Config, default_headers: Mapping[str, str]) -> None:
        self._config = config
        self._headers = dict(default_headers)
        self._limits: dict[Purpose, PoolLimits] = {
            purpose: getattr(config.pools, purpose.value) for purpose in Purpose}
        self._pools: dict[Purpose, _RoundRobin] = {}
        self._ssl: ssl.SSLContext | None = None
        self._backend = LeanBackend()  # stateless: shared by every pool
        # A local service is never behind a proxy; an HTTP_PROXY meant for the outside world must
        # not capture loopback traffic (httpx would otherwise route 127.0.0.1 through it).
        self._trust_env = not _is_loopback(config.base_url)

    def limits(self, purpose: Purpose) -> PoolLimits:
        return self._limits[purpose]

    def pick(self, purpose: Purpose) -> httpx.AsyncClient:
        """The next client for ``purpose`` (round-robin), creating the purpose's clients if needed."""
        pool = self._pools.get(purpose)
        if pool is None:
            pool = self._pools[purpose] = _RoundRobin(
                [self._new_client(self._limits[purpose]) for _ in range(self._limits[purpose].clients)])
        return pool.pick()

    def open_clients(self) -> int:
        """How many httpx clients exist right now (they are created lazily)."""
        return sum(len(pool.clients) for pool in self._pools.values())

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            for client in pool.clients:
                await client.aclose()

    def _ssl_context(self) -> ssl.SSLContext:
        # Loading the CA bundle costs ~10 ms; build it once and share it between all clients.
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _new_client(self, limits: PoolLimits) -> httpx.AsyncClient:
        timeouts = self._config.timeouts
        settings: dict[str, Any] = dict(
            headers=self._headers,
            params=list(self._config.default_query),  # the official SDK's default_query, on every request
            timeout=httpx.Timeout(timeouts.default, connect=timeouts.connect),
            follow_redirects=False,  # the layer follows same-origin redirects itself (http/redirects.py)
            trust_env=self._trust_env,
        )
        if not (self._trust_env and urllib.request.getproxies()):
            transport = LeanTransport(max_connections=limits.max_connections, max_keepalive=limits.max_keepalive,
                                      ssl_context=self._ssl_context)
            return LeanClient(transport, **settings)
        # A proxy from the environment (HTTPS_PROXY, ALL_PROXY...): httpx's transports, which speak to proxies.
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=limits.max_connections,
                                max_keepalive_connections=limits.max_keepalive),
            verify=self._ssl_context(), **settings)
        install(client, self._backend)
        return client


def _is_loopback(url: str) -> bool:
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
