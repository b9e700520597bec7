"""The public surface of the official SDK 0.6.3, checked against ours.

Every public module of ``tinker`` (``tinker.types.*``, ``tinker.lib.public_interfaces.*``, ...) must import
under ``tinker_actors`` at the same path (``tinker.types.tensor_data`` -> ``tinker_actors.types.tensor_data``)
and give every public name it has there, as the same object ``tinker_actors`` / ``tinker_actors.types`` give
(shims re-export, they never define their own copies); every public class must have every public member of
its official twin. What is left out on purpose is listed below and, word for word, in the porting guide's
"Official names with no counterpart here" (docs/porting-from-official-sdk.md): the two lists must match.

A public name of an official module is one in its ``__all__``, one it defines at top level (class, function,
constant) or one it re-exports explicitly (``from x import A as A``); names starting with ``_`` are private.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

official = pytest.importorskip("tinker")
if getattr(official, "__version__", None) != "0.6.3":
    pytest.skip(f"compares against the official SDK 0.6.3, found {official.__version__}", allow_module_level=True)

import tinker_actors  # noqa: E402
import tinker_actors.types  # noqa: E402

PORTING_GUIDE = Path(__file__).resolve().parents[1] / "docs" / "porting-from-official-sdk.md"
OMISSIONS_HEADING = "### Official names with no counterpart here"

# Whole official modules (and everything under them) with no counterpart here, on purpose.
OMITTED_MODULES: dict[str, str] = {
    "tinker.cli": "the official command line; ours is the tinker-actors command",
    "tinker.resources": "generated low-level REST resources; the clients (and tinker_actors.http) cover them",
    "tinker.lib.async_tinker_provider": "internal plumbing of the official clients",
    "tinker.lib.chunked_fwdbwd_helpers": "internal: chunk results are combined by the TrainingClient",
    "tinker.lib.client_connection_pool_type": "internal: our pools are Config.pools",
    "tinker.lib.internal_client_holder": "internal: there is no holder here",
    "tinker.lib.retryable_exception": "internal; a 410 here is FutureExpiredError or a resubmission",
    "tinker.lib.sync_only": "internal; sync calls work from async code here",
    "tinker.lib.telemetry": "internal; ours is ServiceClient.telemetry / get_telemetry()",
    "tinker.lib.telemetry_provider": "internal; every client here has get_telemetry()",
}

# Single official names (module.name, or module.Class.member) with no counterpart here, on purpose.
OMITTED_NAMES: dict[str, str] = {
    "tinker.APIResponse": "raw HTTP responses of the generated client",
    "tinker.AsyncAPIResponse": "raw HTTP responses of the generated client",
    "tinker.RequestOptions": "per-request options of the generated client",
    "tinker.lib.retry_handler.RetryHandler": "internal; sampling retries are RetryConfig",
    "tinker.lib.retry_handler.is_retryable_status_code": "internal",
    "tinker.lib.public_interfaces.training_client.MODEL_ID_NOT_SET_ERROR": "internal message",
}

# Names code written for 0.6.3 imports from a module that only imports them there.
USER_IMPORTS: dict[str, tuple[str, ...]] = {
    "tinker.lib.public_interfaces.service_client": ("RetryConfig",),
    "tinker.lib.public_interfaces.sampling_client": ("RetryConfig",),
}

_PUBLIC_DUNDERS = frozenset({"__version__", "__title__"})


# ---- the official surface -------------------------------------------------------------------------

def _omitted_module(name: str) -> bool:
    return any(name == omitted or name.startswith(omitted + ".") for omitted in OMITTED_MODULES)


def _official_modules() -> list[str]:
    """Every public module of the installed official SDK (pkgutil, plus its namespace packages: tinker.lib
    has no ``__init__.py``, which pkgutil does not list), outside the omitted ones."""
    found: list[str] = []

    def walk(name: str, path: str) -> None:
        found.append(name)
        listed = set()
        for info in pkgutil.iter_modules([path]):
            listed.add(info.name)
            child = f"{name}.{info.name}"
            if info.name.startswith("_") or info.name.endswith("_test") or _omitted_module(child):
                continue
            if info.ispkg:
                walk(child, os.path.join(path, info.name))
            else:
                found.append(child)
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            child = f"{name}.{entry.name}"
            if (entry.is_dir() and entry.name not in listed and not entry.name.startswith(("_", "."))
                    and any(f.endswith(".py") for f in os.listdir(entry.path)) and not _omitted_module(child)):
                walk(child, entry.path)

    walk("tinker", os.path.dirname(official.__file__))
    return found


def _public_names(module: types.ModuleType) -> set[str]:
    names = set(getattr(module, "__all__", ()))
    source = getattr(module, "__file__", None)
    if source:
        for node in ast.parse(Path(source).read_text()).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                if isinstance(node.value, ast.Call) and _called(node.value) in {"TypeVar", "ParamSpec", "getLogger"}:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(target.id for target in targets if isinstance(target, ast.Name))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update(alias.asname for alias in node.names if alias.asname == alias.name)
    return {name for name in names if not name.startswith("_") or name in _PUBLIC_DUNDERS}


def _called(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _surface() -> Iterator[tuple[str, str]]:
    """``(official module, public name)`` for everything we must provide."""
    for module_name in _official_modules():
        module = importlib.import_module(module_name)
        for name in sorted(_public_names(module) | set(USER_IMPORTS.get(module_name, ()))):
            if f"{module_name}.{name}" not in OMITTED_NAMES:
                yield module_name, name


SURFACE = sorted(_surface())


def _ours(module_name: str) -> str:
    return "tinker_actors" + module_name.removeprefix("tinker")


# ---- the checks -----------------------------------------------------------------------------------

def test_the_walk_sees_the_whole_official_sdk() -> None:
    modules = {module for module, _ in SURFACE}
    assert {"tinker", "tinker.types", "tinker.types.tensor_data", "tinker.types.shared.untyped_api_future",
            "tinker.lib.public_interfaces", "tinker.lib.public_interfaces.service_client"} <= modules
    assert len([m for m in modules if m.startswith("tinker.types.")]) > 60


@pytest.mark.parametrize("module_name", sorted({module for module, _ in SURFACE}))
def test_every_official_module_path_imports_here(module_name: str) -> None:
    importlib.import_module(_ours(module_name))


def test_every_official_public_name_resolves_at_the_same_path() -> None:
    missing = []
    for module_name, name in SURFACE:
        try:
            ours = importlib.import_module(_ours(module_name))
        except ImportError:
            missing.append(f"{module_name} (the whole module)")
            continue
        if not hasattr(ours, name):
            missing.append(f"{module_name}.{name}")
    assert not missing, "official names with no counterpart here:\n" + "\n".join(sorted(set(missing)))


def test_shims_re_export_the_real_objects() -> None:
    """``tinker_actors.types.tensor_data.TensorData is tinker_actors.types.TensorData``: no second copy."""
    for module_name, name in SURFACE:
        ours = _resolve(module_name, name)
        if ours is None:
            continue
        for home in (tinker_actors.types, tinker_actors):
            if hasattr(home, name) and not isinstance(ours, types.ModuleType):
                assert ours is getattr(home, name), f"{_ours(module_name)}.{name} is a copy"
                break
        if inspect.isclass(ours):
            assert ours.__module__ not in _shim_modules(), f"{ours!r} is defined in a shim"


def _shim_modules() -> set[str]:
    real = {"tinker_actors", "tinker_actors.types", "tinker_actors.types.datum", "tinker_actors.types.model_input"}
    return {_ours(module) for module, _ in SURFACE} - real


def _resolve(module_name: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(_ours(module_name)), name, None)
    except ImportError:
        return None


def test_every_official_class_has_every_public_member_here() -> None:
    # A class reachable by several paths (tinker.APIFuture, tinker.lib.public_interfaces.APIFuture, ...) is
    # checked once; an omitted member may be listed under any of its paths.
    paths: dict[tuple[int, str], list[str]] = {}
    for module_name, name in SURFACE:
        theirs = getattr(importlib.import_module(module_name), name)
        ours = _resolve(module_name, name)
        if inspect.isclass(theirs) and ours is not None:
            for member in _members(theirs) - _members(ours):
                paths.setdefault((id(theirs), member), []).append(f"{module_name}.{name}.{member}")
    missing = sorted(found[0] for found in paths.values() if not set(found) & set(OMITTED_NAMES))
    assert not missing, "official members with no counterpart here:\n" + "\n".join(missing)


def _members(cls: type) -> set[str]:
    members = {name for name in dir(cls) if not name.startswith("_")}
    members |= {name for name in getattr(cls, "__members__", {}) if not name.startswith("_")}  # enum aliases too
    members |= set(getattr(cls, "model_fields", {}))
    members |= set(getattr(cls, "__dataclass_fields__", {}))
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is not None:  # the official models' validators and serializers are not API
        for kind in ("validators", "field_validators", "root_validators", "field_serializers",
                     "model_serializers", "model_validators"):
            members -= set(getattr(decorators, kind, {}))
    return members


def test_the_omissions_are_still_true() -> None:
    """Each omitted module and name exists in 0.6.3 and is still absent here (else drop it from the lists)."""
    for module_name in OMITTED_MODULES:
        theirs = importlib.util.find_spec(module_name)
        assert theirs is not None, module_name
        ours = _spec_or_none(_ours(module_name))
        if ours is not None:  # a module of ours at that path (tinker_actors.cli) must be another thing
            assert theirs.submodule_search_locations and ours.submodule_search_locations, module_name
            assert not _submodules(theirs) & _submodules(ours), f"{module_name} has counterparts here now"
    for dotted in OMITTED_NAMES:
        module_name, owner, member = _split(dotted)
        theirs = getattr(importlib.import_module(module_name), owner)
        if member:
            assert member in _members(theirs), dotted
        ours = _resolve(module_name, owner)
        if member:
            assert ours is not None and member not in _members(ours), f"{dotted} exists here now"
        else:
            assert ours is None, f"{dotted} exists here now"


def _submodules(spec: Any) -> set[str]:
    return {info.name for info in pkgutil.iter_modules(spec.submodule_search_locations)
            if not info.name.startswith("_")}


def _spec_or_none(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None


def _split(dotted: str) -> tuple[str, str, str | None]:
    """``tinker.a.b.Name`` -> (module, Name, None); ``tinker.a.b.Class.member`` -> (module, Class, member)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        if _spec_or_none(module_name) is not None:
            rest = parts[cut:]
            return module_name, rest[0], rest[1] if len(rest) > 1 else None
    raise AssertionError(f"no module in {dotted}")


def test_the_porting_guide_lists_exactly_the_omissions() -> None:
    text = PORTING_GUIDE.read_text()
    assert OMISSIONS_HEADING in text, f"the porting guide needs a {OMISSIONS_HEADING!r} section"
    section = text.split(OMISSIONS_HEADING, 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"^\* `(tinker[\w.]*)`", section, flags=re.MULTILINE))
    assert listed == set(OMITTED_MODULES) | set(OMITTED_NAMES)
