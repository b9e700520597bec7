"""The pure parts: the bus, wire events, the ledger, OTel headers, and the library's logging manners."""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

import tinker_actors as tinker
from tinker_actors.config import Config
from tinker_actors.errors import InternalServerError, InvalidInputError, NotFoundError, RateLimitError
from tinker_actors.local import LocalService
from tinker_actors.telemetry import Event, EventBus, otel, trace_headers
from tinker_actors.telemetry.events import exception_event, generic_event, json_safe, session_end
from tinker_actors.telemetry.ledger import DeliveryLedger
from tinker_actors.types import encode_json
from tinker_actors.types.telemetry import GenericEvent, TelemetrySendRequest

# ---- bus ------------------------------------------------------------------------------------------


def test_bus_calls_handlers_in_order_and_detach_stops_them() -> None:
    bus = EventBus()
    seen: list[tuple[str, str]] = []
    first = bus.attach(lambda e: seen.append(("a", e.name)))
    bus.attach(lambda e: seen.append(("b", e.name)))
    bus.emit(Event("one"))
    assert bus.detach(first) and not bus.detach(first)
    bus.emit(Event("two"))
    assert seen == [("a", "one"), ("b", "one"), ("b", "two")]


def test_a_failing_handler_does_not_reach_the_emitter_or_other_handlers() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("observer bug")

    bus.attach(broken)
    bus.attach(lambda e: seen.append(e.name))
    for name in ("x", "y"):
        bus.emit(Event(name))
    assert seen == ["x", "y"]


