"""The `livecomments` command.

    livecomments stack up | down [--purge] | status [--json] | logs NAME [-n N] [-f]
    livecomments smoke          one comment through every real server and back
    livecomments moderate       JSON lines {"text", "event_id"?} in, decisions out
    livecomments gateway        a WebSocket gateway; `livecomments token --user U` mints a token

Every flag is also a setting (``LIVECOMMENTS_*``); see README's configuration table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from deploy.settings import Settings, load
from deploy.stack.errors import StackError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livecomments", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local servers: Kafka, Cassandra, Redis, registry")
    ssub = stack.add_subparsers(dest="action", required=True)
    ssub.add_parser("up", help="start (or find running) and bootstrap the stack")
    down = ssub.add_parser("down", help="stop what `up` started; data is kept")
    down.add_argument("--purge", action="store_true", help="also delete the servers' data")
    st = ssub.add_parser("status", help="state, address, pid, version per component")
    st.add_argument("--json", action="store_true")
    logs = ssub.add_parser("logs", help="print a component's log")
    logs.add_argument("name", choices=["kafka", "cassandra", "redis", "registry"])
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true")

    worker = sub.add_parser("worker", help="run one worker of the comment pipeline")
    worker.add_argument(
        "--index",
        type=int,
        default=0,
        help="worker number: its static member id and HTTP port offset",
    )
    worker.add_argument(
        "-l", "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"]
    )

    gateway = sub.add_parser(
        "gateway", help="run a WebSocket gateway, or N on one port (drains on SIGTERM)"
    )
    gateway.add_argument(
        "--port", type=int, default=None, help="default: LIVECOMMENTS_GATEWAY_PORT"
    )
    gateway.add_argument(
        "--processes",
        type=int,
        default=None,
        help="gateway processes on the one port, under a supervisor "
        "(default: LIVECOMMENTS_GATEWAY_PROCESSES)",
    )
    gateway.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    gateway.add_argument(
        "-l",
        "--loglevel",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
    )
    token = sub.add_parser("token", help="mint a development token (HS256, the settings' secret)")
    token.add_argument("--user", required=True, help="user id (the `sub` claim)")
    token.add_argument("--name", default=None, help="display name (default: the user id)")
    token.add_argument("--role", action="append", default=[], help="a role; repeat for more")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")

    from deploy import admin

    admin.add_parsers(sub)

    sub.add_parser("smoke", help="round-trip one comment through Kafka, Cassandra, Redis")
    demo = sub.add_parser("demo", help="the pipeline with a synthetic crowd and a dashboard")
    demo.add_argument("--rate", type=float, default=200.0, help="comments per second")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    api = sub.add_parser("api", help="run the HTTP API (REST, OpenAPI at /openapi.json, web page)")
    api.add_argument("--port", type=int, default=None, help="default: LIVECOMMENTS_API_PORT")
    api.add_argument(
        "-l",
        "--loglevel",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
    )
    sub.add_parser(
        "moderate",
        help='moderate JSON lines {"text": …, "event_id"?: …} from stdin, one decision per line',
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load()
    except ValueError as e:  # pydantic's ValidationError: a LIVECOMMENTS_* value is wrong
        sys.stderr.write(f"error: settings: {e}\n")
        return 2
    try:
        if args.command == "stack":
            return _stack(settings, args)
        if args.command in ("events", "users"):
            from deploy import admin

            return admin.run(settings, args)
        if args.command == "worker":
            from deploy.worker import run as run_worker

            return run_worker(settings, args.index, args.loglevel)
        if args.command == "gateway":
            from gateways.server import run as run_gateway

            return run_gateway(
                settings, args.port, args.loglevel, processes=args.processes, child=args.child
            )
        if args.command == "token":
            from gateways.auth import mint_token

            roles = tuple(args.role)
            print(mint_token(settings, args.user, name=args.name, roles=roles, ttl_s=args.ttl))
            return 0
        if args.command == "smoke":
            from deploy.smoke import run

            return run(settings)
        if args.command == "demo":
            from deploy.demo import run as run_demo

            return run_demo(settings, rate=args.rate, workers=args.workers, seconds=args.seconds)
        if args.command == "api":
            from gateways.http.server import run as run_api

            return run_api(settings, args.port, args.loglevel)
        if args.command == "moderate":
            from topologies.moderation.cli import run as run_moderate

            return run_moderate(settings)
    except StackError as e:
        sys.stderr.write(f"error: {e.component}: {e.message}\n")
        if e.log_tail:
            sys.stderr.write(e.log_tail.rstrip() + "\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug or an unexpected failure: one line, not a traceback
        sys.stderr.write(f"error: {args.command}: unexpected {type(e).__name__}: {e}\n")
        if settings.debug:
            raise
        sys.stderr.write("(set LIVECOMMENTS_DEBUG=1 for the traceback)\n")
        return 1
    return 2


def _stack(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.stack import launcher

    if args.action == "up":
        statuses = launcher.up(settings)
        _print_status(statuses)
        return 0 if all(s.state == "ready" for s in statuses) else 1
    if args.action == "down":
        launcher.down(settings, purge=args.purge)
        return 0
    if args.action == "status":
        statuses = launcher.status(settings)
        if args.json:
            print(json.dumps([s.as_json() for s in statuses], indent=2))
        else:
            _print_status(statuses)
        return 0 if all(s.state == "ready" for s in statuses) else 3
    if args.action == "logs":
        return _logs(settings, args.name, args.lines, args.follow)
    return 2


def _print_status(statuses: Sequence[object]) -> None:
    from deploy.stack.launcher import ComponentStatus

    total = 0
    for s in statuses:
        assert isinstance(s, ComponentStatus)
        total += s.rss_bytes
        rss = f"{s.rss_bytes / 2**20:.0f} MiB" if s.rss_bytes else ""
        pid = str(s.pid) if s.pid else ""
        print(f"  {s.name:<10} {s.state:<9} {s.address:<44} {pid:>8} {s.version or '':<10} {rss}")
    if total:
        print(f"  total RSS {total / 2**20:.0f} MiB")


def _logs(settings: Settings, name: str, lines: int, follow: bool) -> int:
    from deploy.stack.launcher import log_paths
    from deploy.stack.process import tail_file

    path = next((p for p in log_paths(settings, name) if p.exists()), None)
    if path is None:
        sys.stderr.write(f"error: {name}: no log yet under {settings.state_path / name}\n")
        return 1
    print(f"--- {path}")
    print(tail_file(path, lines))
    if follow:
        with path.open("rb") as f:
            f.seek(0, 2)
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
