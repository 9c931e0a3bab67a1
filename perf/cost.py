"""What a comment costs: CPU deltas per process → µs per comment, and percentiles.

Pure arithmetic, no I/O: the bench reads /proc (perf/procstat.py) before and after a
phase and hands the two readings here, so the figures it reports are testable alone.

Which processes count: ``cpu_us_per_comment`` is the pipeline's own cost, the workers
and the stack's servers (Kafka, Cassandra, Redis, the registry). The load generator, the
viewers and the gateway are *not* in it (the first two are the bench, the third is the
delivery side, reported on its own as ``gateway_cpu_us_per_comment``), but every process
is listed in ``cpu_us_per_comment_by_process``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# Names of processes left out of the pipeline's sum: the bench's own (load generator,
# viewer processes) and the delivery side (gateway), listed separately.
LOAD = "load"
GATEWAY = "gateway"
VIEWERS_PREFIX = "viewers"
# A process above this share of one core is (close to) saturated: one interpreter, one
# core at most, so it may be what limits the phase.
SATURATED_SHARE = 0.85


def is_pipeline(name: str) -> bool:
    """True for the processes whose CPU is the pipeline's cost (workers and the stack)."""
    return name not in (LOAD, GATEWAY) and not name.startswith(VIEWERS_PREFIX)


def tree_totals(
    pids: Mapping[str, int],
    children: Mapping[int, Iterable[int]],
    cpu: Callable[[int], float],
) -> dict[str, float]:
    """CPU of each named process plus its descendants, each process counted once.

    A descendant that is itself named is charged to its own name, not to its parent's:
    the bench starts the workers, the gateway and the viewers, which are not the load.
    """
    named = set(pids.values())
    out = {}
    for name, root in pids.items():
        total, todo, seen = 0.0, [root], set()
        while todo:
            p = todo.pop()
            if p in seen or (p != root and p in named):
                continue
            seen.add(p)
            total += cpu(p)
            todo.extend(children.get(p, ()))
        out[name] = total
    return out


def deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent per process between two readings.

    A process missing from ``before`` (started during the phase) counts from zero; one
    whose reading went down (it restarted: a new pid) counts only its new reading.
    """
    out = {}
    for name, now in after.items():
        was = before.get(name, 0.0)
        out[name] = now - was if now >= was else now
    return out


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """The machine's busy share between two ``(busy, total)`` jiffy readings (1.0 = every
    core busy): a phase with the machine full measured contention, not only our cost."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else None


@dataclass(frozen=True)
class PhaseCost:
    comments: int
    seconds: float
    cpu_s: dict[str, float]
    machine_busy: float | None = None  # share of all cores busy, every process counted

    @property
    def pipeline_cpu_s(self) -> float:
        return sum(v for k, v in self.cpu_s.items() if is_pipeline(k))

    def us_per_comment(self) -> float | None:
        """The pipeline's CPU µs per comment (workers + stack), None without comments."""
        return _per(self.pipeline_cpu_s, self.comments)

    def us_per_comment_by_process(self) -> dict[str, float | None]:
        return {k: _per(v, self.comments) for k, v in sorted(self.cpu_s.items())}

    def cores_by_process(self) -> dict[str, float]:
        """Share of one core each process used over the phase (1.0 = a whole core)."""
        if self.seconds <= 0:
            return {k: 0.0 for k in self.cpu_s}
        return {k: round(v / self.seconds, 3) for k, v in sorted(self.cpu_s.items())}

    def saturated(self) -> list[str]:
        """Processes that used more than :data:`SATURATED_SHARE` of a core."""
        return [k for k, v in self.cores_by_process().items() if v > SATURATED_SHARE]

    def as_dict(self) -> dict[str, object]:
        gateway = self.cpu_s.get(GATEWAY)
        return {
            "comments": self.comments,
            "seconds": round(self.seconds, 3),
            "cpu_us_per_comment": _round(self.us_per_comment()),
            "cpu_us_per_comment_by_process": {
                k: _round(v) for k, v in self.us_per_comment_by_process().items()
            },
            "gateway_cpu_us_per_comment": _round(_per(gateway, self.comments))
            if gateway is not None
            else None,
            "cpu_cores_by_process": self.cores_by_process(),
            "machine_busy_share": self.machine_busy,
        }


def _per(cpu_s: float | None, comments: int) -> float | None:
    if cpu_s is None or comments <= 0:
        return None
    return cpu_s / comments * 1e6


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank; None for no values.

    Nearest rank (no interpolation): the figure is a latency some comment really had.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
