"""Token exchange in the local service, over real HTTP on 127.0.0.1: ``POST /api/v1/auth/token`` answers a
signed short-lived JWT that stands for the key's user, refused with the ``invalid_token`` signal once
expired or tampered with; ``auth/apikey/me`` says whose a key is and revokes it."""

from __future__ import annotations

import base64
import json
import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tinker_actors.errors import InvalidInputError
from tinker_actors.local import FaultRule, LocalService

INVALID_TOKEN = 'error="invalid_token"'  # what the official SDK looks for in WWW-Authenticate (RFC 6750)
KEYS = {"alice": "tml-alice-key", "bob": "tml-bob-key"}


@pytest.fixture
def svc() -> Iterator[LocalService]:
    with LocalService(zero_work=True, api_keys=KEYS, token_lifetime=2) as service:
        yield service


@pytest.fixture
def http(svc: LocalService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.base_url, timeout=10) as client:
        yield client


def _exchange(http: httpx.Client, credential: str) -> str:
    response = http.post("/api/v1/auth/token", headers={"X-API-Key": credential}, json={})
    assert response.status_code == 200, response.text
    token: str = response.json()["jwt"]
    return token


def _me(http: httpx.Client, credential: str) -> httpx.Response:
    return http.get("/api/v1/auth/apikey/me", headers={"X-API-Key": credential})


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert INVALID_TOKEN in response.headers.get("WWW-Authenticate", "")
    assert response.json()["error"]  # a JSON error body, as for any refusal


def test_apikey_me_says_whose_key_it_is_in_the_official_shape(http: httpx.Client) -> None:
    alice, bob = _me(http, KEYS["alice"]), _me(http, KEYS["bob"])
    assert alice.status_code == bob.status_code == 200
    assert alice.json()["name"] == "alice" and bob.json()["name"] == "bob"
    for body in (alice.json(), bob.json()):  # the fields `tinker auth login` reads (SelfApiKeyResponse)
        assert isinstance(body["key_id"], int) and isinstance(body["note"], str)
        assert body["details"]["org_details"]["name"] and "@" in body["details"]["user_details"]["email"]
    assert alice.json()["key_id"] != bob.json()["key_id"]
    assert KEYS["alice"] not in alice.text


def test_a_token_stands_for_its_keys_user(http: httpx.Client, svc: LocalService) -> None:
    token = _exchange(http, KEYS["bob"])
    assert token.startswith("eyJ")
    claims = _claims(token)
    assert claims["sub"] == "bob"
    assert claims["exp"] - claims["iat"] >= 2 and claims["exp"] - time.time() <= 3
    answer = _me(http, token)
    assert answer.status_code == 200 and answer.json()["name"] == "bob"
    assert svc.auth_counts()["tokens_issued"] == 1 and svc.auth_counts()["tokens_accepted"] == 1
    assert http.get("/local/v1/health", headers={"X-API-Key": token}).status_code == 200
    assert _me(http, KEYS["bob"]).status_code == 200  # the key itself keeps working


def test_an_expired_token_is_refused_with_the_invalid_token_signal(http: httpx.Client) -> None:
    token = _exchange(http, KEYS["alice"])
    assert _me(http, token).status_code == 200
    time.sleep(max(0.0, _claims(token)["exp"] - time.time()) + 0.2)
    _assert_invalid_token(_me(http, token))
    _assert_invalid_token(http.post("/api/v1/create_session", headers={"X-API-Key": token},
                                    json={"tags": [], "user_metadata": {}, "sdk_version": "0.38.0"}))
    fresh = _exchange(http, KEYS["alice"])  # what an SDK does on the signal
    assert _me(http, fresh).status_code == 200


def test_a_tampered_or_foreign_token_is_refused(http: httpx.Client, svc: LocalService) -> None:
    token = _exchange(http, KEYS["bob"])
    header, payload, signature = token.split(".")
    claims = {**_claims(token), "sub": "alice"}
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    foreign = jwt.encode({**_claims(token)}, b"x" * 32, algorithm="HS256")  # signed by someone else
    unsigned = jwt.encode({**_claims(token)}, None, algorithm="none")
    for bad in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{flipped}", foreign, unsigned,
                "eyJ-not-a-token"):
        _assert_invalid_token(_me(http, bad))
    assert svc.auth_counts()["tokens_refused"] == 5


