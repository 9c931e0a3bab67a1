"""`livecomments demo`: the whole pipeline running on this machine, with a synthetic crowd.

Brings the stack up, starts workers, creates three events (a match, a concert, and a
hot product launch), and posts comments from a crowd in several languages — with some
spam, shouting and blocked words so moderation has work. Every 2 seconds it prints a
dashboard: comments/s per event, submit → live latency (p50/p99, read back from the
events' Redis streams like a viewer would), moderation outcomes and consumer lag.
Ctrl-C stops everything it started (the stack stays up: `livecomments stack down`).
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any, TextIO

import httpx

from deploy.settings import Settings

EVENTS = {
    "demo-match": ("Cup final: Reds vs Blues", 0.3),
    "demo-concert": ("Live from the arena", 0.2),
    "demo-launch": ("Product launch keynote (hot)", 0.5),
}
CROWD = [
    "What a goal!",
    "Unbelievable save by the keeper",
    "¡Qué golazo!",
    "Quel match incroyable",
    "Was für ein Spiel",
    "这球太漂亮了",
    "Que jogada linda",
    "Come on you reds",
    "Referee needs glasses",
    "Best concert ever 🎶",
    "Encore! Encore!",
    "GG well played",
    "When does it ship?",
    "Take my money",
    "That price though",
    "Finally a headphone jack",
    "Чудесная игра",
    "Forza ragazzi",
    "Ini luar biasa",
]
NOISE = [
    "BUY CHEAP FOLLOWERS AT www.spam-followers.xyz",  # link → blocked
    "WHY IS NOBODY TALKING ABOUT THE REFEREE",  # caps → held for review
    "goooooooooooooooal",  # character flood → held
    "this is a spoiler: they win 3-1",  # blocked term of the event → blocked
]


def _crowd(rng: random.Random) -> Iterator[tuple[str, str, str]]:
    names = list(EVENTS)
    weights = [EVENTS[n][1] for n in names]
    while True:
        event = rng.choices(names, weights)[0]
        text = rng.choice(NOISE) if rng.random() < 0.05 else rng.choice(CROWD)
        yield event, f"viewer-{rng.randrange(2000)}", text


def run(
    settings: Settings, *, rate: float, workers: int, seconds: float, out: TextIO = sys.stdout
) -> int:
    from confluent_kafka import Producer

    from connectors.kafka_clients import producer_config
    from connectors.state_writer import StateWriter
    from connectors.topics import COMMENTS_SUBMITTED
    from deploy.stack import launcher
    from perf.follower import Follower
    from perf.processes import start_worker, wait_assigned, wait_events_known
    from schemas.codec import AvroCodec
    from schemas.records import CommentSubmitted, EventStatus, LiveEvent

    out.write("starting the stack (livecomments stack up)\n")
    launcher.up(settings, out=out)
    procs = [start_worker(settings, i) for i in range(workers)]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        out.write(f"starting {workers} workers (logs in {settings.state_path / 'logs'})\n")
        wait_assigned(settings, procs, settings.partitions_comments, timeout_s=180)
        with AvroCodec(settings) as codec:
            codec.register_all()
            writer = StateWriter(settings, codec)
            now = int(time.time() * 1000)
            for event_id, (title, _) in EVENTS.items():
                writer.put_event(
                    LiveEvent(
                        event_id=event_id,
                        title=title,
                        status=EventStatus.LIVE,
                        created_at=now,
                        updated_at=now,
                        blocked_terms=("spoiler",),
                        hot_rate_per_s=50,
                    )
                )
            wait_events_known(settings, procs, len(EVENTS))
            follower = Follower(settings, list(EVENTS))
            producer = Producer(producer_config(settings))
            sent: Counter[str] = Counter()
            rng = random.Random()
            crowd = _crowd(rng)
            start = time.monotonic()
            next_report = start + 2
            last_arrivals = 0
            latencies: deque[float] = deque(maxlen=2000)
            for i in range(sys.maxsize):
                if stop.is_set() or (seconds and time.monotonic() - start > seconds):
                    break
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event_id, user, text = next(crowd)
                comment = CommentSubmitted(
                    comment_id=f"demo-{uuid.uuid4().hex}",
                    event_id=event_id,
                    user_id=user,
                    text=text,
                    submitted_at=int(time.time() * 1000),
                    gateway_id="demo",
                )
                producer.produce(
                    COMMENTS_SUBMITTED,
                    key=event_id.encode(),
                    value=codec.encode(COMMENTS_SUBMITTED, comment),
                )
                producer.poll(0)
                sent[event_id] += 1
                if time.monotonic() >= next_report:
                    arrivals = list(follower.arrivals.values())
                    # Only what arrived since the last report: the dashboard shows "now".
                    latencies.clear()
                    latencies.extend((a - s / 1000) * 1000 for a, s in arrivals[last_arrivals:])
                    last_arrivals = len(arrivals)
                    _dashboard(
                        out, settings, workers, sent, follower, latencies, time.monotonic() - start
                    )
                    next_report += 2
            producer.flush(30)
            follower.stop()
    except KeyboardInterrupt:
        pass
    finally:
        out.write("stopping workers\n")
        for w in procs:
            w.stop()
    return 0


def _dashboard(
    out: TextIO,
    settings: Settings,
    workers: int,
    sent: Counter[str],
    follower: Any,
    latencies: deque[float],
    elapsed: float,
) -> None:
    live: Counter[str] = follower.counts
    ordered = sorted(latencies)

    def pct(q: float) -> str:
        return (
            f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:7.1f}"
            if ordered
            else "      -"
        )

    decisions: Counter[str] = Counter()
    lag = 0.0
    for i in range(workers):
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(
                f"http://{settings.host}:{settings.worker_port + i}/metrics", timeout=1
            ).text
            for m in re.finditer(
                r'^pipeline_records_out_total\{outcome="(\w+)",stage="(\w+)"\} (\S+)$', text, re.M
            ):
                if m.group(2) in ("moderate", "validate", "decode"):
                    decisions[m.group(1)] += int(float(m.group(3)))
            for m in re.finditer(
                r'^pipeline_consumer_lag\{partition="\d+",topic="comments.submitted"\} (\S+)$',
                text,
                re.M,
            ):
                lag += float(m.group(1))
    out.write(
        f"\n── livecomments demo ── {elapsed:5.0f}s ── submit→live p50 {pct(0.5)} ms"
        f"  p99 {pct(0.99)} ms ── lag {lag:.0f}\n"
    )
    for event_id, (title, _) in EVENTS.items():
        out.write(
            f"  {event_id:<14} {title:<32} sent {sent[event_id]:>7}  "
            f"live {live[event_id]:>7}  {sent[event_id] / max(elapsed, 1):6.1f}/s\n"
        )
    out.write("  moderation: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())) + "\n")
    out.flush()
