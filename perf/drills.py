"""Fault drills: under steady load with connected viewers, break one thing at a time.

``python -m perf drills [--quick] [--only NAME] --json PATH``

Each drill gets fresh events, two workers, two gateways and viewers spread over both
gateways (each viewer knows both URLs and fails over, resuming with ``since``). While
comments flow it breaks one thing:

    kill_worker      kill -9 a worker; a supervisor restarts it 15 s later
    kill_gateway     kill -9 a gateway; its viewers reconnect to the other and resume
    restart_kafka    stop the broker, start it again
    restart_redis    stop Redis (its streams are gone: it keeps no data), start it again
    stop_cassandra   stop Cassandra for 30 s (10 s with --quick), start it again

Then an auditor independent of the pipeline (perf/audit.py) reads Cassandra and Redis
for every comment Kafka acknowledged, and every viewer's sequence is checked against
what Cassandra holds. Per drill: ``acked``, ``persisted``, ``lost``, ``duplicated``,
``viewer_gaps`` (comments a viewer never got and no ``gap`` frame declared),
``viewer_duplicates``, ``declared_gaps`` / ``recovered_gaps``, ``reconnects``,
``refused_joins`` (joins answered ``unavailable``, retried with backoff).
Goal: 0 lost, 0 duplicated, 0 viewer gaps in every drill.

The drills must be alone on the stack (perf/fence.py): they refuse to start if a process
they did not start is connected to its servers or holds their workers' and gateways'
ports, check again after each drill, and warn when the stack was already running.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
from deploy.stack import launcher
from deploy.stack.local import Cassandra, Kafka
from deploy.stack.local import Redis as RedisServer
from deploy.viewer import ViewerClient, stop_all, watch
from gateways.auth import mint_token
from perf.audit import cassandra_comments, wait_until_persisted
from perf.fence import StackInUse, check_alone, rig_ports
from perf.load import LoadResult, comments, make_events, produce
from perf.procstat import say
from schemas.codec import AvroCodec

DRILLS = ("kill_worker", "kill_gateway", "restart_kafka", "restart_redis", "stop_cassandra")


@dataclass
class DrillResult:
    drill: str
    acked: int = 0
    not_acked: int = 0  # sent, never acknowledged by Kafka: a poster got an error, not lost
    persisted: int = 0
    lost: int = 0
    duplicated: int = 0
    viewer_gaps: int = 0
    viewer_duplicates: int = 0
    declared_gaps: int = 0
    recovered_gaps: int = 0
    reconnects: int = 0
    refused_joins: int = 0  # joins answered `unavailable` and retried (deploy/viewer.py)
    viewers: int = 0
    seconds: float = 0.0
    # Why viewers were disconnected or refused, most frequent first (digits masked).
    viewer_errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.viewer_gaps or self.viewer_duplicates)


@dataclass
class Shape:
    events: int
    viewers: int
    rate: float
    seconds: float
    outage_s: float

    @classmethod
    def of(cls, quick: bool) -> Shape:
        if quick:
            return cls(events=4, viewers=20, rate=100.0, seconds=20.0, outage_s=10.0)
        return cls(events=10, viewers=200, rate=200.0, seconds=60.0, outage_s=30.0)


class Rig:
    """The processes a drill runs against: two workers, two gateways (restartable)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: list[Worker] = []
        self.gateways: list[GatewayChild] = []

    def start(self) -> None:
        self.workers = [start_worker(self.settings, i) for i in range(2)]
        self.gateways = [start_gateway(self.settings, i) for i in range(2)]
        wait_assigned(self.settings, self.workers, self.settings.partitions_comments)
        wait_healthy(self.settings, self.gateways)

    def restart_worker(self, index: int) -> None:
        self.workers[index].stop()
        self.workers[index] = start_worker(self.settings, index)

    def restart_gateway(self, index: int) -> None:
        self.gateways[index].stop()
        self.gateways[index] = start_gateway(self.settings, index)
        wait_healthy(self.settings, [self.gateways[index]])

    def ensure(self) -> None:
        """Everything up again after a drill: the stack, both workers, both gateways."""
        launcher.up(self.settings, out=io.StringIO())
        for i, w in enumerate(self.workers):
            if w.proc.poll() is not None:
                self.workers[i] = start_worker(self.settings, i)
        for i, g in enumerate(self.gateways):
            if g.proc.poll() is not None:
                self.gateways[i] = start_gateway(self.settings, i)
        wait_assigned(self.settings, self.workers, self.settings.partitions_comments)
        wait_healthy(self.settings, self.gateways)

    def stop(self) -> None:
        stop_children([*self.gateways, *self.workers])


