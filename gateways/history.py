"""An event's comments from the tiers: recent cache (L1), Redis stream, Cassandra.

Transport-free, shared by the WebSocket gateway (join with ``since``) and the HTTP API
(history pages). Items are the viewer-facing JSON of ``connectors.redis_streams``
(``comment_json``): from Redis as stored, from Cassandra rebuilt field for field.

Resume is exact because every comment carries ``previous_position``: walking the
recovered comments, a comment whose ``previous_position`` is not the one before it
shows a hole (Redis trimmed or lost that range), and the hole is read from Cassandra,
which holds every published comment. Positions compare only within one ``epoch``: a
client whose epoch is not the event's current one gets a fresh backlog and
``complete: false``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from connectors.redis_streams import entry_id, stream_key

FAR_POSITION: Final = 2**62
PAGE: Final = 1000


@dataclass(slots=True)
class Entry:
    """One item of an event's log as the gateway handles it."""

    stream_id: str  # Redis entry id ("" for Cassandra rows)
    kind: str  # comment | retract | epoch
    data: str  # the JSON sent to viewers
    position: int | None = None
    previous_position: int | None = None
    epoch: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def sort_key(self) -> tuple[int, int]:
        ms, _, seq = self.stream_id.partition("-")
        if ms:
            return int(ms), int(seq or 0)
        return (self.position or 0) + 1, 0


def parse_entry(stream_id: bytes | str, raw: dict[Any, Any]) -> Entry:
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    kind_raw = raw.get(b"type", raw.get("type", b"comment"))
    data_raw = raw.get(b"data", raw.get("data", b"{}"))
    kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
    data = data_raw.decode() if isinstance(data_raw, bytes) else str(data_raw)
    entry = Entry(sid, kind, data)
    try:
        fields = json.loads(data)
    except ValueError:
        fields = {}
    if isinstance(fields, dict):
        entry.fields = fields
        if kind == "comment":
            entry.position = fields.get("position")
            entry.previous_position = fields.get("previous_position")
            entry.epoch = fields.get("epoch")
    return entry


def stored_entry(c: Any) -> Entry:
    """A Cassandra row (``connectors.cassandra_store.StoredComment``) as an entry.

    A removed comment keeps its place in the order (so ``previous_position`` chains
    stay whole) but carries no text: ``{"removed": true}``.
    """
    if c.removed:
        fields: dict[str, Any] = {
            "comment_id": c.comment_id,
            "event_id": c.event_id,
            "position": c.position,
            "previous_position": c.previous_position,
            "epoch": c.epoch,
            "removed": True,
        }
    else:
        fields = {
            "comment_id": c.comment_id,
            "event_id": c.event_id,
            "position": c.position,
            "previous_position": c.previous_position,
            "epoch": c.epoch,
            "user_id": c.user_id,
            "display_name": c.display_name,
            "roles": list(c.roles),
            "badges": list(c.badges),
            "text": c.text,
            "reply_to": c.reply_to,
            "language": c.language,
            "submitted_at": c.submitted_at,
            "published_at": c.published_at,
        }
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return Entry(
        entry_id(c.position), "comment", data, c.position, c.previous_position, c.epoch, fields
    )


def holes(entries: Sequence[Entry], since_position: int | None) -> list[tuple[int | None, int]]:
    """Where the comments in ``entries`` do not follow each other: ``(after, before)``
    ranges (positions, both exclusive) missing before a comment. ``after`` None means
    "from the event's start". Pure; the heart of gap-free resume."""
    missing: list[tuple[int | None, int]] = []
    last = since_position
    for e in entries:
        if e.kind != "comment" or e.position is None:
            continue
        prev = e.previous_position
        if prev is not None and (last is None or prev > last):
            missing.append((last, e.position))
        last = e.position
    return missing


@dataclass
class Recovery:
    entries: list[Entry]
    complete: bool
    truncated: bool
    epoch: int | None
    position: int | None  # of the last comment the client has after this
    reason: str | None = None
    tiers: dict[str, int] = field(default_factory=dict)  # items read per tier