def test_a_revoked_key_and_its_tokens_are_refused(http: httpx.Client) -> None:
    token = _exchange(http, KEYS["alice"])
    refused_with_token = http.delete("/api/v1/auth/apikey/me", headers={"X-API-Key": token})
    assert refused_with_token.status_code == 400  # revoking takes the key itself
    revoked = http.delete("/api/v1/auth/apikey/me", headers={"X-API-Key": KEYS["alice"]})
    assert revoked.status_code == 200, revoked.text
    gone = _me(http, KEYS["alice"])
    assert gone.status_code == 401 and INVALID_TOKEN not in gone.headers.get("WWW-Authenticate", "")
    assert http.post("/api/v1/auth/token", headers={"X-API-Key": KEYS["alice"]}, json={}).status_code == 401
    _assert_invalid_token(_me(http, token))
    assert _me(http, KEYS["bob"]).status_code == 200  # only that key


def test_revoking_in_any_key_mode_refuses_that_key_only() -> None:
    with LocalService(zero_work=True) as svc, httpx.Client(base_url=svc.base_url, timeout=10) as http:
        assert http.delete("/api/v1/auth/apikey/me", headers={"X-API-Key": "tml-leaked"}).status_code == 200
        assert _me(http, "tml-leaked").status_code == 401
        assert _me(http, "tml-other").status_code == 200 and _me(http, "tml-other").json()["name"] == "default"


def test_the_lifetime_can_be_changed_while_running(http: httpx.Client, svc: LocalService) -> None:
    admin = {"X-API-Key": KEYS["alice"]}
    assert http.get("/local/v1/auth", headers=admin).json()["token_lifetime_s"] == 2
    changed = http.patch("/local/v1/auth", headers=admin, json={"token_lifetime_s": 120})
    assert changed.status_code == 200 and changed.json()["users"] == ["alice", "bob"]
    assert KEYS["alice"] not in changed.text and KEYS["bob"] not in changed.text
    claims = _claims(_exchange(http, KEYS["alice"]))
    assert 120 <= claims["exp"] - claims["iat"] <= 121
    for bad in (0, -1, "long", True, None):
        assert http.patch("/local/v1/auth", headers=admin, json={"token_lifetime_s": bad}).status_code == 400
    svc.token_lifetime = 5
    assert svc.token_lifetime == 5
    with pytest.raises(InvalidInputError):
        svc.token_lifetime = 0
    with pytest.raises(InvalidInputError):
        LocalService(zero_work=True, token_lifetime=-3)


def test_faults_can_target_the_token_exchange(http: httpx.Client, svc: LocalService) -> None:
    svc.faults.add(FaultRule(endpoint="auth_token", status=503, times=1))
    first = http.post("/api/v1/auth/token", headers={"X-API-Key": KEYS["bob"]}, json={})
    assert first.status_code == 503
    assert _exchange(http, KEYS["bob"]).startswith("eyJ")


def test_tokens_outlive_a_restart_of_the_same_service(http: httpx.Client, svc: LocalService) -> None:
    svc.token_lifetime = 60
    token = _exchange(http, KEYS["bob"])
    svc.restart()
    with httpx.Client(base_url=svc.base_url, timeout=10) as again:
        assert _me(again, token).status_code == 200


def test_a_token_exchanged_for_a_token_does_not_outlive_it(http: httpx.Client, svc: LocalService) -> None:
    first = _exchange(http, KEYS["bob"])
    svc.token_lifetime = 600
    second = _exchange(http, first)
    assert _claims(second)["sub"] == "bob" and _claims(second)["exp"] <= _claims(first)["exp"]


def test_the_signing_secret_and_keys_stay_out_of_reprs_and_pickles(svc: LocalService) -> None:
    auth = svc._auth
    secret = auth.tokens._secret
    for text in (repr(svc), repr(auth), repr(auth.tokens), repr(auth.accounts)):
        assert secret.hex() not in text and repr(secret) not in text
        assert KEYS["alice"] not in text
    for obj in (auth.tokens, auth.accounts):
        with pytest.raises(TypeError):
            pickle.dumps(obj)


def test_issue_token_gives_a_test_a_token_of_any_user(svc: LocalService, http: httpx.Client) -> None:
    assert _me(http, svc.issue_token("bob")).json()["name"] == "bob"
    with pytest.raises(InvalidInputError):
        svc.issue_token("carol")


def test_pjwt_auth_enabled_is_served_now(svc: LocalService, http: httpx.Client,
                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        svc.protocol.update_flags({"pjwt_auth_enabled": True})
    assert not [r for r in caplog.records if "does not serve" in r.getMessage()]
    config = http.post("/api/v1/client/config", headers={"X-API-Key": KEYS["bob"]},
                       json={"sdk_version": "0.38.0"})
    assert config.json()["pjwt_auth_enabled"] is True
