"""Accounts of the local service: which keys it accepts and which user each one is (over real HTTP)."""

from __future__ import annotations

import httpx
import pytest

from tinker_actors.local import LocalService
from tinker_actors.local.engine.accounts import Accounts, InvalidKeysError


def _health(svc: LocalService, key: str) -> int:
    return httpx.get(svc.base_url + "/local/v1/health", headers={"X-API-Key": key}, timeout=10).status_code


def test_any_key_is_the_default_user() -> None:
    accounts = Accounts.from_keys(None)
    assert accounts.open
    first, second = accounts.identify("tml-one"), accounts.identify("tml-two")
    assert first is not None and second is not None
    assert first.user == second.user == "default"
    assert first.key_id != second.key_id
    assert accounts.identify("") is None


def test_one_key_is_the_default_user_and_only_it_is_accepted() -> None:
    accounts = Accounts.from_keys("tml-only")
    identity = accounts.identify("tml-only")
    assert identity is not None and identity.user == "default"
    assert accounts.identify("tml-other") is None


def test_a_list_of_keys_names_its_users_by_position() -> None:
    accounts = Accounts.from_keys(["tml-a", "tml-b", "tml-c"])
    assert accounts.users() == ["default", "user-2", "user-3"]
    assert [accounts.identify(k).user for k in ("tml-a", "tml-b", "tml-c")] == accounts.users()  # type: ignore[union-attr]


@pytest.mark.parametrize("keys", [[""], ["tml-a", "tml-a"], {"a b": "tml-x"}, {"alice": "tml x"}, {"": "tml-x"}])
def test_unusable_keys_are_a_typed_error_that_does_not_show_the_key(keys: object) -> None:
    with pytest.raises(InvalidKeysError) as caught:
        Accounts.from_keys(keys)  # type: ignore[arg-type]
    assert "tml-a" not in str(caught.value) and "tml x" not in str(caught.value)


def test_two_keys_two_users_over_http() -> None:
    with LocalService(zero_work=True, api_keys={"alice": "tml-alice", "bob": "tml-bob"}) as svc:
        assert svc.api_keys == {"alice": "tml-alice", "bob": "tml-bob"}
        assert svc.api_key == "tml-alice"  # the first key: still usable as before
        assert _health(svc, "tml-alice") == 200
        assert _health(svc, "tml-bob") == 200
        assert _health(svc, "tml-carol") == 401
        assert "tml-alice" not in repr(svc) and "tml-alice" not in repr(svc._accounts)


def test_api_key_and_api_keys_together_are_refused() -> None:
    with pytest.raises(InvalidKeysError):
        LocalService(zero_work=True, api_key="tml-a", api_keys=["tml-b"])
