"""pipeline: comments.submitted → persisted in Cassandra and in the event's Redis stream.

The clock starts once the workers own every partition and have published one comment
per event (tables recovered, caches warm): a bench measures the pipeline, not a start.
Phase 1 (throughput): every comment is written at full speed; a follower reading the
events' Redis streams notes when each one arrives. ``comments_per_s`` = comments /
(last arrival - first submit). Then the auditor checks Cassandra and Redis.
Phase 2 (latency): comments at ``rate`` per second; p50/p99 of submit → in Redis. With
``--quick`` and no ``--rate`` the rate is half of what phase 1 sustained, so the phase
measures latency, not a growing backlog, and ends within the contract's minute.
The raw confluent-kafka produce rate is measured in the same run, for the ratio.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from typing import Any

import httpx

from deploy.settings import Settings
from perf.audit import audit
from perf.bench_kafka import ensure_topic, produce_rate
from perf.follower import Follower, wait_publishing
from perf.load import comments as make_comments
from perf.load import make_events, produce
from perf.processes import start_worker, stop_children, wait_assigned, wait_events_known
from perf.procstat import say
from schemas.codec import AvroCodec


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _stage_means(settings: Settings, workers: int) -> dict[str, float]:
    """Mean seconds per batch of each stage, over every worker's histograms."""
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


def run(
    settings: Settings,
    *,
    quick: bool,
    workers: int,
    comments: int,
    events: int,
    rate: float | None,
) -> dict[str, Any]:
    """``rate`` None: 1,000/s, or with ``quick`` half of phase 1's throughput."""
    ensure_topic(settings)
    kafka_rate = produce_rate(settings, 100_000 if quick else 300_000)
    say(f"pipeline: raw Kafka produce {kafka_rate:,.0f} msgs/s; starting {workers} workers")
    notes: list[str] = []

    procs = [start_worker(settings, i) for i in range(workers)]
    try:
        wait_assigned(settings, procs, settings.partitions_comments, timeout_s=180)
        with AvroCodec(settings) as codec:
            codec.register_all()
            prefix = f"perf-{uuid.uuid4().hex[:6]}"
            event_ids = make_events(settings, codec, events, prefix)
            wait_events_known(settings, procs, events)
            warm_s = wait_publishing(settings, codec, event_ids)
            say(f"pipeline: workers publish (first comments took {warm_s:.1f} s)")

            # Phase 1: full speed.
            say(f"pipeline: {comments:,} comments at full speed")
            follower = Follower(settings, event_ids)
            t0 = time.time()
            load = produce(settings, codec, make_comments(event_ids, comments))
            produce_s = time.time() - t0
            ids = {a.comment_id for a in load.acked}
            complete = follower.wait_for(ids, timeout_s=600)
            follower.stop()
            arrivals = [follower.arrivals[i][0] for i in ids if i in follower.arrivals]
            elapsed = (max(arrivals) - t0) if arrivals else float("inf")
            throughput = len(arrivals) / elapsed if arrivals else 0.0
            if not complete:
                notes.append(f"only {len(arrivals)} of {len(ids)} reached Redis in time")
            report = audit(settings, load.acked)

            # Phase 2: fixed rate.
            seconds = 5 if quick else 30
            if rate is None:
                rate = max(10.0, round(throughput / 2)) if quick else 1000.0
            say(f"pipeline: {rate:g} comments/s for {seconds} s (latency)")
            follower = Follower(settings, event_ids)
            paced = produce(
                settings, codec, make_comments(event_ids, int(rate * seconds)), rate=rate
            )
            paced_ids = {a.comment_id for a in paced.acked}
            if not follower.wait_for(paced_ids, timeout_s=120):
                notes.append("the latency phase's comments had not all reached Redis in 120 s")
            follower.stop()
            latencies = [
                (arr - sub / 1000) * 1000
                for cid, (arr, sub) in follower.arrivals.items()
                if cid in paced_ids
            ]
            paced_report = audit(settings, paced.acked)
            stages = _stage_means(settings, workers)
    finally:
        stop_children(procs)

    if produce_s > elapsed * 0.5:
        notes.append("the load generator took more than half the run: it may be the bottleneck")
    return {
        "bench": "pipeline",
        "quick": quick,
        "params": {
            "comments": comments,
            "events": events,
            "workers": workers,
            "target_rate": rate,
            "rate_seconds": seconds,
            "warm_up_s": round(warm_s, 1),
            "partitions": settings.partitions_comments,
            "batch_max": settings.batch_max,
        },
        "metrics": {
            "comments_per_s": round(throughput, 1),
            "lost": report.lost + paced_report.lost,
            "duplicated": report.duplicated + paced_report.duplicated,
            "missing_in_redis": report.missing_in_redis + paced_report.missing_in_redis,
            "order_violations": report.order_violations + paced_report.order_violations,
            "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
            "p99_ms": round(_percentile(latencies, 0.99), 2) if latencies else None,
            "max_ms": round(max(latencies), 2) if latencies else None,
            "kafka_produce_msgs_per_s": round(kafka_rate),
            "ratio_to_kafka": round(throughput / kafka_rate, 4) if kafka_rate else None,
            "load_produce_s": round(produce_s, 2),
            "stage_ms_per_batch": stages,
        },
        "notes": notes,
    }
