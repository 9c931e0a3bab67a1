"""Benchmarks: ``python -m perf <name> [--quick] --json PATH`` (../shared/BENCHMARKS.md).

    kafka-baseline   raw confluent-kafka produce and consume on the same stack
    pipeline         submitted → persisted, in Redis, at a viewer: throughput, CPU µs per
                     comment per process (saturation and steady), loss, p50/p99
    fanout           one gateway, many viewers: deliveries/s, p50/p99, lost, gateway CPU
                     (--source redis: the gateway alone, fed through the Redis streams)
    connections      idle viewers held by one gateway: count, failures, RSS each, heartbeats
    moderation       held-out quality of the models and µs per comment (no servers)
    drills           faults under load with viewers: lost, duplicated, viewer gaps
    all              every benchmark above into --json-dir DIR, with summary.md and plots
    soak             steady load for --minutes N; RSS of every process over time (not in CI)

Each starts what it needs through the project's launcher (or reuses what runs), writes
one JSON object, and exits non-zero only if the run itself failed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from deploy.settings import Settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "name",
        choices=[
            "kafka-baseline",
            "pipeline",
            "fanout",
            "connections",
            "moderation",
            "drills",
            "all",
            "soak",
        ],
    )
    p.add_argument("--quick", action="store_true", help="under 60 s: smaller load, same path")
    p.add_argument("--json", type=Path, help="where to write the result (default: stdout)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--comments", type=int)
    p.add_argument("--events", type=int, default=50)
    p.add_argument(
        "--rate",
        type=float,
        help="comments/s: pipeline's steady phase (200), soak's load (50)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        help="pipeline: record the workers (py-spy) and Kafka, Cassandra (JFR) during the "
        "saturation phase into this directory, with a top-functions summary of each",
    )
    p.add_argument("--only", action="append", help="drills: run only this one (repeatable)")
    p.add_argument(
        "--viewers", type=int, help="fanout, soak, pipeline (60): viewers (connections: target)"
    )
    p.add_argument("--rates", help="fanout: comments/s of each phase, comma-separated")
    p.add_argument(
        "--source",
        choices=["pipeline", "redis"],
        default="pipeline",
        help="fanout: post through the pipeline, or write the events' Redis streams "
        "directly (the gateway alone)",
    )
    p.add_argument("--processes", type=int, help="fanout --source redis: load processes")
    p.add_argument("--minutes", type=float, default=10.0, help="soak: how long")
    p.add_argument("--json-dir", type=Path, help="all: where the JSON files, summary and plots go")
    p.add_argument(
        "--skip", action="append", default=[], help="all: leave out this bench (repeatable)"
    )
    args = p.parse_args(argv)

    settings = Settings()
    from deploy.stack import launcher
    from deploy.stack.errors import StackError

    result: dict[str, Any]
    if args.name == "all":  # each bench in its own process, as a user would run it
        from perf.suite import run as run_suite

        return run_suite(args.json_dir or Path("perf-results"), quick=args.quick, skip=args.skip)
    if args.name == "moderation":  # models only: no stack
        from perf.bench_moderation import run as run_moderation

        result = run_moderation(settings, quick=args.quick)
        return _write(result, args.json)
    try:
        launcher.up(settings, out=io.StringIO())
    except StackError as e:
        sys.stderr.write(f"error: {e.component}: {e.message}\n{e.log_tail}\n")
        return 1
    if args.name == "drills":
        from perf.drills import run as run_drills
        from perf.fence import StackInUse

        try:
            result = run_drills(settings, quick=args.quick, only=args.only)
        except StackInUse as e:
            sys.stderr.write(f"error: {e}\n")
            return 2
        if result.get("aborted"):
            _write(result, args.json)
            return 1
    elif args.name == "fanout":
        from perf.bench_fanout import run as run_fanout

        rates = [float(r) for r in args.rates.split(",")] if args.rates else None
        if args.source == "redis":
            from perf.bench_fanout import run_redis

            result = run_redis(
                settings,
                quick=args.quick,
                viewers=args.viewers,
                rates=rates,
                processes=args.processes,
            )
        else:
            result = run_fanout(
                settings, quick=args.quick, workers=args.workers, viewers=args.viewers, rates=rates
            )
    elif args.name == "connections":
        from perf.bench_connections import run as run_connections

        result = run_connections(settings, quick=args.quick, target=args.viewers)
    elif args.name == "soak":
        from perf.soak import run as run_soak

        result = run_soak(
            settings, minutes=args.minutes, viewers=args.viewers or 1000, rate=args.rate or 50.0
        )
    elif args.name == "kafka-baseline":
        from perf.bench_kafka import run as run_kafka

        result = run_kafka(settings, quick=args.quick)
    else:
        from perf.bench_pipeline import run as run_pipeline

        result = run_pipeline(
            settings,
            quick=args.quick,
            workers=args.workers,
            comments=args.comments or (2_000 if args.quick else 10_000),
            events=args.events,
            rate=args.rate,
            viewers=args.viewers,
            profile=args.profile,
        )
    return _write(result, args.json)


def _write(result: dict[str, Any], path: Path | None) -> int:
    text = json.dumps(result, indent=2)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
