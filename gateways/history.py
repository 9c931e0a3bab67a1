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

Shadow comments (a hidden user's, ``visible_to`` = that user) are read like any other
and kept apart: ``Entry.visible_to`` says whose they are, their JSON never says so (the
author sees an ordinary comment), and :func:`for_viewer` takes them out for everyone
else. They sit outside the public ``previous_position`` chain, so :func:`holes` skips
them and a viewer who never gets them sees no gap.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from connectors.redis_streams import comment_fields, entry_id, stream_key

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
    visible_to: str | None = None  # a shadow comment: shown to this user alone

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
            owner = raw.get(b"visible_to", raw.get("visible_to")) or fields.get("visible_to")
            if owner:  # public comments are not touched: their bytes go out as stored
                _shadow(entry, owner.decode() if isinstance(owner, bytes) else str(owner))
    return entry


def _shadow(entry: Entry, owner: str) -> None:
    """Mark ``entry`` as ``owner``'s shadow comment and take ``visible_to`` out of what
    viewers are sent: the author sees an ordinary comment."""
    entry.visible_to = owner
    entry.fields.pop("visible_to", None)
    entry.data = json.dumps(entry.fields, ensure_ascii=False, separators=(",", ":"))


def for_viewer(entries: list[Entry], user_id: str | None) -> list[Entry]:
    """What one viewer (``user_id``; None: anonymous) may be shown of ``entries``: the
    public ones and the viewer's own shadow comments. ``entries`` itself (no copy) when
    there is no shadow comment in it, the usual case."""
    for entry in entries:
        if entry.visible_to is not None:
            return [e for e in entries if e.visible_to is None or e.visible_to == user_id]
    return entries


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
        fields = comment_fields(c)
    fields.pop("visible_to", None)
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return Entry(
        entry_id(c.position),
        "comment",
        data,
        c.position,
        c.previous_position,
        c.epoch,
        fields,
        getattr(c, "visible_to", None) or None,
    )


def holes(entries: Sequence[Entry], since_position: int | None) -> list[tuple[int | None, int]]:
    """Where the comments in ``entries`` do not follow each other: ``(after, before)``
    ranges (positions, both exclusive) missing before a comment. ``after`` None means
    "from the event's start". Shadow comments are not links of the chain (their
    ``previous_position`` is the public head; they do not move it). Pure; the heart of
    gap-free resume."""
    missing: list[tuple[int | None, int]] = []
    last = since_position
    for e in entries:
        if e.kind != "comment" or e.position is None or e.visible_to is not None:
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
    # Where the client stood before this recovery (a resume's ``since``): the position
    # it still has when nothing it may see was recovered.
    start_epoch: int | None = None
    start_position: int | None = None

    def for_viewer(self, user_id: str | None) -> Recovery:
        """This recovery as one viewer may see it (:func:`for_viewer`): without the
        shadow comments of others, and ``epoch``/``position`` those of the last comment
        the viewer gets."""
        entries = for_viewer(self.entries, user_id)
        if entries is self.entries:
            return self
        last = _last_comment(entries)
        return Recovery(
            entries,
            complete=self.complete,
            truncated=self.truncated,
            epoch=last.epoch if last else self.start_epoch,
            position=last.position if last else self.start_position,
            reason=self.reason,
            tiers=self.tiers,
            start_epoch=self.start_epoch,
            start_position=self.start_position,
        )


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
            if e.kind == "comment" and e.visible_to is None:
                return e
        return None


def id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class ReplayTier:
    """The fallback: ``comments.published`` in Kafka (24 h retention), for a range that
    neither Redis nor Cassandra can give (Cassandra down, or behind).

    An event's comments sit in one partition (key ``event_id``, murmur2 like every
    producer of the project), in position order: positions are offsets of the same
    partition of ``comments.submitted``, published in that order. A binary search by
    offset finds the first record past the range's start (a replayed batch can put a few
    older positions later, so the scan starts a margin before it and drops duplicates),
    then the partition is read forward, keeping the event's records in the range.
    """

    MARGIN = 2000

    def __init__(self, bootstrap_servers: str, codec: Any, topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self._codec = codec
        self._topic = topic

    async def between(
        self, event_id: str, after: int | None, before: int | None, limit: int
    ) -> list[Entry]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.partitioner import murmur2

        from connectors.redis_streams import comment_json
        from schemas.records import CommentPublished

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self._topic) or set()
            if not partitions:
                partitions = set(await _partitions(self._bootstrap, self._topic))
            tp = TopicPartition(
                self._topic, (murmur2(event_id.encode()) & 0x7FFFFFFF) % len(partitions)
            )
            consumer.assign([tp])
            low = (await consumer.beginning_offsets([tp]))[tp]
            high = (await consumer.end_offsets([tp]))[tp]

            async def position_at(offset: int) -> int | None:
                consumer.seek(tp, offset)
                batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
                records = batch.get(tp) or []
                if not records:
                    return None
                record = self._codec.decode_as(records[0].value, CommentPublished)
                return int(record.position)

            start = -1 if after is None else after
            lo, hi = low, high
            while lo < hi:  # first offset whose position is past ``start``
                mid = (lo + hi) // 2
                pos = await position_at(mid)
                if pos is None or pos > start:
                    hi = mid
                else:
                    lo = mid + 1
            consumer.seek(tp, max(low, lo - self.MARGIN))
            found: dict[int, Entry] = {}
            done = False
            while not done:
                batch = await consumer.getmany(tp, timeout_ms=2000, max_records=2000)
                records = batch.get(tp) or []
                if not records:
                    break
                for r in records:
                    if r.key != event_id.encode():
                        if r.offset >= high - 1:
                            done = True
                        continue
                    c = self._codec.decode_as(r.value, CommentPublished)
                    if c.position > start and (before is None or c.position < before):
                        raw = {"type": "comment", "data": comment_json(c)}
                        if c.visible_to:
                            raw["visible_to"] = c.visible_to
                        found.setdefault(c.position, parse_entry(entry_id(c.position), raw))
                    if (before is not None and c.position >= before) or r.offset >= high - 1:
                        done = True
                if len(found) > limit:
                    break
            return [found[p] for p in sorted(found)][:limit]
        finally:
            await consumer.stop()


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """``topic``'s partitions, asked of the cluster.

    A consumer that is only assigned partitions knows no topic's metadata until it
    fetches (``partitions_for_topic`` is None after ``start``), and aiokafka's consumer
    has no public call that loads one topic's metadata; its admin client has one.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        int(p["partition"]) for t in described if t["topic"] == topic for p in t["partitions"]
    )


class History:
    """Reads of one event's log across the tiers (``store`` is a ``CommentStore``)."""

    def __init__(
        self,
        redis: Any,
        store: Any,
        *,
        backlog: int,
        recovery_max: int,
        replay: ReplayTier | None = None,
        store_timeout_s: float = 3.0,
    ) -> None:
        self._redis = redis
        self._store = store
        self._replay = replay
        self._store_timeout = store_timeout_s
        self.backlog = backlog
        self.recovery_max = recovery_max

    async def _store_after(self, event_id: str, after: int, limit: int) -> list[Any] | None:
        """Cassandra's rows after ``after``; None when it does not answer in time (its
        client retries forever, which a viewer must not wait for)."""
        try:
            rows: list[Any] = await asyncio.wait_for(
                self._store.after(event_id, after, limit), self._store_timeout
            )
            return rows
        except Exception:  # TimeoutError included
            return None

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
        try:
            rows = await asyncio.wait_for(
                self._store.before(event_id, FAR_POSITION, 1), self._store_timeout
            )
        except Exception:
            return None, None
        return (rows[0].epoch, rows[0].position) if rows else (None, None)

    async def recent(self, event_id: str, upto: str, count: int | None = None) -> Recovery:
        """The last ``count`` comments (and the retractions among them) up to ``upto``."""
        want = self.backlog if count is None else count
        tiers = {"redis": 0, "cassandra": 0}
        raw: Any = await self._redis.xrevrange(stream_key(event_id), max=upto, count=want * 2 + 10)
        entries = [parse_entry(sid, f) for sid, f in raw]
        entries.reverse()
        entries = [e for e in entries if e.kind != "epoch"]
        # The backlog is the last ``want`` public comments; shadow comments among them
        # come along for their authors.
        comments = [e for e in entries if e.kind == "comment" and e.visible_to is None]
        if len(comments) > want:
            first = comments[-want]
            entries = [e for e in entries if e.sort_key >= first.sort_key]
        tiers["redis"] = len(entries)
        comments = [e for e in entries if e.kind == "comment"]
        # The stream may be short (new, trimmed or lost): older ones from Cassandra.
        if len(comments) < want and self._store is not None:
            below = comments[0].position if comments else upto_position(upto)
            try:
                rows = await asyncio.wait_for(
                    self._store.before(event_id, below, want - len(comments)),
                    self._store_timeout,
                )
            except Exception:  # a shorter backlog rather than a join that hangs
                rows = []
            older = [stored_entry(r) for r in reversed(rows)]
            tiers["cassandra"] = len(older)
            entries = older + entries
        # The backlog starts at its first comment: what came before it is not wanted,
        # only holes inside the backlog are filled (else a fresh join of an event with a
        # long history would read all of it from Cassandra).
        oldest = next((e for e in entries if e.kind == "comment" and e.visible_to is None), None)
        start = oldest.previous_position if oldest is not None else None
        filled = await self.fill_holes(event_id, entries, start, tiers)
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
                    lost = not any(
                        parse_entry(i, f).kind == "comment"
                        for i, f in await self._redis.xrevrange(
                            stream_key(event_id), max=upto, count=20
                        )
                    )
                    entries = await self._cassandra_after(
                        event_id, since_position, upto_position(upto), tiers, lost=lost
                    )
        filled = await self.fill_holes(event_id, entries, since_position, tiers)
        whole = not holes(filled, since_position)
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
            complete=whole and not truncated,
            truncated=truncated,
            epoch=epoch if last is None else last.epoch,
            position=since_position if last is None else last.position,
            reason=None if whole else "history_unavailable",
            tiers=tiers,
            start_epoch=epoch,
            start_position=since_position,
        )

    async def _cassandra_after(
        self, event_id: str, after: int, upto: int | None, tiers: dict[str, int], *, lost: bool
    ) -> list[Entry]:
        """Comments after ``after`` from Cassandra; with ``lost`` (the Redis stream has
        no comment at all: Redis lost it), Kafka is asked for anything past what
        Cassandra has, since nothing else could show that Cassandra is behind."""
        found: list[Entry] = []
        answered = False
        if self._store is not None:
            rows = await self._store_after(event_id, after, self.recovery_max + 1)
            if rows is not None:
                answered = True
                found = [stored_entry(r) for r in rows if upto is None or r.position <= upto]
                tiers["cassandra"] = tiers.get("cassandra", 0) + len(found)
        if self._replay is not None and (lost or not answered):
            start = found[-1].position if found and found[-1].position is not None else after
            before = None if upto is None or upto >= FAR_POSITION else upto + 1
            more = await self._replay.between(event_id, start, before, self.recovery_max + 1)
            tiers["kafka"] = tiers.get("kafka", 0) + len(more)
            found = _merge(found, more)
        return found

    async def fill_holes(
        self, event_id: str, entries: list[Entry], since: int | None, tiers: dict[str, int]
    ) -> list[Entry]:
        """``entries`` with the holes of their ``previous_position`` chain filled from
        Cassandra, then from Kafka for what Cassandra could not give."""
        missing = holes(entries, since)
        if not missing:
            return entries
        extra: list[Entry] = []
        unfilled: list[tuple[int | None, int]] = []
        for after, before in missing:
            start = -1 if after is None else after
            rows = None
            if self._store is not None:
                rows = await self._store_after(event_id, start, self.recovery_max + 1)
            if rows is None:
                unfilled.append((after, before))
                continue
            got = [stored_entry(r) for r in rows if r.position < before]
            tiers["cassandra"] = tiers.get("cassandra", 0) + len(got)
            extra.extend(got)
        merged = _merge(entries, extra)
        if self._replay is not None:
            # Cassandra down, or without rows it should have: the replay tier.
            unfilled += [h for h in holes(merged, since) if h not in unfilled]
            replayed: list[Entry] = []
            for after, before in unfilled:
                replayed += await self._replay.between(
                    event_id, after, before, self.recovery_max + 1
                )
            tiers["kafka"] = tiers.get("kafka", 0) + len(replayed)
            merged = _merge(merged, replayed)
        return merged


def _merge(entries: list[Entry], extra: list[Entry]) -> list[Entry]:
    if not extra:
        return entries
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
