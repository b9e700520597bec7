"""The official tinker==0.38.0 SDK's auth pieces against the local service (run with ITS interpreter).

Started by tests/compat038/test_token_exchange.py with ``.venv-tinker038/bin/python``, pointed at a
local service through ``TINKER_BASE_URL`` and ``TINKER_API_KEY`` (user "default"), with a second
user's key in ``TINKER_SECOND_KEY``; ``client/config`` says ``pjwt_auth_enabled``. It never imports
tinker_actors. Steps:

* the official CLI's auth API (what ``tinker auth login`` calls) reads ``auth/apikey/me`` of each key;
* a token from ``auth/token`` parses as the SDK parses it (claims, lifetime, refresh delay);
* once expired, the service's refusal is one the SDK recognises as ``invalid_token``;
* a RestClient call answered once with an injected invalid-token 401 is replayed with a fresh token;
* the second key, revoked with the official CLI's call, is refused afterwards, also to a new RestClient.

The last line of stdout is one JSON summary: ``{"steps": {name: "ok" | error}, "values": {...}}``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import tinker
from tinker.cli.auth_api import AuthApiError, TinkerAuthApi
from tinker.lib._jwt_auth import _is_invalid_token, _lifetime, _refresh_delay, jwt_claims

TIMEOUT_S = 30.0


def main() -> None:
    steps: dict[str, str] = {}
    values: dict[str, Any] = {}
    base_url = os.environ["TINKER_BASE_URL"]
    key, second = os.environ["TINKER_API_KEY"], os.environ["TINKER_SECOND_KEY"]

    def step(name: str, body: Callable[[], Any]) -> None:
        try:
            values[name] = body()
        except Exception:
            steps[name] = traceback.format_exc(limit=6)
            return
        steps[name] = "ok"

    http = httpx.Client(timeout=TIMEOUT_S)
    auth_api = TinkerAuthApi(http, base_url=base_url)

    def whoami() -> dict[str, Any]:
        mine, theirs = auth_api.get_self_api_key(key), auth_api.get_self_api_key(second)
        return {"names": [mine.name, theirs.name], "key_ids": [mine.key_id, theirs.key_id],
                "emails": [mine.details.user_details.email, theirs.details.user_details.email]}

    step("apikey_me", whoami)

    def exchange() -> dict[str, Any]:
        response = http.post(f"{base_url}/api/v1/auth/token", headers={"X-API-Key": key}, json={})
        response.raise_for_status()
        token = response.json()["jwt"]
        claims = jwt_claims(token)
        values["_token"] = token
        return {"sub": claims["sub"], "lifetime": _lifetime(token), "refresh_delay": _refresh_delay(token)}

    step("exchange", exchange)

    def expired() -> dict[str, Any]:
        token = values.pop("_token")
        time.sleep(max(0.0, float(jwt_claims(token)["exp"]) - time.time()) + 0.3)
        response = http.get(f"{base_url}/api/v1/get_server_capabilities", headers={"X-API-Key": token})
        return {"status": response.status_code, "invalid_token": _is_invalid_token(response)}

    step("expired_token_signal", expired)

    def replayed() -> list[str]:
        capabilities = tinker.RestClient().get_server_capabilities().result(timeout=TIMEOUT_S)
        return [model.model_name for model in capabilities.supported_models]

    step("replay_after_invalid_token", replayed)

    def revoke() -> dict[str, Any]:
        auth_api.delete_self_api_key(second)
        try:
            auth_api.get_self_api_key(second)
        except AuthApiError as error:
            refused = str(error)
        else:
            refused = ""
        try:
            tinker.RestClient(api_key=second).get_server_capabilities().result(timeout=TIMEOUT_S)
        except Exception as error:  # what the SDK raises for a refused key
            sdk_error = type(error).__name__
        else:
            sdk_error = ""
        return {"refused": refused, "sdk_error": sdk_error}

    step("revoke_second_key", revoke)
    print(json.dumps({"steps": steps, "values": values}, default=str))


if __name__ == "__main__":
    main()
