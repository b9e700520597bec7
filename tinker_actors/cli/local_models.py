"""``tinker-actors local model ...`` and ``local restart``: lose models of a running local service on purpose.

::

    tinker-actors local model list --url http://127.0.0.1:8000          # status and optimizer step of each
    tinker-actors local model drop --url http://127.0.0.1:8000 MODEL_ID  # forgotten: 404, queued calls fail
    tinker-actors local model corrupt --url ... MODEL_ID                 # broken: every call fails (server)
    tinker-actors local restart --url ...                                # models lost; runs, checkpoints kept

They call the admin endpoints of ``tinker_actors.local.api.model_faults_api`` (docs/guides/recovery.md).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

__all__ = ["add_model_commands", "run_model_command"]

Admin = Callable[[argparse.Namespace, str, str, Any], int]
"""Sends one admin request and prints its answer (the ``local`` commands' helper); the exit status."""


def _target(parser: argparse.ArgumentParser, default_url: str) -> None:
    parser.add_argument("--url", default=os.environ.get("TINKER_BASE_URL", default_url),
                        help="base URL of the service (default $TINKER_BASE_URL or 127.0.0.1:8000)")
    parser.add_argument("--api-key", default=None, help="X-API-Key (default $TINKER_API_KEY)")


def add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], default_url: str) -> None:
    model = sub.add_parser("model", help="list the models of a running service, or lose one on purpose")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    for name, text in (("list", "each model in memory: status and optimizer step"),
                       ("drop", "forget a model (404 for its calls, queued ones fail, its run reports corrupted)"),
                       ("corrupt", "break a model (its calls are accepted and fail with a server error)")):
        parser = model_sub.add_parser(name, help=text)
        _target(parser, default_url)
        if name != "list":
            parser.add_argument("model_id", help="the model's id")
    restart = sub.add_parser("restart", help="restart a running service: models lost, runs and checkpoints kept")
    _target(restart, default_url)


def run_model_command(args: argparse.Namespace, admin: Admin) -> int:
    base = args.url.rstrip("/") + "/local/v1"
    if args.local_command == "restart":
        return admin(args, "POST", f"{base}/restart", None)
    if args.model_command == "list":
        return admin(args, "GET", f"{base}/models", None)
    return admin(args, "POST", f"{base}/models/{quote(args.model_id, safe=':')}/{args.model_command}", None)
