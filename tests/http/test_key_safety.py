"""The API key stays with the API: redirects to another origin, and what errors keep (issue 9, section 5).

Two scripted servers on 127.0.0.1 on different ports are two origins. The second one records every
request it receives, so a test can check that the key never arrived there; errors are searched
through everything they reach (message, repr, request, response, its body, headers and history,
the ``__cause__`` chain) and through their pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from tests.http.scripted_server import Reply, ScriptedServer
from tinker_actors.auth.api import AuthTokenResponse
from tinker_actors.auth.sources import CredentialSource
from tinker_actors.auth.store import StoredKey
from tinker_actors.auth.tokens import TokenHolder, TokenTiming
from tinker_actors.config import Config, RetryPolicy
from tinker_actors.errors import (
    APIError,
    APIStatusError,
    CrossOriginRedirectError,
    InternalServerError,
)
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.http.redirects import MAX_REDIRECTS, same_origin

API_KEY = "tml-KEYSAFETY-0123456789abcdef"
CF_SECRET = "cf-secret-keysafety-42"
PATH = "/api/v1/thing"

T = TypeVar("T")

FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02, deadline=5.0)


class Thing(BaseModel):
    name: str
    size: int


@pytest.fixture
def api() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def elsewhere() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


def make_config(server: ScriptedServer, **overrides: Any) -> Config:
    values: dict[str, Any] = {"api_key": API_KEY, "cf_access_client_secret": CF_SECRET, "base_url": server.url,
                              "retry": FAST}
    values.update(overrides)
    return Config(**values)


def run(config: Config, body: Callable[[HttpLayer], Awaitable[T]]) -> T:
    async def main() -> T:
        async with HttpLayer(config) as layer:
            return await body(layer)
    return asyncio.run(main())


def strings_reachable_from(root: object) -> list[str]:
    """Every str and bytes value reachable from ``root`` through attributes and containers (tracebacks aside).

    This is what code we do not control (a logger, an error tracker, a pickle) can find in an error.
    """
    found: list[str] = []
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        current = stack.pop()
        if id(current) in seen or current is None or isinstance(current, type | int | float | bool):
            continue
        seen.add(id(current))
        if isinstance(current, str):
            found.append(current)
            continue
        if isinstance(current, bytes | bytearray | memoryview):
            found.append(bytes(current).decode("latin-1"))
            continue
        if isinstance(current, httpx.Headers):
            stack.extend(value for item in current.multi_items() for value in item)
            continue
        if isinstance(current, httpx.URL):
            found.append(str(current))
            continue
        if isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
            continue
        if isinstance(current, list | tuple | set | frozenset):
            stack.extend(current)
            continue
        if isinstance(current, BaseException):
            found += [str(current), repr(current)]
            stack += [current.__cause__, current.__context__, current.args]
        if isinstance(current, httpx.Response):
            found.append(repr(current))
            stack.append(current.content)
            stack.append(current.next_request)
            stack.append(current.history)
            for name in ("request", "stream"):
                with contextlib.suppress(RuntimeError):  # httpx: no request attached
                    stack.append(getattr(current, name))
        if isinstance(current, httpx.Request):
            found.append(repr(current))
            stack.append(current.headers)
            stack.append(current.url)
        if hasattr(current, "__dict__") and not callable(current):
            stack.extend(value for name, value in vars(current).items() if name != "__traceback__")
        for slot in getattr(type(current), "__slots__", ()):
            stack.append(getattr(current, slot, None))
    return found


def assert_holds_no_secret(error: BaseException) -> None:
    text = "\n".join(strings_reachable_from(error))
    assert API_KEY not in text
    assert CF_SECRET not in text
    dumped = pickle.dumps(error)
    assert API_KEY.encode() not in dumped
    assert CF_SECRET.encode() not in dumped
    clone = pickle.loads(dumped)  # the copy is usable (a worker may send it back to its parent)
    assert type(clone) is type(error) and str(clone) == str(error)


def headers_of(server: ScriptedServer) -> list[list[tuple[str, str]]]:
    return [request.headers for request in server.requests()]


# --- redirects -----------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_redirect_to_another_origin_is_refused_and_the_key_never_leaves(
        api: ScriptedServer, elsewhere: ScriptedServer, status: int, method: str) -> None:
    api.script(method, PATH, Reply(status, b"", headers={"location": elsewhere.url + "/collect?sig=abc"}))
    elsewhere.script("GET", "/collect", Reply(500, {"detail": "whatever"}))
    elsewhere.script("POST", "/collect", Reply(500, {"detail": "whatever"}))

    with pytest.raises(CrossOriginRedirectError) as caught:
        run(make_config(api), lambda layer: layer.request(
            Purpose.TRAINING, method, PATH, content=b"{}" if method == "POST" else None, response_model=Thing))

    assert elsewhere.requests() == []  # nothing at all went to the other origin, so no key either
    assert len(api.requests(PATH)) == 1  # not retried: the answer would be the same
    error = caught.value
    assert isinstance(error, APIStatusError) and error.status_code == status
    assert error.target_origin == elsewhere.url
    assert elsewhere.url in str(error) and "sig=abc" not in str(error)  # the origin only, never the signed query
    assert not error.retryable
    assert_holds_no_secret(error)


def test_a_same_origin_redirect_is_followed_with_the_key(api: ScriptedServer) -> None:
    api.script("GET", "/api/v1/old", Reply(302, b"", headers={"location": PATH}))
    api.script("GET", PATH, Reply(200, {"name": "moved", "size": 2}))

    result = run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "GET", "/api/v1/old",
                                                               response_model=Thing))

    assert result.data == Thing(name="moved", size=2)
    followed = api.requests(PATH)
    assert len(followed) == 1 and followed[0].header("x-api-key") == API_KEY


def test_a_same_origin_redirect_then_a_cross_origin_one_is_refused(
        api: ScriptedServer, elsewhere: ScriptedServer) -> None:
    api.script("GET", "/api/v1/old", Reply(307, b"", headers={"location": PATH}))
    api.script("GET", PATH, Reply(302, b"", headers={"location": elsewhere.url + PATH}))
    elsewhere.script("GET", PATH, Reply(200, {"name": "stolen", "size": 1}))

    with pytest.raises(CrossOriginRedirectError) as caught:
        run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "GET", "/api/v1/old"))

    assert elsewhere.requests() == []
    assert caught.value.response is not None and caught.value.response.history == []
    assert_holds_no_secret(caught.value)


def test_an_upgrade_to_https_is_another_origin_too(api: ScriptedServer) -> None:
    """Same host and port, other scheme: still refused (and https to http is refused the same way)."""
    api.script("GET", PATH, Reply(301, b"", headers={"location": f"https://127.0.0.1:{api.port}{PATH}"}))

    with pytest.raises(CrossOriginRedirectError) as caught:
        run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "GET", PATH))
    assert caught.value.target_origin == f"https://127.0.0.1:{api.port}"
    assert len(api.requests()) == 1


@pytest.mark.parametrize(("source", "target", "same"), [
    ("https://api.example/x", "https://api.example:443/y", True),
    ("https://api.example/x", "http://api.example/x", False),     # https -> http: never with the key
    ("http://api.example/x", "https://api.example/x", False),
    ("https://api.example/x", "https://files.example/x", False),
    ("http://127.0.0.1:8000/x", "http://127.0.0.1:8001/x", False),
    ("http://127.0.0.1:8000/x", "http://localhost:8000/x", False),
])
def test_origin_comparison(source: str, target: str, same: bool) -> None:
    assert same_origin(httpx.URL(source), httpx.URL(target)) is same


def test_a_redirect_loop_is_a_typed_error(api: ScriptedServer) -> None:
    api.script("GET", PATH, Reply(302, b"", headers={"location": PATH}))

    with pytest.raises(APIStatusError) as caught:
        run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "GET", PATH))
    assert caught.value.status_code == 302 and "redirects" in str(caught.value)
    assert len(api.requests(PATH)) == MAX_REDIRECTS + 1  # followed, then given up; not retried
    assert_holds_no_secret(caught.value)


def test_an_accepted_redirect_is_returned_and_its_target_not_fetched(
        api: ScriptedServer, elsewhere: ScriptedServer) -> None:
    """The checkpoint archive call: the 302 to a signed URL elsewhere is handed back, not followed."""
    target = elsewhere.url + "/archives/abc.tar?signature=xyz"
    api.script("GET", PATH, Reply(302, b"", headers={"location": target}))

    response = run(make_config(api), lambda layer: layer.request(
        Purpose.TRAINING, "GET", PATH, accept_status=frozenset({301, 302, 303, 307, 308})))

    assert response.status_code == 302 and response.headers["location"] == target
    assert elsewhere.requests() == []


# --- what errors keep ------------------------------------------------------------------------------

def test_a_5xx_that_echoes_the_key_is_redacted_everywhere_the_error_keeps_it(api: ScriptedServer) -> None:
    echo = {"detail": f"bad credentials {API_KEY} / {CF_SECRET}", "headers": {"x-api-key": API_KEY}}
    api.script("POST", PATH, Reply(500, echo, headers={"x-echo-key": API_KEY, "set-cookie": "s=1"}))

    with pytest.raises(InternalServerError) as caught:
        run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH, content=b"{}"))

    error = caught.value
    assert len(api.requests(PATH)) == FAST.max_retries + 1
    assert error.response is not None
    assert API_KEY not in error.response.text and "**********" in error.response.text
    assert error.response.json()["detail"].startswith("bad credentials")  # still readable
    assert error.response.headers["x-echo-key"] == "**********"
    assert error.response.status_code == 500
    assert_holds_no_secret(error)


def test_a_body_that_echoes_the_key_in_a_bad_2xx_is_redacted_too(api: ScriptedServer) -> None:
    api.script("GET", PATH, Reply(200, {"name": API_KEY, "size": "not a number"}))

    with pytest.raises(APIError) as caught:
        run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "GET", PATH, response_model=Thing))
    assert_holds_no_secret(caught.value)


def test_a_gzip_encoded_error_body_is_redacted_and_still_readable(api: ScriptedServer) -> None:
    import gzip

    body = gzip.compress(f'{{"detail": "echo {API_KEY}"}}'.encode())
    api.script("GET", PATH, Reply(400, body, headers={"content-encoding": "gzip"}))

    with pytest.raises(APIStatusError) as caught:
        run(make_config(api), lambda layer: layer.request(Purpose.TRAINING, "GET", PATH))
    response = caught.value.response
    assert response is not None and response.json() == {"detail": "echo **********"}
    assert_holds_no_secret(caught.value)


def test_connection_errors_hold_no_secret(api: ScriptedServer) -> None:
    api.script("GET", PATH, Reply(200, b"{}", drop=True))
    with pytest.raises(APIError) as caught:
        run(make_config(api, retry=RetryPolicy(max_retries=0)),
            lambda layer: layer.request(Purpose.TRAINING, "GET", PATH))
    assert_holds_no_secret(caught.value)


# --- credentials other than the config's key: exchanged tokens, commands, stored keys (issue 11) ----------

OLD_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.old-token-keysafety"
NEW_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.new-token-keysafety"


def test_exchanged_tokens_are_sent_per_attempt_and_redacted_like_the_key(api: ScriptedServer) -> None:
    """The layer sends its holder's token (not the config's key); an answer that echoes the token it was sent,
    arriving after the holder moved on to a newer token, is redacted as well."""
    holder = TokenHolder("test")
    holder.publish(OLD_TOKEN, TokenTiming.forever())
    echo = {"detail": f"bad token {OLD_TOKEN}"}
    api.script("POST", PATH, Reply(500, echo, headers={"x-echo": OLD_TOKEN}, delay=0.3))

    async def main() -> None:
        async with HttpLayer(make_config(api, retry=RetryPolicy(max_retries=0)), tokens=holder) as layer:
            sent = asyncio.create_task(layer.request(Purpose.TRAINING, "POST", PATH, content=b"{}"))
            await asyncio.sleep(0.1)
            holder.publish(NEW_TOKEN, TokenTiming.forever())  # a refresh while the request is on the wire
            await sent

    with pytest.raises(InternalServerError) as caught:
        asyncio.run(main())
    assert [dict(headers)["x-api-key"] for headers in headers_of(api)] == [OLD_TOKEN]
    assert_holds_no_secret(caught.value)
    text = "\n".join(strings_reachable_from(caught.value))
    assert OLD_TOKEN not in text and NEW_TOKEN not in text and "bad token **********" in text
    assert OLD_TOKEN.encode() not in pickle.dumps(caught.value)


def test_credential_holders_show_and_pickle_no_credential(tmp_path: Any) -> None:
    holder = TokenHolder("TINKER_CREDENTIAL_CMD")
    token = holder.publish(NEW_TOKEN, TokenTiming.forever())
    source = CredentialSource("command", SecretStr("vault read -field=key secret/keysafety"))
    config = Config(api_key=API_KEY, credential_cmd="vault read -field=key secret/keysafety")
    stored = StoredKey(key=API_KEY, name="laptop")
    answer = AuthTokenResponse.model_validate({"jwt": NEW_TOKEN})
    for thing in (holder, token, source, config, stored, answer):
        text = f"{thing!r} {thing}"
        assert NEW_TOKEN not in text and API_KEY not in text and "secret/keysafety" not in text
    for thing in (holder, token, source, stored, answer):
        with pytest.raises(TypeError):
            pickle.dumps(thing)
    dumped = pickle.dumps(config)  # a pickled Config drops its secrets, the command among them
    assert b"keysafety" not in dumped and API_KEY.encode() not in dumped
    assert pickle.loads(dumped).credential_cmd is None