class _Load(threading.Thread):
    def __init__(self, settings: Settings, codec: AvroCodec, events: list[str], shape: Shape):
        super().__init__(daemon=True)
        self._args = (settings, codec, events, shape)
        self.result: LoadResult | None = None
        self.start()

    def run(self) -> None:
        settings, codec, events, shape = self._args
        total = int(shape.rate * shape.seconds)
        self.result = produce(settings, codec, comments(events, total), rate=shape.rate)


def _up_again(settings: Settings) -> None:
    launcher.up(settings, out=io.StringIO())


def _fault(rig: Rig, name: str, shape: Shape) -> Callable[[], None]:
    settings = rig.settings

    def kill_worker() -> None:
        rig.workers[1].kill()
        time.sleep(15)  # a supervisor's restart delay; the survivor took over meanwhile
        rig.restart_worker(1)

    def kill_gateway() -> None:
        rig.gateways[1].kill()
        time.sleep(5)
        rig.restart_gateway(1)

    def restart_kafka() -> None:
        Kafka(settings).process.stop(timeout_s=60)
        _up_again(settings)

    def restart_redis() -> None:
        RedisServer(settings).process.stop(timeout_s=30)
        time.sleep(2)
        _up_again(settings)

    def stop_cassandra() -> None:
        Cassandra(settings).process.stop(timeout_s=60)
        time.sleep(shape.outage_s)
        _up_again(settings)

    faults: dict[str, Callable[[], None]] = {
        "kill_worker": kill_worker,
        "kill_gateway": kill_gateway,
        "restart_kafka": restart_kafka,
        "restart_redis": restart_redis,
        "stop_cassandra": stop_cassandra,
    }
    return faults[name]


