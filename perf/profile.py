"""``perf pipeline --profile DIR``: where a phase's CPU goes, per process.

Python workers: py-spy (sampling, from outside the process, ``--nonblocking`` so the
worker is never paused) records collapsed stacks (``--format raw``: one line per stack,
``frame;frame;... count``, which speedscope also opens). It samples only the thread
holding the GIL (``--gil``): without it, threads that wait in C (the event loop in
epoll, librdkafka's poll) were counted as busy and drowned the profile. What runs
outside the GIL (librdkafka, the Cassandra driver's I/O, onnxruntime) is shown instead
by each thread's CPU from /proc over the same window (``threads_cpu_s``).

JVMs (Kafka, Cassandra): their own flight recorder, ``jcmd PID JFR.start`` and
``JFR.stop``, read back with ``jfr print``. Each recording gets a text summary beside
it: the top functions by *self* samples (the frame on top of the stack: where the CPU
is spent) and by *inclusive* samples (anywhere in the stack: which stage it is spent
under).

The parsers below are pure (lines in, counts out); the recorders are the thin shell.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from perf.procstat import thread_cpu

TOP_N = 25
# The project's own code in py-spy's frame names: what "which stage" means for a worker.
OWN_CODE = ("topologies/", "connectors/", "schemas/")
_LINE_NO = re.compile(r":\d+\)$")
_JFR_FRAME = re.compile(r"^\s*(?P<frame>[^\s(]+)\(.*?\)\s+line:")


# -- pure: collapsed stacks and JFR samples → top functions ---------------------------


@dataclass
class SampleTally:
    """Sample counts by function: self (on top of the stack) and inclusive (anywhere)."""

    samples: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    def add(self, frames: list[str], count: int) -> None:
        """``frames`` from the outermost to the innermost (the one running)."""
        if not frames or count <= 0:
            return
        self.samples += count
        self.self_counts[frames[-1]] += count
        for f in set(frames):  # a recursive function counts once per stack
            self.inclusive[f] += count

    def top(
        self, n: int = TOP_N, *, inclusive: bool = False, within: tuple[str, ...] = ()
    ) -> list[tuple[str, int, float]]:
        """``(function, samples, share of all samples)``, most first; ``within``: only
        functions whose name holds one of these (the project's own packages: the
        inclusive list is otherwise led by the entry points every stack shares)."""
        counts = self.inclusive if inclusive else self.self_counts
        total = max(self.samples, 1)
        ranked = (
            (f, c) for f, c in counts.most_common() if not within or any(w in f for w in within)
        )
        return [(f, c, c / total) for f, c in itertools.islice(ranked, n)]

    def text(self, title: str, n: int = TOP_N) -> str:
        lines = [f"# {title}: {self.samples} samples", "", "## self (where the CPU is spent)"]
        lines += [f"{share:6.1%} {c:8d}  {f}" for f, c, share in self.top(n)]
        lines += ["", "## inclusive (what it is spent under)"]
        lines += [f"{share:6.1%} {c:8d}  {f}" for f, c, share in self.top(n, inclusive=True)]
        own = self.top(n, inclusive=True, within=OWN_CODE)
        if own:
            lines += ["", "## inclusive, the project's own code (which stage)"]
            lines += [f"{share:6.1%} {c:8d}  {f}" for f, c, share in own]
        return "\n".join(lines) + "\n"


def _frame_name(frame: str) -> str:
    """``"func (path/file.py:12)"`` → ``"func (path/file.py)"``: one entry per function."""
    return _LINE_NO.sub(")", frame.strip())


def tally_collapsed(lines: Iterable[str]) -> SampleTally:
    """py-spy's raw format: ``frame;frame;...;frame count``, outermost frame first."""
    t = SampleTally()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f]
        # With --threads/--subprocesses py-spy prefixes "thread (0x..)"/"process N:..."
        # pseudo-frames; they are not functions.
        frames = [f for f in frames if not f.startswith(("process ", "thread ("))]
        t.add(frames, int(count))
    return t


def tally_jfr(lines: Iterable[str]) -> SampleTally:
    """``jfr print --events jdk.ExecutionSample``: each event's ``stackTrace = [`` block
    lists frames innermost first (``pkg.Class.method(args) line: N``), possibly cut with
    ``...``."""
    t = SampleTally()
    frames: list[str] | None = None
    for line in lines:
        s = line.strip()
        if s.startswith("stackTrace = ["):
            frames = []
            continue
        if frames is None:
            continue
        if s.startswith("]"):
            t.add(list(reversed(frames)), 1)
            frames = None
            continue
        m = _JFR_FRAME.match(line)
        if m:
            frames.append(m.group("frame"))
    return t


_POOL_SUFFIX = re.compile(r"[-_#: ]*\d+$")


