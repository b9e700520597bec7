"""``tinker-actors billing usage | checkpoint-storage``: the billing reads (the official 0.38 CLI's ``tinker billing``).

* ``billing usage STARTING_ON ENDING_BEFORE``: hourly usage buckets (RFC 3339 times on whole UTC hours, at
  most 14 days apart). The table has one row per bucket with its ``event_info`` (``type``, ``token_count``,
  ...) flattened into it, and an unavailable cost or rate that applies to the row shown as ``null``;
  ``-f json`` prints the response as the server sent it (``data``, ``sessions``, ``cost_data_through``);
  ``--csv PATH`` writes the flattened rows (``-`` for stdout), ``--sessions-csv PATH`` the session table
  (``session_id``, ``user_metadata`` as JSON) to join on ``session_id``.
* ``billing checkpoint-storage [--project-id ID]``: the active checkpoints per project and owner, with the
  storage rate; ``-f json`` as the server sent it; ``--csv PATH``.

Both take ``--base-url`` and ``--api-key`` (else ``TINKER_BASE_URL`` / ``TINKER_API_KEY``). No session is
created. Errors print ``Error: <message>`` on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import httpx

from tinker_actors.errors import TinkerError
from tinker_actors.types.billing import BillingUsageResponse, CurrentCheckpointStorageUsageResponse

__all__ = ["add_billing_commands", "run_billing_command", "storage_rows", "usage_rows"]

_TOKEN_TYPES = frozenset({"training", "sampling_prefill", "sampling_sample"})
# The cost fields that apply to a row of each kind: shown as "null" in the table when the server has no value.
_APPLICABLE_COSTS = {
    **{kind: ("estimated_cost_usd", "effective_rate_usd_per_million_tokens") for kind in _TOKEN_TYPES},
    "storage": ("estimated_cost_usd", "effective_rate_usd_per_gigabyte_month"),
}


def add_billing_commands(commands: Any) -> None:
    billing = commands.add_parser("billing", help="billing usage and checkpoint storage")
    sub = billing.add_subparsers(dest="action", required=True)
    usage = sub.add_parser("usage", help="hourly billing usage between two UTC hours")
    usage.add_argument("starting_on", help="inclusive start, RFC 3339 on a UTC hour (2026-07-13T00:00:00Z)")
    usage.add_argument("ending_before", help="exclusive end, at most 14 days later")
    usage.add_argument("--csv", dest="csv_path", metavar="PATH", help="write the usage rows as CSV ('-': stdout)")
    usage.add_argument("--sessions-csv", dest="sessions_csv_path", metavar="PATH",
                       help="also write the per-session table (session_id, user_metadata) as CSV ('-': stdout)")
    storage = sub.add_parser("checkpoint-storage", help="current checkpoint storage and its projected cost")
    storage.add_argument("--project-id", default=None, help="only this project")
    storage.add_argument("--csv", dest="csv_path", metavar="PATH", help="write the rows as CSV ('-': stdout)")
    for parser in (usage, storage):
        parser.add_argument("--base-url", default=None, help="service URL (default: TINKER_BASE_URL)")
        parser.add_argument("--api-key", default=None, help="API key (default: TINKER_API_KEY)")
        parser.add_argument("-f", "--format", choices=("table", "json"), default="table")


def run_billing_command(args: argparse.Namespace) -> int:
    from tinker_actors.clients import ServiceClient

    try:
        with ServiceClient(base_url=args.base_url, api_key=args.api_key) as service:
            rest = service.create_rest_client()
            if args.action == "usage":
                _usage(args, rest.get_billing_usage(args.starting_on, args.ending_before).result(120))
            else:
                _storage(args, rest.get_current_checkpoint_storage_usage(args.project_id).result(120))
    except (TinkerError, OSError, httpx.HTTPError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


# ---- output ---------------------------------------------------------------------------------------

def usage_rows(response: BillingUsageResponse) -> list[dict[str, Any]]:
    """The usage buckets as flat rows: each ``event_info`` merged into its row (the names do not collide)."""
    rows = []
    for event in response.data:
        row = event.model_dump(mode="json")
        info = row.pop("event_info", None)
        rows.append({**row, **info} if isinstance(info, dict) else row)
    return rows


def storage_rows(response: CurrentCheckpointStorageUsageResponse) -> list[dict[str, Any]]:
    """The storage rows, each with the account's storage rate first."""
    rate = response.effective_rate_usd_per_gigabyte_month
    return [{"effective_rate_usd_per_gigabyte_month": rate, **item.model_dump(mode="json")} for item in response.data]


def _usage(args: argparse.Namespace, response: BillingUsageResponse) -> None:
    if args.sessions_csv_path is not None:
        sessions = [{"session_id": session_id, "user_metadata": None if session.user_metadata is None
                     else json.dumps(session.user_metadata)} for session_id, session in response.sessions.items()]
        _write_csv(sessions, args.sessions_csv_path)
    if args.csv_path is not None:
        _write_csv(usage_rows(response), args.csv_path)
    if args.csv_path is not None or args.sessions_csv_path is not None:
        return
    if args.format == "json":
        _print_json(response.model_dump(mode="json"))
        return
    rows = [_with_nulls(row) for row in usage_rows(response)]
    _print_table(f"{len(rows)} hourly usage row(s)" if rows else "No billing usage in this window", rows)


def _storage(args: argparse.Namespace, response: CurrentCheckpointStorageUsageResponse) -> None:
    rows = storage_rows(response)
    if args.csv_path is not None:
        _write_csv(rows, args.csv_path)
    elif args.format == "json":
        _print_json(response.model_dump(mode="json"))
    else:
        _print_table("Current checkpoint storage" if rows else "No active checkpoint storage", rows)


def _with_nulls(row: dict[str, Any]) -> dict[str, Any]:
    """A cost or rate that applies to the row but is unknown reads ``null`` (one that does not apply stays blank)."""
    applicable = _APPLICABLE_COSTS.get(str(row.get("type")), ())
    return {key: "null" if key in applicable and value is None else value for key, value in row.items()}


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The first row's keys in order, then any key only a later row has."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    print(title)
    if not rows:
        return
    columns = _columns(rows)
    print("\t".join(columns))
    for row in rows:
        print("\t".join(_cell(row.get(column)) for column in columns))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
    with _opened(path) as out:
        writer = csv.DictWriter(out, fieldnames=_columns(rows), restval="")
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    if path != "-":
        print(f"Wrote {len(rows)} row(s) to {path}", file=sys.stderr)


@contextmanager
def _opened(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", newline="") as out:
        yield out
