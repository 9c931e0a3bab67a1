"""Starting and stopping the project's own processes (workers) for tests, perf and demo."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.settings import Settings


@dataclass
class Child:
    """A process of ours in its own session: kill reaches it and its children."""

    index: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(10)


def stop_children(children: Sequence[Child], timeout_s: float = 30.0) -> None:
    """Stop every child at once: SIGTERM to all, then wait for each (a worker's graceful
    stop takes seconds; one after another would add them up)."""
    running = [c for c in children if c.proc.poll() is None]
    for c in running:
        c.kill(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for c in running:
        try:
            c.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill(signal.SIGKILL)
            c.proc.wait(10)


@dataclass
class Worker(Child):
    def health(self, settings: Settings) -> dict[str, object] | None:
        try:
            r = httpx.get(
                f"http://{settings.host}:{settings.worker_port + self.index}/healthz", timeout=1.0
            )
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def start_worker(settings: Settings, index: int, env: dict[str, str] | None = None) -> Worker:
    logs = settings.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"worker-{index}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deploy.cli",
                "worker",
                "--index",
                str(index),
                "--loglevel",
                "warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return Worker(index, proc, log)


def wait_state_applied(settings: Settings, workers: list[Worker], timeout_s: float = 60.0) -> None:
    """Until every worker has applied everything written to events.settings and
    users.profiles so far (a ban or a hide written a moment ago is in effect)."""
    from confluent_kafka import Consumer, TopicPartition

    from connectors.topics import EVENTS_SETTINGS, USERS_PROFILES

    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe"})
    try:
        ends: dict[str, int] = {}
        for topic in (EVENTS_SETTINGS, USERS_PROFILES):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                ends[f"{topic}/{p}"] = high
    finally:
        consumer.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        behind = False
        for w in workers:
            h = w.health(settings) or {}
            applied = h.get("state_offsets")
            if not isinstance(applied, dict) or any(
                end > 0 and int(applied.get(key, 0)) < end for key, end in ends.items()
            ):
                behind = True
                break
        if not behind:
            return
        time.sleep(0.2)
    raise TimeoutError(f"workers did not apply the state topics up to {ends} in {timeout_s}s")


def wait_assigned(
    settings: Settings, workers: list[Worker], partitions: int, timeout_s: float = 120.0
) -> None:
    """Until the workers are started and own every partition of comments.submitted."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned: set[str] = set()
        ready = True
        # Every worker must own something: the union alone can be complete while one of
        # them has not joined yet (and a kill test would then kill an idle worker).
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker {w.index} exited; see {w.log}")
            h = w.health(settings)
            if not h or not h.get("ok"):
                ready = False
                break
            assigned = h.get("assigned")
            if not isinstance(assigned, list) or (len(workers) <= partitions and not assigned):
                ready = False
                break
            owned.update(str(a) for a in assigned)
        if ready and len(owned) >= partitions:
            return
        time.sleep(0.5)
    raise TimeoutError(f"workers did not own all {partitions} partitions in {timeout_s}s")


def wait_events_known(
    settings: Settings, workers: list[Worker], at_least: int, timeout_s: float = 30.0
) -> None:
    """Until every worker's global state holds ``at_least`` events."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = [int(str((w.health(settings) or {}).get("events", 0))) for w in workers]
        if all(c >= at_least for c in counts):
            return
        time.sleep(0.2)
    raise TimeoutError(f"workers did not learn {at_least} events in {timeout_s}s")


def wait_users_known(
    settings: Settings, workers: list[Worker], at_least: int, timeout_s: float = 30.0
) -> None:
    """Until every worker's global state holds ``at_least`` user profiles."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = [int(str((w.health(settings) or {}).get("users", 0))) for w in workers]
        if all(c >= at_least for c in counts):
            return
        time.sleep(0.1)
    raise TimeoutError(f"workers did not learn {at_least} users in {timeout_s}s")


@dataclass
class GatewayChild(Child):
    """A gateway process (``livecomments gateway``) on its own port."""

    port: int = 0

    def url(self, settings: Settings) -> str:
        return f"ws://{settings.host}:{self.port}/"

    def healthy(self, settings: Settings) -> bool:
        try:
            r = httpx.get(f"http://{settings.host}:{self.port}/healthz", timeout=1.0)
            return r.status_code == 200
        except httpx.HTTPError:
            return False


def start_gateway(
    settings: Settings, index: int = 0, env: dict[str, str] | None = None, processes: int = 1
) -> GatewayChild:
    """A gateway on ``gateway_port + index``, its log in the state dir's logs; with
    ``processes`` > 1, that many on the one port under the gateway's supervisor (the
    returned pid is the supervisor's; :func:`gateway_processes` finds the others)."""
    logs = settings.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"gateway-{index}.log"
    port = settings.gateway_port + index
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "deploy.cli", "gateway", "--port", str(port)),
                *("--processes", str(processes), "-l", "warning"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "LIVECOMMENTS_GATEWAY_ID": f"gw-{index}", **(env or {})},
        )
    return GatewayChild(index, proc, log, port)


def wait_healthy(settings: Settings, gateways: list[GatewayChild], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for g in gateways:
            if g.proc.poll() is not None:
                raise RuntimeError(f"gateway {g.index} exited; see {g.log}")
        if all(g.healthy(settings) for g in gateways):
            return
        time.sleep(0.3)
    raise TimeoutError(f"gateways not healthy within {timeout_s}s")


def gateway_processes(gateway: GatewayChild) -> list[int]:
    """The pids serving a gateway's port: the children of its supervisor, else itself."""
    try:
        text = Path(f"/proc/{gateway.pid}/task/{gateway.pid}/children").read_text()
    except OSError:
        return [gateway.pid]
    children = [int(p) for p in text.split()]
    return children or [gateway.pid]
