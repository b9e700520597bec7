"""``tinker-actors local ...``: run the local service, and control its faults from a shell.

::

    tinker-actors local serve --port 8000 --data-dir ./tinker-data
    tinker-actors local serve --host 0.0.0.0 --api-key "$KEY"      # reachable from other machines
    tinker-actors local serve --api-key "$KEY_A" --api-key "$KEY_B"  # two users ('default', 'user-2')
    tinker-actors local serve --api-key-file ./keys.txt --token-lifetime 600   # 'user key' per line
    tinker-actors local fault add --url http://127.0.0.1:8000 --endpoint asample --status 503 --times 3
    tinker-actors local fault list --url http://127.0.0.1:8000
    tinker-actors local fault clear --url http://127.0.0.1:8000
    tinker-actors local serve --flag proto_compress_fwdbwd=true --flag fwdbwd_max_chunk_len=64
    tinker-actors local protocol set --url http://127.0.0.1:8000 sample_max_concurrent_requests=128
    tinker-actors local protocol show --url http://127.0.0.1:8000
    tinker-actors local protocol clear --url http://127.0.0.1:8000
    tinker-actors local serve --budget alice=100000 --budget '*=10000'   # token budgets (402 once spent)
    tinker-actors local billing show --url http://127.0.0.1:8000
    tinker-actors local billing top-up --url http://127.0.0.1:8000 alice 50000
    tinker-actors local billing set --url http://127.0.0.1:8000 alice unlimited
    tinker-actors local model list --url http://127.0.0.1:8000      # (and model drop/corrupt MODEL_ID, restart)

The serve command's keys come from ``--api-key`` (repeatable: one user per key) or ``--api-key-file``,
else ``TINKER_LOCAL_API_KEY``; none: any key is accepted. The other commands' key comes from
``--api-key``, else ``TINKER_API_KEY`` (fault, protocol and billing commands); with several users it must
be the admin's (user ``default``, else the first user), other users get HTTP 403. Keys are never printed.
Serving a non-loopback address while any key is accepted is refused unless ``--allow-remote`` is
given (then a loud warning is printed). A flag's value is read as JSON (``true``, ``16``; ``null`` puts
a flag back to its default), else as text.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from tinker_actors.cli.local_models import add_model_commands, run_model_command

__all__ = ["add_local_commands", "run_local_command"]

_DEFAULT_URL = "http://127.0.0.1:8000"


def add_local_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = commands.add_parser("local", help="the embedded Tinker-compatible local service")
    sub = local.add_subparsers(dest="local_command", required=True)

    serve = sub.add_parser("serve", help="run the local service until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; default 8000)")
    serve.add_argument("--data-dir", default=None, help="where runs and checkpoints live (default: temporary)")
    serve.add_argument("--api-key", action="append", default=None, metavar="KEY",
                       help="accept this X-API-Key; repeat for several users (the first is user 'default', the "
                            "admin, then user-2, user-3...; default: $TINKER_LOCAL_API_KEY, else any key)")
    serve.add_argument("--api-key-file", default=None, metavar="PATH",
                       help="accept the keys of this file, one 'user key' per line (mode 600; the admin is "
                            "user 'default', else the first line's user)")
    serve.add_argument("--token-lifetime", type=float, default=None, metavar="SECONDS",
                       help="lifetime of the tokens POST /api/v1/auth/token issues (default 3600)")
    serve.add_argument("--zero-work", action="store_true", help="canned instant results (client benchmarks)")
    serve.add_argument("--long-poll", type=float, default=30.0, help="seconds a pending poll is held")
    serve.add_argument("--session-timeout", type=float, default=300.0,
                       help="seconds without heartbeat before a session expires")
    serve.add_argument("--workers", type=int, default=2, help="model worker threads")
    serve.add_argument("--allow-remote", action="store_true",
                       help="serve a non-loopback --host even though no fixed API key is set (anyone may use it)")
    serve.add_argument("--budget", action="append", default=[], metavar="USER=TOKENS",
                       help="a user's token budget (402 once spent; *=TOKENS: every user not named; "
                            "repeatable; none: unlimited)")
    protocol = serve.add_argument_group("protocol 0.38 (flags newer SDKs read from client/config)")
    protocol.add_argument("--flag", action="append", default=[], metavar="NAME=VALUE",
                          help="announce a flag, e.g. proto_compress_fwdbwd=true (repeatable; none: defaults)")
    protocol.add_argument("--inline-result-bytes", type=int, default=None,
                          help="results this large are announced by their size first (1 MiB; 0: all)")
    limits = serve.add_argument_group("HTTP limits (defaults in docs/local-service.md, 'Limits and timeouts')")
    # Defaults stay None here so that this module does not import the service (tinker_actors.local).
    limits.add_argument("--max-connections", type=int, default=None, help="open connections at most (1024)")
    limits.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (64 MiB)")
    limits.add_argument("--max-header-bytes", type=int, default=None, help="largest request head (64 KiB)")
    limits.add_argument("--header-timeout", type=float, default=None,
                        help="seconds for a request's headers to arrive (10)")
    limits.add_argument("--body-timeout", type=float, default=None,
                        help="seconds for a request's body to arrive after its headers (60)")
    limits.add_argument("--idle-timeout", type=float, default=None,
                        help="seconds an idle keep-alive connection stays open (60)")
    limits.add_argument("--send-timeout", type=float, default=None,
                        help="seconds a client may take to read an answer (60)")

    fault = sub.add_parser("fault", help="add, list or clear fault rules of a running service")
    fault_sub = fault.add_subparsers(dest="fault_command", required=True)
    for name, text in (("add", "add a fault rule"), ("list", "list the fault rules"),
                       ("clear", "remove all fault rules (or one with --id)")):
        parser = fault_sub.add_parser(name, help=text)
        parser.add_argument("--url", default=os.environ.get("TINKER_BASE_URL", _DEFAULT_URL),
                            help="base URL of the service (default $TINKER_BASE_URL or 127.0.0.1:8000)")
        parser.add_argument("--api-key", default=None, help="X-API-Key (default $TINKER_API_KEY)")
        if name == "clear":
            parser.add_argument("--id", type=int, default=None, help="remove only this rule")
        if name == "add":
            _add_rule_arguments(parser)

    flags = sub.add_parser("protocol", help="show or change the protocol flags of a running service")
    flags_sub = flags.add_subparsers(dest="protocol_command", required=True)
    for name, text in (("show", "show the flags set and inline_result_bytes"),
                       ("set", "set flags (NAME=VALUE; VALUE null: back to default), keep the others"),
                       ("clear", "put every flag back to its default")):
        parser = flags_sub.add_parser(name, help=text)
        parser.add_argument("--url", default=os.environ.get("TINKER_BASE_URL", _DEFAULT_URL),
                            help="base URL of the service (default $TINKER_BASE_URL or 127.0.0.1:8000)")
        parser.add_argument("--api-key", default=None, help="X-API-Key (default $TINKER_API_KEY)")
        if name == "set":
            parser.add_argument("flags", nargs="*", metavar="NAME=VALUE", help="flags to set")
            parser.add_argument("--replace", action="store_true", help="drop the flags not given")
            parser.add_argument("--inline-result-bytes", type=int, default=None,
                                help="results this large are announced by their size first")
    _add_billing_commands(sub)
    add_model_commands(sub, _DEFAULT_URL)


def _add_billing_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    billing = sub.add_parser("billing", help="show, set or top up the token budgets of a running service")
    billing_sub = billing.add_subparsers(dest="billing_command", required=True)
    for name, text in (("show", "every user's budget and tokens used (or one user's)"),
                       ("set", "set a user's budget in tokens (or 'unlimited')"),
                       ("top-up", "add tokens to a user's budget"),
                       ("events", "the most recent usage events, oldest first")):
        parser = billing_sub.add_parser(name, help=text)
        parser.add_argument("--url", default=os.environ.get("TINKER_BASE_URL", _DEFAULT_URL),
                            help="base URL of the service (default $TINKER_BASE_URL or 127.0.0.1:8000)")
        parser.add_argument("--api-key", default=None, help="X-API-Key (default $TINKER_API_KEY)")
        if name == "show":
            parser.add_argument("user", nargs="?", default=None, help="only this user")
        elif name == "events":
            parser.add_argument("--user", default=None, help="only this user's events")
            parser.add_argument("--limit", type=int, default=None, help="at most this many (the newest)")
        else:
            parser.add_argument("user", help="the user (default in single-user mode)")
            parser.add_argument("tokens", help="tokens" + (" or 'unlimited'" if name == "set" else ""))


def parse_budgets(items: list[str]) -> dict[str, int | None]:
    """``USER=TOKENS`` items (``*=TOKENS``: every user not named; ``TOKENS`` may be ``unlimited``)."""
    budgets: dict[str, int | None] = {}
    for item in items:
        user, sep, text = item.partition("=")
        if not sep or not user.strip():
            raise SystemExit(f"a budget is USER=TOKENS, got {item!r}")
        budgets[user.strip()] = _tokens(text)
    return budgets


def _tokens(text: str) -> int | None:
    if text.strip() == "unlimited":
        return None
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"a number of tokens (or 'unlimited') was expected, got {text!r}") from None


def _add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", required=True, help="endpoint name (asample), path glob or *")
    parser.add_argument("--action", default="status",
                        choices=["status", "delay", "drop", "drop_after", "never_complete", "malformed_json",
                                 "restart"])
    parser.add_argument("--status", type=int, default=None, help="HTTP status (action status)")
    parser.add_argument("--body", default=None, help="response body: JSON object or text")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="extra header")
    parser.add_argument("--retry-after", type=float, default=None, help="add a Retry-After header")
    parser.add_argument("--queue-state", default=None, help="queue_state of a 408 answer")
    parser.add_argument("--delay", type=float, default=None, help="seconds to wait before acting")
    parser.add_argument("--probability", type=float, default=None, help="fire with this probability")
    parser.add_argument("--every-nth", type=int, default=None, help="fire on every n-th matching request")
    parser.add_argument("--times", type=int, default=None, help="fire at most this many times")
    parser.add_argument("--method", default=None, help="only requests with this HTTP method")
    parser.add_argument("--request-type", default=None, help="retrieve_future only: future type, e.g. Sample")
    parser.add_argument("--seed", type=int, default=None, help="seed of the rule's random draws")


def _rule_from_args(args: argparse.Namespace) -> dict[str, Any]:
    rule: dict[str, Any] = {"endpoint": args.endpoint, "action": args.action}
    optional = {"status": args.status, "retry_after": args.retry_after, "queue_state": args.queue_state,
                "delay_s": args.delay, "probability": args.probability, "every_nth": args.every_nth,
                "times": args.times, "method": args.method, "request_type": args.request_type,
                "seed": args.seed}
    rule.update({key: value for key, value in optional.items() if value is not None})
    if args.body is not None:
        try:
            rule["body"] = json.loads(args.body)
        except ValueError:
            rule["body"] = args.body
    if args.header:
        headers = {}
        for item in args.header:
            name, sep, value = item.partition(":")
            if not sep:
                raise SystemExit(f"--header needs NAME:VALUE, got {item!r}")
            headers[name.strip()] = value.strip()
        rule["headers"] = headers
    return rule


def parse_flags(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` items as flags: VALUE read as JSON (true, 16, null), else as text."""
    flags: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"a flag is NAME=VALUE, got {item!r}")
        try:
            flags[name.strip()] = json.loads(text)
        except ValueError:
            flags[name.strip()] = text
    return flags


