"""Delivery: one reader per gateway process follows the Redis streams of every event
that has local viewers, and hands each event's new entries to its viewers as frames.

Per tick (``gateway_tick_ms``) the reader issues one ``XREAD BLOCK`` over the streams of
all followed events (one cursor per event) and turns what came back into at most a
few frames per event: runs of comments become one ``comments`` frame, runs of
retractions one ``retracted`` frame. A frame is serialised and encoded once; the same
bytes go to every viewer of the event.

Each connection has a bounded queue (``gateway_queue_frames``). The slow-consumer
policy (docs/protocol.md): a frame that does not fit is dropped for that viewer and the
subscription is marked behind at the last position it was given; once the queue has
drained to half, the viewer gets a ``gap`` frame with that ``(epoch, position)`` and
live frames again, and can fill the hole by joining again with ``since``. A viewer
still behind after ``gateway_slow_disconnect_s`` is closed with 4008.

Hot events: when an event's rate is above its ``hot_rate_per_s``, viewers in ``top``
mode get a ranked subset (:func:`rank`) at ``gateway_top_per_s``, plus any comment that
replies to one of their own; ``all`` stays available.

Shadow comments (a hidden user's, ``Entry.visible_to``) never enter the shared frames.
In a tick that has some, each of their authors with a viewer here gets frames of its
own: the public entries and that author's shadow comments, in order. A tick without
any (the usual case) costs one scan of the entries more than before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from connectors.redis_streams import stream_key
from gateways import metrics as M
from gateways import protocol as P
from gateways.history import (
    Entry,
    History,
    RecentCache,
    Recovery,
    for_viewer,
    holes,
    parse_entry,
)

log = logging.getLogger(__name__)

Key = tuple[int, int]
PRIVILEGED: Final = frozenset({"moderator", "broadcaster", "admin"})


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame for every viewer of an event: its bytes, and the stream ids it spans."""

    data: bytes
    kind: str  # comments | retracted | other
    first: Key
    last: Key
    comments: int
    entries: tuple[Entry, ...] = ()


def build_frames(event_id: str, entries: Iterable[Entry]) -> list[Frame]:
    """Comments and retractions, in order, as ``comments`` / ``retracted`` frames."""
    event_json = json.dumps(event_id)
    frames: list[Frame] = []
    run: list[Entry] = []

    def flush() -> None:
        if not run:
            return
        kind = "comments" if run[0].kind == "comment" else "retracted"
        text = P.items_frame(kind, event_json, [e.data for e in run])
        comments = len(run) if kind == "comments" else 0
        frames.append(
            Frame(text.encode(), kind, run[0].sort_key, run[-1].sort_key, comments, tuple(run))
        )
        run.clear()

    for e in entries:
        if e.kind not in ("comment", "retract"):
            continue
        if run and run[0].kind != e.kind:
            flush()
        run.append(e)
        if len(run) >= 1000:
            flush()
    flush()
    return frames


def rank(entry: Entry) -> int:
    """Top-mode score: moderators and broadcasters first, then verified users, other
    badges, replies. (Likes are not in the log yet; they will add here.)"""
    f = entry.fields
    roles = f.get("roles") or ()
    badges = f.get("badges") or ()
    score = 0
    if PRIVILEGED & set(roles):
        score += 100
    if "verified" in badges:
        score += 50
    if badges:
        score += 10
    if f.get("reply_to"):
        score += 5
    return score


class Viewer(Protocol):
    """What the hub needs from a connection (``gateways/server.py``)."""

    @property
    def viewer_id(self) -> str | None:
        """The signed-in user watching (None: anonymous): who gets shadow comments."""
        ...

    @property
    def posted(self) -> set[str]:
        """Comment ids this viewer posted lately (replies to them pass top mode)."""
        ...

    @property
    def capacity(self) -> int: ...

    def offer(self, data: bytes, comments: int, kind: str) -> bool:
        """Queue ``data``; False if the queue is full (nothing queued)."""
        ...

    def room(self) -> int:
        """Frames the queue can take before it is full."""
        ...

    def close_slow(self) -> None: ...


