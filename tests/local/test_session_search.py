"""``POST /api/v1/sessions/search`` (the official 0.38 SDK's ``RestClient.search_sessions``): a minimal search
over the sessions the local service knows, newest first, a page at a time."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.compat038.conftest import official_env, official_python
from tests.local.support import Api
from tinker_actors.local import LocalService

_SEARCH = "/api/v1/sessions/search"


def test_pages_newest_first_with_a_cursor(api: Api) -> None:
    created = [api.create_session() for _ in range(3)]
    first = api.post(_SEARCH, {"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [s["session_id"] for s in page["sessions"]] == created[:0:-1]
    assert page["next_cursor"]["last_session_id"] == created[1]
    rest = api.post(_SEARCH, {"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [s["session_id"] for s in rest["sessions"]] == [created[0]] and rest["next_cursor"] is None


def test_filters(api: Api) -> None:
    wanted, other = api.create_session(), api.create_session()
    (found,) = api.post(_SEARCH, {"session_id": wanted}).json()["sessions"]
    assert found["session_id"] == wanted and found["owner"] == "default" and found["status"] == {"type": "active"}
    assert found["checkpoints_count"] == 0
    active = api.post(_SEARCH, {"statuses": [{"type": "active"}]}).json()["sessions"]
    assert {s["session_id"] for s in active} == {wanted, other}
    for nothing in ({"statuses": [{"type": "failed"}]}, {"user_metadata": {"team": "x"}},
                    {"display_name": "nightly"}, {"owner": {"type": "user", "owner_urns": ["someone"]}}):
        assert api.post(_SEARCH, nothing).json()["sessions"] == [], nothing


def test_a_malformed_search_is_a_400(api: Api) -> None:
    assert api.post(_SEARCH, {"limit": 0}).status_code == 400
    assert api.post(_SEARCH, {"unknown": 1}).status_code == 400


_OFFICIAL_SEARCH = """
import json, sys, warnings
import tinker
from tinker.types import AccessibleSearchOwner, SessionSearchRequest
warnings.simplefilter("ignore")
rest = tinker.ServiceClient().create_rest_client()
page = rest.search_sessions(SessionSearchRequest(session_id=sys.argv[1], owner=AccessibleSearchOwner())).result()
print(json.dumps([s.session_id for s in page.sessions]))
"""


def test_the_official_038_rest_client_searches(zero_service: LocalService, api: Api, tmp_path: Path) -> None:
    python = official_python()
    session_id = api.create_session()
    done = subprocess.run([str(python), "-c", _OFFICIAL_SEARCH, session_id], env=official_env(zero_service, tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f'["{session_id}"]'
