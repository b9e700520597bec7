"""The public surface of the official SDK 0.38, checked against ours.

Every public module path of ``tinker`` 0.38 (``tinker.types.provenance_spans``, ``tinker.lib.public_interfaces``,
...) must import under ``tinker_actors`` at the same path, give every public name it has there, the same object
as ``tinker_actors`` / ``tinker_actors.types`` give, and every public class must have every public member of its
official twin. The official surface is read from ``tests/compat038/surface_038.json`` (written by
``tests/compat038/surface_manifest.py`` from the installed wheel; the first test fails when it is stale), so this
check runs without the official SDK.

Two lists say what is not there, each also in the porting guide (docs/porting-from-official-sdk.md, section
"Coming from the official SDK 0.38"), word for word, and each entry must still be true:

* :data:`OMITTED`: left out on purpose (the official SDK's internals, its command line, ...);
* :data:`KNOWN_GAPS`: not built yet, with what will build it. Building one means deleting its entry here and in
  the guide (``test_each_known_gap_is_still_missing`` says so). The list is printed by
  ``test_the_known_gaps_are_listed`` (``pytest -s`` or ``-rP`` shows it).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest

import tinker_actors
import tinker_actors.types
from tests.wire.conftest import OFFICIAL_038_PYTHON

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "compat038" / "surface_038.json"
GENERATOR = HERE / "compat038" / "surface_manifest.py"
PORTING_GUIDE = HERE.parent / "docs" / "porting-from-official-sdk.md"
OMITTED_HEADING = "### Official 0.38 names with no counterpart here"
GAPS_HEADING = "### Official 0.38 names not built yet"

# Official modules (with everything under them), names (module.name) and members (module.Class.member) left
# out on purpose.
OMITTED: dict[str, str] = {
    "tinker.cli": "the official command line; ours is the tinker-actors command",
    "tinker.resources": "generated low-level REST resources; the clients (and tinker_actors.http) cover them",
    "tinker.proto": "the official client's protobuf conversions; ours are tinker_actors.wire.v0_38",
    "tinker.lib.async_tinker_provider": "internal plumbing of the official clients",
    "tinker.lib.backcompat_concurrent_future": "internal plumbing of the official futures",
    "tinker.lib.base_url": "internal; the base URL is Config.base_url (TINKER_BASE_URL)",
    "tinker.lib.chunked_fwdbwd_helpers": "internal: chunk results are combined by the TrainingClient",
    "tinker.lib.client_connection_pool_type": "internal: our pools are Config.pools",
    "tinker.lib.console_urls": "internal; the console links are tinker_actors.console's (Config.console_url)",
    "tinker.lib.credentials": "internal to the official CLI's login; the same file is tinker_actors.auth.store's",
    "tinker.lib.internal_client_holder": "internal: there is no holder here",
    "tinker.lib.queue_state_logger": "internal; queue states reach on_queue_state_change and the log here",
    "tinker.lib.public_interfaces.rest_client_common": "internal plumbing of RestClient and AdminClient",
    "tinker.lib.retryable_exception": "internal; a 410 here is FutureExpiredError or a resubmission",
    "tinker.lib.sdk_method": "internal; x-sdk-method is sent by tinker_actors.clients.sdk_method",
    "tinker.lib.session_futures_poller": "internal: the official batched polling task",
    "tinker.lib.sync_only": "internal; sync calls work from async code here",
    "tinker.lib.telemetry": "internal; ours is ServiceClient.telemetry / get_telemetry()",
    "tinker.lib.telemetry_provider": "internal; every client here has get_telemetry()",
    "tinker.APIResponse": "raw HTTP responses of the generated client",
    "tinker.AsyncAPIResponse": "raw HTTP responses of the generated client",
    "tinker.RequestOptions": "per-request options of the generated client; settings are per Config",
    "tinker.lib.retry_handler.RetryHandler": "internal; sampling retries are RetryConfig",
    "tinker.lib.retry_handler.is_retryable_status_code": "internal; see tinker_actors.errors.is_retryable_status",
    "tinker.lib.public_interfaces.training_client.MODEL_ID_NOT_SET_ERROR": "an internal message",
    "tinker.lib.public_interfaces.training_client.fetch_training_info": "internal (takes the official holder)",
    "tinker.lib.public_interfaces.custom_loss.check_loss_inputs": "internal (here: training.loss_handles)",
    "tinker.lib.public_interfaces.custom_loss.encode_graph": "internal (here: training.loss_handles)",
    "tinker.lib.public_interfaces.custom_loss.run_loss_handle": "internal (here: training.loss_handles)",
    "tinker.lib.public_interfaces.custom_loss.trace_loss": "internal (here: training.loss_handles)",
    "tinker.lib.public_interfaces.service_client.ServiceClient.holder": "internal; there is no holder here",
}

# Official modules, names and members not built yet, and what builds them (issue 12 and its areas).
KNOWN_GAPS: dict[str, str] = {}


# ---- the official surface, from the manifest ----------------------------------------------------

def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text())
    return data


SURFACE: dict[str, dict[str, Any]] = _manifest()["modules"]


def _covered(dotted: str, listing: dict[str, str]) -> bool:
    """Whether ``dotted`` or a module or class above it is in ``listing``."""
    parts = dotted.split(".")
    return any(".".join(parts[:cut]) in listing for cut in range(1, len(parts) + 1))


def _ours(module_name: str) -> str:
    return "tinker_actors" + module_name.removeprefix("tinker")


def _import(module_name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(_ours(module_name))
    except ImportError:
        return None


MODULES = sorted(name for name in SURFACE if not _covered(name, OMITTED) and not _covered(name, KNOWN_GAPS))
NAMES = sorted((module, name) for module in MODULES for name in SURFACE[module]
               if not _covered(f"{module}.{name}", OMITTED) and not _covered(f"{module}.{name}", KNOWN_GAPS))


def _members(cls: type) -> set[str]:
    members = {name for name in dir(cls) if not name.startswith("_")}
    members |= {name for name in getattr(cls, "__members__", {}) if not name.startswith("_")}
    members |= set(getattr(cls, "model_fields", {}))
    members |= set(getattr(cls, "__dataclass_fields__", {}))
    return members


# ---- the checks -----------------------------------------------------------------------------------

def test_the_manifest_is_that_of_the_official_sdk_0_38_and_current() -> None:
    data = _manifest()
    assert data["sdk"] == "tinker 0.38.0"
    assert {"tinker", "tinker.types.provenance_spans", "tinker.lib.public_interfaces",
            "tinker.lib.public_interfaces.admin_client", "tinker.types.shared.untyped_api_future"} <= set(SURFACE)
    assert "PromptProvenanceSpan" in SURFACE["tinker.types.provenance_spans"]
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}: the manifest "
                    "cannot be regenerated (`make test` installs it)")
    done = subprocess.run([str(OFFICIAL_038_PYTHON), str(GENERATOR)], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(HERE), "TINKER_TELEMETRY": "0",
                               "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == MANIFEST.read_text(), (
        f"{MANIFEST.name} is stale: rewrite it with `{OFFICIAL_038_PYTHON} {GENERATOR.relative_to(HERE.parent)} "
        "--write` and review the diff (new official names need a counterpart, an omission or a known gap)")


@pytest.mark.parametrize("module_name", MODULES)
def test_every_official_module_path_imports_here(module_name: str) -> None:
    importlib.import_module(_ours(module_name))


def test_every_official_public_name_resolves_at_the_same_path() -> None:
    missing = [f"{module}.{name}" for module, name in NAMES
               if (ours := _import(module)) is None or not hasattr(ours, name)]
    assert not missing, ("official 0.38 names with no counterpart here (give them one, or list them as omitted or "
                         "as known gaps):\n" + "\n".join(missing))


def test_each_path_gives_the_same_object_as_the_top_level() -> None:
    """``tinker_actors.types.optimizer.AdamParams is tinker_actors.types.AdamParams``: no second copy."""
    copies = []
    for module, name in NAMES:
        ours = getattr(_import(module), name, None)
        if ours is None or isinstance(ours, types.ModuleType):
            continue
        for home in (tinker_actors.types, tinker_actors):
            if hasattr(home, name):
                if getattr(home, name) is not ours:
                    copies.append(f"{_ours(module)}.{name} is not {home.__name__}.{name}")
                break
    assert not copies, "\n".join(copies)


def test_every_official_class_has_every_public_member_here() -> None:
    # A class reachable by several paths is checked once; an entry of a list may name any of its paths.
    paths: dict[tuple[int, str], list[str]] = {}
    for module, name in NAMES:
        entry = SURFACE[module][name]
        ours = getattr(_import(module), name, None)
        if entry["kind"] != "class" or not inspect.isclass(ours):
            continue
        for member in set(entry["members"]) - _members(ours):
            paths.setdefault((id(ours), member), []).append(f"{module}.{name}.{member}")
    missing = sorted(found[0] for found in paths.values()
                     if not any(_covered(path, OMITTED) or _covered(path, KNOWN_GAPS) for path in found))
    assert not missing, ("official 0.38 members with no counterpart here (give them one, or list them as omitted "
                         "or as known gaps):\n" + "\n".join(missing))


def _still_missing(dotted: str) -> bool:
    """Whether the official module, name or member ``dotted`` (in the manifest) is absent here."""
    if dotted in SURFACE:
        return importlib.util.find_spec(_ours(dotted)) is None if _parent_exists(dotted) else True
    module, _, rest = _split(dotted)
    ours = _import(module)
    if ours is None:
        return True
    name, _, member = rest.partition(".")
    value = getattr(ours, name, None)
    if not member:
        return value is None
    return value is None or not inspect.isclass(value) or member not in _members(value)


def _parent_exists(module_name: str) -> bool:
    parent = _ours(module_name).rpartition(".")[0]
    try:
        return importlib.util.find_spec(parent) is not None
    except ModuleNotFoundError:
        return False


def _split(dotted: str) -> tuple[str, str, str]:
    """``tinker.a.b.Name[.member]`` -> (the longest official module, ".", the rest)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in SURFACE:
            return module, ".", ".".join(parts[cut:])
    raise AssertionError(f"no official module in {dotted}")


