"""fanout: comments delivered by one gateway to many viewers.

``--source pipeline`` (the default) posts them through the pipeline (below);
``--source redis`` measures the gateway alone (:func:`run_redis`, at the end).

One gateway process, real workers, fresh events (one hot: half the comments and 40 % of
the viewers). Viewers (deploy/viewer.py, run in a few processes so the load side has more
than one interpreter) join before the first comment, so each must receive every comment
its events publish. Comments are written to ``comments.submitted`` at a steady rate
(``perf/load.py``, acked by Kafka as a gateway's post is), in phases of rising rate.

Per phase: ``comments_per_s`` (acked), ``deliveries_per_s`` (comment x viewer, counted by
the viewers), ``p50_ms``/``p99_ms`` (``submitted_at`` → received by a viewer, same
clock), and the CPU each process used. Overall: ``lost`` (comments a viewer should have
had and never got: the events' comments in Cassandra minus what each viewer received),
``gateway_cpu_s_per_million_deliveries`` (from /proc of the gateway pid). The headline
metrics are those of the last (fastest) phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from cassandra.cluster import Cluster

from deploy.processes import (
    GatewayChild,
    Worker,
    start_gateway,
    start_worker,
    stop_children,
    wait_assigned,
    wait_events_known,
    wait_healthy,
)
from deploy.settings import Settings
from deploy.viewer import ViewerClient, percentile, stop_all, watch
from gateways.auth import mint_token
from perf.audit import AuditReport, cassandra_comments, wait_until_persisted
from perf.follower import Follower, wait_publishing
from perf.load import PHRASES, Acked, comments, make_events, produce
from perf.procstat import CpuMeter, raise_nofile, say, stack_pids
from schemas.codec import AvroCodec
from schemas.records import CommentSubmitted

# Our workers' indices (their group instance ids, HTTP ports and state dirs) start here,
# clear of the 0, 1... that tests and the demo use on the same stack.
WORKER_INDEX = 10
# A viewer process above this share of a core is (close to) the bottleneck itself.
SATURATED = 0.85
LATENCY_SAMPLES = 200_000


class TallyViewer(ViewerClient):
    """A :class:`ViewerClient` that keeps counts, not sets: thousands fit in one process.

    Per event it keeps the last position and the number of comments received, checks
    the ``previous_position`` chain, and samples ``(submitted_at, latency)`` pairs.
    """

    def __init__(self, urls: Sequence[str], token: str, events: Sequence[str], sample: float):
        super().__init__(urls, token, events, sample=sample)
        self.counts: Counter[str] = Counter()
        self.samples: list[tuple[float, float]] = []
        self.per_second: Counter[int] = Counter()
        self._rng_state = hash(token) & 0xFFFF

    def _comments(self, event_id: str, items: list[dict[str, Any]]) -> None:
        view = self.views.get(event_id)
        if view is None:
            return
        now_ms = time.time() * 1000
        got = 0
        for c in items:
            position = int(c["position"])
            if view.position is not None and position <= view.position:
                if not view.awaiting_recovery:  # overlap is expected while filling a gap
                    self.stats.duplicates += 1
                continue
            if (
                view.position is not None
                and c.get("previous_position") != view.position
                and c.get("epoch") == view.epoch
                and not view.awaiting_recovery
            ):
                self.stats.unrecovered_gaps += 1
            view.position = position
            view.epoch = c.get("epoch", view.epoch)
            got += 1
            # A cheap deterministic sampler (random.random per comment costs more).
            self._rng_state = (self._rng_state * 1103515245 + 12345) & 0x7FFFFFFF
            if "submitted_at" in c and self._rng_state < self.sample * 0x7FFFFFFF:
                submitted = float(c["submitted_at"])
                self.samples.append((submitted, now_ms - submitted))
        self.counts[event_id] += got
        self.stats.received += got
        self.per_second[int(now_ms // 1000)] += got


@dataclass(frozen=True)
class CrowdSpec:
    """What one viewer process runs: a slice of the viewers and their events."""

    urls: list[str]
    assignments: list[list[str]]
    first_user: int
    sample: float


def _child_main(
    body: Callable[[Any, Connection], Coroutine[Any, Any, None]], spec: Any, conn: Connection
) -> None:
    """A viewer or load process: raise its open-files limit, run ``body`` under uvloop."""
    import uvloop

    raise_nofile()
    uvloop.run(body(spec, conn))


async def _crowd(spec: CrowdSpec, conn: Connection) -> None:
    """In a viewer process: connect everyone, say ready, wait for the heads, report."""
    settings = Settings()
    viewers = [
        TallyViewer(spec.urls, mint_token(settings, f"fan-{spec.first_user + i}"), ev, spec.sample)
        for i, ev in enumerate(spec.assignments)
    ]
    try:
        tasks = await watch(viewers, timeout_s=180)
    except TimeoutError:
        joined = sum(1 for v in viewers if v.connected.is_set())
        conn.send(("error", f"only {joined} of {len(viewers)} viewers joined in 180 s"))
        return
    conn.send(("ready", len(viewers)))
    heads: dict[str, tuple[int, int]]
    _kind, heads, timeout_s = await asyncio.to_thread(conn.recv)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all((v.views[e].position or -1) >= heads[e][1] for v in viewers for e in v.views):
            break
        await asyncio.sleep(0.25)
    await stop_all(viewers, tasks)
    conn.send(("result", _tally(viewers, heads)))


def _tally(viewers: Sequence[TallyViewer], heads: dict[str, tuple[int, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "viewers": len(viewers),
        "received": 0,
        "lost": 0,
        "behind": 0,
        "chain_breaks": 0,
        "duplicates": 0,
        "declared_gaps": 0,
        "recovered_gaps": 0,
        "reconnects": 0,
        "refused_joins": 0,
        "errors": [],
        "samples": [],
        "per_second": Counter(),
    }
    for v in viewers:
        s = v.stats
        out["received"] += s.received
        out["chain_breaks"] += s.unrecovered_gaps
        out["duplicates"] += s.duplicates
        out["declared_gaps"] += s.declared_gaps
        out["recovered_gaps"] += s.recovered_gaps
        out["reconnects"] += s.reconnects
        out["refused_joins"] += s.refused_joins
        out["errors"].extend(s.errors[:2])
        out["samples"].extend(v.samples)
        out["per_second"].update(v.per_second)
        for e in v.views:
            count, head = heads.get(e, (0, -1))
            out["lost"] += max(0, count - v.counts[e])
            out["behind"] += (v.views[e].position or -1) < head
    out["errors"] = out["errors"][:20]
    return out


@dataclass
class ChildPool:
    """Processes started with a pipe each: they say "ready", then answer "heads" with
    their "result". ``kind`` names them in errors and in ``pids``."""

    kind: str = "child"
    procs: list[mp.process.BaseProcess] = field(default_factory=list)
    conns: list[Connection] = field(default_factory=list)

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        for p, c in zip(self.procs, self.conns, strict=True):
            if not c.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{self.kind} process {p.pid} did not get ready in {timeout_s}s")
            kind, detail = c.recv()
            if kind != "ready":
                raise RuntimeError(f"{self.kind} process {p.pid}: {detail}")

    def results(self, heads: dict[str, Any], timeout_s: float = 120.0) -> list[dict[str, Any]]:
        for c in self.conns:
            c.send(("heads", heads, timeout_s))
        out = []
        for p, c in zip(self.procs, self.conns, strict=True):
            if not c.poll(timeout_s + 60):
                raise TimeoutError(f"{self.kind} process {p.pid} did not report")
            kind, detail = c.recv()
            if kind != "result":
                raise RuntimeError(f"{self.kind} process {p.pid}: {detail}")
            out.append(detail)
        return out

    def stop(self) -> None:
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)

    @property
    def pids(self) -> dict[str, int]:
        label = "viewers" if self.kind == "viewer" else self.kind
        return {f"{label}-{k}": p.pid for k, p in enumerate(self.procs) if p.pid}


@dataclass
class Crowd(ChildPool):
    """ViewerClient processes: started, joined, then asked for their tallies."""

    kind: str = "viewer"
    viewers: int = 0

    @classmethod
    def start(
        cls, urls: list[str], assignments: list[list[str]], processes: int, sample: float
    ) -> Crowd:
        ctx = mp.get_context("spawn")  # no fork of a process holding Kafka clients' threads
        crowd = cls(viewers=len(assignments))
        for k in range(processes):
            mine = assignments[k::processes]
            parent, child = ctx.Pipe()
            spec = CrowdSpec(urls, mine, first_user=k * 1_000_000, sample=sample)
            p = ctx.Process(target=_child_main, args=(_crowd, spec, child), daemon=True)
            p.start()
            crowd.procs.append(p)
            crowd.conns.append(parent)
        return crowd


def comment_cycle(events: list[str]) -> list[str]:
    """Events in the order comments go to them: the first is hot, with half the comments;
    the others share the rest evenly."""
    hot, rest = events[0], events[1:]
    return [hot] * len(rest) + rest if rest else [hot]


def assign(viewers: int, events: list[str]) -> list[list[str]]:
    """Each viewer's events: 2 of every 5 watch the hot (first) event, the others spread
    over the rest."""
    hot, rest = events[0], events[1:]
    out: list[list[str]] = []
    others = 0
    for i in range(viewers):
        if not rest or i % 5 < 2:
            out.append([hot])
        else:
            out.append([rest[others % len(rest)]])
            others += 1
    return out


def published(settings: Settings, events: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per event, from Cassandra (the permanent tier): (comments, last position)."""
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
    try:
        session = cluster.connect()
        out = {}
        for e in events:
            positions = [
                int(str(r["position"]))
                for r in cassandra_comments(session, settings.cassandra_keyspace, e)
            ]
            out[e] = (len(positions), max(positions) if positions else -1)
        return out
    finally:
        cluster.shutdown()


