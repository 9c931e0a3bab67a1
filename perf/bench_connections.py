"""connections: how many idle viewers one machine's gateway holds, and what each costs.

The gateway runs as ``livecomments gateway --processes N`` (N processes on one port,
SO_REUSEPORT): each process stays under its open-files limit (one descriptor per
connection), so the machine holds more than one process could. N is chosen from the
target and the limit.

Viewers authenticate and join one of a few events (livecomments.v1), then sit idle: the
cost of a crowd that watches and does not talk. They are opened in steps from a few
processes (each its own source address on the loopback, so client ports never run out);
after each step the gateway's RSS and its own count of connections are sampled. With
everyone connected, the gateway's heartbeat is checked with a short ping interval (set
through its settings, ``LIVECOMMENTS_GATEWAY_PING_INTERVAL_S``):

- a sample of connections sends WebSocket pings and ``{"type": "ping"}`` frames: all
  must be answered;
- no live connection may be dropped while the gateway pings every one of them;
- a few connections stop reading (a dead peer): the gateway must drop exactly those
  within ``ping_interval + ping_timeout``.

Metrics: ``connections`` (held at once on the machine: the gateway processes' open
sockets above their baseline), ``failed`` (opens or joins that failed, plus live
connections dropped), ``rss_bytes_per_connection`` (the processes' RSS growth over
connections), ``heartbeat_ok``, ``processes``; the ramp's samples are in ``ramp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx

from deploy.processes import gateway_processes, start_gateway, wait_healthy
from deploy.settings import Settings
from deploy.viewer import percentile
from gateways.auth import mint_token
from perf.load import make_events
from perf.procstat import cpu_seconds, raise_nofile, rss_bytes, say
from perf.wsload import Tally, WsViewer, close_all, open_viewers
from schemas.codec import AvroCodec

PER_PROCESS = 8_000  # connections per viewer process, well under its open-files limit
DEAD_PER_PROCESS = 5  # connections per process that stop reading, for the heartbeat check


@dataclass(frozen=True)
class HolderSpec:
    url: str
    events: list[str]
    user_prefix: str
    local_ip: str


@dataclass
class Holder:
    """In a viewer process: the connections it holds (:mod:`perf.wsload`'s cheap
    clients, so the load side is not what limits the ramp), and what went wrong."""

    spec: HolderSpec
    settings: Settings
    held: list[WsViewer] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    opened: int = 0
    tally: Tally = field(default_factory=Tally)

    async def open_many(self, n: int, concurrency: int) -> None:
        """Open ``n`` more, ``concurrency`` handshakes at a time (the gateway closes a
        handshake that takes longer than its 3 s limit, so a flood fails by itself)."""
        start = self.opened
        self.opened += n
        tokens = [
            mint_token(self.settings, f"{self.spec.user_prefix}-{start + i}") for i in range(n)
        ]
        events = [self.spec.events[(start + i) % len(self.spec.events)] for i in range(n)]
        viewers = await open_viewers(
            self.spec.url,
            tokens,
            events,
            tally=self.tally,
            latency_every=10**9,
            concurrency=concurrency,
            timeout_s=30,
            local_ip=self.spec.local_ip,
            report_all=True,
        )
        self.held.extend(viewers)
        failed = n - len(viewers)
        if failed:
            self.failures = Counter(dict(self.tally.errors.most_common(5)))

    def open_count(self) -> int:
        return sum(1 for v in self.held if not v.dead and v.open)

    def dropped(self) -> Counter[str]:
        return Counter(str(v.close_code) for v in self.held if not v.dead and not v.open)

    async def probe(self, sample: int) -> dict[str, Any]:
        """WebSocket pings and protocol pings on a sample of live connections."""
        live = [v for v in self.held if not v.dead and v.open]
        chosen = random.sample(live, min(sample, len(live)))
        ws_rtt: list[float] = []
        app_rtt: list[float] = []
        unanswered = 0

        async def one(v: WsViewer) -> None:
            nonlocal unanswered
            try:
                ws_ms, app_ms = await v.probe()
                ws_rtt.append(ws_ms)
                app_rtt.append(app_ms)
            except (TimeoutError, ConnectionError):
                unanswered += 1

        await asyncio.gather(*(one(v) for v in chosen))
        return {"asked": len(chosen) * 2, "unanswered": unanswered, "ws": ws_rtt, "app": app_rtt}

    def go_dead(self, n: int) -> int:
        """Stop reading ``n`` live connections: to the gateway they are dead peers."""
        live = [v for v in self.held if not v.dead and v.open]
        for v in live[:n]:
            v.go_dead()
        return min(n, len(live))

    def dead_closed(self) -> int:
        """Dead peers whose connection the gateway has closed."""
        return sum(1 for v in self.held if v.dead and not v.open)

    async def close_all(self) -> None:
        close_all(self.held)


def _holder_main(spec: HolderSpec, conn: Connection) -> None:
    import uvloop

    raise_nofile()
    uvloop.run(_hold(spec, conn))


async def _hold(spec: HolderSpec, conn: Connection) -> None:
    holder = Holder(spec, Settings())
    while True:
        command, arg = await asyncio.to_thread(conn.recv)
        if command == "open":
            count, concurrency = arg
            had = len(holder.held)
            await holder.open_many(int(count), concurrency=int(concurrency))
            conn.send({"failed": int(count) - (len(holder.held) - had)})
        elif command == "probe":
            conn.send(await holder.probe(int(arg)))
        elif command == "dead":
            conn.send(holder.go_dead(int(arg)))
        elif command == "count":
            conn.send(
                {
                    "open": holder.open_count(),
                    "dropped": dict(holder.dropped()),
                    "dead_closed": holder.dead_closed(),
                    "failures": dict(holder.failures.most_common(5)),
                }
            )
        else:
            await holder.close_all()
            conn.send("closed")
            return


@dataclass
class Holders:
    procs: list[mp.process.BaseProcess]
    conns: list[Connection]

    @classmethod
    def start(cls, url: str, events: list[str], processes: int) -> Holders:
        ctx = mp.get_context("spawn")
        run = uuid.uuid4().hex[:6]
        procs: list[mp.process.BaseProcess] = []
        conns: list[Connection] = []
        for k in range(processes):
            parent, child = ctx.Pipe()
            spec = HolderSpec(url, events, f"idle-{run}-{k}", f"127.0.0.{k + 2}")
            p = ctx.Process(target=_holder_main, args=(spec, child), daemon=True)
            p.start()
            procs.append(p)
            conns.append(parent)
        return cls(procs, conns)

    def ask(self, command: str, args: list[Any], timeout_s: float = 600.0) -> list[Any]:
        for c, a in zip(self.conns, args, strict=True):
            c.send((command, a))
        out = []
        for p, c in zip(self.procs, self.conns, strict=True):
            if not c.poll(timeout_s):
                raise TimeoutError(f"viewer process {p.pid} did not answer {command!r}")
            out.append(c.recv())
        return out

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("close", [None] * len(self.procs), timeout_s=60)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)


def open_sockets(pid: int) -> int:
    """Sockets ``pid`` has open (from /proc: the gateway's count, whichever process)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    n = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
    return n


@dataclass
class Served:
    """The gateway's processes, with each one's sockets and RSS at the start."""

    pids: list[int]
    sockets0: dict[int, int] = field(default_factory=dict)
    rss0: int = 0

    def baseline(self) -> None:
        self.sockets0 = {p: open_sockets(p) for p in self.pids}
        self.rss0 = self.rss()

    def connections(self) -> int:
        return sum(max(0, open_sockets(p) - self.sockets0.get(p, 0)) for p in self.pids)

    def per_process(self) -> list[int]:
        return [max(0, open_sockets(p) - self.sockets0.get(p, 0)) for p in self.pids]

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids)

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)