@dataclass(eq=False)
class Subscription:
    viewer: Viewer
    event_id: str
    mode: Literal["all", "top"]
    live: bool = False
    pending: list[Frame] = field(default_factory=list)
    delivered: Key = (0, 0)
    delivered_epoch: int | None = None
    delivered_position: int | None = None
    behind_since: float | None = None

    def note(self, frame: Frame) -> None:
        self.delivered = max(self.delivered, frame.last)
        for e in reversed(frame.entries):
            if e.kind == "comment":
                self.delivered_epoch, self.delivered_position = e.epoch, e.position
                break


class Feed:
    """One followed event: its cursor, recent cache, rate and subscriptions."""

    def __init__(self, event_id: str, recent_s: float) -> None:
        self.event_id = event_id
        self.subs: dict[int, Subscription] = {}
        self.cursor = "0-0"
        self.cache = RecentCache(recent_s)
        self.ready = asyncio.Event()
        self.last_position: int | None = None
        self.rate = 0.0  # comments per second, smoothed
        self.hot = False
        self.hot_rate = 100.0
        self.top_budget = 0.0
        self.viewers_total: int | None = None  # presence across gateways
        self._backlogs: dict[str, asyncio.Future[Recovery]] = {}
        self.failed = False

    async def shared_backlog(self, upto: str, read: Callable[[], Awaitable[Recovery]]) -> Recovery:
        """The backlog up to ``upto``, read once for every join that asks for the same
        one (single flight); viewers must not modify it."""
        task = self._backlogs.get(upto)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(read())
            self._backlogs = {upto: task}  # only the newest cursor is worth keeping
        return await asyncio.shield(task)

    def _update_rate(self, comments: int, dt: float) -> None:
        if dt <= 0:
            return
        alpha = min(1.0, dt / 2.0)  # ~2 s smoothing
        self.rate += alpha * (comments / dt - self.rate)
        # Hysteresis: hot above the rate, back to normal below 80 % of it.
        if self.hot:
            self.hot = self.rate > 0.8 * self.hot_rate
        else:
            self.hot = self.rate > self.hot_rate


