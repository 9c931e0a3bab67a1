"""Is anyone else using this stack? The fault drills stop its servers: they must be alone.

A drill that restarts Kafka under someone's test, or counts comments a foreign worker
also processed, measures nothing. Before and after each drill the drills look at who is
connected to the stack's servers (Kafka, Cassandra, Redis, the registry) and who
listens on the ports their own workers and gateways need; any process that is neither
a server of the stack nor the drills' own (this process and its children) is foreign.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deploy.settings import Settings
from deploy.stack import launcher

_SS_USERS = re.compile(r'\("([^"]*)",pid=(\d+)')


@dataclass(frozen=True)
class Foreign:
    """A process that uses the stack and is not ours."""

    pid: int
    name: str
    why: str  # "connected to redis (16379)", "listens on 28765 (gateway 0)"

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.name}): {self.why} — {_cmdline(self.pid)}"


class StackInUse(RuntimeError):
    """The stack has users other than this run; the drills refuse to break it."""

    def __init__(self, settings: Settings, foreign: list[Foreign], when: str) -> None:
        self.foreign = foreign
        lines = "\n".join(f"  {f}" for f in foreign)
        super().__init__(
            f"{when}: the stack of {settings.state_path} is in use by processes this run did "
            f"not start:\n{lines}\nThe drills stop and restart its servers and audit every "
            "comment on it; run them on a stack of their own (its own LIVECOMMENTS_STATE_DIR "
            "and ports), or stop those processes first."
        )


def server_ports(settings: Settings) -> dict[int, str]:
    return {
        settings.kafka_port: "kafka",
        settings.cassandra_port: "cassandra",
        settings.redis_port: "redis",
        settings.registry_port: "registry",
    }


def rig_ports(settings: Settings, workers: int = 2, gateways: int = 2) -> dict[int, str]:
    """The ports the drills' own workers and gateways listen on."""
    ports = {settings.worker_port + i: f"worker {i}" for i in range(workers)}
    ports |= {settings.gateway_port + i: f"gateway {i}" for i in range(gateways)}
    return ports


def foreign_users(settings: Settings, listen_ports: dict[int, str]) -> list[Foreign]:
    """Processes connected to the stack's servers, or listening on ``listen_ports``, that
    are neither the servers themselves nor this process or one of its descendants."""
    servers = server_ports(settings)
    ours = _descendants(os.getpid())
    for comp in launcher.status(settings):
        if comp.pid is not None:
            ours |= _descendants(comp.pid)
    found: dict[int, Foreign] = {}
    for _local, peer, name, pid in _sockets("state", "established"):
        if pid in ours or pid in found or peer not in servers:
            continue
        found[pid] = Foreign(pid, name, f"connected to {servers[peer]} ({peer})")
    for local, _peer, name, pid in _sockets("state", "listening"):
        if pid in ours or pid in found or local not in listen_ports:
            continue
        found[pid] = Foreign(pid, name, f"listens on {local} ({listen_ports[local]})")
    return sorted(found.values(), key=lambda f: f.pid)


def check_alone(settings: Settings, listen_ports: dict[int, str], when: str) -> None:
    """Raise :class:`StackInUse` if anything foreign uses the stack."""
    foreign = foreign_users(settings, listen_ports)
    if foreign:
        raise StackInUse(settings, foreign, when)


def _sockets(*state: str) -> Iterable[tuple[int, int, str, int]]:
    """(local port, peer port, process name, pid) of every TCP socket in ``state``."""
    try:
        out = subprocess.run(
            ["ss", "-tnpH", *state], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"cannot list sockets with `ss` to check who uses the stack: {e}") from e
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        local, peer = _port(cols[2]), _port(cols[3])
        for name, pid in _SS_USERS.findall(" ".join(cols[4:])):
            yield local, peer, name, int(pid)


def _port(address: str) -> int:
    tail = address.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "(gone)"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160]
