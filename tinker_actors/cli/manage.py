"""``tinker-actors checkpoint | run | model | session ...`` (FEATURES C1, C2).

The official CLI's commands with its names, options and ``--format json`` output shapes (checked against the
official 0.38 CLI in tests/compat038):

* ``checkpoint list [--run-id ID] [--limit N]`` -> ``{"checkpoints": [...], "run_id"?}``;
  ``checkpoint info PATH`` -> the checkpoint with ``is_lora``, ``lora_rank`` (and ``base_model``);
  ``checkpoint publish|unpublish PATH``; ``checkpoint set-ttl PATH --ttl S | --remove``;
  ``checkpoint delete PATH... | --run-id ID [--type T] [--before D] [--after D]`` -> ``{"deleted_count",
  "failed": [{"tinker_path", "error"}]}`` (plus ``deleted`` and ``freed_bytes``);
  ``checkpoint download PATH [-o DIR] [--force]`` -> ``{"checkpoint_path", "destination", "file_size_bytes"}``
  (external weights through their file URLs, other checkpoints as an archive);
  ``checkpoint push-hf PATH [-r REPO] [--public] [--revision B] [--commit-message M] [--create-pr]
  [--allow-pattern P]... [--ignore-pattern P]... [--no-model-card]`` -> ``{"checkpoint_path", "repo_id",
  "revision"?, "public"}`` (plus ``commit_url``, ``pr_url`` and ``files``): the checkpoint as a PEFT adapter on
  the Hugging Face Hub (``tinker_actors.checkpoints.push_checkpoint_to_hub``; token from ``HF_TOKEN`` or
  ``hf auth login``);
* ``run list [--limit N]`` -> ``{"runs": [...]}``; ``run info ID`` -> the run;
* ``model list [SUBSTRING]`` -> ``{"models": [{"model_name", "max_context_length", "trainable", "sampleable"}]}``;
* ``session export-trace ID [-o PATH] [--url-only]`` -> ``{"session_id", "destination", "file_size_bytes"}``
  or ``{"session_id", "url"}``.

Beyond them (tinkex's and ours): ``checkpoint save``, ``checkpoint copy PATH [--project-id P] [--ttl S]``,
``run sample``, ``checkpoint delete --all-runs`` (the filters over all your checkpoints, not one run's),
``run list --project-id/--access-scope``; publish, unpublish and set-ttl print what they did.
``checkpoint push-hf`` also takes sampler checkpoints (the official CLI refuses them) and reports the
branch it derived when ``--repo`` is left out.

Every command takes ``--base-url`` and ``--api-key`` (else ``TINKER_BASE_URL`` / ``TINKER_API_KEY``) and
``-f/--format table|json`` (also before the command: ``tinker-actors -f json run list``). Errors print
``Error: <message>`` on stderr and exit 1. A command on several items (``checkpoint delete a b``) goes on
after an item fails, prints its results, one ``Error: <item>: <message>`` line per failed item, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tinker_actors.checkpoints import download_checkpoint
from tinker_actors.errors import InvalidInputError, TinkerError

__all__ = ["add_manage_commands", "run_manage_command", "select_checkpoints"]

Handler = Callable[[argparse.Namespace, Any], Any]
GROUPS = ("checkpoint", "run", "model", "session")
_WAIT_S = 120.0  # one REST answer (the HTTP layer's own timeouts and retries come first)
# --type of checkpoint delete: the official CLI's names (path segments and checkpoint types)
_TYPES = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external",
          "training": "training", "sampler": "sampler", "external": "external"}


@dataclass(frozen=True)
class Output:
    """What a command prints: ``data`` with ``-f json``; the table, one line per row (``rows``, else ``data``)."""

    data: Any
    rows: list[Any] | None = None
    failures: tuple[tuple[str, str], ...] = field(default=())  # (item, error message): printed, then exit 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", default=None, help="service URL (default: TINKER_BASE_URL)")
    parser.add_argument("--api-key", default=None, help="API key (default: TINKER_API_KEY)")
    parser.add_argument("-f", "--format", choices=("table", "json"), default="table")


def add_manage_commands(commands: Any) -> None:
    checkpoint = commands.add_parser("checkpoint",
                                     help="list, inspect, publish, expire, copy, delete, download, push to the Hub")
    csub = checkpoint.add_subparsers(dest="action", required=True)
    p = csub.add_parser("list", help="your checkpoints (or one run's)")
    p.add_argument("--run-id")
    p.add_argument("--limit", type=int, default=20, help="0 = all")
    p = csub.add_parser("info", help="one checkpoint")
    p.add_argument("tinker_path")
    for name in ("publish", "unpublish"):
        p = csub.add_parser(name, help=f"{name} a checkpoint")
        p.add_argument("tinker_path")
    p = csub.add_parser("set-ttl", help="expire a checkpoint after --ttl seconds, or --remove the expiry")
    p.add_argument("tinker_path")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--ttl", type=int)
    group.add_argument("--remove", action="store_true")
    p = csub.add_parser("copy", help="copy a checkpoint into a project (shares its storage)")
    p.add_argument("tinker_path")
    p.add_argument("--project-id", default=None, help="destination project (default: TINKER_PROJECT_ID)")
    p.add_argument("--ttl", type=int, default=None, help="seconds until the copy expires (default: never)")
    p = csub.add_parser("delete", help="delete checkpoints: by path, or a run's (or all yours) with filters")
    p.add_argument("tinker_paths", nargs="*")
    p.add_argument("--run-id", default=None, help="delete the checkpoints of a training run (with the filters)")
    p.add_argument("--all-runs", action="store_true", help="the filters select among all your checkpoints")
    p.add_argument("--type", dest="checkpoint_type", default=None,
                   help="only this type: weights, sampler_weights or external_weights")
    p.add_argument("--before", default=None, help="only those created before this UTC date/time (ISO 8601)")
    p.add_argument("--after", default=None, help="only those created after this UTC date/time (ISO 8601)")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p = csub.add_parser("download", help="download a checkpoint's files")
    p.add_argument("tinker_path")
    p.add_argument("-o", "--output", default=".")
    p.add_argument("--force", action="store_true")
    p = csub.add_parser("push-hf", help="upload a checkpoint to the Hugging Face Hub as a PEFT adapter")
    p.add_argument("tinker_path")
    p.add_argument("-r", "--repo", dest="repo_id", default=None,
                   help="repository id, e.g. you/my-adapter (default: <you>/tinker-<base model>-<run id>)")
    p.add_argument("--public", action="store_true", help="a public repository (default: private)")
    p.add_argument("--revision", default=None, help="branch to upload to (created if missing)")
    p.add_argument("--commit-message", default=None)
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of pushing to the branch")
    p.add_argument("--allow-pattern", dest="allow_patterns", action="append", default=None,
                   help="upload only files matching this glob (repeatable)")
    p.add_argument("--ignore-pattern", dest="ignore_patterns", action="append", default=None,
                   help="skip files matching this glob (repeatable)")
    p.add_argument("--no-model-card", action="store_true", help="do not write a README.md model card")
    p = csub.add_parser("save", help="create a LoRA model and save sampler weights for it")
    p.add_argument("--base-model", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--seed", type=int, default=None)
    run = commands.add_parser("run", help="list and inspect training runs; sample from a model")
    rsub = run.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("list", help="your training runs")
    p.add_argument("--limit", type=int, default=20, help="0 = all")
    p.add_argument("--project-id", default=None, help="only the runs of this project")
    p.add_argument("--access-scope", choices=("owned", "accessible"), default=None,
                   help="accessible: also others' runs with published checkpoints")
    p = rsub.add_parser("info", help="one training run")
    p.add_argument("run_id")
    p = rsub.add_parser("sample", help="sample from a base model or sampler weights")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--base-model")
    source.add_argument("--model-path")
    p.add_argument("--prompt", required=True, help="text, or a JSON list of token ids")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=-1)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=None)
    model = commands.add_parser("model", help="the models you can use")
    msub = model.add_subparsers(dest="action", required=True)
    p = msub.add_parser("list", help="models with their context length, trainable, sampleable")
    p.add_argument("substring", nargs="?", default=None, help="only names containing it (any case)")
    session = commands.add_parser("session", help="sessions")
    ssub = session.add_subparsers(dest="action", required=True)
    p = ssub.add_parser("export-trace", help="download a session's trace (open it in ui.perfetto.dev)")
    p.add_argument("session_id")
    p.add_argument("-o", "--output", default=None, help="file (default: ./<session-id>.pftrace, .trace.json for JSON)")
    p.add_argument("--url-only", action="store_true", help="print the download URL instead of downloading")
    for parser in (*csub.choices.values(), *rsub.choices.values(), *msub.choices.values(), *ssub.choices.values()):
        _common(parser)


def run_manage_command(args: argparse.Namespace) -> int:
    handler = _HANDLERS[(args.command, args.action)]
    from tinker_actors.clients import ServiceClient

    try:
        with ServiceClient(base_url=args.base_url, api_key=args.api_key) as service:
            result = handler(args, service)
    except (TinkerError, OSError, httpx.HTTPError) as error:  # httpx: downloads' own requests
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    failures: tuple[tuple[str, str], ...] = ()
    if isinstance(result, Output):
        failures = result.failures
    if result is not None:
        _print(result, args.format)
    for item, message in failures:
        print(f"Error: {item}: {message}", file=sys.stderr)
    return 1 if failures else 0


# ---- output ---------------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def _print(result: Any, fmt: str) -> None:
    output = result if isinstance(result, Output) else Output(result)
    if fmt == "json":
        print(json.dumps(_jsonable(output.data), indent=2, default=str))
        return
    data = _jsonable(output.rows if output.rows is not None else output.data)
    rows = data if isinstance(data, list) else [data]
    if not rows:
        print("(none)")
        return
    if all(isinstance(row, dict) for row in rows):
        columns = [key for key in rows[0] if not isinstance(rows[0][key], dict | list)]
        print("\t".join(columns))
        for row in rows:
            print("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns))
    else:
        for row in rows:
            print(row)


def _say(args: argparse.Namespace, message: str) -> None:
    """A progress line for people (stderr, table format only): JSON output stays parseable."""
    if args.format != "json":
        print(message, file=sys.stderr)


# ---- handlers -------------------------------------------------------------------------------------

def _pages(fetch: Callable[[int, int], Sequence[Any]], limit: int, page: int) -> list[Any]:
    items: list[Any] = []
    while limit == 0 or len(items) < limit:
        want = page if limit == 0 else min(page, limit - len(items))
        batch = list(fetch(want, len(items)))
        items.extend(batch)
        if len(batch) < want:
            break
    return items


def _all_checkpoints(rest: Any) -> list[Any]:
    return _pages(lambda n, o: rest.list_user_checkpoints(limit=n, offset=o).result(_WAIT_S).checkpoints, 0, 1000)


def _checkpoint_list(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    if args.run_id:
        checkpoints = rest.list_checkpoints(args.run_id).result(_WAIT_S).checkpoints
        return Output({"run_id": args.run_id, "checkpoints": checkpoints}, checkpoints)
    checkpoints = _pages(lambda n, o: rest.list_user_checkpoints(limit=n, offset=o).result(_WAIT_S).checkpoints,
                         args.limit, 1000)
    return Output({"checkpoints": checkpoints}, checkpoints)


def _find_checkpoint(rest: Any, tinker_path: str) -> Any:
    from tinker_actors.types import ParsedCheckpointTinkerPath

    parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    for checkpoint in rest.list_checkpoints(parsed.training_run_id).result(_WAIT_S).checkpoints:
        if checkpoint.tinker_path == tinker_path:
            return checkpoint
    raise InvalidInputError(f"no checkpoint {tinker_path}")


def _checkpoint_info(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    checkpoint = _find_checkpoint(rest, args.tinker_path)
    info = rest.get_weights_info_by_tinker_path(args.tinker_path).result(_WAIT_S)
    return _jsonable(checkpoint) | {"is_lora": info.is_lora, "lora_rank": info.lora_rank, "base_model": info.base_model}


def _checkpoint_publish(args: argparse.Namespace, service: Any) -> Any:
    service.create_rest_client().publish_checkpoint_from_tinker_path(args.tinker_path).result(_WAIT_S)
    return {"published": args.tinker_path}


def _checkpoint_unpublish(args: argparse.Namespace, service: Any) -> Any:
    service.create_rest_client().unpublish_checkpoint_from_tinker_path(args.tinker_path).result(_WAIT_S)
    return {"unpublished": args.tinker_path}


def _checkpoint_set_ttl(args: argparse.Namespace, service: Any) -> Any:
    ttl = None if args.remove else args.ttl
    service.create_rest_client().set_checkpoint_ttl_from_tinker_path(args.tinker_path, ttl).result(_WAIT_S)
    return {"tinker_path": args.tinker_path, "ttl_seconds": ttl}


def _checkpoint_copy(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    copied = rest.copy_weights(args.tinker_path, args.project_id, ttl_seconds=args.ttl).result(_WAIT_S)
    return {"source_path": args.tinker_path, "tinker_path": copied}


def parse_when(value: str) -> datetime:
    """An ISO 8601 date or date-time; one without a zone is UTC (a date: its midnight)."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise InvalidInputError(f"invalid date {value!r}: use ISO 8601 (2024-01-01, 2024-01-01T08:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def select_checkpoints(checkpoints: Sequence[Any], *, checkpoint_type: str | None = None,
                       before: datetime | None = None, after: datetime | None = None) -> list[Any]:
    """The checkpoints of a type (``weights``/``training``, ``sampler_weights``/``sampler``,
    ``external_weights``/``external``) created strictly before ``before`` and after ``after`` (any left None:
    no condition), in the order given."""
    wanted = None
    if checkpoint_type is not None:
        wanted = _TYPES.get(checkpoint_type)
        if wanted is None:
            raise InvalidInputError(f"invalid checkpoint type {checkpoint_type!r}: use weights, sampler_weights "
                                    "or external_weights")
    return [c for c in checkpoints if (wanted is None or c.checkpoint_type == wanted)
            and (before is None or c.time < before) and (after is None or c.time > after)]


def _checkpoint_delete(args: argparse.Namespace, service: Any) -> Any:
    filters = args.checkpoint_type is not None or args.before is not None or args.after is not None
    if args.tinker_paths and (args.run_id or args.all_runs):
        raise InvalidInputError("give checkpoint paths, or --run-id / --all-runs with filters, not both")
    if not args.tinker_paths and not (args.run_id or args.all_runs):
        raise InvalidInputError("give checkpoint paths, or --run-id ID (or --all-runs) with optional --type, "
                                "--before, --after")
    if args.run_id and args.all_runs:
        raise InvalidInputError("give --run-id or --all-runs, not both")
    if filters and not (args.run_id or args.all_runs):
        raise InvalidInputError("--type, --before and --after select among a run's checkpoints (--run-id) or "
                                "all of yours (--all-runs)")
    # bad filters fail before anything is sent
    before = parse_when(args.before) if args.before is not None else None
    after = parse_when(args.after) if args.after is not None else None
    select_checkpoints([], checkpoint_type=args.checkpoint_type)
    rest = service.create_rest_client()
    sizes: dict[str, int | None] = {}
    if args.tinker_paths:
        paths = list(args.tinker_paths)
    else:
        listed = (rest.list_checkpoints(args.run_id).result(_WAIT_S).checkpoints if args.run_id
                  else _all_checkpoints(rest))
        chosen = select_checkpoints(listed, checkpoint_type=args.checkpoint_type, before=before, after=after)
        paths = [c.tinker_path for c in chosen]
        sizes = {c.tinker_path: c.size_bytes for c in chosen}
    if not paths:
        _say(args, "No checkpoints match")
        return Output({"deleted_count": 0, "failed": [], "deleted": [], "freed_bytes": 0}, [])
    if not args.yes:
        known = [size for size in sizes.values() if size is not None]
        size_note = f" ({sum(known) / 1e9:.3f} GB)" if known else ""
        answer = input(f"Delete {len(paths)} checkpoint(s){size_note}? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return Output({"deleted_count": 0, "failed": [], "deleted": [], "freed_bytes": 0, "cancelled": True}, [])
    _say(args, f"Deleting {len(paths)} checkpoint(s)...")
    report = rest.delete_checkpoints(paths).result()
    freed = sum(sizes.get(path) or 0 for path in report.deleted)
    data = {"deleted_count": len(report.deleted),
            "failed": [{"tinker_path": path, "error": error} for path, error in report.failed.items()],
            "deleted": report.deleted, "freed_bytes": freed}
    rows = [{"tinker_path": path, "deleted": path not in report.failed} for path in paths]
    return Output(data, rows, tuple(report.failed.items()))


def _checkpoint_download(args: argparse.Namespace, service: Any) -> Any:
    from tinker_actors.types import ParsedCheckpointTinkerPath

    parsed = ParsedCheckpointTinkerPath.from_tinker_path(args.tinker_path)
    target = Path(args.output) / f"{parsed.training_run_id}_{parsed.kind}_{parsed.name}".replace(":", "_")
    if target.exists() and not args.force:
        raise InvalidInputError(f"{target} exists (use --force)")
    size = download_checkpoint(service.create_rest_client(), args.tinker_path, target)
    return {"checkpoint_path": args.tinker_path, "destination": str(target), "file_size_bytes": size}


def _checkpoint_push_hf(args: argparse.Namespace, service: Any) -> Any:
    from tinker_actors.checkpoints import push_checkpoint_to_hub  # HfApi loads in 0.3 s: only for this command

    _say(args, f"Pushing {args.tinker_path} to the Hugging Face Hub...")
    pushed = push_checkpoint_to_hub(
        service.create_rest_client(), args.tinker_path, args.repo_id, public=args.public, revision=args.revision,
        commit_message=args.commit_message, create_pr=args.create_pr, allow_patterns=args.allow_patterns,
        ignore_patterns=args.ignore_patterns, model_card=not args.no_model_card)
    data: dict[str, Any] = {"checkpoint_path": pushed.checkpoint_path, "repo_id": pushed.repo_id}
    if pushed.revision is not None:
        data["revision"] = pushed.revision
    data |= {"public": pushed.public, "commit_url": pushed.commit_url, "pr_url": pushed.pr_url,
             "files": list(pushed.files)}
    return data


def _checkpoint_save(args: argparse.Namespace, service: Any) -> Any:
    training = service.create_lora_training_client(args.base_model, rank=args.rank, seed=args.seed).result(120)
    name = args.name or f"checkpoint-{args.base_model.replace('/', '-')}"
    saved = training.save_weights_for_sampler(name).result(120)
    return {"base_model": args.base_model, "model_id": training.model_id, "weights_path": saved.path,
            "saved_at": datetime.now(UTC).isoformat()}


def _run_list(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    runs = _pages(lambda n, o: rest.list_training_runs(limit=n, offset=o, access_scope=args.access_scope,
                                                       project_id=args.project_id).result(_WAIT_S).training_runs,
                  args.limit, 100)
    return Output({"runs": runs}, runs)


def _run_info(args: argparse.Namespace, service: Any) -> Any:
    return service.create_rest_client().get_training_run(args.run_id).result(_WAIT_S)


def _run_sample(args: argparse.Namespace, service: Any) -> Any:
    from tinker_actors.types import ModelInput, SamplingParams

    sampler = service.create_sampling_client(model_path=args.model_path, base_model=args.base_model).result(120)
    prompt_text = args.prompt.strip()
    tokenizer = None
    if prompt_text.startswith("["):
        tokens = [int(t) for t in json.loads(prompt_text)]
    else:
        tokenizer = sampler.get_tokenizer()
        tokens = tokenizer.encode(args.prompt, add_special_tokens=False)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed)
    response = sampler.sample(ModelInput.from_ints(tokens), args.num_samples, params).result(120)
    return [{"tokens": seq.tokens, "text": tokenizer.decode(seq.tokens) if tokenizer else None,
             "stop_reason": seq.stop_reason} for seq in response.sequences]


def _model_list(args: argparse.Namespace, service: Any) -> Any:
    models = service.create_rest_client().get_server_capabilities().result(_WAIT_S).supported_models
    if args.substring is not None:
        needle = args.substring.lower()
        models = [m for m in models if m.model_name is not None and needle in m.model_name.lower()]
        if not models:
            raise InvalidInputError(f"no model name contains {args.substring!r} (tinker-actors model list shows all)")
    return Output({"models": models}, models)


def _session_export_trace(args: argparse.Namespace, service: Any) -> Any:
    _say(args, f"Exporting the trace of session {args.session_id}...")
    url = service.create_rest_client().export_session_trace(args.session_id).result()
    if args.url_only:
        if args.format == "json":
            return {"session_id": args.session_id, "url": url}
        print(url)  # bare, for $(tinker-actors session export-trace ID --url-only)
        return None
    folder = Path(args.output).parent if args.output else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".trace-", delete=False) as scratch:
        partial = Path(scratch.name)  # renamed into place once complete
    try:
        with httpx.stream("GET", url, timeout=60.0, follow_redirects=True) as response:
            response.raise_for_status()
            is_json = response.headers.get("content-type", "").startswith("application/json")
            with partial.open("wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
        default = f"{args.session_id}.trace.json" if is_json else f"{args.session_id}.pftrace"
        target = Path(args.output) if args.output else folder / default
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return {"session_id": args.session_id, "destination": str(target), "file_size_bytes": target.stat().st_size}


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("checkpoint", "list"): _checkpoint_list,
    ("checkpoint", "info"): _checkpoint_info,
    ("checkpoint", "publish"): _checkpoint_publish,
    ("checkpoint", "unpublish"): _checkpoint_unpublish,
    ("checkpoint", "set-ttl"): _checkpoint_set_ttl,
    ("checkpoint", "copy"): _checkpoint_copy,
    ("checkpoint", "delete"): _checkpoint_delete,
    ("checkpoint", "download"): _checkpoint_download,
    ("checkpoint", "push-hf"): _checkpoint_push_hf,
    ("checkpoint", "save"): _checkpoint_save,
    ("run", "list"): _run_list,
    ("run", "info"): _run_info,
    ("run", "sample"): _run_sample,
    ("model", "list"): _model_list,
    ("session", "export-trace"): _session_export_trace,
}