def run_local_command(args: argparse.Namespace) -> int:
    if args.local_command == "serve":
        return _serve(args)
    if args.local_command == "protocol":
        return _protocol(args)
    if args.local_command == "billing":
        return _billing(args)
    if args.local_command in ("model", "restart"):
        return run_model_command(args, _admin)
    return _fault(args)


def _serve(args: argparse.Namespace) -> int:
    from tinker_actors.errors import InvalidInputError
    from tinker_actors.local import LocalService
    from tinker_actors.local.config import remote_bind_warning
    from tinker_actors.local.engine.accounts import admin_of

    env_key = os.environ.get("TINKER_LOCAL_API_KEY") if args.api_key is None and args.api_key_file is None else None
    keys: dict[str, Any] = {"api_keys": args.api_key, "api_key_file": args.api_key_file, "api_key": env_key,
                            "token_lifetime": args.token_lifetime}
    given_limits = {"max_connections": args.max_connections, "max_body_bytes": args.max_body_bytes,
                    "max_header_bytes": args.max_header_bytes, "header_timeout_s": args.header_timeout,
                    "body_timeout_s": args.body_timeout, "idle_timeout_s": args.idle_timeout,
                    "send_timeout_s": args.send_timeout}
    protocol: dict[str, Any] = {"protocol_flags": parse_flags(args.flag)}
    if args.inline_result_bytes is not None:
        protocol["inline_result_bytes"] = args.inline_result_bytes
    try:
        service = LocalService(data_dir=args.data_dir, port=args.port, host=args.host,
                               **{name: value for name, value in keys.items() if value is not None},
                               zero_work=args.zero_work, long_poll_s=args.long_poll,
                               session_timeout_s=args.session_timeout, workers=args.workers,
                               allow_remote=args.allow_remote, billing=parse_budgets(args.budget) or None,
                               **protocol,
                               **{name: value for name, value in given_limits.items() if value is not None})
    except InvalidInputError as error:  # an unsafe --host, a non-positive limit, a bad flag, a bad key file
        print(f"error: {error}", file=sys.stderr)
        return 2
    users = list(service.config.api_keys)
    warning = remote_bind_warning(args.host, has_api_key=bool(users))
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    service.start()
    key_note = f"the API keys of {len(users)} user(s): {', '.join(users)}" if users else "any API key"
    if len(users) > 1:  # the only user the admin endpoints answer (the others get 403)
        key_note += f"; admin: {admin_of(users)}"
    print(f"tinker-actors local service on {service.base_url} (data dir {service.data_dir}; accepts {key_note})",
          flush=True)
    try:
        stop.wait()
    finally:
        service.stop()
    return 0


