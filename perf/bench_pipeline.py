"""pipeline: comments.submitted → Cassandra, the event's Redis stream and a viewer; and
what each comment costs in CPU, per process.

The bench starts N workers and a real WebSocket gateway (deploy/processes.py), makes fresh
events and connects viewers (perf/bench_fanout.py's crowd: a process of its own, so the
viewers' CPU is not the load generator's) to every event before the first comment. Then,
in order:

1. **idle** (5 s; quick 3 s): nothing is written; each process's CPU is the stack's
   background (Cassandra's and Kafka's housekeeping, the workers' timers).
2. **warm-up**: one comment per event until each is in its Redis stream (the workers'
   tables recovered, caches warm), then a burst at full speed (20,000; quick 2,000) so
   the JVMs of Kafka and Cassandra have compiled their hot paths (their JIT compiler
   threads took more CPU than the work itself in a phase right after a restart); no
   figure.
3. **saturation**: 10,000 comments (quick 2,000; ``--comments``) written at full speed.
   ``comments_per_s`` = comments / (last arrival in Redis - first submit), and the CPU
   each process used from the first submit to the last arrival.
4. **steady**: ``--rate`` comments/s (default 200) for 30 s (quick 10 s). The CPU per
   comment at a rate a demo sees, and ``p50_ms``/``p99_ms`` from ``submitted_at`` to
   received by a viewer through the gateway (``to_redis_*``: the pipeline's share).

Per phase, CPU is read from /proc (utime + stime of each process and its children) at
the phase's start and end: each worker, the gateway, Kafka, Cassandra, Redis, the
registry, the load generator (this process: producer and the Redis follower) and the
viewers. ``cpu_us_per_comment`` is the pipeline's cost, workers plus the stack's servers;
the gateway is listed apart (``gateway_cpu_us_per_comment``), the load generator and the
viewers are excluded (perf/cost.py). The auditor (perf/audit.py) runs after the phases,
outside every CPU window. ``--profile DIR`` records the workers (py-spy) and Kafka and
Cassandra (JFR) during the saturation phase into ``DIR/saturation/`` and during the
steady phase into ``DIR/steady/`` (perf/profile.py): the per-batch overheads that
dominate at a low rate only show in the second.

The raw confluent-kafka produce rate is measured in the same run, for the ratio.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from deploy.processes import (
    Child,
    start_gateway,
    start_worker,
    stop_children,
    wait_assigned,
    wait_events_known,
    wait_healthy,
)
from deploy.settings import Settings
from perf.audit import audit
from perf.bench_fanout import Crowd, published
from perf.bench_kafka import ensure_topic, produce_rate
from perf.cost import LOAD, SATURATED_SHARE, PhaseCost, busy_share, deltas, percentile
from perf.follower import Follower, wait_publishing
from perf.load import comments as make_comments
from perf.load import make_events, produce
from perf.procstat import cpu_readings, machine_busy, raise_nofile, say, stack_pids
from perf.profile import Profiler
from schemas.codec import AvroCodec
from schemas.records import CommentSubmitted

VIEWERS = 60
STEADY_RATE = 200.0
# The Redis follower's rest after each read (perf/follower.py): arrival times are this
# much coarser (against saturation phases of seconds), the load process's CPU much lower.
FOLLOWER_PAUSE_S = 0.005
# Seconds after the saturation window whose CPU is reported apart (``tail``).
TAIL_S = 2.0


def _stage_means(settings: Settings, workers: int) -> dict[str, float]:
    """Mean milliseconds per batch of each stage, over every worker's histograms."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    pattern = re.compile(r'^pipeline_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$')
    for i in range(workers):
        try:
            text = httpx.get(
                f"http://{settings.host}:{settings.worker_port + i}/metrics", timeout=2
            ).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            m = pattern.match(line)
            if m:
                target = sums if m.group(1) == "sum" else counts
                target[m.group(2)] = target.get(m.group(2), 0.0) + float(m.group(3))
    return {k: round(sums[k] / counts[k] * 1000, 3) for k in sums if counts.get(k)}


