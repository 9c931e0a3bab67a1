"""A reader of events' Redis streams, as a viewer-side probe: when did each comment arrive?"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

from redis import Redis

from connectors.redis_streams import stream_key
from deploy.settings import Settings
from perf.load import comments, produce
from schemas.codec import AvroCodec
from schemas.records import CommentSubmitted


class Follower(threading.Thread):
    """Reads the events' streams from their current end; records arrival per comment."""

    def __init__(self, settings: Settings, events: list[str], pause_s: float = 0.0) -> None:
        """``pause_s``: a rest after each read that returned entries. A read returns as
        soon as any stream has one, so under load it spins; a bench measuring CPU rests
        a few milliseconds (arrival times get that much coarser) so the load side does
        not take the cores it measures."""
        super().__init__(daemon=True)
        self._pause_s = pause_s
        self._redis = Redis.from_url(settings.redis_address)
        self._streams: dict[Any, Any] = {}
        for e in events:
            top: Any = self._redis.xrevrange(stream_key(e), count=1)
            self._streams[stream_key(e)] = top[0][0].decode() if top else "0-0"
        self.arrivals: dict[str, tuple[float, int]] = {}
        self.counts: Counter[str] = (
            Counter()
        )  # event_id → comments seen  # comment_id → (arrival s, submitted ms)
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_event.is_set():
            reply: Any = self._redis.xread(self._streams, count=5000, block=200)
            now = time.time()
            if reply and self._pause_s:
                self._stop_event.wait(self._pause_s)
            for key, entries in reply or []:
                for entry_id, fields in entries:
                    self._streams[key.decode()] = entry_id.decode()
                    if fields.get(b"type") == b"comment":
                        data = json.loads(fields[b"data"])
                        if data["comment_id"] not in self.arrivals:
                            self.arrivals[data["comment_id"]] = (now, data["submitted_at"])
                            self.counts[data["event_id"]] += 1

    def wait_for(self, ids: set[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ids <= self.arrivals.keys():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self._redis.close()


def wait_publishing(
    settings: Settings, codec: AvroCodec, events: list[str], timeout_s: float = 600.0
) -> float:
    """One comment per event, until each is in its Redis stream; the seconds it took.

    Workers that were just assigned their partitions may still be recovering their
    tables from changelogs; a bench starts its clock after this, so it measures the
    pipeline, not the recovery. The comments come from users of their own, so they
    count against no one's rate limit or repeated-message check.
    """
    follower = Follower(settings, events)
    t0 = time.monotonic()
    try:
        run = uuid.uuid4().hex[:6]
        items = (
            CommentSubmitted(**{**c.to_avro(), "user_id": f"warm-{run}-{i}"})
            for i, c in enumerate(comments(events, len(events)))
        )
        load = produce(settings, codec, items)
        if not follower.wait_for({a.comment_id for a in load.acked}, timeout_s):
            raise TimeoutError(f"the pipeline did not publish a comment in {timeout_s:g}s")
    finally:
        follower.stop()
    return time.monotonic() - t0
