"""ServiceClient(...) takes the official SDK 0.6.3's constructor keywords with the same meaning, refuses
http_client= and unknown keywords with typed errors that say what to use, and never raises a raw pydantic
ValidationError. The wire effects are checked against real servers on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pydantic
import pytest

import tinker_actors as tinker
from tests.http.scripted_server import Reply, ScriptedServer
from tinker_actors.clients.service_options import UnexpectedArgumentError
from tinker_actors.config import Config, InvalidSecretError, RetryPolicy, Timeouts
from tinker_actors.local import FaultAction, FaultRule, LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


def _client(service: LocalService, **keywords: object) -> tinker.ServiceClient:
    return tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key, telemetry_enabled=False,
                                **keywords)


def test_official_keywords_become_the_config(service: LocalService) -> None:
    with _client(service, timeout=7, max_retries=3, default_headers={"X-Team": "a"},
                 default_query={"region": "eu"}) as svc:
        config = svc.config
        assert (config.timeouts.default, config.timeouts.connect) == (7.0, 7.0)
        assert config.timeouts.retrieve_future == Timeouts().retrieve_future  # the long poll keeps its own limit
        assert config.retry.max_retries == 3 and config.retry.deadline == RetryPolicy().deadline
        assert config.default_headers == (("X-Team", "a"),)
        assert config.default_query == (("region", "eu"),)
        assert svc.get_server_capabilities().supported_models
    with _client(service, timeout=httpx.Timeout(30, connect=2.5)) as svc:
        assert (svc.config.timeouts.default, svc.config.timeouts.connect) == (30.0, 2.5)


def test_keywords_apply_on_top_of_a_given_config(service: LocalService) -> None:
    base = Config(api_key=service.api_key, base_url=service.base_url, telemetry_enabled=False, tags=("x",))
    with tinker.ServiceClient(config=base, timeout=9, max_retries=0) as svc:
        assert svc.config.timeouts.default == 9.0 and svc.config.retry.max_retries == 0
        assert svc.config.tags == ("x",)
    assert base.timeouts.default == Timeouts().default  # the caller's config is untouched


def test_timeout_bounds_each_request_on_the_wire(service: LocalService) -> None:
    with _client(service, timeout=0.5, max_retries=0) as svc:
        service.faults.add(FaultRule(endpoint="get_server_capabilities", action=FaultAction.DELAY, delay_s=5,
                                     times=1))
        started = time.monotonic()
        with pytest.raises(tinker.APITimeoutError):
            svc.get_server_capabilities()
        assert time.monotonic() - started < 3.0
    service.faults.clear()


def test_max_retries_is_the_number_of_retries_on_the_wire(service: LocalService) -> None:
    with _client(service, max_retries=1) as svc:
        before = _received(service, "get_server_capabilities")
        service.faults.add(FaultRule(endpoint="get_server_capabilities", status=503, times=5))
        with pytest.raises(tinker.InternalServerError):
            svc.get_server_capabilities()
        assert _received(service, "get_server_capabilities") - before == 2  # the first try and one retry
    service.faults.clear()


def _received(service: LocalService, endpoint: str) -> int:
    counts = service.request_counts()["endpoints"].get(endpoint, {})
    return int(counts.get("received", 0))


def test_default_headers_and_query_go_with_every_request() -> None:
    with ScriptedServer() as server:
        server.script("POST", "/api/v1/create_session", Reply(200, {"session_id": "s-1"}))
        server.script("GET", "/api/v1/get_server_capabilities", Reply(200, {"supported_models": []}))
        with tinker.ServiceClient(base_url=server.url, api_key="tml-k", telemetry_enabled=False,
                                  default_headers={"X-Team": "a"}, default_query={"region": "eu", "n": 2}) as svc:
            assert svc.session_id == "s-1"  # created on first use
            svc.get_server_capabilities()
        for path in ("/api/v1/create_session", "/api/v1/get_server_capabilities"):
            sent = server.requests(path)[0]
            assert sent.target.endswith("?region=eu&n=2"), sent.target
            assert sent.header("x-team") == "a"


def test_a_key_read_from_a_file_with_its_newline_works(service: LocalService) -> None:
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key + "\n",
                              telemetry_enabled=False) as svc:
        assert svc.get_server_capabilities().supported_models


def test_a_key_with_a_newline_inside_is_refused_before_the_wire() -> None:
    with pytest.raises(InvalidSecretError) as caught:
        tinker.ServiceClient(base_url="http://127.0.0.1:9", api_key="tml-abc123\nxyz987")
    for text in (str(caught.value), repr(caught.value)):
        assert "abc123" not in text and "xyz987" not in text


def test_http_client_is_refused_with_what_to_use_instead() -> None:
    with pytest.raises(tinker.InvalidInputError) as caught:
        tinker.ServiceClient(base_url="http://127.0.0.1:9", api_key="tml-k", http_client=httpx.AsyncClient())
    message = str(caught.value)
    assert "http_client" in message and "timeout=" in message and "Config(" in message


@pytest.mark.parametrize(("keyword", "suggestion"), [("timeuot", "'timeout'"), ("max_retry", "'max_retries'"),
                                                      ("no_such_option", None)])
def test_unknown_keywords_are_a_typed_error_naming_them(keyword: str, suggestion: str | None) -> None:
    with pytest.raises(UnexpectedArgumentError) as caught:
        tinker.ServiceClient(base_url="http://127.0.0.1:9", api_key="tml-k", **{keyword: 1})
    error = caught.value
    assert isinstance(error, tinker.InvalidInputError) and isinstance(error, TypeError)
    assert not isinstance(error, pydantic.ValidationError)
    assert repr(keyword) in str(error) and "default_query" in str(error)
    if suggestion:
        assert f"Did you mean {suggestion}" in str(error)


@pytest.mark.parametrize("keywords", [{"timeout": None}, {"timeout": "5"}, {"timeout": 0},
                                      {"timeout": httpx.Timeout(None)}, {"max_retries": -1},
                                      {"max_retries": 1.5}, {"timeout": 5, "timeouts": Timeouts()},
                                      {"max_retries": 1, "retry": RetryPolicy()}, {"tags": 5},
                                      {"retry": {"max_retries": -3}}, {"base_url": "ftp://x"}])
def test_bad_values_are_typed_errors_not_validation_errors(keywords: dict[str, object]) -> None:
    with pytest.raises(tinker.InvalidInputError) as caught:
        tinker.ServiceClient(api_key="tml-secret-value", **keywords)  # type: ignore[arg-type]
    assert not isinstance(caught.value, pydantic.ValidationError)
    assert "tml-secret-value" not in str(caught.value)