class Hub:
    def __init__(
        self,
        redis: Any,
        history: History,
        *,
        tick_ms: int,
        recent_s: float,
        top_per_s: float,
        slow_disconnect_s: float,
        hot_rate_of: Callable[[str], float] | None = None,
    ) -> None:
        self._redis = redis
        self._history = history
        self._tick = tick_ms / 1000
        self._recent_s = recent_s
        self._top_per_s = top_per_s
        self._slow_s = slow_disconnect_s
        self._hot_rate_of = hot_rate_of or (lambda _e: 100.0)
        self.feeds: dict[str, Feed] = {}
        self._changed = asyncio.Event()
        self._last_tick = time.monotonic()

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(self, viewer: Viewer, event_id: str, mode: Literal["all", "top"]) -> Feed:
        """Attach ``viewer`` (not live yet: frames wait in its subscription until
        :meth:`go_live`). Returns the feed; ``feed.cursor`` right after this returns is
        the last stream id the backlog must cover."""
        while True:
            feed = self.feeds.get(event_id)
            if feed is None:
                feed = self.feeds[event_id] = Feed(event_id, self._recent_s)
                feed.hot_rate = self._hot_rate_of(event_id)
                M.events_followed.set(len(self.feeds))
                try:
                    feed.cursor = await self._history.top_id(event_id)
                except BaseException:
                    if self.feeds.get(event_id) is feed:
                        del self.feeds[event_id]
                    M.events_followed.set(len(self.feeds))
                    feed.failed = True
                    feed.ready.set()
                    raise
                feed.cache.start_at(feed.cursor)
                feed.ready.set()
                self._changed.set()
            await feed.ready.wait()
            # The feed may have failed, or lost its last viewer and been dropped, while
            # this join waited: then start over with a new one.
            if feed.failed or self.feeds.get(event_id) is not feed:
                continue
            feed.subs[id(viewer)] = Subscription(viewer, event_id, mode)
            return feed

    def go_live(
        self,
        viewer: Viewer,
        event_id: str,
        delivered: Key,
        epoch: int | None,
        position: int | None,
    ) -> None:
        """The backlog up to stream id ``delivered`` (last comment ``epoch``,
        ``position``) is queued: send what arrived meanwhile, then live."""
        feed = self.feeds.get(event_id)
        sub = feed.subs.get(id(viewer)) if feed else None
        if sub is None:
            return
        sub.delivered = delivered
        sub.delivered_epoch, sub.delivered_position = epoch, position
        for frame in sub.pending:
            self._offer(sub, _after(frame, delivered, event_id))
        sub.pending.clear()
        sub.live = True

    def unsubscribe(self, viewer: Viewer, event_id: str) -> None:
        feed = self.feeds.get(event_id)
        if feed is None:
            return
        if feed.subs.pop(id(viewer), None) is None:
            return  # not subscribed (a join in progress may be creating the feed)
        if not feed.subs:
            del self.feeds[event_id]
            M.events_followed.set(len(self.feeds))

    def set_mode(self, viewer: Viewer, event_id: str, mode: Literal["all", "top"]) -> bool:
        feed = self.feeds.get(event_id)
        sub = feed.subs.get(id(viewer)) if feed else None
        if sub is None or feed is None:
            return False
        sub.mode = mode
        return feed.hot

    def subscription(self, viewer: Viewer, event_id: str) -> Subscription | None:
        feed = self.feeds.get(event_id)
        return feed.subs.get(id(viewer)) if feed else None

    # -- the reader ----------------------------------------------------------------------

    async def run(self) -> None:
        """Read and deliver until cancelled."""
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                await self._read_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("live reader: %s: %s; retrying in %.1fs", type(e).__name__, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            rest = self._tick - (time.monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def _read_once(self) -> None:
        streams = {stream_key(e): f.cursor for e, f in self.feeds.items() if f.ready.is_set()}
        if not streams:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=1.0)
            return
        block = max(1, int(self._tick * 1000))
        result: Any = await self._redis.xread(streams, count=5000, block=block)
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        got: dict[str, list[Entry]] = {}
        for key, raw_entries in result or ():
            name = key.decode() if isinstance(key, bytes) else key
            event_id = name[len("event:") : -len(":comments")]
            got[event_id] = [parse_entry(sid, fields) for sid, fields in raw_entries]
        for event_id, feed in list(self.feeds.items()):
            entries = got.get(event_id, [])
            if entries:
                feed.cursor = entries[-1].stream_id
                entries = await self._fill_live_holes(feed, entries)
            feed._update_rate(sum(e.kind == "comment" for e in entries), dt)
            if entries:
                self._deliver(feed, entries)

    async def _fill_live_holes(self, feed: Feed, entries: list[Entry]) -> list[Entry]:
        """Redis lost or trimmed entries this reader had not read yet: the comments'
        ``previous_position`` shows the hole; Cassandra has what is missing."""
        if feed.last_position is not None and holes(entries, feed.last_position):
            try:
                filled = await self._history.fill_holes(
                    feed.event_id, entries, feed.last_position, {}
                )
                entries = filled
            except Exception as exc:  # Cassandra down too: deliver, viewers see the gap
                log.warning("could not fill a live hole of %s: %s", feed.event_id, exc)
        for entry in reversed(entries):
            if entry.kind == "comment" and entry.visible_to is None:
                feed.last_position = entry.position
                break
        return entries

    def _deliver(self, feed: Feed, entries: list[Entry]) -> None:
        feed.cache.add(entries)
        public = for_viewer(entries, None)
        frames = build_frames(feed.event_id, public)
        # Only when this tick has shadow comments: frames for each author watching here.
        own: dict[str, list[Frame]] = {}
        if public is not entries:
            authors = {e.visible_to for e in entries if e.visible_to is not None}
            for sub in feed.subs.values():
                user = sub.viewer.viewer_id
                if user in authors and user not in own:
                    own[user] = build_frames(feed.event_id, for_viewer(entries, user))
                    M.shadow_deliveries.inc()
        wall_ms = time.time() * 1000
        for e in public:
            submitted = e.fields.get("submitted_at") if e.kind == "comment" else None
            if isinstance(submitted, int):
                M.delivery_seconds.observe(max(0.0, wall_ms - submitted) / 1000)
        top_frames: list[Frame] | None = None
        top_ids: set[str] = set()
        if feed.hot and any(s.mode == "top" for s in feed.subs.values()):
            top_frames, top_ids = self._top(feed, public)
        for sub in list(feed.subs.values()):
            chosen = frames
            mine = own.get(sub.viewer.viewer_id or "") if own else None
            if sub.mode == "top" and top_frames is not None:
                chosen = top_frames + self._replies_for(sub, feed, public, top_ids)
                if mine is not None:  # the author always sees their own comments
                    shadows = [e for e in entries if e.visible_to == sub.viewer.viewer_id]
                    chosen = chosen + build_frames(feed.event_id, shadows)
            elif mine is not None:
                chosen = mine
            for frame in chosen:
                if sub.live:
                    self._offer(sub, frame)
                else:
                    sub.pending.append(frame)

    def _top(self, feed: Feed, entries: list[Entry]) -> tuple[list[Frame], set[str]]:
        feed.top_budget = min(
            feed.top_budget + self._top_per_s * self._tick, max(1.0, self._top_per_s)
        )
        comments = [e for e in entries if e.kind == "comment"]
        take = int(feed.top_budget)
        best = sorted(comments, key=rank, reverse=True)[:take]
        # Privileged comments always pass, over budget if need be.
        best_ids = {id(e) for e in best} | {id(e) for e in comments if rank(e) >= 100}
        feed.top_budget -= sum(1 for e in comments if id(e) in best_ids)
        feed.top_budget = max(feed.top_budget, 0.0)
        chosen = [e for e in entries if e.kind != "comment" or id(e) in best_ids]
        ids = {str(e.fields.get("comment_id")) for e in chosen if e.kind == "comment"}
        return build_frames(feed.event_id, chosen), ids

    def _replies_for(
        self, sub: Subscription, feed: Feed, entries: list[Entry], shown: set[str]
    ) -> list[Frame]:
        posted = sub.viewer.posted
        if not posted:
            return []
        replies = [
            e
            for e in entries
            if e.kind == "comment"
            and e.fields.get("reply_to") in posted
            and e.fields.get("comment_id") not in shown
        ]
        return build_frames(feed.event_id, replies) if replies else []

    def _offer(self, sub: Subscription, frame: Frame | None) -> None:
        if frame is None:
            return
        viewer = sub.viewer
        if sub.behind_since is not None:
            # Behind: drop until the queue drained to half, then tell and go on.
            if viewer.room() * 2 < viewer.capacity:
                M.queue_drops.inc()
                if time.monotonic() - sub.behind_since > self._slow_s:
                    M.slow_disconnects.inc()
                    viewer.close_slow()
                return
            notice = P.gap(
                sub.event_id, sub.delivered_epoch, sub.delivered_position, "slow_consumer"
            ).encode()
            if not viewer.offer(notice, 0, "gap"):
                M.queue_drops.inc()
                return
            M.gaps_sent.labels("slow_consumer").inc()
            sub.behind_since = None
        if viewer.offer(frame.data, frame.comments, frame.kind):
            sub.note(frame)
        else:
            M.queue_drops.inc()
            sub.behind_since = time.monotonic()

    def broadcast(self, event_id: str, data: bytes, kind: str) -> None:
        """A frame for every live viewer of an event (presence); dropped when full."""
        feed = self.feeds.get(event_id)
        if feed is None:
            return
        for sub in feed.subs.values():
            if sub.live and not sub.viewer.offer(data, 0, kind):
                M.queue_drops.inc()


def _after(frame: Frame, delivered: Key, event_id: str) -> Frame | None:
    """``frame`` without what the viewer already has (the backlog overlapped it)."""
    if frame.first > delivered:
        return frame
    if frame.last <= delivered:
        return None
    rest = [e for e in frame.entries if e.sort_key > delivered]
    frames = build_frames(event_id, rest)
    return frames[0] if frames else None
