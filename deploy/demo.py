"""`livecomments demo`: the whole system on this machine, with a synthetic crowd.

Brings the stack up, starts the workers, a WebSocket gateway and the HTTP API (which
serves the web page), creates three events (a match, a concert, and a hot product
launch), connects a crowd of WebSocket viewers to the gateway, and posts comments in
several languages — with some spam, toxic lines, shouting and blocked words so
moderation has work. Every 2 seconds it prints a dashboard: comments/s per event,
viewers, submit → viewer latency (p50/p99, measured by the viewers themselves),
moderation outcomes and consumer lag, and it prints the web page's address.
Ctrl-C stops everything it started (the stack stays up: `livecomments stack down`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

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
    "すごいゴール！",  # noqa: RUF001 (Japanese punctuation)
    "와 대박 골이다",
    "क्या शानदार खेल है",
    "يا له من هدف رائع",
    "Harika bir maç",
    "Co za mecz!",
    "Wat een wedstrijd",
    "Vilken match!",
    "Ăn mừng thôi anh em",
    "Can we get a replay of that?",
    "Who else is watching from Lagos?",
    "The bass on this track is insane",
    "Pre-ordered already, see you all in March",
    "Does it come in green?",
]
NOISE = [
    "BUY CHEAP FOLLOWERS AT www.spam-followers.xyz",  # link + promotion → blocked
    "Win a FREE iPhone!!! click here to claim your prize now",  # spam model
    "you are a complete idiot and everyone hates you",  # toxicity model
    "f u c k this ref",  # obfuscated profanity → blocked
    "WHY IS NOBODY TALKING ABOUT THE REFEREE",  # caps flood → held for review
    "goooooooooooooooal",  # character flood → held
    "this is a spoiler: they win 3-1",  # blocked term of the event → blocked
]
VIEWERS = 60


def _crowd(rng: random.Random) -> Iterator[tuple[str, str, str]]:
    names = list(EVENTS)
    weights = [EVENTS[n][1] for n in names]
    while True:
        event = rng.choices(names, weights)[0]
        text = rng.choice(NOISE) if rng.random() < 0.05 else rng.choice(CROWD)
        yield event, f"viewer-{rng.randrange(2000)}", text


class Audience(threading.Thread):
    """WebSocket viewers on the gateway, in their own event loop; they time delivery."""

    def __init__(self, settings: Settings, url: str, events: list[str], count: int) -> None:
        super().__init__(daemon=True)
        from deploy.viewer import ViewerClient
        from gateways.auth import mint_token

        self.latencies: list[float] = []
        self.viewers = [
            ViewerClient(
                [url],
                mint_token(settings, f"watcher-{i}", name=f"Watcher {i}"),
                [events[i % len(events)]],
                latencies=self.latencies,
                sample=0.2,
            )
            for i in range(count)
        ]
        self._loop = asyncio.new_event_loop()
        self._done: asyncio.Event | None = None
        self.start()

    def run(self) -> None:
        from deploy.viewer import stop_all

        async def main() -> None:
            self._done = asyncio.Event()
            tasks = [asyncio.create_task(v.run()) for v in self.viewers]
            await self._done.wait()
            await stop_all(self.viewers, tasks)

        self._loop.run_until_complete(main())

    def connected(self) -> int:
        return sum(1 for v in self.viewers if v.connected.is_set())

    def take_latencies(self) -> list[float]:
        taken = list(self.latencies)
        del self.latencies[: len(taken)]
        return taken

    def gaps(self) -> int:
        return sum(v.stats.unrecovered_gaps for v in self.viewers)

    def stop(self) -> None:
        if self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self.join(timeout=10)


def _start_api(settings: Settings) -> subprocess.Popen[bytes]:
    log = settings.state_path / "logs" / "api.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "api", "-l", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # The demo page signs visitors in with development tokens.
            env={**os.environ, "LIVECOMMENTS_API_DEV_TOKENS": "1"},
        )


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s; see {log}")


def run(
    settings: Settings, *, rate: float, workers: int, seconds: float, out: TextIO = sys.stdout
) -> int:
    from confluent_kafka import Producer

    from connectors.kafka_clients import producer_config
    from connectors.state_writer import StateWriter
    from connectors.topics import COMMENTS_SUBMITTED
    from deploy.processes import (
        start_gateway,
        start_worker,
        wait_assigned,
        wait_events_known,
        wait_healthy,
    )
    from deploy.stack import launcher
    from schemas.codec import AvroCodec
    from schemas.records import CommentSubmitted, EventStatus, LiveEvent

    out.write("starting the stack (livecomments stack up)\n")
    launcher.up(settings, out=out)
    logs = settings.state_path / "logs"
    procs = [start_worker(settings, i) for i in range(workers)]
    gateway = start_gateway(settings, 0)
    api = _start_api(settings)
    audience: Audience | None = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        out.write(f"starting {workers} workers, a gateway and the API (logs in {logs})\n")
        wait_assigned(settings, procs, settings.partitions_comments, timeout_s=180)
        wait_healthy(settings, [gateway])
        page = f"http://{settings.host}:{settings.api_port}/"
        _wait_http(page + "healthz", 60, api, logs / "api.log")
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
            audience = Audience(settings, gateway.url(settings), list(EVENTS), VIEWERS)
            out.write(
                f"\n  watch it in a browser: {page}?event=demo-match\n"
                "  moderate it:           the same page signed in as a moderator: held\n"
                "                         comments, approve, reject, time out (docs/web.md)\n"
                f"  WebSocket gateway:     {gateway.url(settings)}  (docs/protocol.md)\n"
                f"  HTTP API:              {page}docs  (OpenAPI at {page}openapi.json)\n\n"
            )
            producer = Producer(producer_config(settings))
            sent: Counter[str] = Counter()
            rng = random.Random()
            crowd = _crowd(rng)
            start = time.monotonic()
            next_report = start + 2
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
                    _dashboard(out, settings, workers, sent, audience, time.monotonic() - start)
                    next_report += 2
            producer.flush(30)
    except KeyboardInterrupt:
        pass
    finally:
        out.write("stopping the viewers, the API, the gateway and the workers\n")
        if audience is not None:
            audience.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(api.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            api.wait(15)
        gateway.stop()
        for w in procs:
            w.stop()
    return 0


def _dashboard(
    out: TextIO,
    settings: Settings,
    workers: int,
    sent: Counter[str],
    audience: Audience,
    elapsed: float,
) -> None:
    from deploy.viewer import percentile

    latencies = audience.take_latencies()
    delivered: Counter[str] = Counter()
    watching: Counter[str] = Counter()
    for v in audience.viewers:
        for event_id, view in v.views.items():
            delivered[event_id] += len(view.positions)
            watching[event_id] += v.connected.is_set()

    def pct(q: float) -> str:
        return f"{percentile(latencies, q):7.1f}" if latencies else "      -"

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
        f"\n── livecomments demo ── {elapsed:5.0f}s ── post→viewer p50 {pct(50)} ms"
        f"  p99 {pct(99)} ms ── viewers {audience.connected()} ── lag {lag:.0f}"
        f" ── viewer gaps {audience.gaps()}\n"
    )
    for event_id, (title, _) in EVENTS.items():
        out.write(
            f"  {event_id:<14} {title:<30} sent {sent[event_id]:>7} "
            f"{sent[event_id] / max(elapsed, 1):6.1f}/s  viewers {watching[event_id]:>3}  "
            f"delivered {delivered[event_id]:>8}\n"
        )
    out.write("  moderation: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())) + "\n")
    out.flush()
