"""A Hugging Face Hub stand-in on 127.0.0.1, serving the fixture repositories over real HTTP.

It answers the calls huggingface_hub makes to download a snapshot: the repository's revision info
(``GET /api/models/{repo}/revision/{rev}``), its file tree (``GET /api/models/{repo}/tree/{rev}``) and the
files (``HEAD``/``GET /{repo}/resolve/{rev}/{path}``), with the Hub's headers (``X-Repo-Commit``,
``ETag``, ``X-Error-Code``). Repositories can be made gated or private (a token is then required), and
every request is recorded (path and Authorization header) so a test can check what went on the wire.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.loopback_http import serving_on_loopback


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    token: str | None = None  # when set, only requests carrying this token see the repository


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def add_directory(self, repo_id: str, directory: Path, **options: object) -> FakeRepo:
        files = {path.relative_to(directory).as_posix(): path.read_bytes()
                 for path in sorted(directory.rglob("*")) if path.is_file()}
        repo = FakeRepo(files=files, **options)  # type: ignore[arg-type]
        self.repos[repo_id] = repo
        return repo


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(Recorded(self.command, path, self.headers.get("Authorization")))
            if path.startswith("/api/models/"):
                self._api(path.removeprefix("/api/models/"), head)
            else:
                self._resolve(path.lstrip("/"), head)

        def _repo(self, rest: str) -> tuple[str, FakeRepo | None, str]:
            parts = rest.split("/")
            repo_id = "/".join(parts[:2])
            return repo_id, hub.repos.get(repo_id), "/".join(parts[2:])

        def _allowed(self, repo: FakeRepo | None) -> str | None:
            """None when the request may see the repository, else the Hub's error code."""
            if repo is None:
                return "RepoNotFound"
            sent = self.headers.get("Authorization")
            if repo.token is not None and sent != f"Bearer {repo.token}":
                return "RepoNotFound"  # the Hub hides private repositories from those without access
            if repo.gated and sent is None:
                return "GatedRepo"
            return None

        def _api(self, rest: str, head: bool) -> None:
            repo_id, repo, tail = self._repo(rest)
            refused = self._allowed(repo)
            if refused is not None or repo is None:
                self._error(401 if refused == "RepoNotFound" else 403, refused or "RepoNotFound", head)
                return
            kind, _, revision = tail.partition("/")
            if revision.split("/")[0] not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", head)
                return
            body: object
            if kind == "revision":
                body = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": repo.token is not None,
                        "siblings": [{"rfilename": name} for name in repo.files]}
            elif kind == "tree":
                body = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in repo.files.items()]
            else:
                self._error(404, "EntryNotFound", head)
                return
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)

        def _resolve(self, rest: str, head: bool) -> None:
            _repo_id, repo, tail = self._repo(rest)
            refused = self._allowed(repo)
            if refused is not None or repo is None:
                self._error(401 if refused == "RepoNotFound" else 403, refused or "RepoNotFound", head)
                return
            _kind, revision, name = tail.split("/", 2)
            if revision not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", head)
                return
            data = repo.files.get(name)
            if data is None:
                self._error(404, "EntryNotFound", head)
                return
            etag = f'"{hashlib.sha1(data).hexdigest()}"'
            self._send(200, data, {"X-Repo-Commit": repo.commit, "ETag": etag,
                                   "Content-Type": "application/octet-stream"}, head)

        def _error(self, status: int, code: str, head: bool) -> None:
            self._send(status, json.dumps({"error": code}).encode(),
                       {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}, head)

        def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


@contextmanager
def running_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    with serving_on_loopback(_handler(hub), "fake-hub") as url:
        hub.url = url
        yield hub