def thread_groups(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per thread pool between two per-thread readings (thread id → (name,
    CPU s)), most first. Each thread's time is the difference of its own readings (a
    thread born in the window counts from zero; one that ended is not seen), charged to
    its name at the end.

    Threads of one pool differ by a trailing number (``MutationStage-3``, ``GC
    Thread#1``, ``rdk:broker1``): summed under the name without it. JFR samples Java
    frames only, so for a JVM this is where GC, the JIT and native I/O show.
    """
    out: dict[str, float] = {}
    for tid, (name, now) in after.items():
        spent = now - before.get(tid, (name, 0.0))[1]
        if spent > 0:
            group = _POOL_SUFFIX.sub("", name) or name
            out[group] = out.get(group, 0.0) + spent
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


# -- recorders ------------------------------------------------------------------------


def py_spy_path() -> str | None:
    """py-spy from this interpreter's environment (the ``test`` extra), else the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    name: str
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0
    kind: str = "py-spy"  # or "jfr"
    error: str | None = None


@dataclass
class Profiler:
    """Records the named processes between ``start()`` and ``stop()``."""

    out_dir: Path
    python: dict[str, int]  # name → pid, recorded with py-spy
    jvms: dict[str, int]  # name → pid, recorded with JFR
    rate_hz: int = 100
    recordings: list[Recording] = field(default_factory=list)
    _threads: dict[str, dict[int, tuple[str, float]]] = field(default_factory=dict)

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._threads = {name: thread_cpu(pid) for name, pid in self._all().items()}
        spy = py_spy_path()
        for name, pid in self.python.items():
            rec = Recording(name, self.out_dir / f"{name}.pyspy.txt", pid=pid)
            if spy is None:
                rec.error = "py-spy not installed (pip install -e '.[test]')"
            else:
                log = (self.out_dir / f"{name}.pyspy.log").open("wb")
                rec.proc = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(self.rate_hz),
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--gil",
                        "--output",
                        str(rec.path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.recordings.append(rec)
        for name, pid in self.jvms.items():
            rec = Recording(name, self.out_dir / f"{name}.jfr", pid=pid, kind="jfr")
            rec.error = _jcmd(
                pid,
                "JFR.start",
                "name=perfbench",
                "settings=profile",
                f"filename={rec.path}",
            )
            self.recordings.append(rec)

    def _all(self) -> dict[str, int]:
        return self.python | self.jvms

    def stop(self) -> dict[str, dict[str, object]]:
        """Stop every recording, write each summary; per process its top entries."""
        threads = {
            name: thread_groups(self._threads[name], thread_cpu(pid))
            for name, pid in self._all().items()
        }
        for rec in self.recordings:
            if rec.proc is not None:
                # py-spy writes its output when interrupted, as after a Ctrl-C.
                with contextlib.suppress(ProcessLookupError):
                    rec.proc.send_signal(signal.SIGINT)
            elif rec.kind == "jfr" and rec.error is None:
                rec.error = _jcmd(rec.pid, "JFR.stop", "name=perfbench")
        out: dict[str, dict[str, object]] = {}
        for rec in self.recordings:
            if rec.proc is not None:
                try:
                    rec.proc.wait(60)
                except subprocess.TimeoutExpired:
                    rec.proc.kill()
                    rec.error = "py-spy did not finish writing in 60 s"
            out[rec.name] = self._summarise(rec, threads.get(rec.name))
        return out

    def _summarise(self, rec: Recording, threads: dict[str, float] | None) -> dict[str, object]:
        if rec.error is None and not rec.path.exists():
            rec.error = f"no recording written; see {rec.path.with_suffix('.log')}"
        if rec.error is not None:
            return {"error": rec.error}
        if rec.kind == "jfr":
            printed = subprocess.run(
                ["jfr", "print", "--events", "jdk.ExecutionSample", str(rec.path)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            tally = tally_jfr(printed.stdout.splitlines())
        else:
            with rec.path.open() as f:
                tally = tally_collapsed(f)
        summary = rec.path.parent / f"{rec.name}.top.txt"
        text = tally.text(f"{rec.name} ({rec.kind}, pid {rec.pid})")
        if threads:
            text += "\n## CPU seconds by thread pool (/proc, same window)\n"
            text += "".join(f"{v:8.2f}  {t}\n" for t, v in threads.items())
        summary.write_text(text)
        return {
            "recording": str(rec.path),
            "summary": str(summary),
            "samples": tally.samples,
            **({"threads_cpu_s": dict(list(threads.items())[:12])} if threads else {}),
            "top_self": [[f, round(s, 4)] for f, _c, s in tally.top(10)],
            "top_inclusive": [
                [f, round(s, 4)]
                for f, _c, s in tally.top(
                    10, inclusive=True, within=OWN_CODE if rec.kind == "py-spy" else ()
                )
            ],
        }


def _jcmd(pid: int, *command: str) -> str | None:
    """Run ``jcmd PID ...``; the error text, or None if it worked."""
    if shutil.which("jcmd") is None:
        return "jcmd not found (a JDK's tools are needed for JFR)"
    try:
        r = subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"jcmd {' '.join(command)} timed out"
    if r.returncode != 0 or "Exception" in r.stdout:
        return f"jcmd {' '.join(command)}: {(r.stdout + r.stderr).strip()[-300:]}"
    return None
