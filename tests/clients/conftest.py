from __future__ import annotations

from collections.abc import Iterator

import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


PROTOCOLS = ("0.6.3", "0.38")


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    """Each test that uses it runs once per wire protocol (the local service serves both)."""
    value: str = request.param
    return value


@pytest.fixture
def fast_config(service: LocalService, protocol: str) -> Config:
    """Short limits so that fault tests end in seconds, not minutes."""
    return Config(api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False,
                  retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=5.0),
                  poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=2.0, protocol=protocol)


@pytest.fixture
def client(service: LocalService, fast_config: Config) -> Iterator[tinker.ServiceClient]:
    service.faults.clear()
    with tinker.ServiceClient(config=fast_config) as svc:
        assert svc.protocol.version == fast_config.protocol
        yield svc
    service.faults.clear()


def datum(tokens: list[int]) -> tinker.Datum:
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})
