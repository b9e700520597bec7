"""A Hugging Face Hub stand-in on 127.0.0.1 that takes uploads, over real HTTP.

It answers what huggingface_hub's ``HfApi`` sends to push a folder (read in huggingface_hub 2.4's
``hf_api.py`` and ``_commit_api.py``): ``GET /api/whoami-v2``, ``POST /api/repos/create``, ``POST
/api/validate-yaml`` (a README's metadata), ``POST /api/models/{repo}/branch/{branch}``, ``POST
/api/models/{repo}/preupload/{rev}`` (every file ``uploadMode: "regular"``, so contents travel inline and
nothing goes to LFS or Xet storage), ``POST /api/models/{repo}/commit/{rev}`` (``application/x-ndjson``: a
header line, then base64 files; ``?create_pr=1`` opens ``refs/pr/N``), and ``HEAD``/``GET
/{repo}/resolve/{rev}/{path}`` (a file of a branch, as ``hf_hub_download`` reads it). Errors carry the Hub's
``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) so huggingface_hub raises its
typed errors. Like the Hub, a commit to a branch that does not exist is refused, private repositories are
visible to their owner only, and a namespace other than the token's user (or ``orgs``) cannot be written.

Every request and commit is recorded for the tests to check what went on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback_http import serving_on_loopback

TOKEN = "hf_FakeHubWriteTokenForTests0123456789"
USER = "ada"


@dataclass
class Commit:
    repo_id: str
    revision: str  # the branch or pull request ref the commit went to
    summary: str
    files: dict[str, bytes]
    create_pr: bool


@dataclass
class Repo:
    owner: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    prs: int = 0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    authorized: bool


@dataclass
class WritableHub:
    url: str = ""
    tokens: dict[str, str] = field(default_factory=lambda: {TOKEN: USER})  # token -> user
    orgs: set[str] = field(default_factory=set)  # namespaces every user may write to
    repos: dict[str, Repo] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[revision])


def _handler(hub: WritableHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def do_HEAD(self) -> None:
            self._dispatch(head=True)

        def do_GET(self) -> None:
            self._dispatch(head=False)

        def do_POST(self) -> None:
            self._dispatch(head=False)

        # ---- plumbing ----------------------------------------------------------------------------
        def _user(self) -> str | None:
            sent = self.headers.get("Authorization", "")
            return hub.tokens.get(sent.removeprefix("Bearer ")) if sent.startswith("Bearer ") else None

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, head: bool = False) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def _error(self, status: int, code: str, head: bool = False) -> None:
            self._send(status, {"error": code}, {"X-Error-Code": code, "X-Error-Message": code}, head)

        def _dispatch(self, head: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = parse_qs(url.query)
            user = self._user()
            with hub.lock:
                hub.requests.append(Recorded(self.command, path, query, user is not None))
            if path == "/api/whoami-v2":
                if user is None:
                    self._error(401, "Unauthorized")
                else:
                    self._send(200, {"type": "user", "name": user, "auth": {"type": "access_token"}})
                return
            if path == "/api/validate-yaml":
                self._body()
                self._send(200, {"errors": [], "warnings": []})
                return
            if path == "/api/repos/create":
                self._create_repo(user, json.loads(self._body()))
                return
            if path.startswith("/api/models/"):
                parts = path.removeprefix("/api/models/").split("/", 3)
                if len(parts) == 4:
                    self._repo_api(user, f"{parts[0]}/{parts[1]}", parts[2], parts[3], query)
                    return
            parts = path.lstrip("/").split("/", 3)
            if len(parts) == 4 and parts[2] == "resolve":
                self._resolve(user, f"{parts[0]}/{parts[1]}", parts[3], head)
                return
            self._error(404, "EntryNotFound", head)

        def _visible(self, user: str | None, repo_id: str) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and user != repo.owner):
                return None
            return repo

        # ---- endpoints ---------------------------------------------------------------------------
        def _create_repo(self, user: str | None, payload: dict[str, Any]) -> None:
            if user is None:
                self._error(401, "Unauthorized")
                return
            namespace = payload.get("organization") or user
            if namespace != user and namespace not in hub.orgs:
                self._send(403, {"error": "You don't have the rights to create a model under this namespace"})
                return
            repo_id = f"{namespace}/{payload['name']}"
            with hub.lock:
                if repo_id in hub.repos:
                    self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
                    return
                hub.repos[repo_id] = Repo(owner=user, private=payload.get("visibility") == "private")
            self._send(200, {"url": f"{hub.url}/{repo_id}"})

        def _repo_api(self, user: str | None, repo_id: str, action: str, revision: str,
                      query: dict[str, list[str]]) -> None:
            body = self._body()
            repo = self._visible(user, repo_id)
            if repo is None:
                self._error(404, "RepoNotFound")
                return
            if user != repo.owner:
                self._send(403, {"error": "You don't have the rights to write to this repository"})
                return
            create_pr = query.get("create_pr") == ["1"]
            with hub.lock:
                if action == "branch":
                    if revision in repo.branches:
                        self._send(409, {"error": "Reference already exists"})
                        return
                    repo.branches[revision] = dict(repo.branches["main"])
                    repo.heads[revision] = repo.heads["main"]
                    self._send(200, {})
                    return
                if revision not in repo.branches:
                    self._error(404, "RevisionNotFound")
                    return
                if action == "preupload":
                    files = json.loads(body)["files"]
                    self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                               for f in files]})
                    return
                if action == "commit":
                    self._commit(repo_id, repo, revision, body, create_pr)
                    return
            self._error(404, "EntryNotFound")

        def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes, create_pr: bool) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                     for line in lines if line["key"] == "file"}
            target = revision
            if create_pr:
                repo.prs += 1
                target = f"refs/pr/{repo.prs}"
                repo.branches[target] = dict(repo.branches[revision])
            repo.branches[target].update(files)
            oid = hashlib.sha1(json.dumps(sorted(repo.branches[target])).encode() + body).hexdigest()
            repo.heads[target] = oid
            hub.commits.append(Commit(repo_id, target, header["summary"], files, create_pr))
            answer = {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid}
            if create_pr:
                answer["pullRequestUrl"] = f"{hub.url}/{repo_id}/discussions/{repo.prs}"
            self._send(200, answer)

        def _resolve(self, user: str | None, repo_id: str, rest: str, head: bool) -> None:
            repo = self._visible(user, repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", head)
                return
            revision = next((b for b in sorted(repo.branches, key=len, reverse=True) if rest.startswith(b + "/")),
                            None)
            if revision is None:
                self._error(404, "RevisionNotFound", head)
                return
            data = repo.branches[revision].get(rest.removeprefix(revision + "/"))
            if data is None:
                self._error(404, "EntryNotFound", head)
                return
            self._send(200, data, {"Content-Type": "application/octet-stream", "X-Repo-Commit": repo.heads[revision],
                                   "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}, head)

    return Handler


@contextmanager
def running_writable_hub() -> Iterator[WritableHub]:
    hub = WritableHub()
    with serving_on_loopback(_handler(hub), "writable-hub") as url:
        hub.url = url
        yield hub
