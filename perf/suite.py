"""``python -m perf all [--quick] --json-dir DIR``: every benchmark, a summary, plots.

Each benchmark of ../shared/BENCHMARKS.md runs in its own process, exactly as a user
would run it (``python -m perf NAME [--quick] --json DIR/NAME.json``), its progress in
``DIR/logs/NAME.log`` (``--skip NAME`` leaves one out: ``drills`` restarts the
stack's servers, which a shared stack may not want). Besides ``pipeline`` (2 workers),
``pipeline-1-worker`` runs the same bench with one worker, for throughput against
workers. After each benchmark ``DIR/summary.md`` is rewritten, so an interrupted run
keeps what it measured; at the end come the plots (PNG, matplotlib):

    latency_vs_load.png        fanout's p50/p99 (submitted → viewer) at each rate
    throughput_vs_workers.png  pipeline comments/s with 1 and 2 workers
    connections_vs_memory.png  gateway RSS while idle connections ramp up
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf.procstat import say


@dataclass(frozen=True)
class Bench:
    file: str  # DIR/<file>.json
    argv: tuple[str, ...]


BENCHES = (
    Bench("kafka-baseline", ("kafka-baseline",)),
    Bench("pipeline", ("pipeline", "--workers", "2")),
    Bench("pipeline-1-worker", ("pipeline", "--workers", "1")),
    Bench("fanout", ("fanout",)),
    Bench("connections", ("connections",)),
    Bench("moderation", ("moderation",)),
    Bench("drills", ("drills",)),
)

# The metrics BENCHMARKS.md requires, in the summary's order.
KEY_METRICS = {
    "kafka-baseline": ("produce_msgs_per_s", "consume_msgs_per_s"),
    "pipeline": (
        "comments_per_s",
        "cpu_us_per_comment",
        "lost",
        "duplicated",
        "steady.rate",
        "steady.cpu_us_per_comment",
        "steady.p50_ms",
        "steady.p99_ms",
        "kafka_produce_msgs_per_s",
        "ratio_to_kafka",
    ),
    "fanout": (
        "viewers",
        "comments_per_s",
        "deliveries_per_s",
        "p50_ms",
        "p99_ms",
        "lost",
        "gateway_cpu_s_per_million_deliveries",
    ),
    "connections": ("connections", "failed", "rss_bytes_per_connection", "heartbeat_ok"),
    "moderation": ("toxicity_auc", "toxicity_f1", "spam_f1", "us_per_comment"),
}
DRILL_METRICS = ("acked", "persisted", "lost", "duplicated", "viewer_gaps", "reconnects")


def run(out_dir: Path, *, quick: bool, skip: list[str] | None = None) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    timeout_s = 900 if quick else 5400
    failed: list[str] = []
    # Kept across runs into the same DIR, so a bench left out with --skip keeps its time.
    times = out_dir / "logs" / "seconds.json"
    seconds: dict[str, float] = json.loads(times.read_text()) if times.exists() else {}
    for bench in BENCHES:
        if bench.file in (skip or ()):
            say(f"all: {bench.file} skipped (--skip); an earlier DIR/{bench.file}.json stays")
            continue
        path = out_dir / f"{bench.file}.json"
        log = out_dir / "logs" / f"{bench.file}.log"
        argv = [sys.executable, "-m", "perf", *bench.argv, "--json", str(path)]
        if quick:
            argv.append("--quick")
        say(f"all: {bench.file} ({' '.join(argv[2:])}); log {log}")
        path.unlink(missing_ok=True)
        t0 = time.monotonic()
        with log.open("w") as err:
            try:
                rc = subprocess.run(
                    argv, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout_s, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
                err.write(f"\ntimed out after {timeout_s} s\n")
        seconds[bench.file] = round(time.monotonic() - t0, 1)
        times.write_text(json.dumps(seconds))
        if rc != 0 or not path.exists():
            failed.append(bench.file)
            say(f"all: {bench.file} FAILED (exit {rc}); see {log}")
        else:
            say(f"all: {bench.file} done in {seconds[bench.file]:.0f} s: {_headline(path)}")
        write_summary(out_dir, quick=quick, seconds=seconds, failed=failed)
    for name, plot in (
        ("latency_vs_load", plot_latency),
        ("throughput_vs_workers", plot_throughput),
        ("connections_vs_memory", plot_connections),
    ):
        target = out_dir / f"{name}.png"
        try:
            if plot(out_dir, target):
                say(f"all: plot {target}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            say(f"all: plot {name} failed: {type(e).__name__}: {e}")
    write_summary(out_dir, quick=quick, seconds=seconds, failed=failed)
    say(f"all: summary in {out_dir / 'summary.md'}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


def load(out_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((out_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _headline(path: Path) -> str:
    data = json.loads(path.read_text())
    metrics = data.get("metrics", {})
    keys = KEY_METRICS.get(str(data.get("bench")), ())
    return ", ".join(f"{k} {_fmt(metrics.get(k))}" for k in keys) or "written"


def _metric(metrics: dict[str, Any], key: str) -> Any:
    """``metrics[key]``; a dotted key (``steady.p50_ms``) reads a nested phase."""
    value: Any = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# ../shared/BENCHMARKS.md: `--quick` finishes in under this (the whole command).
QUICK_LIMIT_S = 60.0


def _seconds(value: float | None, quick: bool) -> str:
    if value is None:
        return ""
    over = quick and value >= QUICK_LIMIT_S
    return f"**{value:g}** (over {QUICK_LIMIT_S:g})" if over else f"{value:g}"


def write_summary(
    out_dir: Path, *, quick: bool, seconds: dict[str, float], failed: list[str]
) -> None:
    lines = [
        f"# Benchmarks ({'quick' if quick else 'full'} run)",
        "",
        f"Written by `python -m perf all{' --quick' if quick else ''} --json-dir {out_dir}` "
        f"on {time.strftime('%Y-%m-%d %H:%M')}. One row per benchmark; every figure is in "
        "its JSON file, with the bench's notes.",
        "",
        "| bench | metrics | seconds |",
        "|---|---|---|",
    ]
    for bench in BENCHES:
        name = bench.file
        if name in failed:
            lines.append(
                f"| {name} | **failed** (see logs/{name}.log) | "
                f"{_seconds(seconds.get(name), quick)} |"
            )
            continue
        data = load(out_dir, name)
        if data is None:
            continue
        metrics = data.get("metrics", {})
        if data.get("bench") == "drills":
            for drill, m in metrics.items():
                cells = ", ".join(f"{k} {_fmt(m.get(k))}" for k in DRILL_METRICS)
                lines.append(f"| drills: {drill} | {cells} | {m.get('seconds', '')} |")
            verdict = "ok" if data.get("ok") else "**not ok**"
            if data.get("aborted"):
                verdict += ", aborted: another process used the stack"
            lines.append(
                f"| drills (all) | {len(metrics)} drills, {verdict} | "
                f"{_seconds(seconds.get(name), quick)} |"
            )
            continue
        cells = ", ".join(
            f"{k} {_fmt(_metric(metrics, k))}" for k in KEY_METRICS.get(str(data.get("bench")), ())
        )
        if name == "pipeline-1-worker":
            cells = f"workers 1: comments_per_s {_fmt(metrics.get('comments_per_s'))}"
        lines.append(f"| {name} | {cells} | {_seconds(seconds.get(name), quick)} |")
    fanout = load(out_dir, "fanout")
    if fanout:
        lines += [
            "",
            "Fan-out by rate (one gateway):",
            "",
            "| comments/s | deliveries/s | p50 ms | p99 ms | of which to Redis p50 / p99 ms "
            "| gateway cores | machine busy |",
            "|---|---|---|---|---|---|---|",
        ]
        for b in fanout["metrics"].get("by_rate", []):
            cpu = b.get("cpu_cores", {})
            lines.append(
                f"| {_fmt(b['comments_per_s'])} | {_fmt(b['deliveries_per_s'])} | "
                f"{_fmt(b['p50_ms'])} | {_fmt(b['p99_ms'])} | "
                f"{_fmt(b.get('to_redis_p50_ms'))} / {_fmt(b.get('to_redis_p99_ms'))} | "
                f"{_fmt(cpu.get('gateway'))} | "
                f"{_fmt(cpu.get('machine'))} |"
            )
    notes = []
    for bench in BENCHES:
        data = load(out_dir, bench.file)
        for note in (data or {}).get("notes", [])[:6]:
            notes.append(f"- {bench.file}: {note}")
    if notes:
        lines += ["", "Notes from the runs:", "", *notes]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(out_dir: Path, target: Path) -> bool:
    fanout = load(out_dir, "fanout")
    if not fanout:
        return False
    rows = fanout["metrics"].get("by_rate", [])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rates = [r["comments_per_s"] for r in rows]
    ax.plot(rates, [r["p50_ms"] for r in rows], "o-", label="p50")
    ax.plot(rates, [r["p99_ms"] for r in rows], "s-", label="p99")
    if all("to_redis_p50_ms" in r for r in rows):
        ax.plot(rates, [r["to_redis_p50_ms"] for r in rows], "o--", alpha=0.6, label="p50 to Redis")
        ax.plot(rates, [r["to_redis_p99_ms"] for r in rows], "s--", alpha=0.6, label="p99 to Redis")
    for r in rows:
        ax.annotate(
            f"{r['deliveries_per_s']:,}/s",
            (r["comments_per_s"], r["p99_ms"]),
            textcoords="offset points",
            xytext=(0, 6),
            fontsize=8,
            ha="center",
        )
    ax.set_yscale("log")
    ax.set_xlabel("comments/s posted (one gateway)")
    ax.set_ylabel("submitted → received by a viewer (ms)")
    ax.set_title(f"Fan-out latency against load, {fanout['metrics']['viewers']:,} viewers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="labels: deliveries/s")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True


def plot_throughput(out_dir: Path, target: Path) -> bool:
    points = []
    for name in ("pipeline-1-worker", "pipeline"):
        data = load(out_dir, name)
        if data:
            points.append(
                (int(data["params"]["workers"]), float(data["metrics"]["comments_per_s"]))
            )
    if not points:
        return False
    points.sort()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.bar([str(w) for w, _ in points], [c for _, c in points], color="#4a7ab5")
    for i, (_, c) in enumerate(points):
        ax.annotate(f"{c:,.0f}", (i, c), textcoords="offset points", xytext=(0, 4), ha="center")
    baseline = load(out_dir, "kafka-baseline")
    title = "Pipeline throughput against workers"
    if baseline:
        produce = baseline["metrics"]["produce_msgs_per_s"]
        title += f"\n(raw Kafka produce on the same stack: {produce:,.0f} msgs/s)"
    ax.set_title(title)
    ax.set_xlabel("workers")
    ax.set_ylabel("comments/s, submitted → Cassandra and Redis")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True


def plot_connections(out_dir: Path, target: Path) -> bool:
    data = load(out_dir, "connections")
    if not data:
        return False
    ramp = data["metrics"].get("ramp", [])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["connections"] for r in ramp], [r["rss_bytes"] / 2**20 for r in ramp], "o-", ms=4)
    per = data["metrics"].get("rss_bytes_per_connection")
    ax.set_title(
        "Gateway memory against idle connections (all processes)"
        + (f"\n{per / 1024:.1f} KiB per connection" if per else "")
    )
    ax.set_xlabel("connections held")
    ax.set_ylabel("gateway RSS (MiB)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True
