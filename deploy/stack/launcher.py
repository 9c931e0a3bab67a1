"""`livecomments stack up | down | status | logs`: the servers the product runs on.

Three backends, chosen by ``LIVECOMMENTS_STACK``:

- ``local`` (default): Kafka, Cassandra and the registry as JVM processes from Maven
  Central, Redis from Debian; everything under the state dir.
- ``containers``: the official images through testcontainers (needs a Docker engine).
- ``external``: servers that already run elsewhere; only readiness and bootstrap.

``up`` is idempotent: on a running stack it reports status and changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from deploy.settings import Settings
from deploy.stack import probes
from deploy.stack.errors import StackError
from deploy.stack.local import LocalComponent, components
from deploy.stack.process import pid_alive, port_open, port_owner, rss_bytes
from deploy.stack.progress import Progress as Progress

NAMES = ("kafka", "cassandra", "redis", "registry")


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    state: str  # ready | starting | stopped | not_ready | foreign
    address: str
    pid: int | None
    version: str | None
    rss_bytes: int

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """One `up` or `down` at a time per state dir (two at once would fight over pid files)."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    with (settings.state_path / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def up(settings: Settings, out: TextIO = sys.stdout) -> list[ComponentStatus]:
    """Bring the stack up (or find it up), bootstrap it, and return its status."""
    with _exclusive(settings):
        return _up(settings, out)


def _up(settings: Settings, out: TextIO) -> list[ComponentStatus]:
    from deploy.stack import bootstrap

    progress = Progress(out)
    if settings.stack == "local":
        _up_local(settings, progress)
    elif settings.stack == "external":
        _wait_external(settings, progress)
    else:
        from deploy.stack import containers

        containers.up(settings, progress)
    bootstrap.run(settings, progress)
    out.write(f"stack ready in {progress.elapsed():.1f}s\n")
    return status(settings)


def _up_local(settings: Settings, progress: Progress) -> None:
    settings.state_path.mkdir(parents=True, exist_ok=True)
    (settings.state_path / "run").mkdir(exist_ok=True)
    pending: list[LocalComponent] = []
    for comp in components(settings):
        pid = comp.process.owned_pid()
        if pid is not None:
            progress.say(comp.name, f"already running (pid {pid})")
            continue
        for port in comp.ports():
            if port_open(settings.host, port):
                raise StackError(
                    comp.name,
                    f"port {port} on {settings.host} is in use by {port_owner(port)}, "
                    "which livecomments did not start; stop it or set "
                    f"LIVECOMMENTS_{comp.name.upper()}_PORT",
                )
        pending.append(comp)

    for comp in pending:
        progress.say(comp.name, "resolving")
        comp.resolve()
    try:
        for comp in pending:
            comp.prepare()
            pid = comp.process.start(comp.argv(), cwd=comp.root, preexec_fn=comp.preexec())
            progress.say(comp.name, f"starting (pid {pid})")
        _wait_ready(settings, progress, components(settings), lambda c: c.process.owned_pid())
    except BaseException:
        # Leave no half stack behind: stop what this call started, keep what was running.
        for comp in pending:
            if comp.process.stop(timeout_s=20):
                progress.say(comp.name, "stopped (up failed)")
        raise


def _wait_ready(
    settings: Settings,
    progress: Progress,
    comps: list[LocalComponent],
    pid_of: Callable[[LocalComponent], int | None],
) -> None:
    deadline = time.monotonic() + settings.startup_timeout_s
    waiting = {c.name: c for c in comps}
    started = {c.name: time.monotonic() for c in comps}
    while waiting:
        for name, comp in list(waiting.items()):
            pid = pid_of(comp)
            if pid is None or not pid_alive(pid):
                raise StackError(
                    name,
                    "the process exited before it was ready",
                    log_tail=_log_tail(comp),
                )
            if comp.ready():
                took = time.monotonic() - started[name]
                progress.say(name, f"ready at {comp.address()} ({took:.1f}s)")
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            name, comp = next(iter(waiting.items()))
            raise StackError(
                name,
                f"not ready after {settings.startup_timeout_s:.0f}s",
                log_tail=_log_tail(comp),
            )
        if waiting:
            time.sleep(0.5)


