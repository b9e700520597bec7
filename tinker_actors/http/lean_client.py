"""An httpx client whose plain requests skip httpx's per-request machinery and go to a :class:`LeanTransport`.

With the lean transport under it, most of what is left of a request's cost is httpx's client: parsing
the URL string again, merging and normalising headers, encoding the body, wrapping the response's
stream, the cookie jar (which copies every response into a ``urllib`` request/response pair, cookies or
not), reading the body through its decoders. py-spy measured those at more than half of a bare request
loop. :class:`LeanClient` is an ``httpx.AsyncClient`` that does the same for the requests the HTTP
layer makes with much less: the URL parsed once per distinct URL string, the client's headers encoded
once, the head written straight from them, and the answer handed back as an ``httpx.Response`` that is
already read.

The result is the same as ``httpx.AsyncClient.request``'s: an ``httpx.Response`` holding its
``httpx.Request`` (method, URL, every header sent), read, with ``next_request`` set for a redirect (not
followed), ``elapsed`` set, the same exception types with ``.request`` attached, cookies the server sets
kept in the client's jar. Anything else goes through httpx's own path, unchanged: a body that is not
``bytes``, ``params``, cookies, auth, event hooks, redirects to follow, ``json=`` / ``data=`` / ``files=``,
extensions, a URL another transport serves (a proxy mounted on the client), a client whose jar holds
cookies (httpx adds them to each request); a compressed answer is decoded by httpx's decoders. On an
httpx whose internals differ from those this was written against (checked at import), every request
takes httpx's path.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from tinker_actors.http.transport import LeanTransport, Origin, origin_of, write_head

__all__ = ["LeanClient"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_URL_CACHE_SIZE = 256  # distinct URL strings kept parsed; REST paths with ids come and go
_HTTPX_LOG = logging.getLogger("httpx")
# httpx's own steps the fast path calls, so that URLs, params and redirects come out exactly as httpx makes them.
_HTTPX_INTERNALS = ("_merge_url", "_merge_queryparams", "_transport_for_url", "_build_redirect_request")


def _httpx_layout_known() -> bool:
    """Whether this httpx has the internals the fast path relies on (checked once, at import)."""
    try:
        response = httpx.Response(200)
        response._content = b"x"
        request = httpx.Request("GET", "http://h/", stream=httpx.ByteStream(b""))
        request._content = b""
        return response.content == b"x" and request.content == b"" and all(
            callable(getattr(httpx.AsyncClient, name, None)) for name in _HTTPX_INTERNALS)
    except Exception:  # pragma: no cover - a different httpx
        return False


_FAST = _httpx_layout_known()


class _Target:
    """What the fast path needs of one URL string: its parsed form, origin, request target and Host."""

    __slots__ = ("host", "origin", "target", "url")

    def __init__(self, url: httpx.URL, origin: Origin) -> None:
        self.url = url
        self.origin = origin
        self.target = url.raw_path
        self.host = url.netloc


class LeanClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` on a :class:`LeanTransport`, with a fast path for plain requests."""

    def __init__(self, transport: LeanTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._lean = transport
        self._targets: dict[str, _Target | None] = {}
        self._default_raw: list[tuple[bytes, bytes]] = []
        self._default_names: frozenset[str] = frozenset()
        self._defaults_of: httpx.Headers | None = None

    async def request(self, method: str, url: httpx.URL | str, *, content: Any = None,  # type: ignore[override]
                      params: Any = None, headers: Mapping[str, str] | None = None,
                      timeout: Any = httpx.USE_CLIENT_DEFAULT, follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
                      **others: Any) -> httpx.Response:
        target = None
        follow = self.follow_redirects if follow_redirects is httpx.USE_CLIENT_DEFAULT else follow_redirects
        if (_FAST and not others and params is None and not follow and isinstance(url, str)
                and (content is None or type(content) is bytes) and self._plain()):
            target = self._target(url)
        if target is None:
            return await super().request(method, url, content=content, params=params, headers=headers,
                                         timeout=timeout, follow_redirects=follow_redirects, **others)
        return await self._fast(method.upper(), target, content, headers, timeout)

    async def _fast(self, method: str, target: _Target, content: bytes | None, headers: Mapping[str, str] | None,
                    timeout: Any) -> httpx.Response:
        started = time.perf_counter()
        raw = self._headers_for(target, headers)
        body = content if content is not None else b""
        if body or method in _BODY_METHODS:
            raw.append((b"Content-Length", b"%d" % len(body)))
        timeouts = (self.timeout if timeout is httpx.USE_CLIENT_DEFAULT else httpx.Timeout(timeout)).as_dict()
        request = httpx.Request(method, target.url, headers=raw, stream=httpx.ByteStream(body),
                                extensions={"timeout": timeouts})
        request._content = body  # what Request(content=...) would hold: redirects and error copies read it
        method_bytes = method.encode("ascii")
        try:
            head = write_head(method_bytes, target.target, raw)
            answer = await self._lean.exchange(target.origin, method_bytes, head, body, timeouts)
        except httpx.RequestError as error:
            error.request = request
            raise
        response = httpx.Response(answer.status, headers=answer.headers, request=request,
                                  extensions={"http_version": answer.version, "reason_phrase": answer.reason},
                                  stream=httpx.ByteStream(answer.body))
        if "content-encoding" in response.headers:
            await response.aread()  # gzip and friends: httpx's decoders
        else:
            response._content = answer.body
            response.is_stream_consumed = True
        response.is_closed = True
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
        if "set-cookie" in response.headers:
            self.cookies.extract_cookies(response)
        if answer.status in _REDIRECTS and "location" in response.headers:
            response.next_request = self._build_redirect_request(request, response)
        if _HTTPX_LOG.isEnabledFor(logging.INFO):
            _HTTPX_LOG.info('HTTP Request: %s %s "%s %d %s"', method, target.url, response.http_version,
                            answer.status, response.reason_phrase)
        return response

    def _plain(self) -> bool:
        """No cookies to send, no auth, no event hooks: nothing httpx would add to a request or run around it."""
        hooks = self.event_hooks
        return not self.cookies.jar and self.auth is None and not hooks["request"] and not hooks["response"]

    def _target(self, url: str) -> _Target | None:
        """The parsed URL when the fast path can serve it: an absolute http(s) URL this client's own transport
        reaches (not one a proxy mount serves); ``None`` otherwise."""
        try:
            return self._targets[url]
        except KeyError:
            pass
        target: _Target | None = None
        try:
            parsed = self._merge_url(url)
            params = self._merge_queryparams(None)
            if params is not None:  # as httpx.Request(url, params=...) makes it
                parsed = httpx.URL(parsed, params=params)
            if parsed.scheme in ("http", "https") and self._transport_for_url(parsed) is self._lean:
                target = _Target(parsed, origin_of(parsed))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            target = None  # httpx's path raises the same error
        if len(self._targets) >= _URL_CACHE_SIZE:
            self._targets.clear()
        self._targets[url] = target
        return target

    def _headers_for(self, target: _Target, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        """Host, the client's headers, then the call's (which replace the client's of the same name)."""
        if self._defaults_of is not self.headers:  # encoded once per headers object the client holds
            self._defaults_of = self.headers
            self._default_raw = self.headers.raw
            self._default_names = frozenset(name.decode("latin-1").lower() for name, _ in self._default_raw)
        raw = [(b"Host", target.host)]
        if not headers:
            raw += self._default_raw
            return raw
        lowered = {name.lower() for name in headers}
        if self._default_names.isdisjoint(lowered):
            raw += self._default_raw
        else:  # as httpx merges: the call's header replaces the client's, and goes last
            raw += [(name, value) for name, value in self._default_raw if name.decode("latin-1").lower() not in lowered]
        raw += [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
        return raw
