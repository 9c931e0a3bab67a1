"""What a process costs, read from /proc: CPU seconds, RSS, the machine's busy share.

Benchmarks charge CPU and memory to the process that spent it (the gateway, a worker, a
viewer process, a server of the stack), so a figure says who was the bottleneck.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.settings import Settings
from deploy.stack.process import rss_bytes
from perf.cost import tree_totals

__all__ = [
    "CpuMeter",
    "cpu_readings",
    "cpu_seconds",
    "machine_busy",
    "raise_nofile",
    "rss_bytes",
    "say",
    "stack_pids",
    "thread_cpu",
]

_TICKS = os.sysconf("SC_CLK_TCK")
_T0 = time.monotonic()


def say(line: str) -> None:
    """Progress of a long benchmark, on stderr (stdout carries the JSON)."""
    sys.stderr.write(f"[{time.monotonic() - _T0:6.1f}s] {line}\n")
    sys.stderr.flush()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0.0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces: count fields after its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children() -> dict[int, list[int]]:
    """Parent pid → its children's pids, for every process visible in /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def cpu_readings(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process *and its descendants*.

    A launcher may run a server under a wrapper (a shell that starts the JVM) and a
    process may have helpers; the work is charged to the name either way. A child's
    time is in its own /proc/PID/stat while it runs, so the tree is summed, not cutime.
    A descendant that has a name of its own in ``pids`` is left to that name.
    """
    return tree_totals(pids, _children(), cpu_seconds)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread of ``pid``: thread id → (name, CPU seconds so far). Which part of a
    process (its event loop, librdkafka's threads, a JVM's pools, GC, the JIT) spends
    the CPU, including time outside any Python or Java frame. Keyed by thread id, not
    name: names repeat (``comm`` is cut at 15 characters) and change (Cassandra's shared
    pool renames a thread after the stage it runs)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICKS)
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return float(total - idle), float(total)


def stack_pids(settings: Settings) -> dict[str, int]:
    """Pids of the stack's servers (kafka, cassandra, redis, registry) that run here."""
    from deploy.stack import launcher

    return {s.name: s.pid for s in launcher.status(settings) if s.pid}


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; children inherit it.

    Returns the limit now in force (an unprivileged process cannot go past the hard one).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class CpuMeter:
    """CPU share per named process over a window: ``start()``, then ``shares()``."""

    pids: dict[str, int]
    _cpu: dict[str, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0

    def start(self) -> None:
        self._cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_busy()
        self._wall = time.monotonic()

    def cpu_seconds(self) -> dict[str, float]:
        return {n: cpu_seconds(pid) - self._cpu.get(n, 0.0) for n, pid in self.pids.items()}

    def shares(self) -> dict[str, float]:
        """Cores used by each process since ``start()`` (1.0 = one core), and the
        machine's busy share (``machine``: 1.0 = every core busy)."""
        wall = max(time.monotonic() - self._wall, 1e-9)
        out = {n: round(s / wall, 3) for n, s in self.cpu_seconds().items()}
        busy, total = machine_busy()
        dt = total - self._machine[1]
        out["machine"] = round((busy - self._machine[0]) / dt, 3) if dt > 0 else 0.0
        return out