async def _caught_up(viewers: list[ViewerClient], heads: dict[str, int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all((v.views[e].position or -1) >= head for v in viewers for e, head in heads.items()):
            return True
        await asyncio.sleep(0.5)
    return False


def _published_positions(settings: Settings, events: list[str]) -> dict[str, list[int]]:
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
    try:
        session = cluster.connect()
        return {
            e: [
                int(str(r["position"]))
                for r in cassandra_comments(session, settings.cassandra_keyspace, e)
            ]
            for e in events
        }
    finally:
        cluster.shutdown()


async def run_drill(
    settings: Settings, codec: AvroCodec, rig: Rig, name: str, shape: Shape
) -> DrillResult:
    result = DrillResult(drill=name, viewers=shape.viewers)
    t0 = time.monotonic()
    events = make_events(settings, codec, shape.events, f"drill-{name}-{uuid.uuid4().hex[:6]}")
    wait_events_known(settings, rig.workers, shape.events)
    urls = [g.url(settings) for g in rig.gateways]
    viewers = [
        ViewerClient(
            urls[i % 2 :] + urls[: i % 2], mint_token(settings, f"viewer-{i}"), events, sample=0.0
        )
        for i in range(shape.viewers)
    ]
    tasks = await watch(viewers, timeout_s=60)
    load = _Load(settings, codec, events, shape)
    await asyncio.sleep(shape.seconds / 3)
    await asyncio.to_thread(_fault(rig, name, shape))
    await asyncio.to_thread(load.join, shape.seconds * 10 + 300)
    if load.result is None:
        raise RuntimeError("the load generator did not finish")
    acked = load.result.acked
    result.not_acked = load.result.failed + load.result.unresolved
    report = await asyncio.to_thread(
        wait_until_persisted,
        settings,
        acked,
        300.0,
        live_tier_complete=name != "restart_redis",
    )
    result.acked, result.persisted = report.acked, report.persisted
    result.lost, result.duplicated = report.lost, report.duplicated
    if not report.ok:
        result.notes.append(f"audit: {report.as_dict()}")

    published = await asyncio.to_thread(_published_positions, settings, events)
    heads = {e: max(ps) for e, ps in published.items() if ps}
    if not await _caught_up(viewers, heads, timeout_s=120):
        result.notes.append("some viewers had not reached the last comment after 120 s")
    await stop_all(viewers, tasks)
    errors: Counter[str] = Counter()
    for v in viewers:
        s = v.stats
        missing = sum(v.missing(e, published.get(e, [])) for e in events)
        behind = sum(1 for e, head in heads.items() if (v.views[e].position or -1) < head)
        result.viewer_gaps += s.unrecovered_gaps + missing + behind
        if s.unrecovered_gaps or missing or behind:
            result.notes.append(
                f"viewer {v.urls[0]}: chain breaks {s.unrecovered_gaps}, missing {missing}, "
                f"events behind {behind} "
                f"({ {e: (v.views[e].position, heads.get(e)) for e in events} }), "
                f"reconnects {s.reconnects}, errors {s.errors[-3:]}"
            )
        result.viewer_duplicates += s.duplicates
        result.declared_gaps += s.declared_gaps
        result.recovered_gaps += s.recovered_gaps
        result.reconnects += s.reconnects
        result.refused_joins += s.refused_joins
        errors.update(re.sub(r"\d+", "N", e)[:100] for e in s.errors)
    result.viewer_errors = dict(errors.most_common(8))
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def run(settings: Settings, *, quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Every drill (or ``only`` those) in turn; refuses a stack others use (perf/fence.py).

    Raises :class:`StackInUse` before anything is broken if a process this run did not
    start is connected to the stack or holds the rig's ports. If one appears between
    drills, the run stops there: the JSON keeps the drills done and says why it stopped.
    """
    shape = Shape.of(quick)
    names = [d for d in DRILLS if not only or d in only]
    up_log = io.StringIO()
    launcher.up(settings, out=up_log)
    notes: list[str] = []
    if "already running" in up_log.getvalue():
        notes.append(
            f"the stack of {settings.state_path} was already running: this run did not start "
            "it (no foreign process was connected to it when the drills began)"
        )
        say(f"warning: {notes[-1]}; the drills will stop and restart its servers")
    ports = rig_ports(settings)
    check_alone(settings, ports, "before the drills")
    rig = Rig(settings)
    results: list[DrillResult] = []
    aborted: str | None = None
    with AvroCodec(settings) as codec:
        codec.register_all()
        say("starting 2 workers and 2 gateways")
        rig.start()
        try:
            for name in names:
                say(
                    f"drill {name}: {shape.viewers} viewers, {shape.rate:g} comments/s "
                    f"for {shape.seconds:g} s"
                )
                try:
                    results.append(asyncio.run(run_drill(settings, codec, rig, name, shape)))
                finally:
                    rig.ensure()
                r = results[-1]
                say(
                    f"drill {name}: acked {r.acked}, persisted {r.persisted}, lost {r.lost}, "
                    f"duplicated {r.duplicated}, viewer gaps {r.viewer_gaps}, "
                    f"reconnects {r.reconnects} ({r.seconds:g} s)"
                )
                try:
                    check_alone(settings, ports, f"after the drill {name}")
                except StackInUse as e:
                    aborted = str(e)
                    say(f"stopping: {aborted}")
                    break
        finally:
            rig.stop()
    return {
        "bench": "drills",
        "quick": quick,
        "params": asdict(shape) | {"drills": names, "workers": 2, "gateways": 2},
        "metrics": {
            r.drill: {k: v for k, v in asdict(r).items() if k not in ("drill", "notes")}
            for r in results
        },
        "ok": aborted is None and all(r.ok for r in results),
        "aborted": aborted,
        "notes": notes + [f"{r.drill}: {n}" for r in results for n in r.notes],
    }
