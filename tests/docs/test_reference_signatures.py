"""docs/reference.md lists signatures "as they are in the code": every listed one is checked against it.

The listings are ```text blocks under a ``### `ClassName` `` heading, one ``def``/``async def`` line per
method (``@classmethod`` / ``@staticmethod`` prefixed where it is one). Each must equal ``inspect.signature`` of
that method of ``tinker_actors.<ClassName>`` (annotations as written, without quotes), and every public method
of those classes is listed.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import tinker_actors

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
_HEADING = re.compile(r"^### `(?P<cls>\w+)`")
_DEF = re.compile(r"^(?:@classmethod |@staticmethod )?(?:async )?def (?P<name>\w+)(?P<signature>\(.*)$")


def listed_signatures() -> list[tuple[str, str, str, int]]:
    """(class, method, signature as listed, line) for each def line of a listing under a class heading."""
    found: list[tuple[str, str, str, int]] = []
    cls: str | None = None
    in_block = False
    for number, line in enumerate(REFERENCE.read_text(encoding="utf-8").splitlines(), 1):
        heading = _HEADING.match(line)
        if heading:
            cls = heading["cls"]
        elif line.startswith("#"):
            cls = None
        elif line.startswith("```"):
            in_block = not in_block
        elif in_block and cls and (listed := _DEF.match(line)):
            found.append((cls, listed["name"], listed["signature"], number))
    return found


SIGNATURES = listed_signatures()


def test_the_reference_lists_signatures() -> None:
    assert len(SIGNATURES) > 50 and {cls for cls, *_ in SIGNATURES} >= {"ServiceClient", "TrainingClient"}


@pytest.mark.parametrize(("cls", "name", "listed", "line"), SIGNATURES,
                         ids=[f"docs/reference.md:{line}" for *_, line in SIGNATURES])
def test_a_listed_signature_is_the_codes(cls: str, name: str, listed: str, line: int) -> None:
    owner = getattr(tinker_actors, cls)
    method = inspect.getattr_static(owner, name, None)
    assert method is not None, f"{cls}.{name} is listed but does not exist"
    if isinstance(method, classmethod | staticmethod):
        method = method.__func__
    actual = str(inspect.signature(inspect.unwrap(method))).replace("'", "")
    assert listed == actual, f"docs/reference.md:{line} lists {cls}.{name}{listed}; the code has {actual}"


def test_every_public_method_of_a_listed_class_is_listed() -> None:
    listed = {(cls, name) for cls, name, *_ in SIGNATURES}
    missing = sorted(f"{cls}.{name}" for cls in {cls for cls, *_ in SIGNATURES}
                     for name, member in vars(getattr(tinker_actors, cls)).items()
                     if not name.startswith("_") and not isinstance(member, property)
                     and (callable(member) or isinstance(member, classmethod | staticmethod))
                     and (cls, name) not in listed)
    assert missing == [], f"public methods missing from docs/reference.md: {missing}"
