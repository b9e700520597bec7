"""Every ```python block of docs/ and README.md runs, against a local service, as a reader would run it.

One test per block, named after where it is (``docs/telemetry.md:41``). The convention, also stated
at the top of docs/README.md:

* the blocks of one page run in order in one shared namespace (a later block may use names an earlier
  one defined), in a fresh namespace per page and a scratch working directory per page;
* ``TINKER_BASE_URL`` and ``TINKER_API_KEY`` point at a ``LocalService`` started for these tests, so
  ``tinker.ServiceClient()`` with no arguments reaches it; no other name is provided;
* a block may use top-level ``await`` (as in a notebook or ``python -m asyncio``); the blocks of a page
  share one event loop;
* ``<!-- docs-test: skip (reason) -->`` on the line before a block skips it; blocks in other languages
  (bash, text, ...) are not run.

Tracebacks point into the Markdown file at the failing line. After the last block of a page, the
``ServiceClient``s and ``LocalService``s it left in its namespace are closed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinker_actors.clients import ServiceClient
from tinker_actors.local import LocalService

from .blocks import CodeBlock, MarkerError, code_blocks, marker_lines

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK_TIMEOUT_S = 60


def _collect() -> tuple[list[CodeBlock], list[str]]:
    blocks: list[CodeBlock] = []
    problems: list[str] = []
    for page in PAGES:
        try:
            blocks += [block for block in code_blocks(page, ROOT) if block.is_python]
        except MarkerError as error:
            problems.append(str(error))
    return blocks, problems


BLOCKS, MARKER_PROBLEMS = _collect()


class PageRun:
    """The state one page's blocks share: namespace, event loop, working directory, how far it got."""

    def __init__(self, blocks: list[CodeBlock], workdir: Path) -> None:
        self.blocks = blocks
        self.workdir = workdir
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ran: set[str] = set()
        self.failed: str | None = None  # id of a block that failed in its own test

    def run(self, block: CodeBlock) -> None:
        if self.failed is not None:
            pytest.skip(f"{block.id} not run: {self.failed} above on the same page failed")
        # Earlier blocks not yet run (this test was selected alone): run them first, as set-up.
        for earlier in self.blocks[:self.blocks.index(block)]:
            if earlier.skip_reason is None and earlier.id not in self.ran:
                try:
                    self._execute(earlier)
                except Exception as error:
                    raise AssertionError(f"set-up block {earlier.id} failed") from error
        try:
            self._execute(block)
        except BaseException:
            self.failed = block.id
            raise
        finally:
            if block is self.blocks[-1]:
                self.close()

    def _execute(self, block: CodeBlock) -> None:
        self.ran.add(block.id)
        code = compile(block.padded_source(), str(block.path), "exec", dont_inherit=True,
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        with contextlib.chdir(self.workdir):
            result = eval(code, self.namespace)  # exec semantics; a coroutine when the block awaits
            if inspect.iscoroutine(result):
                if self.loop is None:
                    self.loop = asyncio.new_event_loop()
                self.loop.run_until_complete(result)

    def close(self) -> None:
        """Close what the page left open (a reader's process would end here)."""
        for value in list(self.namespace.values()):
            with contextlib.suppress(Exception):
                if isinstance(value, ServiceClient):
                    value.close()
                elif isinstance(value, LocalService) and value.running:
                    value.stop()
        if self.loop is not None:
            self.loop.close()
            self.loop = None
        self.namespace.clear()


@pytest.fixture(scope="module")
def docs_service() -> Iterator[LocalService]:
    """The service the blocks reach through TINKER_BASE_URL / TINKER_API_KEY."""
    names = ("TINKER_BASE_URL", "TINKER_API_KEY")
    saved = {name: os.environ.get(name) for name in names}
    with LocalService() as service:
        os.environ.update(TINKER_BASE_URL=service.base_url, TINKER_API_KEY=service.api_key)
        try:
            yield service
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="module")
def pages(docs_service: LocalService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PageRun]]:
    runs: dict[str, PageRun] = {}
    for relative in dict.fromkeys(block.relative for block in BLOCKS):
        blocks = [block for block in BLOCKS if block.relative == relative]
        runs[relative] = PageRun(blocks, tmp_path_factory.mktemp(relative.replace("/", "_")))
    yield runs
    for run in runs.values():
        run.close()


@pytest.mark.timeout(BLOCK_TIMEOUT_S)
# A block may show a test that uses the marks of tinker_actors.testing.plugin, not loaded here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_docs_code_block(block: CodeBlock, pages: dict[str, PageRun]) -> None:
    if block.skip_reason is not None:
        pytest.skip(f"{block.id}: docs-test: skip ({block.skip_reason})")
    pages[block.relative].run(block)


def test_docs_test_markers_are_understood_and_stand_before_python_blocks() -> None:
    assert MARKER_PROBLEMS == []
    used = {(block.relative, block.marker_line) for block in BLOCKS if block.marker_line is not None}
    stray = [f"{page.relative_to(ROOT).as_posix()}:{line}" for page in PAGES for line in marker_lines(page)
             if (page.relative_to(ROOT).as_posix(), line) not in used]
    assert stray == [], "a docs-test marker that is not right before a ```python block"
