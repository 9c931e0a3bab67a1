"""``python -m perf soak --minutes N [--viewers V] [--rate R] --json PATH`` (not in CI).

Steady load for N minutes on the fan-out rig (perf/bench_fanout.py: workers, one
gateway, viewers in a few processes, one hot event), while the RSS of every process is
sampled every 10 s: the workers, the gateway, the viewer processes and the stack's
servers (Kafka, Cassandra, Redis, registry; pids from the launcher). Per process it
reports the growth in MiB/hour (least-squares line over the samples after the first
fifth of the run, which is warm-up: JVM heaps, caches), the first and last RSS, and
all the samples. At the end the viewers are checked as in ``fanout``: ``lost`` comments.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from deploy.settings import Settings
from deploy.viewer import percentile
from perf.audit import wait_until_persisted
from perf.bench_fanout import LATENCY_SAMPLES, FanoutRig, published, weighted_comments
from perf.load import LoadResult, produce
from perf.procstat import raise_nofile, rss_bytes, say
from schemas.codec import AvroCodec

INTERVAL_S = 10.0
MIB = 2**20


def growth_mib_per_hour(samples: list[tuple[float, int]]) -> float | None:
    """Slope of RSS over time (least squares), skipping the first fifth (warm-up)."""
    if len(samples) < 3:
        return None
    kept = samples[len(samples) // 5 :]
    if len(kept) < 3:
        kept = samples
    xs = [t / 3600 for t, _ in kept]
    ys = [rss / MIB for _, rss in kept]
    if max(xs) == min(xs):
        return None
    return round(statistics.linear_regression(xs, ys).slope, 2)


def run(settings: Settings, *, minutes: float, viewers: int, rate: float) -> dict[str, Any]:
    raise_nofile()
    seconds = minutes * 60
    expected = rate * seconds * viewers * 0.4
    rig = FanoutRig(settings)
    samples: dict[str, list[tuple[float, int]]] = {}
    notes: list[str] = []
    with AvroCodec(settings) as codec:
        codec.register_all()
        try:
            say(f"soak: {viewers} viewers, {rate:g} comments/s for {minutes:g} min")
            rig.start(
                codec,
                workers=2,
                events=4,
                viewers=viewers,
                processes=max(2, min(4, viewers // 1000)),
                sample=min(1.0, LATENCY_SAMPLES / max(expected, 1.0)),
            )
            pids = rig.pids()
            result: list[LoadResult] = []
            items = weighted_comments(rig.events, int(rate * seconds))
            load = threading.Thread(
                target=lambda: result.append(produce(settings, codec, items, rate=rate)),
                daemon=True,
            )
            t0 = time.monotonic()
            load.start()
            next_sample = t0
            while load.is_alive():
                now = time.monotonic()
                if now >= next_sample:
                    for name, pid in pids.items():
                        samples.setdefault(name, []).append((round(now - t0, 1), rss_bytes(pid)))
                    next_sample += INTERVAL_S
                    if len(samples.get("gateway", [])) % 6 == 1:
                        g = samples["gateway"][-1][1] >> 20
                        say(f"soak: {now - t0:5.0f} s of {seconds:.0f}; gateway RSS {g} MiB")
                load.join(min(1.0, max(0.0, next_sample - time.monotonic())))
            if not result:
                raise RuntimeError("the load generator did not finish")
            acked = result[0].acked
            report = wait_until_persisted(settings, acked, 300.0)
            heads = published(settings, rig.events)
            assert rig.crowd is not None
            tallies = rig.crowd.results(heads)
        finally:
            rig.stop()

    latencies = [lat for t in tallies for _, lat in t["samples"]]
    growth = {
        name: {
            "growth_mib_per_hour": growth_mib_per_hour(s),
            "first_mib": round(s[0][1] / MIB, 1),
            "last_mib": round(s[-1][1] / MIB, 1),
            "max_mib": round(max(r for _, r in s) / MIB, 1),
        }
        for name, s in samples.items()
        if s
    }
    growing = {n: g["growth_mib_per_hour"] for n, g in growth.items()}
    worst = max(growing, key=lambda n: growing[n] or 0.0) if growing else None
    if worst:
        notes.append(f"largest growth: {worst} at {growing[worst]} MiB/hour")
    notes.append(
        "growth is a least-squares slope over the samples after the first fifth of the run; "
        "JVM servers (Kafka, Cassandra, registry) grow until their heap settles, so only a "
        "run of an hour or more tells a leak from warm-up"
    )
    return {
        "bench": "soak",
        "quick": False,
        "params": {
            "minutes": minutes,
            "viewers": viewers,
            "rate": rate,
            "interval_s": INTERVAL_S,
            "workers": 2,
            "gateways": 1,
        },
        "metrics": {
            "acked": len(acked),
            "lost": report.lost,
            "duplicated": report.duplicated,
            "viewer_lost": sum(int(t["lost"]) for t in tallies),
            "viewer_chain_breaks": sum(int(t["chain_breaks"]) for t in tallies),
            "declared_gaps": sum(int(t["declared_gaps"]) for t in tallies),
            "reconnects": sum(int(t["reconnects"]) for t in tallies),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "rss": growth,
            "samples": {n: s for n, s in samples.items()},
        },
        "notes": notes,
    }
