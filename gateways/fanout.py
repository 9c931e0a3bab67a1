"""Delivery: one reader per gateway process follows the Redis streams of every event
that has local viewers, and hands each event's new entries to its viewers as frames.

The reader issues one ``XREAD BLOCK`` over the streams of all followed events (one
cursor per event) and, as soon as it returns, reads again: an entry is delivered the
moment it is read, with no tick to wait out. What one read returns for an event
becomes at most a few frames: runs of comments one ``comments`` frame, runs of
retractions one ``retracted`` frame. Only a *busy* event (above
``gateway_coalesce_above_per_s``) is coalesced: its entries are held for up to
``gateway_tick_ms`` so that its many viewers get one frame per tick, not one per
comment. A new subscription cuts a blocked read short so its event is followed at once.

A frame is serialised once and framed once (the WebSocket header of an unmasked server
frame is the same for every viewer), and the very same bytes are written to every
viewer's transport, as websockets' ``broadcast()`` does: no per-viewer queue, task,
copy or metric look-up; metrics are counted per frame.

Backpressure is the transport's own write buffer (``gateway_write_buffer_bytes``). The
slow-consumer policy (docs/protocol.md): while a viewer's buffer is above the limit
its frames are dropped and the subscription is marked behind at the last position it
was given; once the buffer has drained to half, the viewer gets a ``gap`` frame with
that ``(epoch, position)`` and live frames again, and can fill the hole by joining
again with ``since``. A viewer still behind after ``gateway_slow_disconnect_s`` is
closed with 4008.

Hot events: when an event's rate is above its ``hot_rate_per_s``, viewers in ``top``
mode get a ranked subset (:func:`rank`) at ``gateway_top_per_s``, plus any comment that
replies to one of their own; ``all`` stays available.

Shadow comments (a hidden user's, ``Entry.visible_to``) never enter the shared frames.
In a read that has some, each of their authors with a viewer here gets frames of its
own: the public entries and that author's shadow comments, in order. A read without
any (the usual case) costs one scan of the entries more than before.

The hub reads time through ``clock`` (monotonic seconds), so tests drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from asyncio import FIRST_COMPLETED
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

    data: bytes  # the WebSocket frame as written: header and JSON payload
    kind: str  # comments | retracted | other
    first: Key
    last: Key
    comments: int
    entries: tuple[Entry, ...] = ()


def wire(payload: bytes) -> bytes:
    """``payload`` as one unmasked WebSocket text frame (RFC 6455 §5.2), the form a server
    writes: built once, the same bytes go to every viewer's transport."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def payload_of(frame: bytes) -> bytes:
    """The JSON of a frame built by :func:`wire` (tests and tools)."""
    n = frame[1] & 0x7F
    return frame[2 + {126: 2, 127: 8}.get(n, 0) :]


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
            Frame(
                wire(text.encode()), kind, run[0].sort_key, run[-1].sort_key, comments, tuple(run)
            )
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

    def buffered(self) -> int:
        """Bytes waiting in the transport's write buffer; -1 if it is closed."""
        ...

    def write(self, data: bytes) -> None:
        """Write a frame built by :func:`wire` to the transport (never blocks)."""
        ...

    def write_below(self, data: bytes, limit: int) -> bool:
        """:meth:`write` if open and the buffer holds less than ``limit`` bytes; else
        write nothing and return False (the fan-out's one call per viewer)."""
        ...

    def close_slow(self) -> None: ...


@dataclass(eq=False, slots=True)
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
        if frame.last > self.delivered:
            self.delivered = frame.last
        for e in reversed(frame.entries):
            if e.kind == "comment":
                self.delivered_epoch, self.delivered_position = e.epoch, e.position
                break


