"""Every error a caller can meet is catchable from the top of the package and named in docs/reference.md.

An error class defined in an area's module (``tinker_actors.auth.errors``, ``tinker_actors.fanout.errors``, the
custom-loss module, ...) used to be reachable only by its module path, so ``except tinker.TorchRequiredError``
failed with an AttributeError while the reference said "all re-exported".
"""

from __future__ import annotations

import ast
from pathlib import Path

import tinker_actors

PACKAGE = Path(tinker_actors.__file__).resolve().parent
REFERENCE = PACKAGE.parent / "docs" / "reference.md"
# Areas whose errors never reach a caller of the SDK: the embedded service's own, and test helpers.
NOT_THE_SDKS = ("local", "testing")
# Converted where it is raised (the codec answers it as APIResponseValidationError), never seen by a caller.
INTERNAL = {"WireFormatError"}


def _error_classes() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.relative_to(PACKAGE).parts[0] in NOT_THE_SDKS:
            continue
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and not node.name.startswith("_"):
                found[node.name] = module
    return {name: module for name, module in found.items() if name not in INTERNAL}


def test_the_scan_finds_the_area_errors() -> None:
    errors = _error_classes()
    assert {"TinkerError", "CredentialError", "TorchRequiredError", "ForkedProcessError",
            "TokenizerNotCachedError"} <= set(errors)


def test_every_error_is_exported_at_the_top() -> None:
    missing = {name: str(module.relative_to(PACKAGE)) for name, module in _error_classes().items()
               if name not in tinker_actors.__all__ or not hasattr(tinker_actors, name)}
    assert not missing, f"not re-exported by tinker_actors: {missing}"


def test_every_exported_error_is_the_class_of_its_module() -> None:
    for name in _error_classes():
        exported = getattr(tinker_actors, name)
        assert isinstance(exported, type) and issubclass(exported, Exception), name


def test_every_error_is_named_in_the_reference() -> None:
    section = REFERENCE.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    unnamed = sorted(name for name in _error_classes() if f"`{name}`" not in section)
    assert not unnamed, f"docs/reference.md's Errors section does not name: {unnamed}"