def _log_tail(comp: LocalComponent, lines: int = 25) -> str:
    from deploy.stack.process import tail_file

    for path in comp.logs():
        if path.exists() and path.stat().st_size > 0:
            return f"--- {path}\n{tail_file(path, lines)}"
    return "(no log written)"


def _wait_external(settings: Settings, progress: Progress) -> None:
    checks: dict[str, Callable[[], bool]] = {
        "kafka": lambda: probes.kafka_ready(settings.bootstrap_servers),
        "cassandra": lambda: probes.cassandra_ready(settings),
        "redis": lambda: probes.redis_ready(settings),
        "registry": lambda: probes.registry_ready(settings),
    }
    deadline = time.monotonic() + settings.startup_timeout_s
    for name, check in checks.items():
        while not check():
            if time.monotonic() > deadline:
                raise StackError(name, "the external server does not answer; check its address")
            time.sleep(1.0)
        progress.say(name, "reachable")


def down(settings: Settings, purge: bool = False, out: TextIO = sys.stdout) -> None:
    with _exclusive(settings):
        _down(settings, purge, out)


def _down(settings: Settings, purge: bool, out: TextIO) -> None:
    if settings.stack == "containers":
        from deploy.stack import containers

        containers.down(settings, out, purge=purge)
    elif settings.stack == "local":
        # Reverse order: clients of Kafka (the registry does not use it, but workers may
        # run) go before it; Cassandra flushes memtables on SIGTERM.
        for comp in reversed(components(settings)):
            t0 = time.monotonic()
            if comp.process.stop():
                out.write(f"  {comp.name:<10} stopped ({time.monotonic() - t0:.1f}s)\n")
            else:
                out.write(f"  {comp.name:<10} was not running\n")
    else:
        out.write("external stack: nothing to stop\n")
    if purge and settings.stack == "local":
        # Workers' local tables are caches of Kafka changelogs: with Kafka's data gone they
        # must go too (Faust refuses a store ahead of its changelog).
        for name in (*NAMES, "workers", "logs"):
            shutil.rmtree(settings.state_path / name, ignore_errors=True)
        out.write(f"  purged data under {settings.state_path} (kept lib/)\n")


def status(settings: Settings) -> list[ComponentStatus]:
    if settings.stack == "local":
        result = []
        for comp in components(settings):
            pid = comp.process.owned_pid()
            if pid is None:
                foreign = any(port_open(settings.host, p) for p in comp.ports()[:1])
                state = "foreign" if foreign else "stopped"
                result.append(ComponentStatus(comp.name, state, comp.address(), None, None, 0))
                continue
            ready = comp.ready()
            result.append(
                ComponentStatus(
                    comp.name,
                    "ready" if ready else "starting",
                    comp.address(),
                    pid,
                    comp.version() if ready else None,
                    rss_bytes(pid),
                )
            )
        return result
    addresses = {
        "kafka": settings.bootstrap_servers,
        "cassandra": ",".join(settings.cassandra_contact_points) + f":{settings.cassandra_port}",
        "redis": settings.redis_address,
        "registry": settings.registry_address,
    }
    answers = {
        "kafka": probes.kafka_ready(settings.bootstrap_servers),
        "cassandra": probes.cassandra_ready(settings),
        "redis": probes.redis_ready(settings),
        "registry": probes.registry_ready(settings),
    }
    versions = {
        "kafka": probes.kafka_version(settings.bootstrap_servers),
        "cassandra": probes.cassandra_version(settings),
        "redis": probes.redis_version(settings),
        "registry": probes.registry_version(settings),
    }
    return [
        ComponentStatus(
            n, "ready" if answers[n] else "not_ready", addresses[n], None, versions[n], 0
        )
        for n in NAMES
    ]


def log_paths(settings: Settings, name: str) -> list[Path]:
    for comp in components(settings):
        if comp.name == name:
            return comp.logs()
    raise StackError(name, f"no such component; choose one of {', '.join(NAMES)}")