def test_bus_is_safe_under_concurrent_attach_and_emit() -> None:
    bus = EventBus()
    counts = [0]
    lock = threading.Lock()

    def count(_event: Event) -> None:
        with lock:
            counts[0] += 1

    def churn() -> None:
        for _ in range(200):
            bus.detach(bus.attach(lambda _e: None))

    keeper = bus.attach(count)
    threads = [threading.Thread(target=churn) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(1000):
        bus.emit(Event("e"))
    for thread in threads:
        thread.join()
    assert counts[0] == 1000 and bus.handler_count() == 1
    bus.detach(keeper)


# ---- wire events ----------------------------------------------------------------------------------


def _status_error(cls: type[Any], status: int) -> Any:
    request = httpx.Request("POST", "http://127.0.0.1/api/v1/x")
    return cls(f"Error code: {status}", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(("error", "user"), [
    (InvalidInputError("bad rank"), True),
    (_status_error(NotFoundError, 404), True),
    (_status_error(RateLimitError, 429), False),
    (_status_error(InternalServerError, 500), False),
    (ValueError("plain"), False),
])
def test_exception_events_classify_user_errors(error: BaseException, user: bool) -> None:
    event = exception_event(3, error, where="TrainingClient.forward")
    if user:
        assert event.event == "GENERIC_EVENT" and event.event_name == "user_error"
        assert event.severity == "WARNING" and event.event_data["method"] == "TrainingClient.forward"
    else:
        assert event.event == "UNHANDLED_EXCEPTION" and event.severity == "ERROR"
        assert event.error_type == type(error).__name__


def test_user_error_found_through_the_cause_chain() -> None:
    try:
        try:
            raise InvalidInputError("the user's")
        except InvalidInputError as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        assert exception_event(0, outer).event == "GENERIC_EVENT"


class _ForeignStatusError(Exception):
    """Not ours: an error of some web framework or HTTP library that carries an HTTP status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def _raised_from(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as caught:
            raise outer from caught
    except Exception as error:
        return error


@pytest.mark.parametrize(("status", "user"), [(404, True), (400, True), (422, True), (408, False),
                                              (429, False), (500, False), (503, False)])
def test_a_foreign_exception_is_classified_by_its_status_code(status: int, user: bool) -> None:
    event = exception_event(0, _ForeignStatusError(status), where="SamplingClient.sample")
    if user:
        assert event.event == "GENERIC_EVENT" and event.event_name == "user_error"
        assert event.event_data["status_code"] == status
        assert event.event_data["error_type"] == "_ForeignStatusError"
    else:
        assert event.event == "UNHANDLED_EXCEPTION" and event.error_type == "_ForeignStatusError"


def test_a_users_exception_raised_from_our_4xx_is_a_user_error_with_its_status() -> None:
    error = _raised_from(ValueError("no such run, check the path"), _status_error(NotFoundError, 404))
    event = exception_event(0, error)
    assert event.event == "GENERIC_EVENT" and event.event_name == "user_error" and event.severity == "WARNING"
    assert event.event_data["error_type"] == "ValueError"
    assert event.event_data["status_code"] == 404 and event.event_data["cause_type"] == "NotFoundError"
    # The implicit context (an error raised while handling another) is looked through too.
    try:
        try:
            raise _ForeignStatusError(403)
        except _ForeignStatusError:
            raise RuntimeError("while handling it")  # noqa: B904 - the implicit context is the point
    except RuntimeError as implicit:
        wrapped = exception_event(0, implicit)
    assert isinstance(wrapped, GenericEvent) and wrapped.event_data["status_code"] == 403


def test_a_users_exception_raised_from_our_5xx_is_a_server_error() -> None:
    error = _raised_from(ValueError("could not sample"), _status_error(InternalServerError, 503))
    event = exception_event(0, error)
    assert event.event == "UNHANDLED_EXCEPTION" and event.severity == "ERROR"
    assert event.error_type == "ValueError" and "InternalServerError" in (event.traceback or "")
    foreign = _raised_from(ValueError("upstream"), _ForeignStatusError(502))
    assert exception_event(0, foreign).event == "UNHANDLED_EXCEPTION"


def test_secrets_are_redacted_from_messages_tracebacks_and_data() -> None:
    secret = "sk-very-secret"
    try:
        raise RuntimeError(f"header was {secret}")
    except RuntimeError as error:
        event = exception_event(0, error, secrets=(secret,))
    generic = generic_event(1, "x", {"nested": [{"k": f"a {secret} b"}]}, secrets=(secret,))
    wire = encode_json(TelemetrySendRequest(events=[event, generic], platform="Linux", sdk_version="0",
                                            session_id="s")).decode()
    assert secret not in wire and "**********" in wire


def test_wire_shape_of_session_end_and_generic_event() -> None:
    end = session_end(7, timedelta(seconds=1.5))
    assert end.duration == "0:00:01.500000"
    body = encode_json(TelemetrySendRequest(events=[end], platform="Linux", sdk_version="0", session_id="s"))
    assert b'"timestamp":"' in body and b'Z"' in body and b'"event_session_index":7' in body


def test_json_safe_keeps_json_and_stringifies_the_rest() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert json_safe({"a": (1, 2.5, None, True), "b": float("nan"), "c": Thing(), 3: {"x"}}) == {
        "a": [1, 2.5, None, True], "b": "nan", "c": "thing", "3": ["x"]}


# ---- ledger ---------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from(["emit", "drop", "ack", "nack", "fail", "close"]),
                          st.integers(1, 5)), max_size=40))
def test_ledger_buckets_always_add_up(steps: list[tuple[str, int]]) -> None:
    ledger = DeliveryLedger()
    for op, n in steps:
        pending = ledger.snapshot().pending
        if op == "emit":
            ledger.emitted(n)
        elif op == "drop" and pending >= n:
            ledger.dropped(n)
        elif op == "ack" and pending >= n:
            ledger.attempt(acknowledged_events=n)
        elif op == "nack":
            ledger.attempt(acknowledged_events=None)
        elif op == "fail" and pending >= n:
            ledger.failed(n)
        elif op == "close":
            ledger.close()
        c = ledger.snapshot()
        assert c.emitted == c.acknowledged + c.dropped + c.failed + c.pending and c.pending >= 0
    if ledger.closed:
        assert ledger.snapshot().pending == 0


# ---- OpenTelemetry --------------------------------------------------------------------------------


@contextlib.contextmanager
def installed_otel(inject: Any) -> Iterator[None]:
    """A stand-in ``opentelemetry.propagate`` module whose ``inject`` is ``inject``, for the test's duration."""
    package = types.ModuleType("opentelemetry")
    propagate = types.ModuleType("opentelemetry.propagate")
    propagate.inject = inject  # type: ignore[attr-defined]
    package.propagate = propagate  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("opentelemetry", "opentelemetry.propagate")}
    sys.modules["opentelemetry"], sys.modules["opentelemetry.propagate"] = package, propagate
    otel.reset()
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        otel.reset()


@pytest.fixture
def fake_otel() -> Iterator[None]:
    def inject(carrier: dict[str, str]) -> None:
        carrier["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    with installed_otel(inject):
        yield


def test_no_trace_headers_without_opentelemetry() -> None:
    # opentelemetry is not a dependency of this project; where it happens to be installed, skip.
    if importlib.util.find_spec("opentelemetry") is not None:
        pytest.skip("opentelemetry is installed here")
    otel.reset()
    assert trace_headers() == {} and not otel.otel_available()


def test_trace_headers_come_from_the_current_context(fake_otel: None) -> None:
    assert otel.otel_available()
    assert trace_headers()["traceparent"].startswith("00-4bf92f35")


# ---- logging manners ------------------------------------------------------------------------------


def test_library_never_configures_logging_and_never_logs_the_key(capfd: pytest.CaptureFixture[str]) -> None:
    root_handlers = list(logging.getLogger().handlers)
    was_configured = structlog.is_configured()
    with LocalService(zero_work=True) as service:
        config = Config.from_env({"TINKER_LOG": "debug"}, api_key=service.api_key, base_url=service.base_url)
        with tinker.ServiceClient(config=config) as client:
            client.telemetry.log("with key", {"api_key": service.api_key, "note": f"key={service.api_key}"})
            with pytest.raises(tinker.InvalidInputError):
                client.create_sampling_client().result()
        received = str(service.telemetry_events())
    out, err = capfd.readouterr()
    assert "http.response" in out  # debug logging really was on
    assert service.api_key not in out + err and service.api_key not in received
    assert list(logging.getLogger().handlers) == root_handlers
    assert structlog.is_configured() == was_configured


@pytest.fixture
def context_otel() -> Iterator[contextvars.ContextVar[str]]:
    """A stand-in propagator that, like the real one, reads the *current* context."""
    span: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="")

    def inject(carrier: dict[str, str]) -> None:
        if span.get():
            carrier["traceparent"] = span.get()

    with installed_otel(inject):
        yield span


def test_the_callers_span_reaches_the_wire_through_actor_and_ioloop(
        context_otel: contextvars.ContextVar[str]) -> None:
    """The caller's trace context is captured in its thread and restored around the HTTP call in the IoLoop."""
    from tests.http.scripted_server import Reply, ScriptedServer

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with ScriptedServer() as server:
        server.script("POST", "/api/v1/create_session", Reply(200, {"session_id": "s"}))
        server.script("POST", "/api/v1/create_model", Reply(200, {"request_id": "r1"}))
        server.script("POST", "/api/v1/retrieve_future", Reply(200, {"model_id": "m"}), Reply(200, {"metrics": {}}))
        server.script("POST", "/api/v1/optim_step", Reply(200, {"request_id": "r2"}))
        with tinker.ServiceClient(config=Config(api_key="tml-k", base_url=server.url, telemetry_enabled=False)) as svc:
            training = svc.create_lora_training_client("tiny-byte", rank=2).result()
            token = context_otel.set(parent)
            try:
                training.optim_step(tinker.AdamParams()).result(10)  # handle -> actor -> IoLoop -> HTTP
            finally:
                context_otel.reset(token)
        optim = server.requests("/api/v1/optim_step")[0]
        assert optim.header("traceparent") == parent
        assert server.requests("/api/v1/create_model")[0].header("traceparent") is None  # no span then
