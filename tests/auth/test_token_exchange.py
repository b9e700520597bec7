"""Token exchange (``pjwt_auth_enabled``) over real HTTP against the local service (issue 11).

The service signs short-lived JWTs (``LocalService(token_lifetime=...)``) and counts what it sees
(``auth_counts()``: keys and tokens accepted and refused, tokens issued), so each test can say how many
exchanges a client made and whether any request went out with a dead token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

import tinker_actors as tinker
from tinker_actors.auth.keeper import Fetched
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import APIStatusError, AuthenticationError
from tinker_actors.local import LocalService
from tinker_actors.runtime import Outcome, Runtime
from tinker_actors.testing import FaultHelper

KEY = "tml-token-exchange-key"
EXCHANGE = {"pjwt_auth_enabled": True}
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def client_config(service: LocalService, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "api_key": KEY, "base_url": service.base_url, "telemetry_enabled": False, "protocol": "0.38",
        "retry": RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
        "poll_backoff": PollBackoff(initial=0.01, max=0.05)}
    values.update(overrides)
    return Config(**values)


@contextmanager
def exchanging_service(**options: Any) -> Iterator[LocalService]:
    options.setdefault("api_key", KEY)
    options.setdefault("protocol_flags", EXCHANGE)
    with LocalService(**options) as service:
        yield service


def counts_since(service: LocalService, before: dict[str, int]) -> dict[str, int]:
    now = service.auth_counts()
    return {name: now[name] - before.get(name, 0) for name in now}


def datum() -> tinker.Datum:
    tokens = [1, 2, 3, 4, 5, 6]
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 5})


def test_a_long_poll_outlives_several_tokens_without_a_refused_request() -> None:
    with exchanging_service(token_lifetime=2.0, long_poll_s=0.5) as service, \
            tinker.ServiceClient(config=client_config(service)) as client:
        training = client.create_lora_training_client("tiny-byte", rank=4).result()
        before = service.auth_counts()
        # Each poll is held 2.5 s (longer than a token lives) and answers "pending": the result comes after
        # more than 3 lifetimes of waiting.
        rule = FaultHelper(service).add("retrieve_future", "status", status=408, delay_s=2.5, times=3)
        started = time.monotonic()
        output = training.forward_backward([datum()], "cross_entropy").result(60)
        waited = time.monotonic() - started
        assert output.loss_fn_outputs and FaultHelper(service).fired(rule) == 3
        assert waited >= 7.0
        seen = counts_since(service, before)
        assert seen["tokens_refused"] == 0  # no request ever went out with a token past its life
        assert seen["refused"] == 0
        # Refreshed at about half-life from one place, not per request: between waited / 1.5 s and one
        # exchange per 0.9 s (45 % of the 2 s life), plus one.
        assert waited / 1.5 - 1 <= seen["tokens_issued"] <= waited / 0.9 + 1
        assert seen["keys_accepted"] == seen["tokens_issued"]  # the key itself goes only to auth/token


def test_a_refused_token_is_replaced_once_and_the_request_replayed() -> None:
    with exchanging_service() as service, tinker.ServiceClient(config=client_config(service)) as client:
        faults = FaultHelper(service)
        before = service.auth_counts()
        rule = faults.fail("get_server_capabilities", 401, times=1, headers=INVALID_TOKEN)
        assert client.get_server_capabilities().supported_models  # replayed with a new token, and served
        seen = counts_since(service, before)
        # The faulted attempt (its token was still good, the fault said otherwise) and the replay.
        assert faults.fired(rule) == 1 and seen["tokens_issued"] == 1 and seen["tokens_accepted"] == 2

        # Once only: a replay refused again is the caller's AuthenticationError, not a loop.
        rule = faults.fail("get_server_capabilities", 401, times=None, headers=INVALID_TOKEN)
        with pytest.raises(AuthenticationError):
            client.get_server_capabilities()
        assert faults.fired(rule) == 2
        faults.clear()

        # A 401 without the invalid_token signal is not about the token: no exchange, no replay.
        before = service.auth_counts()
        rule = faults.fail("get_server_capabilities", 401, times=1)
        with pytest.raises(AuthenticationError):
            client.get_server_capabilities()
        assert faults.fired(rule) == 1 and counts_since(service, before)["tokens_issued"] == 0


def test_tokens_a_new_server_cannot_verify_are_replaced_by_one_exchange_for_all_requests() -> None:
    """The service restarts with a new signing key (another service object on the same port): every token the
    client holds is refused with ``invalid_token``. 16 concurrent requests refused cost one exchange."""
    with exchanging_service() as first:
        port = first.port
        client = tinker.ServiceClient(config=client_config(first))
    try:
        with exchanging_service(port=port) as second:
            async def many() -> list[Any]:
                return await asyncio.gather(*(client.get_server_capabilities_async() for _ in range(16)))
            answers = asyncio.run(many())
            assert len(answers) == 16 and all(answer.supported_models for answer in answers)
            seen = second.auth_counts()
            assert seen["tokens_issued"] == 1
            assert 1 <= seen["tokens_refused"] <= 16 and seen["tokens_accepted"] == 16
    finally:
        client.close()


def test_a_failed_refresh_keeps_the_live_token_until_it_expires() -> None:
    with exchanging_service(token_lifetime=4.0) as service, \
            tinker.ServiceClient(config=client_config(service, retry=RetryPolicy(
                max_retries=0, deadline=2.0))) as client:
        faults = FaultHelper(service)
        issued_at = time.monotonic()  # about when the client's token was issued (just now)
        rule = faults.fail("auth_token", 503, times=None)
        served = 0
        # The token lives 4 s at least (5 at most: exp is rounded up), so it is refreshed (and that fails) within
        # 2.75 s, and lives past 3.3 s: served all along, although every refresh fails.
        while time.monotonic() - issued_at < 3.3:
            client.get_server_capabilities()
            served += 1
            time.sleep(0.2)
        assert served >= 10 and faults.fired(rule) >= 1  # refreshes were tried, and failed
        deadline = time.monotonic() + 10.0
        while True:  # once it expired: the refresh's own error, typed
            try:
                client.get_server_capabilities()
            except APIStatusError as error:
                assert error.status_code == 503
                break
            assert time.monotonic() < deadline, "the expired token was never given up"
            time.sleep(0.2)
        assert service.auth_counts()["tokens_refused"] == 0  # the dead token was never sent
        faults.clear()
        recovered = time.monotonic() + 10.0  # the keeper keeps trying: requests work again
        while True:
            try:
                client.get_server_capabilities()
                break
            except APIStatusError:
                assert time.monotonic() < recovered
                time.sleep(0.2)


def test_a_credential_the_server_refuses_is_a_typed_authentication_error() -> None:
    with exchanging_service() as service, tinker.ServiceClient(config=client_config(service)) as client:
        client.get_server_capabilities()
        revoked = httpx.delete(f"{service.base_url}/api/v1/auth/apikey/me", headers={"X-API-Key": KEY})
        assert revoked.status_code == 200
        with pytest.raises(AuthenticationError) as caught:
            client.get_server_capabilities()
        message = str(caught.value)
        assert "refused the credential from api_key=" in message and "auth/token" in message
        assert KEY not in message and KEY not in repr(caught.value)


def test_clients_with_one_credential_share_one_keeper_which_stops_after_them() -> None:
    with Runtime.scoped() as runtime, exchanging_service() as service:
        before = service.auth_counts()
        first = tinker.ServiceClient(config=client_config(service))
        second = tinker.ServiceClient(config=client_config(service))
        keepers = runtime.root.supervisor("token_keepers")
        assert [child.child_id for child in keepers.which_children()] == \
            [keepers.which_children()[0].child_id]  # one keeper
        assert counts_since(service, before)["tokens_issued"] == 1  # one exchange for both
        first.close()
        assert len(keepers.which_children()) == 1  # still used by the second
        second.close()
        deadline = time.monotonic() + 5.0
        while any(child.state.value == "running" for child in keepers.which_children()):
            assert time.monotonic() < deadline, keepers.tree()
            time.sleep(0.05)


def test_training_and_sampling_with_token_exchange_on_protocol_038() -> None:
    with exchanging_service(token_lifetime=2.0, long_poll_s=0.5) as service, \
            tinker.ServiceClient(config=client_config(service)) as client:
        assert client.protocol.version == "0.38" and client.protocol.token_exchange
        training = client.create_lora_training_client("tiny-byte", rank=4).result()
        started = time.monotonic()
        losses = []
        while time.monotonic() - started < 5.0:  # two and a half token lives
            result = training.forward_backward([datum()], "cross_entropy")
            training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result(30)
            losses.append(result.result(30).metrics)
        sampler = training.save_weights_and_get_sampling_client("auth-loop").result()
        sample = sampler.sample(tinker.ModelInput.from_ints([1, 2, 3]), 1,
                                tinker.SamplingParams(max_tokens=4)).result(30)
        assert losses and sample.sequences
        seen = service.auth_counts()
        assert seen["tokens_refused"] == 0 and seen["refused"] == 0
        assert seen["tokens_issued"] >= 3
        # The key went to client/config, client/dynamic_config and auth/token only; everything else sent tokens.
        assert seen["keys_accepted"] == seen["tokens_issued"] + 2
        assert seen["tokens_accepted"] > 3 * seen["tokens_issued"]


def test_a_crashed_keeper_is_restarted_and_keeps_refreshing_from_the_holder() -> None:
    with Runtime.scoped() as runtime, exchanging_service(token_lifetime=2.0) as service, \
            tinker.ServiceClient(config=client_config(service)) as client:
        keepers = runtime.root.supervisor("token_keepers")
        (keeper,) = keepers.which_children()
        # A completion the keeper cannot read: it crashes (let it crash), its supervisor starts a new one.
        keepers.child(keeper.child_id).tell(Fetched(Outcome(value=12345), time.monotonic()))  # type: ignore[arg-type]
        deadline = time.monotonic() + 5.0
        while keepers.which_children()[0].restarts < 1:
            assert time.monotonic() < deadline, keepers.tree()
            time.sleep(0.05)
        issued = service.auth_counts()["tokens_issued"]
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # one and a half token lives: served, and refreshed meanwhile
            client.get_server_capabilities()
            time.sleep(0.2)
        seen = service.auth_counts()
        assert seen["tokens_issued"] > issued and seen["tokens_refused"] == 0
