"""A leaner httpcore network backend for asyncio: anyio sockets with cheaper timeouts and health checks.

httpcore's own anyio backend costs a sampling client about a fifth of its CPU in two places that
do not need to be expensive (measured with py-spy, bench/bench_sampling.py):

* every read and write runs under ``anyio.fail_after``, whose cancel scope does several task
  lookups per call; ``asyncio.timeout`` gives the same bound for one timer handle;
* whenever a request starts or ends, the pool asks each idle connection ``is_readable`` (has the
  server closed it?), and the anyio stream answers by rebuilding its whole attribute table
  (including a ``getpeername`` system call) to find the socket; we keep the socket.

The streams are still anyio's (same connect, same TLS wrapping, same error mapping onto httpcore's
exceptions), so behaviour is unchanged; :func:`install` puts the backend under an httpx client.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import sys
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.abc
import anyio.streams.tls
import httpcore
import httpx

__all__ = ["LeanBackend", "install"]

_SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]

# Which failures of the anyio stream become which httpcore error (as httpcore's own backend maps them).
_READ_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_WRITE_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_CONNECT_ERRORS = (OSError, anyio.BrokenResourceError)
_TLS_ERRORS = (anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError)


def _is_readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once: on an idle keep-alive connection, the server closed it."""
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return True  # gone: the next read would return b"" too
    if sys.platform == "win32" or not hasattr(select, "poll"):
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class LeanStream(httpcore.AsyncNetworkStream):
    """One connection: an anyio byte stream, its socket, and asyncio timeouts."""

    __slots__ = ("_socket", "_stream")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except _READ_ERRORS as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._stream.send(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except _WRITE_ERRORS as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                wrapped = await anyio.streams.tls.TLSStream.wrap(
                    self._stream, ssl_context=ssl_context, hostname=server_hostname,
                    standard_compatible=False, server_side=False)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except _TLS_ERRORS as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return LeanStream(wrapped)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # the pool's hot question, asked of every idle connection
            return _is_readable(self._socket)
        if info == "ssl_object":
            return self._stream.extra(anyio.streams.tls.TLSAttribute.ssl_object, None)
        if info == "client_addr":
            return self._stream.extra(anyio.abc.SocketAttribute.local_address, None)
        if info == "server_addr":
            return self._stream.extra(anyio.abc.SocketAttribute.remote_address, None)
        if info == "socket":
            return self._socket
        return None


class LeanBackend(httpcore.AsyncNetworkBackend):
    """Connects with anyio like httpcore's default asyncio backend, and hands out :class:`LeanStream`s."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[_SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                stream = await anyio.connect_tcp(remote_host=host, remote_port=port, local_host=local_address)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except _CONNECT_ERRORS as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        lean = LeanStream(stream)
        for option in socket_options or ():  # asyncio already sets TCP_NODELAY
            if lean._socket is not None:
                lean._socket.setsockopt(*option)
        return lean

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[_SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                stream = await anyio.connect_unix(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except _CONNECT_ERRORS as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return LeanStream(stream)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def install(client: httpx.AsyncClient, backend: httpcore.AsyncNetworkBackend) -> bool:
    """Put ``backend`` under every httpcore connection pool of ``client`` (its httpx transports: the default
    one, proxies'; other transports, such as the lean one, are left alone); ``False`` if httpx's layout is
    unknown.

    httpx does not take a network backend as an argument, so this reaches into its transports; on an
    httpx whose internals differ it changes nothing and the client keeps httpcore's default backend.
    """
    transports = [client._transport, *client._mounts.values()]  # private: see the docstring
    pools = [getattr(transport, "_pool", None) for transport in transports
             if isinstance(transport, httpx.AsyncHTTPTransport)]
    if not all(isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend")
               for pool in pools):
        return False
    for pool in pools:
        pool._network_backend = backend  # type: ignore[union-attr]
    return True
