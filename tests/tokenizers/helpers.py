"""The fixture repositories, and a Hub cache laid out as huggingface_hub lays it out:
``models--org--name/blobs/<sha1>``, ``snapshots/<commit>/<file>`` (symlinks to the blobs) and ``refs/main``
holding the commit."""

from __future__ import annotations

import hashlib
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAMILIES = ("chatml-qwen", "llama3", "strict-alternation", "hermes-multi", "chatml-files")
COMMIT = "4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"
CLOSED_PORT_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens, a connection fails at once


def lay_out_repo(cache_dir: Path, repo_id: str, family: str, *, commit: str = COMMIT,
                 only: tuple[str, ...] | None = None) -> Path:
    """Put fixture ``family`` into ``cache_dir`` as the cached snapshot of ``repo_id``; returns the snapshot."""
    storage = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    source = FIXTURES / family
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(source).as_posix()
        if only is not None and relative not in only:
            continue
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha1(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (relative.count("/") + 2)) / "blobs" / blob.name)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return snapshot
