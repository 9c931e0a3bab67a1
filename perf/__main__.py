"""Benchmarks: ``python -m perf <name> [--quick] --json PATH`` (../shared/BENCHMARKS.md).

    kafka-baseline   raw confluent-kafka produce and consume on the same stack
    pipeline         submitted → persisted and in Redis: throughput, loss, p50/p99
    moderation       held-out quality of the models and µs per comment (no servers)
    drills           faults under load with viewers: lost, duplicated, viewer gaps

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
    p.add_argument("name", choices=["kafka-baseline", "pipeline", "moderation", "drills"])
    p.add_argument("--quick", action="store_true", help="under 60 s: smaller load, same path")
    p.add_argument("--json", type=Path, help="where to write the result (default: stdout)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--comments", type=int)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--rate", type=float, default=1000.0, help="comments/s of the latency phase")
    p.add_argument("--only", action="append", help="drills: run only this one (repeatable)")
    args = p.parse_args(argv)

    settings = Settings()
    from deploy.stack import launcher
    from deploy.stack.errors import StackError

    result: dict[str, Any]
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

        result = run_drills(settings, quick=args.quick, only=args.only)
    elif args.name == "kafka-baseline":
        from perf.bench_kafka import run as run_kafka

        result = run_kafka(settings, quick=args.quick)
    else:
        from perf.bench_pipeline import run as run_pipeline

        result = run_pipeline(
            settings,
            quick=args.quick,
            workers=args.workers,
            comments=args.comments or (5_000 if args.quick else 20_000),
            events=args.events,
            rate=args.rate,
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