def _fault(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/local/v1/faults"
    if args.fault_command == "add":
        return _admin(args, "POST", url, _rule_from_args(args))
    if args.fault_command == "list":
        return _admin(args, "GET", url)
    if args.id is not None:
        return _admin(args, "DELETE", f"{url}/{args.id}")
    return _admin(args, "DELETE", url)


def _protocol(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/local/v1/protocol"
    if args.protocol_command == "show":
        return _admin(args, "GET", url)
    if args.protocol_command == "clear":
        return _admin(args, "DELETE", url)
    body: dict[str, Any] = {"flags": parse_flags(args.flags)}
    if args.inline_result_bytes is not None:
        body["inline_result_bytes"] = args.inline_result_bytes
    return _admin(args, "PUT" if args.replace else "PATCH", url, body)


def _billing(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/") + "/local/v1/billing"
    command = args.billing_command
    if command == "show":
        return _admin(args, "GET", f"{base}/users/{quote(args.user, safe='')}" if args.user else base)
    if command == "events":
        query = {name: value for name, value in (("user", args.user), ("limit", args.limit)) if value is not None}
        return _admin(args, "GET", f"{base}/events" + (f"?{urlencode(query)}" if query else ""))
    user_url = f"{base}/users/{quote(args.user, safe='')}"
    if command == "set":
        return _admin(args, "PUT", user_url, {"budget": _tokens(args.tokens)})
    tokens = _tokens(args.tokens)
    if tokens is None:
        raise SystemExit("a top-up is a number of tokens")
    return _admin(args, "POST", f"{user_url}/top-up", {"tokens": tokens})


def _admin(args: argparse.Namespace, method: str, url: str, body: Any = None) -> int:
    key = args.api_key or os.environ.get("TINKER_API_KEY") or "tml-local-service"
    headers = {"X-API-Key": key}
    try:
        with httpx.Client(timeout=10.0) as client:
            response = client.request(method, url, json=body, headers=headers)
    except httpx.HTTPError as error:
        print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"error: HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2))
    return 0