def _in_manifest(dotted: str) -> bool:
    if dotted in SURFACE:
        return True
    module, _, rest = _split(dotted)
    name, _, member = rest.partition(".")
    entry = SURFACE[module].get(name)
    return entry is not None and (not member or member in entry.get("members", ()))


def test_each_known_gap_is_still_missing() -> None:
    filled = [gap for gap in KNOWN_GAPS if not _still_missing(gap)]
    assert not filled, ("these known gaps have a counterpart now: delete them from KNOWN_GAPS here and from "
                        f"{GAPS_HEADING!r} in the porting guide:\n" + "\n".join(filled))
    assert all(_in_manifest(gap) for gap in KNOWN_GAPS), [gap for gap in KNOWN_GAPS if not _in_manifest(gap)]


def test_each_omission_is_official_and_absent_here() -> None:
    assert all(_in_manifest(dotted) for dotted in OMITTED), [d for d in OMITTED if not _in_manifest(d)]
    present = []
    for dotted in OMITTED:
        if dotted in SURFACE:
            spec = importlib.util.find_spec(_ours(dotted)) if _parent_exists(dotted) else None
            # A module of ours at that path (tinker_actors.cli) must be another thing, without the same submodules.
            locations = spec.submodule_search_locations if spec is not None else None
            if spec is not None and not locations:
                present.append(dotted)
            elif locations:
                theirs = {m.rsplit(".", 1)[1] for m in SURFACE if m.rpartition(".")[0] == dotted}
                ours = {path.stem for location in locations
                        for path in Path(location).iterdir() if not path.name.startswith("_")}
                if theirs & ours:
                    present.append(f"{dotted} ({sorted(theirs & ours)})")
        elif not _still_missing(dotted):
            present.append(dotted)
    assert not present, "omitted on purpose but present here now (drop them from OMITTED):\n" + "\n".join(present)


def test_the_known_gaps_are_listed() -> None:
    print(f"\nofficial 0.38 names not built yet here ({len(KNOWN_GAPS)}):")
    for gap, builder in sorted(KNOWN_GAPS.items()):
        print(f"  {gap}: {builder}")
    assert all(builder.strip() for builder in KNOWN_GAPS.values())


def _listed(heading: str) -> set[str]:
    text = PORTING_GUIDE.read_text()
    assert heading in text, f"the porting guide needs a {heading!r} section"
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\* `(tinker[\w.]*)`", section, flags=re.MULTILINE))


def test_the_porting_guide_lists_exactly_the_omissions_and_the_gaps() -> None:
    assert _listed(OMITTED_HEADING) == set(OMITTED)
    assert _listed(GAPS_HEADING) == set(KNOWN_GAPS)