def wait_processes(gateway: Any, settings: Settings, n: int, timeout_s: float = 90.0) -> list[int]:
    """Until the supervisor has ``n`` children and every one answers on the port."""
    deadline = time.monotonic() + timeout_s
    seen: set[int] = set()
    while time.monotonic() < deadline:
        pids = gateway_processes(gateway) if n > 1 else [gateway.pid]
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            # A new connection lands on any process of the port: ask until all answered.
            r = httpx.get(f"http://{settings.host}:{gateway.port}/healthz", timeout=2)
            seen.add(int(r.json()["pid"]))
        if len(pids) == n and set(pids) <= seen:
            return pids
        time.sleep(0.05)
    raise TimeoutError(f"{n} gateway processes did not all answer in {timeout_s}s")


def run(settings: Settings, *, quick: bool, target: int | None = None) -> dict[str, Any]:
    fd_limit = raise_nofile()
    # Each gateway process needs a few hundred descriptors of its own (Kafka, Cassandra,
    # Redis); the kernel spreads connections over the processes by a hash, not evenly:
    # plan each for three quarters of what its limit leaves.
    per_gateway = int((fd_limit - 400) * 0.75)
    want = target or (3_000 if quick else 50_000)
    gateways_n = max(1, -(-want // per_gateway))
    step = 1_000 if quick else 5_000
    ping_interval, ping_timeout = (3.0, 6.0) if quick else (10.0, 10.0)
    # Handshakes in flight per viewer process: with thousands held, the gateway's loop is
    # busy with their heartbeats and answers new handshakes more slowly.
    concurrency = 100 if quick else 25
    processes = max(2, -(-want // PER_PROCESS))
    notes: list[str] = []

    with AvroCodec(settings) as codec:
        codec.register_all()
        events = make_events(settings, codec, 10, f"conns-{uuid.uuid4().hex[:6]}")
    gateway = start_gateway(
        settings,
        1,
        env={
            "LIVECOMMENTS_GATEWAY_PING_INTERVAL_S": str(ping_interval),
            "LIVECOMMENTS_GATEWAY_PING_TIMEOUT_S": str(ping_timeout),
        },
        processes=gateways_n,
    )
    holders: Holders | None = None
    ramp: list[dict[str, Any]] = []
    try:
        wait_healthy(settings, [gateway])
        served = Served(wait_processes(gateway, settings, gateways_n))
        time.sleep(2.0)  # let them settle (imports, first reads) before the baseline
        served.baseline()
        baseline = served.rss0
        ramp.append({"connections": 0, "rss_bytes": baseline, "seconds": 0.0})
        holders = Holders.start(gateway.url(settings), events, processes)
        say(
            f"connections: up to {want} in steps of {step}, {gateways_n} gateway processes, "
            f"{processes} viewer processes"
        )
        failed = 0
        t0 = time.monotonic()
        cpu0 = served.cpu()
        opened = 0
        while opened < want:
            n = min(step, want - opened)
            shares = [n // processes + (k < n % processes) for k in range(processes)]
            got = holders.ask("open", [(k, concurrency) for k in shares])
            step_failed = sum(int(g["failed"]) for g in got)
            failed += step_failed
            opened += n
            held = served.connections()
            ramp.append(
                {
                    "connections": held,
                    "rss_bytes": served.rss(),
                    "seconds": round(time.monotonic() - t0, 1),
                    "per_process": served.per_process(),
                }
            )
            say(f"connections: {held} held, {failed} failed, RSS {ramp[-1]['rss_bytes'] >> 20} MiB")
            if step_failed > n * 0.05:
                notes.append(f"stopped the ramp at {held}: {step_failed} of {n} opens failed")
                break
        ramp_s = time.monotonic() - t0
        connect_cpu = served.cpu() - cpu0
        peak = served.connections()
        peak_rss = served.rss()
        peak_per_process = served.per_process()

        # Heartbeats: everyone idle through a few ping intervals, a sample probing,
        # and a few connections going silent.
        say(f"connections: heartbeats every {ping_interval:g} s, holding")
        before_dead = served.connections()
        dead = sum(holders.ask("dead", [DEAD_PER_PROCESS] * processes))
        idle_cpu0 = served.cpu()
        hold_s = 3 * ping_interval + ping_timeout + 4
        time.sleep(hold_s / 2)
        probes = holders.ask("probe", [50] * processes)
        time.sleep(hold_s / 2)
        idle_cpu_per_s = (served.cpu() - idle_cpu0) / hold_s
        after = served.connections()
        counts = holders.ask("count", [None] * processes)
    finally:
        if holders is not None:
            holders.stop()
        gateway.stop()

    live_dropped = sum(sum(c["dropped"].values()) for c in counts)
    unanswered = sum(int(p["unanswered"]) for p in probes)
    asked = sum(int(p["asked"]) for p in probes)
    ws_rtt = [x for p in probes for x in p["ws"]]
    app_rtt = [x for p in probes for x in p["app"]]
    # A peer that stops reading never sees its connection closed: count on the
    # gateway's side what it closed, less the live ones that were dropped.
    dead_dropped = max(0, before_dead - after - live_dropped)
    max_held = max(r["connections"] for r in ramp)
    if peak < max_held:
        notes.append(
            f"the gateway held {max_held} after one step but only {peak} after the last: it "
            "dropped live connections while the last step's handshakes and every "
            "connection's heartbeat competed for its one event loop"
        )
    heartbeat_ok = unanswered == 0 and live_dropped == 0 and dead_dropped == dead
    failures: Counter[str] = Counter()
    for c in counts:
        failures.update(c["failures"])
    if failures:
        notes.append(f"open failures (most common): {dict(failures.most_common(5))}")
    if live_dropped:
        notes.append(f"live connections dropped while idle: {[c['dropped'] for c in counts]}")
    if dead_dropped != dead:
        notes.append(f"{dead} connections stopped reading; the gateway dropped {dead_dropped}")
    if max(peak_per_process) >= fd_limit - 450:
        notes.append(
            f"a gateway process reached its open-files limit ({fd_limit}, the hard limit "
            f"here): connections per process {peak_per_process}; more processes go further"
        )
    notes.append(
        f"viewers are idle (joined, not posting); the ramp opens {concurrency} at a time per "
        f"viewer process ({processes} processes, each from its own loopback address) and "
        "stops at a step where more than 5 % of the opens fail"
    )
    return {
        "bench": "connections",
        "quick": quick,
        "params": {
            "target": want,
            "step": step,
            "concurrency_per_process": concurrency,
            "events": len(events),
            "viewer_processes": processes,
            "gateway_processes": gateways_n,
            "ping_interval_s": ping_interval,
            "ping_timeout_s": ping_timeout,
            "open_files_limit": fd_limit,
        },
        "metrics": {
            "connections": peak,
            "processes": gateways_n,
            "connections_per_process": peak_per_process,
            "max_held": max_held,
            "failed": failed + live_dropped,
            "rss_bytes_per_connection": round((peak_rss - baseline) / peak) if peak > 0 else None,
            "heartbeat_ok": heartbeat_ok,
            "gateway_rss_bytes": peak_rss,
            "gateway_rss_baseline_bytes": baseline,
            "connects_per_s": round(peak / ramp_s, 1) if ramp_s else None,
            "gateway_cpu_ms_per_connect": round(connect_cpu / peak * 1000, 3) if peak else None,
            "gateway_idle_cpu_cores": round(idle_cpu_per_s, 3),
            "pings_asked": asked,
            "pings_unanswered": unanswered,
            "ws_ping_p50_ms": round(percentile(ws_rtt, 50), 2),
            "ws_ping_p99_ms": round(percentile(ws_rtt, 99), 2),
            "app_ping_p50_ms": round(percentile(app_rtt, 50), 2),
            "app_ping_p99_ms": round(percentile(app_rtt, 99), 2),
            "dead_peers": dead,
            "dead_peers_dropped": dead_dropped,
            "live_dropped": live_dropped,
            "ramp": ramp,
        },
        "notes": notes,
    }
