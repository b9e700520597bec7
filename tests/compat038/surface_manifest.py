"""Writes the public surface of the installed official SDK (tinker 0.38.0) as JSON: ``surface_038.json``.

Run it with the official 0.38 interpreter (it imports only the standard library and ``tinker``)::

    .venv-tinker038/bin/python tests/compat038/surface_manifest.py --write

``tests/test_public_surface_038.py`` reads the committed manifest (so the check runs without the official
SDK) and, when ``.venv-tinker038`` exists, runs this script again and fails if the manifest is stale.

What counts as public is the rule of ``tests/test_public_surface.py`` (the 0.6.3 check): every module
whose own name and whose package names do not start with ``_`` (``*_test`` modules are the SDK's own
tests), including namespace packages pkgutil does not list (``tinker.lib`` has no ``__init__.py``); in a
module, the names in its ``__all__``, the classes, functions and constants it defines at top level, and
the names it re-exports explicitly (``from x import A as A``); in a class, every attribute ``dir()``
shows, its pydantic or dataclass fields and its enum members, but not names starting with ``_`` nor
pydantic validators and serializers (not API). Nothing is left out here: which official modules and
names have no counterpart on purpose is the test's business.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

MANIFEST = Path(__file__).resolve().with_name("surface_038.json")
PUBLIC_DUNDERS = frozenset({"__version__", "__title__"})
# Module-level values that are plumbing, not API: type variables and loggers.
_NOT_API_CALLS = frozenset({"TypeVar", "ParamSpec", "getLogger"})
_PYDANTIC_DECORATOR_KINDS = ("validators", "field_validators", "root_validators", "field_serializers",
                             "model_serializers", "model_validators")


def public_modules(package: ModuleType) -> list[str]:
    """Every public module under ``package``, in walk order."""
    found: list[str] = []

    def walk(name: str, path: str) -> None:
        found.append(name)
        listed = set()
        for info in pkgutil.iter_modules([path]):
            listed.add(info.name)
            if info.name.startswith("_") or info.name.endswith("_test"):
                continue
            child = f"{name}.{info.name}"
            if info.ispkg:
                walk(child, os.path.join(path, info.name))
            else:
                found.append(child)
        for entry in sorted(os.scandir(path), key=lambda e: e.name):  # namespace packages
            if (entry.is_dir() and entry.name not in listed and not entry.name.startswith(("_", "."))
                    and any(f.endswith(".py") for f in os.listdir(entry.path))):
                walk(f"{name}.{entry.name}", entry.path)

    walk(package.__name__, os.path.dirname(str(package.__file__)))
    return found


def _called(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def public_names(module: ModuleType) -> list[str]:
    names = set(getattr(module, "__all__", ()))
    source = getattr(module, "__file__", None)
    if source:
        for node in ast.parse(Path(source).read_text()).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                if isinstance(node.value, ast.Call) and _called(node.value) in _NOT_API_CALLS:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(target.id for target in targets if isinstance(target, ast.Name))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update(alias.asname for alias in node.names if alias.asname == alias.name)
    return sorted(name for name in names if not name.startswith("_") or name in PUBLIC_DUNDERS)


def class_members(cls: type) -> list[str]:
    members = {name for name in dir(cls) if not name.startswith("_")}
    members |= {name for name in getattr(cls, "__members__", {}) if not name.startswith("_")}
    members |= {name for name in getattr(cls, "model_fields", {}) if not name.startswith("_")}
    members |= {name for name in getattr(cls, "__dataclass_fields__", {}) if not name.startswith("_")}
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is not None:
        for kind in _PYDANTIC_DECORATOR_KINDS:
            members -= set(getattr(decorators, kind, {}))
    return sorted(members)


def _kind(value: Any) -> str:
    if inspect.ismodule(value):
        return "module"
    if inspect.isclass(value):
        return "class"
    if inspect.isroutine(value):
        return "function"
    if type(value).__module__ in ("typing", "typing_extensions", "types"):
        return "type alias"
    return "value"


def manifest() -> dict[str, Any]:
    import tinker

    modules: dict[str, Any] = {}
    for module_name in public_modules(tinker):
        module = importlib.import_module(module_name)
        names: dict[str, Any] = {}
        for name in public_names(module):
            value = getattr(module, name)
            entry: dict[str, Any] = {"kind": _kind(value)}
            if inspect.isclass(value):
                entry["members"] = class_members(value)
            names[name] = entry
        modules[module_name] = names
    return {"sdk": f"tinker {tinker.__version__}",
            "generated_by": "tests/compat038/surface_manifest.py",
            "modules": modules}


def render(data: dict[str, Any]) -> str:
    """Sorted JSON with one line per public name, so a new SDK's changes read as a short diff."""
    lines = ["{", f' "generated_by": {json.dumps(data["generated_by"])},', ' "modules": {']
    modules = sorted(data["modules"].items())
    for index, (module_name, names) in enumerate(modules):
        lines.append(f"  {json.dumps(module_name)}: {{")
        entries = sorted(names.items())
        lines.extend(f"   {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}"
                     f"{',' if position < len(entries) - 1 else ''}" for position, (name, entry) in enumerate(entries))
        lines.append("  }" + ("," if index < len(modules) - 1 else ""))
    lines += [" },", f' "sdk": {json.dumps(data["sdk"])}', "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {MANIFEST.name} instead of printing it")
    args = parser.parse_args(argv)
    text = render(manifest())
    if args.write:
        MANIFEST.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