def _run_comments(events: list[str], total: int) -> Iterator[CommentSubmitted]:
    """perf/load.py's comments by users of this run only: a user of an earlier run who
    posts the same phrase again would be held as a repeated message, not published."""
    run = uuid.uuid4().hex[:6]
    for c in make_comments(events, total, users=20_000):
        yield CommentSubmitted(**{**c.to_avro(), "user_id": f"{run}-{c.user_id}"})


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def run(
    settings: Settings,
    *,
    quick: bool,
    workers: int,
    comments: int,
    events: int,
    rate: float | None,
    viewers: int | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    rate = rate or STEADY_RATE
    viewers = viewers or VIEWERS
    idle_s = 3.0 if quick else 5.0
    steady_s = 10.0 if quick else 30.0
    raise_nofile()
    ensure_topic(settings)
    kafka_rate = produce_rate(settings, 100_000 if quick else 300_000)
    say(f"pipeline: raw Kafka produce {kafka_rate:,.0f} msgs/s; starting {workers} workers")
    notes: list[str] = []
    children: list[Child] = []
    crowd: Crowd | None = None
    profiled: dict[str, dict[str, dict[str, object]]] = {}

    def profiler_for(phase: str, pids: dict[str, int]) -> Profiler | None:
        if profile is None:
            return None
        p = Profiler(
            profile / phase,
            python={k: v for k, v in pids.items() if k.startswith("worker-")},
            jvms={k: v for k, v in pids.items() if k in ("kafka", "cassandra")},
        )
        p.start()
        time.sleep(1.0)  # py-spy attaches before the first comment
        return p

    def profiler_done(phase: str, p: Profiler | None) -> None:
        if p is None:
            return
        say(f"pipeline: writing the {phase} profiles")
        profiled[phase] = p.stop()
        for name, prof in profiled[phase].items():
            say(f"profile {phase} {name}: {prof.get('summary', prof.get('error'))}")
            top = prof.get("top_self")
            for function, share in top[:8] if isinstance(top, list) else []:
                say(f"    {share:6.1%}  {function}")

    with AvroCodec(settings) as codec:
        codec.register_all()
        event_ids = make_events(settings, codec, events, f"perf-{uuid.uuid4().hex[:6]}")
        try:
            procs = [start_worker(settings, i) for i in range(workers)]
            gateway = start_gateway(settings, 0)
            children = [gateway, *procs]
            wait_healthy(settings, [gateway])
            # Every event watched (viewer i → event i mod events), all joined before the
            # first comment, so each must receive every comment of its event.
            assignment = [[event_ids[i % len(event_ids)]] for i in range(viewers)]
            crowd = Crowd.start([gateway.url(settings)], assignment, processes=1, sample=1.0)
            wait_assigned(settings, procs, settings.partitions_comments, timeout_s=180)
            wait_events_known(settings, procs, events)
            crowd.wait_ready()
            pids = (
                {f"worker-{w.index}": w.pid for w in procs}
                | {"gateway": gateway.pid, LOAD: os.getpid()}
                | crowd.pids
                | stack_pids(settings)
            )
            say(f"pipeline: {viewers} viewers joined; idle for {idle_s:g} s")

            # 1. idle
            before, m0, t = cpu_readings(pids), machine_busy(), time.monotonic()
            time.sleep(idle_s)
            idle = PhaseCost(
                0,
                time.monotonic() - t,
                deltas(before, cpu_readings(pids)),
                busy_share(m0, machine_busy()),
            )

            # 2. warm-up
            t = time.monotonic()
            wait_publishing(settings, codec, event_ids)
            first_s = time.monotonic() - t
            follower = Follower(settings, event_ids, FOLLOWER_PAUSE_S)
            warm = produce(settings, codec, _run_comments(event_ids, 2000 if quick else 20000))
            follower.wait_for({a.comment_id for a in warm.acked}, timeout_s=300)
            follower.stop()
            warm_s = time.monotonic() - t
            say(f"pipeline: warm (first comments {first_s:.1f} s, warm-up {warm_s:.1f} s)")

            # 3. saturation
            say(f"pipeline: saturation, {comments:,} comments at full speed")
            profiler = profiler_for("saturation", pids)
            follower = Follower(settings, event_ids, FOLLOWER_PAUSE_S)
            before, m0 = cpu_readings(pids), machine_busy()
            t0 = time.time()
            load = produce(settings, codec, _run_comments(event_ids, comments))
            produce_s = load.seconds
            ids = {a.comment_id for a in load.acked}
            complete = follower.wait_for(ids, timeout_s=600)
            saturation = PhaseCost(
                len(ids),
                time.time() - t0,
                deltas(before, cpu_readings(pids)),
                busy_share(m0, machine_busy()),
            )
            follower.stop()
            # Work the burst left behind (Cassandra's and Kafka's flushes, the workers'
            # commits) falls after the window: the next seconds, against the idle ones.
            before, t = cpu_readings(pids), time.monotonic()
            time.sleep(TAIL_S)
            tail = PhaseCost(0, time.monotonic() - t, deltas(before, cpu_readings(pids)))
            profiler_done("saturation", profiler)
            arrivals = [follower.arrivals[i][0] for i in ids if i in follower.arrivals]
            elapsed = (max(arrivals) - t0) if arrivals else float("inf")
            throughput = len(arrivals) / elapsed if arrivals else 0.0
            if not complete:
                notes.append(f"saturation: only {len(arrivals)} of {len(ids)} reached Redis")

            # 4. steady
            say(f"pipeline: steady, {rate:g} comments/s for {steady_s:g} s")
            profiler = profiler_for("steady", pids)
            follower = Follower(settings, event_ids, FOLLOWER_PAUSE_S)
            before, m0 = cpu_readings(pids), machine_busy()
            s0 = time.time()
            paced = produce(
                settings, codec, _run_comments(event_ids, int(rate * steady_s)), rate=rate
            )
            s1 = time.time()
            paced_ids = {a.comment_id for a in paced.acked}
            if not follower.wait_for(paced_ids, timeout_s=120):
                notes.append("steady: not every comment had reached Redis 120 s after the last")
            steady = PhaseCost(
                len(paced_ids),
                time.time() - s0,
                deltas(before, cpu_readings(pids)),
                busy_share(m0, machine_busy()),
            )
            follower.stop()
            profiler_done("steady", profiler)
            to_redis = [
                (arr - sub / 1000) * 1000
                for cid, (arr, sub) in follower.arrivals.items()
                if cid in paced_ids
            ]

            # Outside every CPU window: the auditor, the stage histograms, the viewers.
            say("pipeline: auditing")
            report = audit(settings, load.acked + warm.acked)
            paced_report = audit(settings, paced.acked)
            stages = _stage_means(settings, workers)
            tallies = crowd.results(published(settings, event_ids))
        finally:
            if crowd is not None:
                crowd.stop()
            stop_children(children)

    seen = [s for t in tallies for s in t["samples"]]
    to_viewer = [lat for sub, lat in seen if s0 * 1000 <= sub <= s1 * 1000]
    v = {
        k: sum(t[k] for t in tallies)
        for k in ("viewers", "received", "lost", "behind", "chain_breaks", "duplicates")
    }
    errors = [e for t in tallies for e in t["errors"]]
    if errors:
        notes.append(f"viewer errors (first few): {errors[:5]}")

    # Is the load generator the limit? At saturation it only has to write faster than the
    # pipeline drains; at the steady rate it must keep the pace and stay under a core.
    load_busy = {
        "saturation": produce_s > elapsed * 0.5
        or saturation.cores_by_process()[LOAD] > SATURATED_SHARE,
        "steady": paced.seconds > steady_s * 1.05
        or steady.cores_by_process()[LOAD] > SATURATED_SHARE,
    }
    for phase, busy in load_busy.items():
        if busy:
            notes.append(f"{phase}: the load generator may be the bottleneck (see load_cpu_share)")
    for name, cost in (("saturation", saturation), ("steady", steady)):
        hot = ", ".join(p for p in cost.saturated() if p != LOAD)
        if hot:
            notes.append(f"{name}: {hot} used more than {SATURATED_SHARE:.0%} of a core")
    machine_note = "all processes share the machine's cores: figures are indicative, not isolated"
    notes.append(machine_note)
    if profile is not None:
        notes.append("profiled run: py-spy and JFR take CPU of their own beside the processes")

    sat = saturation.as_dict()
    std = steady.as_dict()
    steady_rate = len(paced_ids) / paced.seconds if paced.seconds > 0 else 0.0
    p50, p99 = percentile(to_viewer, 50), percentile(to_viewer, 99)
    return {
        "bench": "pipeline",
        "quick": quick,
        "params": {
            "comments": comments,
            "events": events,
            "workers": workers,
            "viewers": viewers,
            "target_rate": rate,
            "rate_seconds": steady_s,
            "idle_seconds": idle_s,
            "warm_up_s": round(warm_s, 1),
            "partitions": settings.partitions_comments,
            "batch_max": settings.batch_max,
            "latency": "submitted_at → received by a viewer through the gateway",
        },
        "metrics": {
            "comments_per_s": round(throughput, 1),
            "cpu_us_per_comment": sat["cpu_us_per_comment"],
            "cpu_us_per_comment_by_process": sat["cpu_us_per_comment_by_process"],
            "gateway_cpu_us_per_comment": sat["gateway_cpu_us_per_comment"],
            "lost": report.lost + paced_report.lost,
            "duplicated": report.duplicated + paced_report.duplicated,
            "missing_in_redis": report.missing_in_redis + paced_report.missing_in_redis,
            "order_violations": report.order_violations + paced_report.order_violations,
            # The steady phase's, at the top level as before (the suite's summary).
            "p50_ms": _ms(p50),
            "p99_ms": _ms(p99),
            "idle": {
                "seconds": round(idle.seconds, 2),
                "cpu_cores_by_process": idle.cores_by_process(),
                "pipeline_cores": round(idle.pipeline_cpu_s / idle.seconds, 3),
                "machine_busy_share": idle.machine_busy,
            },
            "saturation": sat
            | {
                "comments_per_s": round(throughput, 1),
                "load_produce_s": round(produce_s, 2),
                "load_cpu_share": saturation.cores_by_process()[LOAD],
                "load_saturated": load_busy["saturation"],
                "tail": {
                    "seconds": round(tail.seconds, 2),
                    "cpu_cores_by_process": tail.cores_by_process(),
                    "pipeline_cores": round(tail.pipeline_cpu_s / tail.seconds, 3),
                    "pipeline_cpu_us_per_comment": round(
                        tail.pipeline_cpu_s / max(len(ids), 1) * 1e6, 1
                    ),
                },
            },
            "steady": std
            | {
                "rate": round(steady_rate, 1),
                "target_rate": rate,
                "p50_ms": _ms(p50),
                "p99_ms": _ms(p99),
                "max_ms": _ms(max(to_viewer)) if to_viewer else None,
                "latency_samples": len(to_viewer),
                "to_redis_p50_ms": _ms(percentile(to_redis, 50)),
                "to_redis_p99_ms": _ms(percentile(to_redis, 99)),
                "load_cpu_share": steady.cores_by_process()[LOAD],
                "load_saturated": load_busy["steady"],
            },
            "load_saturated": any(load_busy.values()),
            "viewers": v,
            "kafka_produce_msgs_per_s": round(kafka_rate),
            "ratio_to_kafka": round(throughput / kafka_rate, 4) if kafka_rate else None,
            "load_produce_s": round(produce_s, 2),
            "stage_ms_per_batch": stages,
        }
        | ({"profile": profiled} if profile is not None else {}),
        "notes": notes,
    }