def wait_working(settings: Settings, workers: list[Worker], timeout_s: float = 180.0) -> int:
    """Until every worker is up and owns partitions; how many partitions they own.

    Unlike :func:`wait_assigned` it does not need the union to be every partition: other
    workers of the group (a test run beside the bench) may own some.
    """
    with contextlib.suppress(TimeoutError):
        wait_assigned(settings, workers, settings.partitions_comments, timeout_s=30)
        return settings.partitions_comments
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned: set[str] = set()
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker {w.index} exited; see {w.log}")
            assigned = (w.health(settings) or {}).get("assigned")
            if not isinstance(assigned, list) or not assigned:
                break
            owned.update(str(a) for a in assigned)
        else:
            return len(owned)
        time.sleep(0.5)
    raise TimeoutError(f"workers did not own partitions in {timeout_s}s")


@dataclass
class FanoutRig:
    """Workers, one gateway, fresh events and a crowd of viewers joined to them."""

    settings: Settings
    workers: list[Worker] = field(default_factory=list)
    gateway: GatewayChild | None = None
    crowd: Crowd | None = None
    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warm_up_s: float = 0.0

    def start(
        self,
        codec: AvroCodec,
        *,
        workers: int,
        events: int,
        viewers: int,
        processes: int,
        sample: float,
        gateway_env: dict[str, str] | None = None,
    ) -> None:
        s = self.settings
        # Events first, so the viewer processes can start (and their interpreters import)
        # while the workers start: the two slowest steps overlap; no clock runs yet.
        self.events = make_events(s, codec, events, f"fanout-{uuid.uuid4().hex[:6]}")
        self.workers = [start_worker(s, WORKER_INDEX + i) for i in range(workers)]
        self.gateway = start_gateway(s, 0, env=gateway_env)
        wait_healthy(s, [self.gateway])
        self.crowd = Crowd.start(
            [self.gateway.url(s)], assign(viewers, self.events), processes, sample
        )
        owned = wait_working(s, self.workers)
        say(f"fanout: the workers own {owned} of {s.partitions_comments} partitions; gateway up")
        if owned < s.partitions_comments:
            self.notes.append(
                f"other workers of the consumer group (another session's) owned "
                f"{s.partitions_comments - owned} of {s.partitions_comments} partitions and "
                "processed part of these comments"
            )
        wait_events_known(s, self.workers, events)
        self.crowd.wait_ready()
        say(f"fanout: {viewers} viewers joined, in {processes} processes")
        self.warm_up(codec)

    def warm_up(self, codec: AvroCodec) -> None:
        self.warm_up_s = wait_publishing(self.settings, codec, self.events)
        say(f"fanout: the pipeline publishes (first comments took {self.warm_up_s:.1f} s)")
        if self.warm_up_s > 10:
            self.notes.append(
                f"the workers took {self.warm_up_s:.0f} s to publish their first comments "
                "(recovering their tables from the changelogs written since they last ran); "
                "not part of any figure"
            )

    def pids(self) -> dict[str, int]:
        out = {f"worker-{w.index - WORKER_INDEX}": w.pid for w in self.workers}
        if self.gateway:
            out["gateway"] = self.gateway.pid
        if self.crowd:
            out |= self.crowd.pids
        return out | stack_pids(self.settings)

    def stop(self) -> None:
        if self.crowd:
            self.crowd.stop()
        stop_children([*([self.gateway] if self.gateway else []), *self.workers])


