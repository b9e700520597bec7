"""Finding the code blocks of the Markdown docs, and the ``docs-test`` markers in front of them.

A fenced block opens with three or more backticks or tildes (indented, inside a list item, is fine)
and closes with at least as many of the same character. Its language is the first word of the info
string. A marker is an HTML comment on the last non-blank line before the opening fence::

    <!-- docs-test: skip (needs a real API key) -->

``skip`` is the only directive; the reason in parentheses is printed with the skipped test.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PYTHON_LANGUAGES", "CodeBlock", "MarkerError", "code_blocks", "marker_lines"]

PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip(?:\s*\((?P<reason>.+)\))?$")


class MarkerError(ValueError):
    """A ``docs-test`` comment that says something this runner does not understand."""


@dataclass(frozen=True)
class CodeBlock:
    path: Path          # the Markdown file
    relative: str       # its path from the repository root, as the test id shows it
    line: int           # 1-based line of the opening fence
    language: str
    source: str         # the block's text, dedented by the fence's indentation
    skip_reason: str | None = None  # set when a skip marker stands before the block
    marker_line: int | None = None  # 1-based line of that marker

    @property
    def id(self) -> str:
        return f"{self.relative}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON_LANGUAGES

    def padded_source(self) -> str:
        """The source preceded by blank lines, so that tracebacks show the Markdown file's line numbers."""
        return "\n" * self.line + self.source


def code_blocks(path: Path, root: Path) -> list[CodeBlock]:
    """Every fenced block of ``path`` in order (of any language). Raises MarkerError on a bad marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = path.relative_to(root).as_posix()
    blocks: list[CodeBlock] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[index + 1:end]]
        info = opening["info"].strip()
        skip_reason, marker_line = _skip_marker(lines, index, relative)
        blocks.append(CodeBlock(path=path, relative=relative, line=index + 1,
                                language=info.split()[0].lower() if info else "",
                                source=textwrap.dedent("\n".join(body)) + "\n",
                                skip_reason=skip_reason, marker_line=marker_line))
        index = end + 1
    return blocks


def marker_lines(path: Path) -> list[int]:
    """The 1-based lines of every ``docs-test`` marker in ``path`` (to find markers before no block)."""
    return [number for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if _MARKER.match(line)]


def _skip_marker(lines: list[str], fence_index: int, relative: str) -> tuple[str | None, int | None]:
    """The reason and line of a skip marker right before the fence at ``fence_index``, or (None, None)."""
    previous = fence_index - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    marker = _MARKER.match(lines[previous]) if previous >= 0 else None
    if marker is None:
        return None, None
    skip = _SKIP.match(marker["body"])
    if skip is None:
        raise MarkerError(f"{relative}:{previous + 1}: unknown docs-test marker {marker['body']!r} "
                          "(the only one is 'skip (reason)')")
    return (skip["reason"] or "no reason given").strip(), previous + 1
