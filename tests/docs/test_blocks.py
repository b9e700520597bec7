"""The Markdown reader of the docs runner: fences, indentation, languages and skip markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from .blocks import MarkerError, code_blocks, marker_lines

PAGE = '''# A page

```python
x = 1
```

* in a list:

  ```python
  if x:
      y = 2
  ```

<!-- docs-test: skip (needs a real API key) -->

~~~python
real_service_only()
~~~

````markdown
```python
not a block of its own
```
````

```bash
make demo
```

<!-- docs-test: skip -->
```py
also_skipped()
```
'''


def write(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text, encoding="utf-8")
    return page


def test_blocks_with_lines_languages_dedent_and_markers(tmp_path: Path) -> None:
    blocks = code_blocks(write(tmp_path, PAGE), tmp_path)
    assert [(b.id, b.language, b.is_python) for b in blocks] == [
        ("docs/page.md:3", "python", True), ("docs/page.md:9", "python", True),
        ("docs/page.md:16", "python", True), ("docs/page.md:20", "markdown", False),
        ("docs/page.md:26", "bash", False), ("docs/page.md:31", "py", True)]
    assert blocks[1].source == "if x:\n    y = 2\n"
    assert blocks[3].source.startswith("```python\nnot a block")  # a longer fence holds shorter ones
    assert [b.skip_reason for b in blocks] == [None, None, "needs a real API key", None, None, "no reason given"]
    assert [b.marker_line for b in blocks if b.marker_line] == [14, 30] == marker_lines(tmp_path / "docs/page.md")


def test_tracebacks_point_at_the_markdown_line(tmp_path: Path) -> None:
    block = code_blocks(write(tmp_path, "text\n\n```python\nok = 1\nraise ValueError('here')\n```\n"), tmp_path)[0]
    code = compile(block.padded_source(), str(block.path), "exec")
    with pytest.raises(ValueError) as caught:
        exec(code, {})
    assert caught.traceback[-1].lineno + 1 == 5  # pytest's lineno is 0-based; line 5 of the page


def test_an_unknown_marker_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MarkerError, match=r"docs/page.md:1: unknown docs-test marker 'skipp'"):
        code_blocks(write(tmp_path, "<!-- docs-test: skipp -->\n```python\npass\n```\n"), tmp_path)