class Feed:
    """One followed event: its cursor, recent cache, rate and subscriptions."""

    def __init__(self, event_id: str, recent_s: float, now: float = 0.0) -> None:
        self.event_id = event_id
        self.subs: dict[int, Subscription] = {}
        self.cursor = "0-0"
        self.cache = RecentCache(recent_s)
        self.ready = asyncio.Event()
        self.last_position: int | None = None
        self.rate = 0.0  # comments per second, smoothed
        self.rate_at = now
        self.hot = False
        self.hot_rate = 100.0
        self.busy = False  # above the coalescing rate: held for a tick
        self.held: list[Entry] = []
        self.flush_at: float | None = None
        self.top_budget = 0.0
        self.top_at: float | None = None
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

    def _update_rate(self, comments: int, dt: float, busy_rate: float | None = None) -> None:
        if dt <= 0:
            if comments:
                self.rate += comments / 2.0  # same instant: the EMA's jump for them
            return
        alpha = min(1.0, dt / 2.0)  # ~2 s smoothing
        self.rate += alpha * (comments / dt - self.rate)
        # Hysteresis: hot above the rate, back to normal below 80 % of it.
        if self.hot:
            self.hot = self.rate > 0.8 * self.hot_rate
        else:
            self.hot = self.rate > self.hot_rate
        if busy_rate is not None:
            if self.busy:
                self.busy = self.rate > 0.8 * busy_rate
            else:
                self.busy = self.rate > busy_rate


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
        coalesce_above_per_s: float = 50.0,
        write_buffer_bytes: int = 256 * 1024,
        block_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._history = history
        self._tick = tick_ms / 1000
        self._recent_s = recent_s
        self._top_per_s = top_per_s
        self._slow_s = slow_disconnect_s
        self._hot_rate_of = hot_rate_of or (lambda _e: 100.0)
        self._busy_rate = coalesce_above_per_s
        self._limit = write_buffer_bytes
        self._block_ms = block_ms
        self._clock = clock
        self.feeds: dict[str, Feed] = {}
        self._changed = asyncio.Event()
        self._reading: asyncio.Future[Any] | None = None

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(self, viewer: Viewer, event_id: str, mode: Literal["all", "top"]) -> Feed:
        """Attach ``viewer`` (not live yet: frames wait in its subscription until
        :meth:`go_live`). Returns the feed; ``feed.cursor`` right after this returns is
        the last stream id the backlog must cover."""
        while True:
            feed = self.feeds.get(event_id)
            if feed is None:
                feed = self.feeds[event_id] = Feed(event_id, self._recent_s, self._clock())
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
        ``position``) is written: send what arrived meanwhile, then live."""
        feed = self.feeds.get(event_id)
        sub = feed.subs.get(id(viewer)) if feed else None
        if sub is None:
            return
        sub.delivered = delivered
        sub.delivered_epoch, sub.delivered_position = epoch, position
        for frame in sub.pending:
            rest = _after(frame, delivered, event_id)
            if rest is not None and self._offer(sub, rest):
                _count(rest.kind, 1, rest.comments, len(rest.data))
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
        try:
            while True:
                try:
                    await self._read_once()
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning(
                        "live reader: %s: %s; retrying in %.1fs", type(e).__name__, e, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            if self._reading is not None:
                self._reading.cancel()

    def _next_flush(self) -> float | None:
        due = [f.flush_at for f in self.feeds.values() if f.flush_at is not None]
        return min(due) if due else None

    async def _read_once(self) -> None:
        """One step: start a read if none is in flight, then wait for whichever comes
        first: its answer, a new event to follow, or a busy event's flush time.

        The flush time is kept here, not by the read's ``BLOCK``: Redis times a blocked
        read out only on its own clock tick (``hz``, 100 ms by default), far too late
        for a 10 ms tick; and a read in flight is never cancelled for a flush.
        """
        if self._reading is None:
            streams = {stream_key(e): f.cursor for e, f in self.feeds.items() if f.ready.is_set()}
            if not streams:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                return
            self._changed.clear()
            self._reading = asyncio.ensure_future(
                self._redis.xread(streams, count=5000, block=self._block_ms)
            )
        read = self._reading
        due = self._next_flush()
        timeout = None if due is None else max(0.0, due - self._clock())
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((read, changed), timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            changed.cancel()
        if read.done():
            self._reading = None
            await self._settle(read.result(), self._clock())
            return
        if self._changed.is_set():
            # A new event to follow: cut the blocked read short (redis-py drops that
            # connection); nothing is lost, the cursors did not move.
            self._reading = None
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read
        self._flush_due(self._clock())

    async def _settle(self, result: Any, now: float) -> None:
        """Hand one XREAD's answer to the feeds: at once, or held for a busy one's tick."""
        got: dict[str, list[Entry]] = {}
        for key, raw_entries in result or ():
            name = key.decode() if isinstance(key, bytes) else key
            event_id = name[len("event:") : -len(":comments")]
            got[event_id] = [parse_entry(sid, fields) for sid, fields in raw_entries]
        for event_id, feed in list(self.feeds.items()):
            entries = got.get(event_id)
            comments = 0
            if entries:
                feed.cursor = entries[-1].stream_id
                entries = await self._fill_live_holes(feed, entries)
                for e in entries:
                    if e.kind == "comment":
                        comments += 1
            feed._update_rate(comments, now - feed.rate_at, self._busy_rate)
            feed.rate_at = now
            if not entries:
                continue
            if feed.busy:
                # Busy: one frame per tick for all its viewers, not one per comment.
                feed.held.extend(entries)
                if feed.flush_at is None:
                    feed.flush_at = now + self._tick
            elif feed.held:
                feed.held.extend(entries)
                self._flush(feed)
            else:
                self._deliver(feed, entries)
        self._flush_due(now)

    def _flush_due(self, now: float) -> None:
        for feed in list(self.feeds.values()):
            if feed.flush_at is not None and feed.flush_at <= now:
                self._flush(feed)

    def _flush(self, feed: Feed) -> None:
        held, feed.held, feed.flush_at = feed.held, [], None
        if held:
            self._deliver(feed, held)

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
        # Only when these entries have shadow comments: frames for each author here.
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
        if not own and top_frames is None:
            self._fan_out(feed, frames)
            return
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
                if not sub.live:
                    sub.pending.append(frame)
                elif self._offer(sub, frame):
                    _count(frame.kind, 1, frame.comments, len(frame.data))

    def _fan_out(self, feed: Feed, frames: list[Frame]) -> None:
        """The usual case: the same frames to every viewer of the event. Per viewer only
        a buffer check and a ``write``; metrics once per frame."""
        limit = self._limit
        subs = list(feed.subs.values())
        for frame in frames:
            data = frame.data
            sent = 0
            for sub in subs:
                if not sub.live:
                    sub.pending.append(frame)
                    continue
                if sub.behind_since is None and sub.viewer.write_below(data, limit):
                    sub.note(frame)
                    sent += 1
                    continue
                if self._offer(sub, frame):  # full or closed: the slow-consumer policy
                    sent += 1
            _count(frame.kind, sent, frame.comments * sent, len(data) * sent)

    def _top(self, feed: Feed, entries: list[Entry]) -> tuple[list[Frame], set[str]]:
        now = self._clock()
        dt = self._tick if feed.top_at is None else min(1.0, max(0.0, now - feed.top_at))
        feed.top_at = now
        feed.top_budget = min(feed.top_budget + self._top_per_s * dt, max(1.0, self._top_per_s))
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

    def _offer(self, sub: Subscription, frame: Frame) -> bool:
        """Write ``frame`` to a live viewer under the slow-consumer policy; True if sent."""
        viewer = sub.viewer
        size = viewer.buffered()
        if size < 0:
            return False  # closed: its handler unsubscribes it
        if sub.behind_since is not None:
            # Behind: drop until the buffer drained to half, then tell and go on.
            if size * 2 >= self._limit:
                M.queue_drops.inc()
                if self._clock() - sub.behind_since > self._slow_s:
                    M.slow_disconnects.inc()
                    viewer.close_slow()
                return False
            notice = P.gap(
                sub.event_id, sub.delivered_epoch, sub.delivered_position, "slow_consumer"
            )
            viewer.write(wire(notice.encode()))
            M.gaps_sent.labels("slow_consumer").inc()
            sub.behind_since = None
        elif size >= self._limit:
            M.queue_drops.inc()
            sub.behind_since = self._clock()
            return False
        viewer.write(frame.data)
        sub.note(frame)
        return True

    def broadcast(self, event_id: str, data: bytes, kind: str) -> None:
        """A frame for every live viewer of an event (presence); skipped for a viewer
        whose buffer is over the limit."""
        feed = self.feeds.get(event_id)
        if feed is None:
            return
        framed = wire(data)
        sent = 0
        for sub in feed.subs.values():
            if not sub.live:
                continue
            size = sub.viewer.buffered()
            if 0 <= size < self._limit:
                sub.viewer.write(framed)
                sent += 1
            else:
                M.queue_drops.inc()
        _count(kind, sent, 0, len(framed) * sent)


_frames_out: dict[str, Any] = {}


def _count(kind: str, frames: int, deliveries: int, written: int) -> None:
    """Metrics for ``frames`` frames of one kind: called per frame, never per viewer."""
    if not frames:
        return
    counter = _frames_out.get(kind)
    if counter is None:
        counter = _frames_out[kind] = M.frames_out.labels(kind)
    counter.inc(frames)
    M.bytes_out.inc(written)
    if deliveries:
        M.deliveries.inc(deliveries)


def _after(frame: Frame, delivered: Key, event_id: str) -> Frame | None:
    """``frame`` without what the viewer already has (the backlog overlapped it)."""
    if frame.first > delivered:
        return frame
    if frame.last <= delivered:
        return None
    rest = [e for e in frame.entries if e.sort_key > delivered]
    frames = build_frames(event_id, rest)
    return frames[0] if frames else None
