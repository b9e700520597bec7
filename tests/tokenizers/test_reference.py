"""docs/reference.md's tokenizer section lists signatures and names as they are in the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import tinker_actors.tokenizers as tokenizers
from tinker_actors.tokenizers import TokenizerHandle

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
_DEF = re.compile(r"^def (?P<name>\w+)(?P<signature>\(.*)$")


def _section() -> list[tuple[str | None, str]]:
    """(owner, line) for each line of the text blocks of the tokenizer section; owner is None for the module."""
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Tokenizers (`tinker_actors.tokenizers`)")
    found: list[tuple[str | None, str]] = []
    owner: str | None = None
    in_block = False
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("### "):
            owner = "TokenizerHandle" if "`TokenizerHandle`" in line else None
        elif line.startswith("```"):
            in_block = not in_block
        elif in_block:
            found.append((owner, line))
    return found


def test_every_listed_signature_and_name_is_the_codes() -> None:
    listed = _section()
    assert sum(1 for _owner, line in listed if line.startswith("def ")) >= 8
    for owner, line in listed:
        target = TokenizerHandle if owner else tokenizers
        definition = _DEF.match(line)
        if definition:
            actual = str(inspect.signature(getattr(target, definition["name"]))).replace("'", "")
            assert definition["signature"] == actual, f"{line!r} != {actual}"
            continue
        names = line.split("#")[0].split()
        for name in names:
            if owner:
                assert name in TokenizerHandle.__dataclass_fields__ or isinstance(
                    inspect.getattr_static(TokenizerHandle, name, None), property), name
            else:
                assert name in tokenizers.__all__, name


def test_every_public_name_of_the_package_is_in_the_reference() -> None:
    text = "\n".join(line for _owner, line in _section())
    prose = REFERENCE.read_text(encoding="utf-8")
    for name in tokenizers.__all__:
        assert name in text or f"`{name}`" in prose, name