class RecentCache:
    """L1: the last entries an event's reader saw, for resumes within seconds.

    ``covers(since)`` holds when the cache has every entry after ``since`` up to its
    newest: the reader started before ``since`` and kept reading since then.
    """

    def __init__(self, keep_s: float, max_entries: int = 5000) -> None:
        self._keep_s = keep_s
        self._entries: deque[tuple[float, Entry]] = deque()
        self._max = max_entries
        self._floor: tuple[int, int] | None = None  # everything after this id is here

    def start_at(self, stream_id: str) -> None:
        self._entries.clear()
        ms, _, seq = stream_id.partition("-")
        self._floor = (int(ms), int(seq or 0))

    def reset(self) -> None:
        self._entries.clear()
        self._floor = None

    def add(self, entries: Iterable[Entry], now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        for e in entries:
            self._entries.append((t, e))
        while self._entries and (
            len(self._entries) > self._max or self._entries[0][0] < t - self._keep_s
        ):
            _, dropped = self._entries.popleft()
            self._floor = dropped.sort_key

    def after(self, key: tuple[int, int], upto: tuple[int, int]) -> list[Entry] | None:
        """Entries with ids in ``(key, upto]``, or None if the cache does not reach back."""
        if self._floor is None or key < self._floor:
            return None
        return [e for _, e in self._entries if key < e.sort_key <= upto]

    def latest_comment(self) -> Entry | None:
        for _, e in reversed(self._entries):
            if e.kind == "comment":
                return e
        return None


def id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class History:
    """Reads of one event's log across the tiers (``store`` is a ``CommentStore``)."""

    def __init__(self, redis: Any, store: Any, *, backlog: int, recovery_max: int) -> None:
        self._redis = redis
        self._store = store
        self.backlog = backlog
        self.recovery_max = recovery_max

    async def top_id(self, event_id: str) -> str:
        """The stream's newest entry id ("0-0" when empty): where live reading starts."""
        raw: Any = await self._redis.xrevrange(stream_key(event_id), count=1)
        return raw[0][0].decode() if raw else "0-0"

    async def current_epoch(self, event_id: str, upto: str) -> tuple[int | None, int | None]:
        """(epoch, position) of the event's newest comment at or before ``upto``."""
        raw: Any = await self._redis.xrevrange(stream_key(event_id), max=upto, count=50)
        for sid, fields in raw:
            e = parse_entry(sid, fields)
            if e.kind == "comment":
                return e.epoch, e.position
        if self._store is None:
            return None, None
        rows = await self._store.before(event_id, FAR_POSITION, 1)
        return (rows[0].epoch, rows[0].position) if rows else (None, None)

    async def recent(self, event_id: str, upto: str, count: int | None = None) -> Recovery:
        """The last ``count`` comments (and the retractions among them) up to ``upto``."""
        want = self.backlog if count is None else count
        tiers = {"redis": 0, "cassandra": 0}
        raw: Any = await self._redis.xrevrange(stream_key(event_id), max=upto, count=want * 2 + 10)
        entries = [parse_entry(sid, f) for sid, f in raw]
        entries.reverse()
        entries = [e for e in entries if e.kind != "epoch"]
        comments = [e for e in entries if e.kind == "comment"]
        if len(comments) > want:
            first = comments[-want]
            entries = [e for e in entries if e.sort_key >= first.sort_key]
        tiers["redis"] = len(entries)
        comments = [e for e in entries if e.kind == "comment"]
        # The stream may be short (new, trimmed or lost): older ones from Cassandra.
        if len(comments) < want and self._store is not None:
            below = comments[0].position if comments else upto_position(upto)
            rows = await self._store.before(event_id, below, want - len(comments))
            older = [stored_entry(r) for r in reversed(rows)]
            tiers["cassandra"] = len(older)
            entries = older + entries
        filled = await self.fill_holes(event_id, entries, None, tiers)
        last = _last_comment(filled)
        return Recovery(
            filled,
            complete=True,
            truncated=False,
            epoch=last.epoch if last else None,
            position=last.position if last else None,
            tiers=tiers,
        )

    async def resume(
        self,
        event_id: str,
        since_epoch: int,
        since_position: int,
        upto: str,
        cache: RecentCache | None = None,
    ) -> Recovery:
        """Everything after ``(since_epoch, since_position)`` up to the stream id ``upto``."""
        epoch, _ = await self.current_epoch(event_id, upto)
        if epoch is not None and epoch != since_epoch:
            backlog = await self.recent(event_id, upto)
            backlog.complete = False
            backlog.reason = "epoch_changed"
            return backlog
        tiers = {"l1": 0, "redis": 0, "cassandra": 0}
        start = id_key(entry_id(since_position))
        end = id_key(upto)
        entries = cache.after(start, end) if cache is not None else None
        if entries is not None and any(e.kind == "comment" for e in entries):
            tiers["l1"] = len(entries)
        else:
            # Nothing newer in L1 proves nothing (the live tier may have lost the range).
            entries = []
            cursor = f"({start[0]}-{start[1]}"
            while len(entries) <= self.recovery_max:
                raw: Any = await self._redis.xrange(
                    stream_key(event_id), min=cursor, max=upto, count=PAGE
                )
                page = [parse_entry(sid, f) for sid, f in raw]
                entries.extend(e for e in page if e.kind != "epoch")
                if len(raw) < PAGE:
                    break
                cursor = "(" + page[-1].stream_id
            tiers["redis"] = len(entries)
            if not any(e.kind == "comment" for e in entries):
                # Nothing after since in Redis: caught up, or Redis lost the range.
                newest = await self._redis.xrevrange(stream_key(event_id), max=upto, count=1)
                oldest: Any = await self._redis.xrange(stream_key(event_id), count=1)
                reaches_back = bool(oldest) and id_key(oldest[0][0].decode()) <= start
                if not reaches_back or not newest:
                    entries = await self._cassandra_after(
                        event_id, since_position, upto_position(upto), tiers
                    )
        filled = await self.fill_holes(event_id, entries, since_position, tiers)
        truncated = sum(1 for e in filled if e.kind == "comment") > self.recovery_max
        if truncated:
            kept = 0
            cut = len(filled)
            for i, e in enumerate(filled):
                kept += e.kind == "comment"
                if kept > self.recovery_max:
                    cut = i
                    break
            filled = filled[:cut]
        last = _last_comment(filled)
        return Recovery(
            filled,
            complete=not truncated,
            truncated=truncated,
            epoch=epoch if last is None else last.epoch,
            position=since_position if last is None else last.position,
            tiers=tiers,
        )

    async def _cassandra_after(
        self, event_id: str, after: int, upto: int | None, tiers: dict[str, int]
    ) -> list[Entry]:
        if self._store is None:
            return []
        rows = await self._store.after(event_id, after, self.recovery_max + 1)
        found = [stored_entry(r) for r in rows if upto is None or r.position <= upto]
        tiers["cassandra"] = tiers.get("cassandra", 0) + len(found)
        return found

    async def fill_holes(
        self, event_id: str, entries: list[Entry], since: int | None, tiers: dict[str, int]
    ) -> list[Entry]:
        missing = holes(entries, since)
        if not missing or self._store is None:
            return entries
        extra: list[Entry] = []
        for after, before in missing:
            start = -1 if after is None else after
            rows = await self._store.after(event_id, start, self.recovery_max + 1)
            extra.extend(stored_entry(r) for r in rows if r.position < before)
        tiers["cassandra"] = tiers.get("cassandra", 0) + len(extra)
        have = {e.position for e in entries if e.kind == "comment"}
        merged = entries + [e for e in extra if e.position not in have]
        merged.sort(key=lambda e: e.sort_key)
        return merged


def upto_position(upto: str) -> int:
    """The largest position a stream id can stand for (a comment's id is position + 1)."""
    return id_key(upto)[0] - 1 if upto != "0-0" else FAR_POSITION


def _last_comment(entries: Sequence[Entry]) -> Entry | None:
    for e in reversed(entries):
        if e.kind == "comment":
            return e
    return None
