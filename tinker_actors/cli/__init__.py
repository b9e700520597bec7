"""The ``tinker-actors`` command line.

stdout carries only a command's answer (``-f json`` must parse). The library logs through structlog, which,
left unconfigured, prints to stdout; while a command runs its log lines go to stderr instead, also those of
threads that run meanwhile (a telemetry reporter giving up a batch, a stalled download's warning). Only a
printing logger factory (structlog's default) is swapped, and put back afterwards; a host that routes
structlog elsewhere (to the standard library's logging, ...) keeps its configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import structlog

from tinker_actors._version import __version__
from tinker_actors.cli.auth import add_auth_commands, run_auth_command
from tinker_actors.cli.billing import add_billing_commands, run_billing_command
from tinker_actors.cli.local import add_local_commands, run_local_command
from tinker_actors.cli.manage import GROUPS as MANAGE_GROUPS
from tinker_actors.cli.manage import add_manage_commands, run_manage_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinker-actors", description="tinker-actors command line")
    # as the official CLI: `tinker-actors -f json run list` (a command's own -f/--format also works)
    parser.add_argument("-f", "--format", dest="global_format", choices=("table", "json"), default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    version = commands.add_parser("version", help="print the version")
    version.add_argument("-f", "--format", choices=("table", "json"), default="table")
    add_local_commands(commands)
    add_manage_commands(commands)
    add_billing_commands(commands)
    add_auth_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _logs_to_stderr():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.global_format is not None and getattr(args, "format", "table") == "table":
        args.format = args.global_format
    if args.command == "version":
        print(json.dumps({"version": __version__}) if args.format == "json" else f"tinker-actors {__version__}")
        return 0
    if args.command == "local":
        return run_local_command(args)
    if args.command in MANAGE_GROUPS:
        return run_manage_command(args)
    if args.command == "billing":
        return run_billing_command(args)
    if args.command == "auth":
        return run_auth_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands first


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    was_configured = structlog.is_configured()  # also true after structlog.testing.capture_logs
    previous = structlog.get_config()["logger_factory"]
    if not isinstance(previous, structlog.PrintLoggerFactory):  # the host routes lines elsewhere (stdlib, ...)
        yield
        return
    structlog.configure(logger_factory=_stderr_logger)
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(logger_factory=previous)
        else:
            structlog.reset_defaults()  # unconfigured again, as before


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    # sys.stderr as it is when the line is logged (a test's capture, or the real one)
    return structlog.PrintLogger(sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
