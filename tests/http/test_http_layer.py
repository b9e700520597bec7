"""The HTTP layer against a scripted server on 127.0.0.1: retries, errors, headers, secrecy, pools."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import structlog
from pydantic import BaseModel

from tests.http.scripted_server import Reply, ScriptedServer
from tinker_actors._version import __version__
from tinker_actors.config import Config, MissingApiKeyError, PoolLimits, Pools, RetryPolicy
from tinker_actors.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    ClientStoppedError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    UnprocessableEntityError,
)
from tinker_actors.http import HttpLayer, Purpose

API_KEY = "tml-SUPERSECRET-0123456789"
CF_SECRET = "cf-secret-value-xyz"
PATH = "/api/v1/thing"

T = TypeVar("T")

# Tiny waits so that retry tests take milliseconds; the deadline keeps any mistake short.
FAST = RetryPolicy(max_retries=4, base_delay=0.01, max_delay=0.02, deadline=5.0)


class Thing(BaseModel):
    name: str
    size: int


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


def make_config(server: ScriptedServer, **overrides: Any) -> Config:
    values: dict[str, Any] = {"api_key": API_KEY, "base_url": server.url, "retry": FAST}
    values.update(overrides)
    return Config(**values)


def run(config: Config, body: Callable[[HttpLayer], Awaitable[T]]) -> T:
    """Run ``body`` with a fresh layer on a fresh event loop, closing the layer afterwards."""
    async def main() -> T:
        async with HttpLayer(config) as layer:
            return await body(layer)
    return asyncio.run(main())


# --- retries -------------------------------------------------------------------------------------

def test_5xx_burst_then_success_keeps_idempotency_key_and_counts_retries(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(500), Reply(502), Reply(503), Reply(200, {"name": "a", "size": 3}))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "POST", PATH, content=b'{"x":1}', response_model=Thing))

    assert result.data == Thing(name="a", size=3)
    assert result.attempts == 4
    seen = server.requests(PATH)
    assert [r.header("x-stainless-retry-count") for r in seen] == ["0", "1", "2", "3"]
    keys = {r.header("x-idempotency-key") for r in seen}
    assert len(keys) == 1 and None not in keys
    assert all(r.body == b'{"x":1}' for r in seen)


def test_each_call_gets_its_own_idempotency_key_and_get_has_none(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(200, {}))
    server.script("GET", PATH, Reply(200, {}))

    async def body(layer: HttpLayer) -> None:
        await layer.request(Purpose.TRAINING, "POST", PATH)
        await layer.request(Purpose.TRAINING, "POST", PATH)
        await layer.request(Purpose.TRAINING, "GET", PATH)
    run(make_config(server), body)

    posts = [r for r in server.requests(PATH) if r.method == "POST"]
    assert posts[0].header("x-idempotency-key") != posts[1].header("x-idempotency-key")
    get = next(r for r in server.requests(PATH) if r.method == "GET")
    assert get.header("x-idempotency-key") is None


def test_retries_exhausted_raise_the_last_status_error(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(503, {"detail": "busy"}))
    config = make_config(server, retry=FAST.model_copy(update={"max_retries": 2}))

    with pytest.raises(InternalServerError) as caught:
        run(config, lambda layer: layer.request(Purpose.TRAINING, "POST", PATH))

    assert len(server.requests(PATH)) == 3
    assert caught.value.status_code == 503
    assert str(caught.value) == 'Error code: 503 - {"detail": "busy"}'
    assert caught.value.body == {"detail": "busy"}


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "1"}, 1.0),
    ({"retry-after-ms": "300"}, 0.3),
])
def test_429_retry_after_is_honoured(server: ScriptedServer, headers: dict[str, str], expected: float) -> None:
    server.script("POST", PATH, Reply(429, {"detail": "slow down"}, headers=headers), Reply(200, {}))

    result = run(make_config(server), lambda layer: layer.request(Purpose.SAMPLING, "POST", PATH))

    assert result.status_code == 200
    first, second = server.requests(PATH)
    waited = second.at - first.at
    assert expected <= waited < expected + 1.0


def test_retry_after_beyond_the_limit_falls_back_to_backoff(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(429, headers={"retry-after": "3600"}), Reply(200, {}))

    run(make_config(server), lambda layer: layer.request(Purpose.SAMPLING, "POST", PATH))

    first, second = server.requests(PATH)
    assert second.at - first.at < 1.0  # not the 3600 s asked for


def test_429_exhausted_is_a_rate_limit_error(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(429, {"detail": "no"}))
    config = make_config(server, retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.01))

    with pytest.raises(RateLimitError):
        run(config, lambda layer: layer.request(Purpose.SAMPLING, "POST", PATH))
    assert len(server.requests(PATH)) == 2


def test_x_should_retry_false_stops_retrying_a_500(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(500, {"detail": "fatal"}, headers={"x-should-retry": "false"}), Reply(200))

    with pytest.raises(InternalServerError):
        run(make_config(server), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH))
    assert len(server.requests(PATH)) == 1


def test_x_should_retry_true_retries_a_400(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(400, headers={"x-should-retry": "true"}), Reply(200, {"name": "b", "size": 1}))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "POST", PATH, response_model=Thing))
    assert result.data.name == "b"
    assert len(server.requests(PATH)) == 2


@pytest.mark.parametrize(("status", "error"), [
    (400, BadRequestError), (404, NotFoundError), (422, UnprocessableEntityError), (418, APIStatusError),
])
def test_a_4xx_is_not_retried(server: ScriptedServer, status: int, error: type[APIStatusError]) -> None:
    server.script("POST", PATH, Reply(status, {"detail": "your fault"}))

    with pytest.raises(error) as caught:
        run(make_config(server), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH))

    assert len(server.requests(PATH)) == 1
    assert caught.value.status_code == status
    assert str(caught.value).startswith(f"Error code: {status} - ")
    assert caught.value.category == "user"


def test_dropped_connections_are_retried(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(drop=True), Reply(drop=True), Reply(200, {"name": "c", "size": 2}))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "POST", PATH, response_model=Thing))

    assert result.data.size == 2
    assert len(server.requests(PATH)) == 3


def test_a_connection_that_always_drops_is_a_connection_error(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(drop=True))

    with pytest.raises(APIConnectionError) as caught:
        run(make_config(server), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH))

    assert not isinstance(caught.value, APITimeoutError)
    assert len(server.requests(PATH)) == FAST.max_retries + 1
    assert caught.value.retryable


def test_refused_connection_is_a_connection_error() -> None:
    with ScriptedServer() as gone:
        url = gone.url
    config = Config(api_key=API_KEY, base_url=url, retry=RetryPolicy(max_retries=1, base_delay=0.01))

    with pytest.raises(APIConnectionError):
        asyncio.run(_one_call(config))


async def _one_call(config: Config) -> None:
    async with HttpLayer(config) as layer:
        await layer.request(Purpose.SESSION, "GET", PATH)


def test_slow_answers_time_out_after_the_retries(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(200, {}, delay=2.0))
    config = make_config(server, retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.01, deadline=10))

    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        run(config, lambda layer: layer.request(Purpose.TRAINING, "POST", PATH, timeout=0.1))

    assert len(server.requests(PATH)) == 3
    assert time.monotonic() - started < 1.5


def test_the_call_deadline_bounds_retries_and_waits(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(200, {}, delay=2.0))
    # A deadline of several attempt timeouts, so that a loaded machine still fits two attempts in it.
    policy = RetryPolicy(max_retries=50, base_delay=0.05, max_delay=0.05, deadline=1.2)

    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        run(make_config(server), lambda layer: layer.request(
            Purpose.TRAINING, "POST", PATH, timeout=0.15, retry=policy))

    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.2 + 0.8
    assert 2 <= len(server.requests(PATH)) < 10


def test_the_deadline_cuts_an_attempt_with_a_longer_timeout(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(200, {}, delay=3.0))
    policy = RetryPolicy(max_retries=3, deadline=0.3)

    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        run(make_config(server), lambda layer: layer.request(
            Purpose.TRAINING, "POST", PATH, timeout=30, retry=policy))
    assert time.monotonic() - started < 0.3 + 0.9  # the server would answer after 3 s
    assert len(server.requests(PATH)) == 1


def test_the_deadline_cuts_a_server_that_trickles_its_answer(server: ScriptedServer) -> None:
    # Each byte arrives well within the read timeout, so only the call deadline can stop this.
    server.script("GET", PATH, Reply(200, {"padding": "x" * 100}, trickle=0.05))
    policy = RetryPolicy(max_retries=3, deadline=0.5)

    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        run(make_config(server), lambda layer: layer.request(
            Purpose.TRAINING, "GET", PATH, timeout=1.0, retry=policy))
    assert time.monotonic() - started < 0.5 + 1.0  # the whole answer takes > 5 s


def test_no_retry_sleep_starts_that_would_end_past_the_deadline(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(503, headers={"retry-after": "5"}))
    policy = RetryPolicy(max_retries=5, deadline=1.0)

    started = time.monotonic()
    with pytest.raises(InternalServerError):
        run(make_config(server), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH, retry=policy))
    assert time.monotonic() - started < 0.5
    assert len(server.requests(PATH)) == 1


# --- response validation ------------------------------------------------------------------------

def test_malformed_json_is_a_validation_error(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(200, b"<html>not json"))

    with pytest.raises(APIResponseValidationError) as caught:
        run(make_config(server), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH))
    assert "not valid JSON" in str(caught.value)
    assert caught.value.status_code == 200

    with pytest.raises(APIResponseValidationError):
        run(make_config(server), lambda layer: layer.request(
            Purpose.TRAINING, "POST", PATH, response_model=Thing))
    assert len(server.requests(PATH)) == 2  # never retried


def test_schema_mismatch_is_a_validation_error_naming_the_field(server: ScriptedServer) -> None:
    server.script("GET", PATH, Reply(200, {"name": "x"}))

    with pytest.raises(APIResponseValidationError) as caught:
        run(make_config(server), lambda layer: layer.request(
            Purpose.TRAINING, "GET", PATH, response_model=Thing))
    assert "Thing" in str(caught.value) and "size" in str(caught.value)


def test_json_without_model_and_empty_body(server: ScriptedServer) -> None:
    server.script("GET", PATH, Reply(200, {"a": [1, 2]}))
    server.script("DELETE", PATH, Reply(204, b""))

    async def body(layer: HttpLayer) -> tuple[Any, Any]:
        got = await layer.request(Purpose.TRAINING, "GET", PATH)
        gone = await layer.request(Purpose.TRAINING, "DELETE", PATH)
        return got.data, gone.data
    assert run(make_config(server), body) == ({"a": [1, 2]}, None)


# --- accept_status ------------------------------------------------------------------------------

def test_accepted_408_is_returned_with_its_body_not_retried(server: ScriptedServer) -> None:
    pending = {"type": "try_again", "request_id": "r1", "queue_state": "active"}
    server.script("POST", PATH, Reply(408, pending))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.FUTURES, "POST", PATH, content=b'{"request_id":"r1"}', accept_status=frozenset({408, 410})))

    assert result.status_code == 408
    assert result.json() == pending
    assert not result.is_success
    with pytest.raises(APIResponseValidationError):
        _ = result.data
    assert len(server.requests(PATH)) == 1


def test_accepted_302_returns_location_without_following(server: ScriptedServer) -> None:
    server.script("GET", PATH, Reply(302, b"", headers={"location": "http://127.0.0.1:1/archive.tar"}))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "GET", PATH, accept_status=frozenset({302})))

    assert result.status_code == 302
    assert result.headers["location"] == "http://127.0.0.1:1/archive.tar"


def test_redirects_are_followed_when_not_accepted(server: ScriptedServer) -> None:
    server.script("GET", PATH, Reply(302, b"", headers={"location": "/api/v1/other"}))
    server.script("GET", "/api/v1/other", Reply(200, {"name": "moved", "size": 0}))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "GET", PATH, response_model=Thing))
    assert result.data.name == "moved"


# --- headers, URLs ------------------------------------------------------------------------------

def test_headers_on_the_wire(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(200, {}))
    server.script("DELETE", PATH, Reply(200, {}))
    server.script("GET", PATH, Reply(200, {}))
    config = make_config(server, cf_access_client_id="cf-id", cf_access_client_secret=CF_SECRET,
                         default_headers={"X-Extra": "1"})

    async def body(layer: HttpLayer) -> None:
        await layer.request(Purpose.SESSION, "POST", PATH)  # no body, like publish
        await layer.request(Purpose.TRAINING, "DELETE", PATH)
        await layer.request(Purpose.TRAINING, "GET", PATH, headers={"X-Tinker-Request-Type": "Sample"})
    run(config, body)

    post, delete, get = server.requests(PATH)
    for seen in (post, delete, get):
        assert seen.header("x-api-key") == API_KEY
        assert seen.header("user-agent") == f"tinker-actors/{__version__}"
        assert seen.header("accept") == "application/json"
        assert seen.header("cf-access-client-id") == "cf-id"
        assert seen.header("cf-access-client-secret") == CF_SECRET
        assert seen.header("x-extra") == "1"
    assert post.header("content-type") == "application/json"
    assert post.header("content-length") == "0"
    assert delete.header("content-type") == "application/json"
    assert get.header("content-type") is None
    assert get.header("x-tinker-request-type") == "Sample"


def test_caller_idempotency_key_wins(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(500), Reply(200, {}))

    run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "POST", PATH, headers={"X-Idempotency-Key": "mine"}))
    assert [r.header("x-idempotency-key") for r in server.requests(PATH)] == ["mine", "mine"]


def test_base_url_path_prefix_and_both_path_spellings(server: ScriptedServer) -> None:
    prefixed = "/services/tinker-prod" + PATH
    server.script("GET", prefixed, Reply(200, {}))
    config = make_config(server, base_url=server.url + "/services/tinker-prod/")

    async def body(layer: HttpLayer) -> None:
        await layer.request(Purpose.TRAINING, "GET", PATH, params={"limit": 5, "offset": 0})
        await layer.request(Purpose.TRAINING, "GET", PATH.lstrip("/"))
    run(config, body)

    first, second = server.requests(prefixed)
    assert first.target == prefixed + "?limit=5&offset=0"
    assert second.target == prefixed


# --- secrets ------------------------------------------------------------------------------------

def test_api_key_never_in_logs_errors_or_reprs(server: ScriptedServer) -> None:
    echoed = {"detail": f"bad key {API_KEY}"}
    server.script("POST", PATH, Reply(500), Reply(401, echoed))
    server.script("GET", PATH, Reply(200, f"not json {API_KEY}"))
    config = make_config(server, log_level="debug", cf_access_client_secret=CF_SECRET)

    errors: list[BaseException] = []

    async def body(layer: HttpLayer) -> str:
        for method in ("POST", "GET"):
            try:
                await layer.request(Purpose.TRAINING, method, PATH)
            except Exception as exc:
                errors.append(exc)
        return repr(layer)

    with structlog.testing.capture_logs() as logs:
        layer_repr = run(config, body)

    assert len(errors) == 2 and len(logs) >= 3
    assert any(entry["event"] == "http.retry" for entry in logs)
    texts = [str(logs), layer_repr, repr(config), str(config), config.model_dump_json()]
    for error in errors:
        texts += [str(error), repr(error), repr(error.args), str(getattr(error, "body", ""))]
    for text in texts:
        assert API_KEY not in text
        assert CF_SECRET not in text
    assert "SecretStr('**********')" in repr(config)
    assert any("x-api-key" in str(entry.get("headers", "")) for entry in logs)  # logged, but redacted


def test_nothing_is_logged_at_the_default_level(server: ScriptedServer) -> None:
    server.script("POST", PATH, Reply(500), Reply(200, {}))
    with structlog.testing.capture_logs() as logs:
        run(make_config(server), lambda layer: layer.request(Purpose.TRAINING, "POST", PATH))
    assert logs == []


def test_missing_api_key_is_a_clear_error() -> None:
    with pytest.raises(MissingApiKeyError) as caught:
        HttpLayer(Config(base_url="http://127.0.0.1:9"))
    assert "TINKER_API_KEY" in str(caught.value)


def test_a_closed_layer_refuses_calls(server: ScriptedServer) -> None:
    async def body() -> None:
        layer = HttpLayer(make_config(server))
        await layer.aclose()
        await layer.request(Purpose.TRAINING, "GET", PATH)

    with pytest.raises(ClientStoppedError):
        asyncio.run(body())


# --- pools and statistics -----------------------------------------------------------------------

def test_busy_sampling_pool_does_not_starve_training(server: ScriptedServer) -> None:
    server.script("POST", "/api/v1/asample", Reply(200, {}, delay=1.0))
    server.script("POST", "/api/v1/forward", Reply(200, {}))
    pools = Pools(sampling=PoolLimits(clients=1, max_connections=1, max_keepalive=1))

    async def body(layer: HttpLayer) -> float:
        samples = [asyncio.create_task(layer.request(Purpose.SAMPLING, "POST", "/api/v1/asample"))
                   for _ in range(3)]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await layer.request(Purpose.TRAINING, "POST", "/api/v1/forward")
        took = time.monotonic() - started
        for task in samples:
            task.cancel()
        await asyncio.gather(*samples, return_exceptions=True)
        return took

    assert run(make_config(server, pools=pools), body) < 0.5  # a shared pool would take > 2.5 s


def test_round_robin_clients_serve_in_parallel(server: ScriptedServer) -> None:
    server.script("POST", "/api/v1/asample", Reply(200, {}, delay=0.4))
    pools = Pools(sampling=PoolLimits(clients=4, max_connections=1, max_keepalive=1))

    async def body(layer: HttpLayer) -> float:
        started = time.monotonic()
        await asyncio.gather(*(layer.request(Purpose.SAMPLING, "POST", "/api/v1/asample") for _ in range(4)))
        return time.monotonic() - started

    config = make_config(server, pools=pools)
    assert run(config, body) < 0.9  # one at a time would take 1.6 s
    assert HttpLayer(config).capacity(Purpose.SAMPLING) == 4


def test_stats_count_calls_errors_retries_and_latency(server: ScriptedServer) -> None:
    server.script("POST", "/api/v1/asample", Reply(503), Reply(200, {}, delay=0.05))
    server.script("GET", "/api/v1/training_runs/run-1", Reply(404))

    async def body(layer: HttpLayer) -> Any:
        for _ in range(3):
            await layer.request(Purpose.SAMPLING, "POST", "/api/v1/asample")
        with pytest.raises(NotFoundError):
            await layer.request(Purpose.TRAINING, "GET", "/api/v1/training_runs/run-1")
        return layer.stats()
    stats = run(make_config(server), body)

    sample = stats["POST asample"]
    assert (sample.count, sample.errors, sample.retries) == (3, 0, 1)
    assert sample.attempts_by_outcome == {"503": 1, "200": 3}
    assert 0.05 <= sample.p50 <= sample.p95 <= sample.p99 <= sample.max
    runs = stats["GET training_runs"]
    assert (runs.count, runs.errors, runs.retries) == (1, 1, 0)


def test_loopback_traffic_ignores_proxy_environment(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.script("GET", PATH, Reply(200, {"name": "direct", "size": 1}))

    result = run(make_config(server), lambda layer: layer.request(
        Purpose.TRAINING, "GET", PATH, response_model=Thing))
    assert result.data.name == "direct"


def _everything_reachable_from(error: BaseException) -> str:
    """The error, its chain, and the requests/responses they carry, as one text (what a logger could print)."""
    import pickle

    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [repr(current), str(current)]
        for holder in (current, getattr(current, "response", None)):
            try:
                request = getattr(holder, "request", None)
            except RuntimeError:
                request = None
            if request is not None:
                texts.append(repr(dict(request.headers)))
        current = current.__cause__ or current.__context__
    with contextlib.suppress(Exception):
        texts.append(repr(pickle.dumps(error)))
    return "\n".join(texts)


@pytest.mark.parametrize("case", ["status", "not_json", "wrong_shape", "connection"])
def test_no_error_carries_the_api_key(server: ScriptedServer, case: str) -> None:
    """Errors keep their ``request`` (as the official SDK's do), but its headers never hold the key."""
    replies = {"status": Reply(400, {"detail": "bad"}), "not_json": Reply(200, "not json"),
               "wrong_shape": Reply(200, {"size": "x"}), "connection": Reply(200, {}, drop=True)}
    server.script("POST", PATH, replies[case])
    config = make_config(server, retry=RetryPolicy(max_retries=0))
    with pytest.raises(APIError) as caught:
        run(config, lambda layer: layer.request(Purpose.TRAINING, "POST", PATH, content=b"{}", response_model=Thing))
    reachable = _everything_reachable_from(caught.value)
    assert API_KEY not in reachable
    assert getattr(caught.value, "request", None) is not None or case != "connection"


def test_circuit_breaker_opens_fails_fast_then_probes(server: ScriptedServer) -> None:
    """L2: 3 failures in a row open the circuit; calls then fail fast without reaching the server; after the
    reset timeout one probe goes out, and its success closes the circuit."""
    from tinker_actors.config import CircuitBreakerSettings
    from tinker_actors.http import CircuitOpenError

    server.script("POST", PATH, Reply(503), Reply(503), Reply(503), Reply(200, {"name": "back", "size": 1}))
    config = make_config(server, retry=RetryPolicy(max_retries=0),
                         circuit_breaker=CircuitBreakerSettings(failure_threshold=3, reset_timeout=0.3))

    async def scenario(layer: HttpLayer) -> tuple[list[str], str, dict[str, str]]:
        outcomes = []
        for _ in range(5):
            try:
                await layer.request(Purpose.TRAINING, "POST", PATH, content=b"{}", response_model=Thing)
                outcomes.append("ok")
            except CircuitOpenError:
                outcomes.append("open")
            except InternalServerError:
                outcomes.append("503")
        await asyncio.sleep(0.35)
        probe = await layer.request(Purpose.TRAINING, "POST", PATH, content=b"{}", response_model=Thing)
        return outcomes, probe.data.name, layer.circuit_states()

    outcomes, probed, states = run(config, scenario)
    assert outcomes == ["503", "503", "503", "open", "open"]
    assert len(server.requests(PATH)) == 4  # the two fast failures never reached the server
    assert probed == "back" and set(states.values()) == {"closed"}


def test_no_circuit_breaker_by_default(server: ScriptedServer) -> None:
    server.script("POST", PATH, *[Reply(503)] * 6)
    config = make_config(server, retry=RetryPolicy(max_retries=0))

    async def scenario(layer: HttpLayer) -> dict[str, str]:
        for _ in range(6):
            with pytest.raises(InternalServerError):
                await layer.request(Purpose.TRAINING, "POST", PATH, content=b"{}")
        return layer.circuit_states()

    assert run(config, scenario) == {} and len(server.requests(PATH)) == 6