def weighted_comments(events: list[str], total: int) -> Iterator[CommentSubmitted]:
    """perf/load.py's comments, by users of this run only: a user of an earlier run who
    posts the same phrase again would be held as a repeated message, not delivered."""
    run = uuid.uuid4().hex[:6]
    for c in comments(comment_cycle(events), total, users=20_000):
        yield CommentSubmitted(**{**c.to_avro(), "user_id": f"{run}-{c.user_id}"})


@dataclass
class Phase:
    rate: float
    started: float
    finished: float
    acked: list[Acked]
    cpu: dict[str, float]
    failed: int


def run_phases(
    rig: FanoutRig, codec: AvroCodec, rates: Sequence[float], seconds: float
) -> list[Phase]:
    phases = []
    meter = CpuMeter(rig.pids())
    for rate in rates:
        say(f"fanout: {rate:g} comments/s for {seconds:g} s")
        meter.start()
        started = time.time()
        load = produce(
            rig.settings, codec, weighted_comments(rig.events, int(rate * seconds)), rate=rate
        )
        finished = time.time()
        phases.append(Phase(rate, started, finished, load.acked, meter.shares(), load.failed))
    return phases


def shape(quick: bool, viewers: int | None, rates: list[float] | None) -> dict[str, Any]:
    if quick:
        return {
            "viewers": viewers or 500,
            "events": 4,
            "rates": rates or [25.0, 50.0, 100.0],
            "seconds": 5.0,
            "processes": 2,
        }
    # 3,000 viewers fell minutes behind at 50 comments/s on the 2-core machine shared
    # with the stack (docs/performance.md); 2,000 is what it held.
    n = viewers or 2000
    return {
        "viewers": n,
        "events": 6,
        "rates": rates or [10.0, 25.0, 50.0, 100.0],
        "seconds": 30.0,
        "processes": max(2, min(4, n // 1000)),
    }


def run(
    settings: Settings,
    *,
    quick: bool,
    workers: int = 2,
    viewers: int | None = None,
    rates: list[float] | None = None,
) -> dict[str, Any]:
    p = shape(quick, viewers, rates)
    fd_limit = raise_nofile()
    expected = sum(p["rates"]) * p["seconds"] * p["viewers"] * 0.4
    sample = min(1.0, LATENCY_SAMPLES / max(expected, 1.0))
    rig = FanoutRig(settings)
    notes = rig.notes
    with AvroCodec(settings) as codec:
        codec.register_all()
        try:
            say(f"fanout: starting {workers} workers, a gateway, {p['viewers']} viewers")
            rig.start(
                codec,
                workers=workers,
                events=p["events"],
                viewers=p["viewers"],
                processes=p["processes"],
                sample=sample,
            )
            assert rig.gateway is not None and rig.crowd is not None
            whole = CpuMeter({"gateway": rig.gateway.pid})
            whole.start()
            # When each comment reached its event's Redis stream: the pipeline's share of
            # the latency, so the gateway's share is the rest.
            follower = Follower(settings, rig.events)
            phases = run_phases(rig, codec, p["rates"], p["seconds"])
            acked = [a for ph in phases for a in ph.acked]
            report = wait_until_persisted(settings, acked, 180.0)
            follower.stop()
            in_redis = [(float(sub), arr * 1000 - sub) for arr, sub in follower.arrivals.values()]
            heads = published(settings, rig.events)
            say("fanout: waiting for the viewers to reach the last comment")
            tallies = rig.crowd.results(heads)
            gateway_cpu_s = whole.cpu_seconds()["gateway"]
        finally:
            rig.stop()
    if report.lost:
        notes.append(f"{report.lost} acked comments were not in Cassandra after 180 s")
    p = p | {"warm_up_s": round(rig.warm_up_s, 1)}
    return summarise(p, phases, tallies, in_redis, gateway_cpu_s, report, notes, quick, fd_limit)


def summarise(
    p: dict[str, Any],
    phases: list[Phase],
    tallies: list[dict[str, Any]],
    in_redis: list[tuple[float, float]],
    gateway_cpu_s: float,
    report: AuditReport,
    notes: list[str],
    quick: bool,
    fd_limit: int,
) -> dict[str, Any]:
    samples = [s for t in tallies for s in t["samples"]]
    per_second: Counter[int] = Counter()
    for t in tallies:
        per_second.update(t["per_second"])
    by_rate = []
    for ph in phases:
        lo, hi = ph.started * 1000, ph.finished * 1000
        lat = [lat for sub, lat in samples if lo <= sub < hi]
        pipe = [lat for sub, lat in in_redis if lo <= sub < hi]
        seconds = ph.finished - ph.started
        # Whole seconds inside the phase only: the edges hold the previous phase's tail.
        inside = [per_second.get(sec, 0) for sec in range(int(ph.started) + 1, int(ph.finished))]
        deliveries_s = statistics.mean(inside) if inside else 0.0
        gw_cpu = ph.cpu.get("gateway", 0.0) * seconds
        delivered = deliveries_s * seconds
        by_rate.append(
            {
                "target_rate": ph.rate,
                "comments_per_s": round(len(ph.acked) / seconds, 1),
                "deliveries_per_s": round(deliveries_s),
                "p50_ms": round(percentile(lat, 50), 1),
                "p99_ms": round(percentile(lat, 99), 1),
                "to_redis_p50_ms": round(percentile(pipe, 50), 1),
                "to_redis_p99_ms": round(percentile(pipe, 99), 1),
                "max_ms": round(max(lat), 1) if lat else 0.0,
                "latency_samples": len(lat),
                "gateway_cpu_s_per_million_deliveries": round(gw_cpu / delivered * 1e6, 2)
                if delivered
                else None,
                "cpu_cores": ph.cpu,
                "load_cpu_share": max(
                    (v for k, v in ph.cpu.items() if k.startswith("viewers-")), default=0.0
                ),
            }
        )
        viewer_cpu = [v for k, v in ph.cpu.items() if k.startswith("viewers-")]
        if viewer_cpu and max(viewer_cpu) > SATURATED:
            notes.append(
                f"at {ph.rate:g}/s a viewer process used {max(viewer_cpu):.0%} of a core: "
                "the load generator may be a bottleneck in this phase"
            )
        if ph.cpu.get("gateway", 0.0) > SATURATED:
            notes.append(
                f"at {ph.rate:g}/s the gateway used {ph.cpu['gateway']:.0%} of a core: "
                "it is the bottleneck (one process, one event loop)"
            )
        if ph.cpu.get("machine", 0.0) > 0.9:
            notes.append(
                f"at {ph.rate:g}/s the machine's cores were {ph.cpu['machine']:.0%} busy "
                "(gateway, viewers, workers and the stack share 2 cores)"
            )
        if ph.failed:
            notes.append(f"at {ph.rate:g}/s {ph.failed} comments were not acked by Kafka")
    last = by_rate[-1]
    g = {
        k: sum(t[k] for t in tallies)
        for k in (
            "viewers",
            "received",
            "lost",
            "behind",
            "chain_breaks",
            "duplicates",
            "declared_gaps",
            "recovered_gaps",
            "reconnects",
            "refused_joins",
        )
    }
    if g["declared_gaps"]:
        notes.append(
            f"{g['declared_gaps']} slow-consumer gaps were declared by the gateway "
            f"({g['recovered_gaps']} recovered by re-joining with since)"
        )
    errors = [e for t in tallies for e in t["errors"]]
    if errors:
        notes.append(f"viewer errors (first few): {errors[:5]}")
    notes.append(
        f"viewers ran in {p['processes']} processes (uvloop) beside the gateway; comments "
        "enter as a gateway posts them (CommentSubmitted acked by Kafka) from this process"
    )
    return {
        "bench": "fanout",
        "quick": quick,
        "params": p
        | {
            "gateways": 1,
            "latency_sample": "submitted_at → received by a viewer",
            "open_files_limit": fd_limit,
        },
        "metrics": {
            "viewers": g["viewers"],
            "comments_per_s": last["comments_per_s"],
            "deliveries_per_s": last["deliveries_per_s"],
            "p50_ms": last["p50_ms"],
            "p99_ms": last["p99_ms"],
            "lost": g["lost"],
            "load_cpu_share": last["load_cpu_share"],
            # The whole run (every phase and the catch-up) over every comment received.
            "gateway_cpu_s_per_million_deliveries": round(gateway_cpu_s / g["received"] * 1e6, 2)
            if g["received"]
            else None,
            "gateway_cpu_s": round(gateway_cpu_s, 2),
            "received": g["received"],
            "viewers_behind": g["behind"],
            "viewer_chain_breaks": g["chain_breaks"],
            "viewer_duplicates": g["duplicates"],
            "declared_gaps": g["declared_gaps"],
            "reconnects": g["reconnects"],
            "refused_joins": g["refused_joins"],
            "pipeline_lost": report.lost,
            "pipeline_duplicated": report.duplicated,
            "by_rate": by_rate,
        },
        "notes": notes,
    }


# -- the gateway alone: entries written to the events' Redis streams ---------------------
#
# ``perf fanout --source redis``: no Kafka comments, no workers. The bench writes
# comments into the events' streams with the workers' own writer
# (connectors/redis_streams.py ``LiveStreams.append``: the same entry ids, fields and
# JSON), so what is measured is the gateway: reading the streams, building frames and
# writing them to every viewer. Viewers are :mod:`perf.wsload`'s cheap clients, many per
# process, so the load side is not the bottleneck (its CPU is reported per phase).


@dataclass(frozen=True)
class LoadSpec:
    """One load process: its viewers' events, and how they sample."""

    url: str
    events: list[str]
    first_user: int
    latency_every: int
    local_ip: str


async def _load(spec: LoadSpec, conn: Connection) -> None:
    from perf.wsload import Tally, close_all, open_viewers

    settings = Settings()
    tally = Tally()
    tokens = [mint_token(settings, f"wsl-{spec.first_user + i}") for i in range(len(spec.events))]
    viewers = await open_viewers(
        spec.url,
        tokens,
        spec.events,
        tally=tally,
        latency_every=spec.latency_every,
        local_ip=spec.local_ip,
    )
    if len(viewers) < len(spec.events):
        conn.send(("error", f"{len(viewers)} of {len(spec.events)} joined: {dict(tally.errors)}"))
        return
    conn.send(("ready", len(viewers)))
    _kind, heads, timeout_s = await asyncio.to_thread(conn.recv)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all((v.last if v.last is not None else -1) >= heads[v.event_id] for v in viewers):
            break
        await asyncio.sleep(0.1)
    expected = sum(heads[v.event_id] + 1 for v in viewers)
    behind = sum(1 for v in viewers if (v.last if v.last is not None else -1) < heads[v.event_id])
    close_all(viewers)
    conn.send(
        (
            "result",
            {
                "viewers": len(viewers),
                "received": tally.received,
                "frames": tally.frames,
                "lost": max(0, expected - tally.received),
                "behind": behind,
                "chain_breaks": tally.chain_breaks,
                "duplicates": tally.duplicates,
                "declared_gaps": tally.gaps,
                "recovered_gaps": tally.recovered_gaps,
                "full_parses": tally.full_parses,
                "parse_mismatches": tally.parse_mismatches,
                "refused_joins": tally.refused_joins,
                "errors": dict(tally.errors.most_common(5)),
                "samples": tally.samples,
                "per_second": tally.per_second,
            },
        )
    )


@dataclass
class Load(ChildPool):
    """Load processes of cheap viewers."""

    kind: str = "load"

    @classmethod
    def start(cls, url: str, assignments: list[list[str]], processes: int) -> Load:
        ctx = mp.get_context("spawn")
        load = cls()
        events = [a[0] for a in assignments]
        for k in range(processes):
            mine = events[k::processes]
            parent, child = ctx.Pipe()
            spec = LoadSpec(url, mine, k * 1_000_000, latency_every=20, local_ip=f"127.0.0.{k + 2}")
            p = ctx.Process(target=_child_main, args=(_load, spec, child), daemon=True)
            p.start()
            load.procs.append(p)
            load.conns.append(parent)
        return load


async def write_streams(
    settings: Settings, events: list[str], rate: float, seconds: float, positions: Counter[str]
) -> int:
    """Comments into the events' streams at ``rate``/s for ``seconds``, as the workers
    write them (``LiveStreams.append``: one pipeline per batch); returns how many."""
    from connectors.redis_streams import LiveStreams
    from schemas.records import CommentPublished

    cycle = comment_cycle(events)
    streams = LiveStreams(settings)
    run = uuid.uuid4().hex[:6]
    total = int(rate * seconds)
    sent = 0
    started = time.monotonic()
    try:
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            batch = []
            now = int(time.time() * 1000)
            for i in range(sent, due):
                event_id = cycle[i % len(cycle)]
                position = positions[event_id]
                positions[event_id] += 1
                batch.append(
                    CommentPublished(
                        comment_id=f"{run}-{i:08d}",
                        event_id=event_id,
                        user_id=f"user-{(i * 7919) % 20_000}",
                        display_name=f"User {(i * 7919) % 20_000}",
                        text=PHRASES[i % len(PHRASES)],
                        language="en",
                        position=position,
                        previous_position=position - 1 if position else None,
                        epoch=1,
                        submitted_at=now,
                        published_at=now,
                    )
                )
            if batch:
                await streams.append(batch)
                sent = due
            next_at = started + sent / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await streams.close()
    return sent


def run_redis(
    settings: Settings,
    *,
    quick: bool,
    viewers: int | None = None,
    rates: list[float] | None = None,
    processes: int | None = None,
) -> dict[str, Any]:
    """The gateway alone (see the comment above ``LoadSpec``)."""
    import uvloop

    n = viewers or (500 if quick else 1000)
    events_n = 6
    rates = rates or ([50.0, 200.0] if quick else [50.0, 200.0, 1000.0])
    seconds = 5.0 if quick else 20.0
    procs = processes or 2
    fd_limit = raise_nofile()
    notes: list[str] = []
    with AvroCodec(settings) as codec:
        codec.register_all()
        events = make_events(settings, codec, events_n, f"fanredis-{uuid.uuid4().hex[:6]}")
    gateway = start_gateway(settings, 0)
    load: Load | None = None
    phases: list[dict[str, Any]] = []
    positions: Counter[str] = Counter()
    try:
        wait_healthy(settings, [gateway])
        load = Load.start(gateway.url(settings), assign(n, events), procs)
        load.wait_ready()
        say(f"fanout (redis): {n} viewers on {events_n} events in {procs} load processes")
        pids = {"gateway": gateway.pid, **load.pids} | {
            k: v for k, v in stack_pids(settings).items() if k == "redis"
        }
        meter = CpuMeter(pids)
        for rate in rates:
            say(f"fanout (redis): {rate:g} comments/s for {seconds:g} s")
            meter.start()
            started = time.time()
            wrote = uvloop.run(write_streams(settings, events, rate, seconds, positions))
            finished = time.time()
            phases.append(
                {"rate": rate, "started": started, "finished": finished, "written": wrote}
                | {"cpu": meter.shares()}
            )
        heads = {e: positions[e] - 1 for e in events}
        say("fanout (redis): waiting for the viewers to reach the last comment")
        tallies = load.results(heads)
    finally:
        if load is not None:
            load.stop()
        gateway.stop()
    return summarise_redis(n, events_n, procs, seconds, phases, tallies, notes, quick, fd_limit)


def summarise_redis(
    viewers: int,
    events: int,
    processes: int,
    seconds: float,
    phases: list[dict[str, Any]],
    tallies: list[dict[str, Any]],
    notes: list[str],
    quick: bool,
    fd_limit: int,
) -> dict[str, Any]:
    samples = [s for t in tallies for s in t["samples"]]
    per_second: Counter[int] = Counter()
    for t in tallies:
        per_second.update(t["per_second"])
    by_rate = []
    for ph in phases:
        lo, hi = ph["started"] * 1000, ph["finished"] * 1000
        lat = [lat for sub, lat in samples if lo <= sub < hi]
        inside = [
            per_second.get(sec, 0) for sec in range(int(ph["started"]) + 1, int(ph["finished"]))
        ]
        deliveries_s = statistics.mean(inside) if inside else 0.0
        cpu = ph["cpu"]
        load_cpu = [v for k, v in cpu.items() if k.startswith("load-")]
        by_rate.append(
            {
                "target_rate": ph["rate"],
                "comments_per_s": round(ph["written"] / (ph["finished"] - ph["started"]), 1),
                "deliveries_per_s": round(deliveries_s),
                "p50_ms": round(percentile(lat, 50), 1),
                "p99_ms": round(percentile(lat, 99), 1),
                "max_ms": round(max(lat), 1) if lat else 0.0,
                "latency_samples": len(lat),
                "gateway_cpu_s_per_million_deliveries": round(
                    cpu.get("gateway", 0.0) / deliveries_s * 1e6, 2
                )
                if deliveries_s
                else None,
                "gateway_cpu_cores": cpu.get("gateway", 0.0),
                "load_cpu_share": max(load_cpu) if load_cpu else 0.0,
                "load_cpu_cores": round(sum(load_cpu), 3),
                "cpu_cores": cpu,
            }
        )
        if load_cpu and max(load_cpu) > SATURATED:
            notes.append(
                f"at {ph['rate']:g}/s a load process used {max(load_cpu):.0%} of a core: "
                "the viewers may be the bottleneck in this phase"
            )
        if cpu.get("gateway", 0.0) > SATURATED:
            notes.append(
                f"at {ph['rate']:g}/s the gateway used {cpu['gateway']:.0%} of a core: "
                "it is the bottleneck (one process, one event loop)"
            )
        if cpu.get("machine", 0.0) > 0.9:
            notes.append(f"at {ph['rate']:g}/s the machine's cores were {cpu['machine']:.0%} busy")
    last = by_rate[-1]
    keys = (
        "viewers",
        "received",
        "frames",
        "lost",
        "behind",
        "chain_breaks",
        "duplicates",
        "declared_gaps",
        "recovered_gaps",
        "full_parses",
        "parse_mismatches",
        "refused_joins",
    )
    g = {k: sum(int(t[k]) for t in tallies) for k in keys}
    errors = [e for t in tallies for e in t["errors"]]
    if errors:
        notes.append(f"viewer errors (first few): {errors[:5]}")
    if g["declared_gaps"]:
        notes.append(f"{g['declared_gaps']} slow-consumer gaps were declared by the gateway")
    notes.append(
        f"the gateway alone: comments written to the events' Redis streams by the workers' "
        f"writer (LiveStreams.append), read by {viewers} cheap viewers (perf/wsload.py) in "
        f"{processes} processes; latency = submitted_at (set when written) → received"
    )
    return {
        "bench": "fanout",
        "source": "redis",
        "quick": quick,
        "params": {
            "viewers": viewers,
            "events": events,
            "rates": [ph["rate"] for ph in phases],
            "seconds": seconds,
            "processes": processes,
            "gateways": 1,
            "open_files_limit": fd_limit,
        },
        "metrics": {
            "viewers": g["viewers"],
            "comments_per_s": last["comments_per_s"],
            "deliveries_per_s": last["deliveries_per_s"],
            "p50_ms": last["p50_ms"],
            "p99_ms": last["p99_ms"],
            "lost": g["lost"],
            "gateway_cpu_s_per_million_deliveries": last["gateway_cpu_s_per_million_deliveries"],
            "load_cpu_share": last["load_cpu_share"],
            "received": g["received"],
            "frames": g["frames"],
            "viewers_behind": g["behind"],
            "viewer_chain_breaks": g["chain_breaks"],
            "viewer_duplicates": g["duplicates"],
            "declared_gaps": g["declared_gaps"],
            "recovered_gaps": g["recovered_gaps"],
            "full_parses": g["full_parses"],
            "parse_mismatches": g["parse_mismatches"],
            "refused_joins": g["refused_joins"],
            "by_rate": by_rate,
        },
        "notes": notes,
    }
