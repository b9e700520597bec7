"""``tinker-actors checkpoint ...`` and ``tinker-actors run ...`` (FEATURES C1).

The official CLI's commands (checkpoint list/info/publish/unpublish/delete/download, run list/info, version)
plus tinkex's (checkpoint set-ttl, checkpoint save, run sample). Every command takes ``--base-url`` and
``--api-key`` (else ``TINKER_BASE_URL`` / ``TINKER_API_KEY``) and ``-f/--format table|json``. Errors print
``Error: <message>`` on stderr and exit 1. A command on several items (``checkpoint delete a b``) goes on
after an item fails, prints its results, one ``Error: <item>: <message>`` line per failed item, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tinker_actors.errors import InvalidInputError, TinkerError

__all__ = ["add_manage_commands", "run_manage_command"]

Handler = Callable[[argparse.Namespace, Any], Any]


@dataclass(frozen=True)
class PartialResult:
    """What a command on several items returns when some of them failed: printed, then exit status 1."""

    value: Any
    failures: tuple[tuple[str, str], ...]  # (item, error message)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", default=None, help="service URL (default: TINKER_BASE_URL)")
    parser.add_argument("--api-key", default=None, help="API key (default: TINKER_API_KEY)")
    parser.add_argument("-f", "--format", choices=("table", "json"), default="table")


def add_manage_commands(commands: Any) -> None:
    checkpoint = commands.add_parser("checkpoint", help="list, inspect, publish, expire, delete, download checkpoints")
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
    p = csub.add_parser("delete", help="delete checkpoints")
    p.add_argument("tinker_paths", nargs="+")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p = csub.add_parser("download", help="download and extract a checkpoint archive")
    p.add_argument("tinker_path")
    p.add_argument("-o", "--output", default=".")
    p.add_argument("--force", action="store_true")
    p = csub.add_parser("save", help="create a LoRA model and save sampler weights for it")
    p.add_argument("--base-model", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--seed", type=int, default=None)
    run = commands.add_parser("run", help="list and inspect training runs; sample from a model")
    rsub = run.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("list", help="your training runs")
    p.add_argument("--limit", type=int, default=20, help="0 = all")
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
    for parser in (*csub.choices.values(), *rsub.choices.values()):
        _common(parser)


def run_manage_command(args: argparse.Namespace) -> int:
    handler = _HANDLERS[(args.command, args.action)]
    from tinker_actors.clients import ServiceClient

    try:
        with ServiceClient(base_url=args.base_url, api_key=args.api_key) as service:
            result = handler(args, service)
    except (TinkerError, OSError, httpx.HTTPError) as error:  # httpx: the archive download's own request
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    failures: tuple[tuple[str, str], ...] = ()
    if isinstance(result, PartialResult):
        result, failures = result.value, result.failures
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
    data = _jsonable(result)
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str))
        return
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


def _checkpoint_list(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    if args.run_id:
        checkpoints = rest.list_checkpoints(args.run_id).result(60).checkpoints
        return checkpoints[:args.limit] if args.limit else checkpoints
    return _pages(lambda n, o: rest.list_user_checkpoints(limit=n, offset=o).result(60).checkpoints, args.limit, 1000)


def _find_checkpoint(rest: Any, tinker_path: str) -> Any:
    from tinker_actors.types import ParsedCheckpointTinkerPath

    parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    for checkpoint in rest.list_checkpoints(parsed.training_run_id).result(60).checkpoints:
        if checkpoint.tinker_path == tinker_path:
            return checkpoint
    raise InvalidInputError(f"no checkpoint {tinker_path}")


def _checkpoint_info(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    checkpoint = _find_checkpoint(rest, args.tinker_path)
    info = rest.get_weights_info_by_tinker_path(args.tinker_path).result(60)
    return _jsonable(checkpoint) | {"base_model": info.base_model, "lora_rank": info.lora_rank}


def _checkpoint_publish(args: argparse.Namespace, service: Any) -> Any:
    service.create_rest_client().publish_checkpoint_from_tinker_path(args.tinker_path).result(60)
    return {"published": args.tinker_path}


def _checkpoint_unpublish(args: argparse.Namespace, service: Any) -> Any:
    service.create_rest_client().unpublish_checkpoint_from_tinker_path(args.tinker_path).result(60)
    return {"unpublished": args.tinker_path}


def _checkpoint_set_ttl(args: argparse.Namespace, service: Any) -> Any:
    ttl = None if args.remove else args.ttl
    service.create_rest_client().set_checkpoint_ttl_from_tinker_path(args.tinker_path, ttl).result(60)
    return {"tinker_path": args.tinker_path, "ttl_seconds": ttl}


def _checkpoint_delete(args: argparse.Namespace, service: Any) -> Any:
    if not args.yes:
        answer = input(f"Delete {len(args.tinker_paths)} checkpoint(s)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return {"deleted": []}
    rest = service.create_rest_client()
    results = []
    failures: list[tuple[str, str]] = []
    for path in args.tinker_paths:  # one failure must not keep the others from being deleted
        try:
            rest.delete_checkpoint_from_tinker_path(path).result(60)
            results.append({"tinker_path": path, "deleted": True})
        except TinkerError as error:
            results.append({"tinker_path": path, "deleted": False, "error": str(error)})
            failures.append((path, str(error)))
    return PartialResult(results, tuple(failures)) if failures else results


def _checkpoint_download(args: argparse.Namespace, service: Any) -> Any:
    from tinker_actors.types import ParsedCheckpointTinkerPath

    parsed = ParsedCheckpointTinkerPath.from_tinker_path(args.tinker_path)
    target = Path(args.output) / f"{parsed.training_run_id}_{parsed.kind}_{parsed.name}".replace(":", "_")
    if target.exists() and not args.force:
        raise InvalidInputError(f"{target} exists (use --force)")
    url = service.create_rest_client().get_checkpoint_archive_url_from_tinker_path(args.tinker_path).result(60).url
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "archive.tar"
        with httpx.stream("GET", url, timeout=60.0, follow_redirects=True) as response, archive.open("wb") as out:
            response.raise_for_status()
            for block in response.iter_bytes():
                out.write(block)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths and '..'
        size = archive.stat().st_size
    return {"checkpoint_path": args.tinker_path, "destination": str(target), "file_size_bytes": size}


def _checkpoint_save(args: argparse.Namespace, service: Any) -> Any:
    training = service.create_lora_training_client(args.base_model, rank=args.rank, seed=args.seed)
    name = args.name or f"checkpoint-{args.base_model.replace('/', '-')}"
    saved = training.save_weights_for_sampler(name).result(120)
    return {"base_model": args.base_model, "model_id": training.model_id, "weights_path": saved.path,
            "saved_at": datetime.now(UTC).isoformat()}


def _run_list(args: argparse.Namespace, service: Any) -> Any:
    rest = service.create_rest_client()
    return _pages(lambda n, o: rest.list_training_runs(limit=n, offset=o).result(60).training_runs, args.limit, 100)


def _run_info(args: argparse.Namespace, service: Any) -> Any:
    return service.create_rest_client().get_training_run(args.run_id).result(60)


def _run_sample(args: argparse.Namespace, service: Any) -> Any:
    from tinker_actors.types import ModelInput, SamplingParams

    sampler = service.create_sampling_client(model_path=args.model_path, base_model=args.base_model)
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


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("checkpoint", "list"): _checkpoint_list,
    ("checkpoint", "info"): _checkpoint_info,
    ("checkpoint", "publish"): _checkpoint_publish,
    ("checkpoint", "unpublish"): _checkpoint_unpublish,
    ("checkpoint", "set-ttl"): _checkpoint_set_ttl,
    ("checkpoint", "delete"): _checkpoint_delete,
    ("checkpoint", "download"): _checkpoint_download,
    ("checkpoint", "save"): _checkpoint_save,
    ("run", "list"): _run_list,
    ("run", "info"): _run_info,
    ("run", "sample"): _run_sample,
}

