"""The permanent tier: published comments in Cassandra (tables in ``deploy/cql``).

Writes are idempotent upserts keyed by position, sent asynchronously with prepared
statements, grouped per Cassandra partition into unlogged batches, and retried with
backoff until they succeed: a persist that cannot reach Cassandra holds its Kafka
partition (the offsets are not committed) instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, ResponseFuture, Session
from cassandra.cqltypes import DateType
from cassandra.marshal import int64_pack
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from deploy.settings import Settings
from schemas.records import (
    CommentModerated,
    CommentPublished,
    CommentSubmitted,
    Review,
    ReviewDecision,
)

log = logging.getLogger(__name__)

BUCKET_BITS = 20  # 1,048,576 positions per Cassandra partition of an event
# Rows per unlogged batch: ~100 rows of a chat comment stay well under the batch size
# limits of deploy/stack/templates/cassandra.yaml (warn 64 KiB, fail 640 KiB).
MAX_BATCH_ROWS = 100


def bucket_of(position: int) -> int:
    return position >> BUCKET_BITS


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def fast_timestamps() -> None:
    """Bind ``timestamp`` columns from ints (ms since the epoch) without the driver's
    detour. cassandra-driver's ``DateType.serialize`` tries a datetime, then a date,
    then a number, through caught ``AttributeError``s: ≈ 10 µs per int and ≈ 5 per
    datetime (3.30.1), four timestamps per comment. Other values go to the original."""
    original = DateType.serialize
    if getattr(original, "_livecomments", False):
        return

    def serialize(v: Any, protocol_version: int) -> bytes:
        if type(v) is int:
            return int64_pack(v)  # type: ignore[no-any-return]
        return original(v, protocol_version)  # type: ignore[no-any-return]

    serialize._livecomments = True  # type: ignore[attr-defined]
    DateType.serialize = staticmethod(serialize)


fast_timestamps()


@dataclass(frozen=True, slots=True)
class StoredComment:
    event_id: str
    position: int
    previous_position: int | None
    epoch: int
    comment_id: str
    user_id: str
    display_name: str
    roles: tuple[str, ...]
    badges: tuple[str, ...]
    text: str
    reply_to: str | None
    language: str | None
    submitted_at: int
    published_at: int
    removed: bool
    # Set: a shadow comment of a hidden user, for this user (its author) alone.
    visible_to: str | None = None


@dataclass(frozen=True, slots=True)
class HeldComment:
    """A comment moderation held for review (``held_comments``), and its review if any."""

    event_id: str
    position: int  # offset of its CommentSubmitted: the key of the review queue
    comment_id: str
    user_id: str
    text: str
    client_nonce: str | None
    reply_to: str | None
    submitted_at: int
    gateway_id: str
    trace_parent: str | None
    language_hint: str | None
    language: str | None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    held_at: int = 0
    decision: str | None = None  # APPROVE | REJECT; None while pending
    reviewed_by: str | None = None
    reviewed_at: int | None = None
    decided_offset: int | None = None

    def as_review(self, decision: str, reviewed_by: str, now_ms: int) -> CommentSubmitted:
        """The record a moderator's decision is: the held comment as submitted, plus
        ``review`` (see ``CommentSubmitted.review``)."""
        return CommentSubmitted(
            comment_id=self.comment_id,
            event_id=self.event_id,
            user_id=self.user_id,
            text=self.text,
            client_nonce=self.client_nonce,
            reply_to=self.reply_to,
            submitted_at=self.submitted_at,
            gateway_id=self.gateway_id,
            trace_parent=self.trace_parent,
            language_hint=self.language_hint,
            review=Review(
                decision=ReviewDecision(decision.upper()),
                reviewed_by=reviewed_by,
                reviewed_at=now_ms,
                held_position=self.position,
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """The form the API and the protocol show moderators."""
        return {
            "event_id": self.event_id,
            "position": self.position,
            "comment_id": self.comment_id,
            "user_id": self.user_id,
            "text": self.text,
            "reply_to": self.reply_to,
            "submitted_at": self.submitted_at,
            "language": self.language,
            "scores": dict(self.scores),
            "reasons": list(self.reasons),
            "held_at": self.held_at,
            "decision": self.decision,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at,
        }


def _row_to_held(row: Any) -> HeldComment:
    return HeldComment(
        event_id=row.event_id,
        position=row.position,
        comment_id=row.comment_id,
        user_id=row.user_id,
        text=row.text or "",
        client_nonce=row.client_nonce,
        reply_to=row.reply_to,
        submitted_at=_ms(row.submitted_at),
        gateway_id=row.gateway_id or "",
        trace_parent=row.trace_parent,
        language_hint=row.language_hint,
        language=row.language,
        scores=dict(row.scores or {}),
        reasons=list(row.reasons or ()),
        held_at=_ms(row.held_at),
        decision=row.decision,
        reviewed_by=row.reviewed_by,
        reviewed_at=_ms(row.reviewed_at) if row.reviewed_at else None,
        decided_offset=row.decided_offset,
    )


def _ms(value: datetime | None) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _row_to_comment(row: Any) -> StoredComment:
    return StoredComment(
        event_id=row.event_id,
        position=row.position,
        previous_position=row.previous_position,
        epoch=row.epoch or 0,
        comment_id=row.comment_id,
        user_id=row.user_id,
        display_name=row.display_name or "",
        roles=tuple(row.roles or ()),
        badges=tuple(row.badges or ()),
        text=row.text or "",
        reply_to=row.reply_to,
        language=row.language,
        submitted_at=_ms(row.submitted_at),
        published_at=_ms(row.published_at),
        removed=bool(row.removed),
        visible_to=getattr(row, "visible_to", None),
    )


class CommentStore:
    def __init__(self, settings: Settings, *, retry_max_s: float = 5.0) -> None:
        self._cluster = Cluster(
            settings.cassandra_contact_points,
            port=settings.cassandra_port,
            protocol_version=5,
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 5.0),
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        )
        self._session: Session = self._cluster.connect()
        self._retry_max_s = retry_max_s
        self._keyspace = settings.cassandra_keyspace
        s = self._session
        ks = settings.cassandra_keyspace
        self._insert_comment: PreparedStatement = s.prepare(
            f"INSERT INTO {ks}.comments_by_event (event_id, bucket, position, previous_position, "
            "epoch, comment_id, user_id, display_name, roles, badges, text, reply_to, language, "
            "submitted_at, published_at, visible_to) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._insert_bucket = s.prepare(
            f"INSERT INTO {ks}.comment_buckets_by_event (event_id, bucket) VALUES (?, ?)"
        )
        self._insert_by_user = s.prepare(
            f"INSERT INTO {ks}.comments_by_user (user_id, submitted_at, comment_id, event_id, "
            "position, text, published_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._mark_removed = s.prepare(
            f"UPDATE {ks}.comments_by_event SET removed = true, removed_reason = ?, removed_at = ? "
            "WHERE event_id = ? AND bucket = ? AND position = ?"
        )
        self._find_by_user = s.prepare(
            f"SELECT comment_id, event_id, position FROM {ks}.comments_by_user "
            "WHERE user_id = ? LIMIT 5000"
        )
        self._select_before = s.prepare(
            f"SELECT * FROM {ks}.comments_by_event WHERE event_id = ? AND bucket = ? "
            "AND position < ? ORDER BY position DESC LIMIT ?"
        )
        self._select_after = s.prepare(
            f"SELECT * FROM {ks}.comments_by_event WHERE event_id = ? AND bucket = ? "
            "AND position > ? ORDER BY position ASC LIMIT ?"
        )
        self._buckets_desc = s.prepare(
            f"SELECT bucket FROM {ks}.comment_buckets_by_event WHERE event_id = ? AND bucket <= ?"
        )
        self._buckets_asc = s.prepare(
            f"SELECT bucket FROM {ks}.comment_buckets_by_event WHERE event_id = ? AND bucket >= ? "
            "ORDER BY bucket ASC"
        )
        self._by_user = s.prepare(
            f"SELECT comment_id, event_id, position, text, published_at FROM {ks}.comments_by_user "
            "WHERE user_id = ? LIMIT ?"
        )
        self._insert_held = s.prepare(
            f"INSERT INTO {ks}.held_comments (event_id, position, comment_id, user_id, text, "
            "client_nonce, reply_to, submitted_at, gateway_id, trace_parent, language_hint, "
            "language, scores, reasons, held_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._select_held = s.prepare(
            f"SELECT * FROM {ks}.held_comments WHERE event_id = ? AND position > ? LIMIT ?"
        )
        self._select_held_one = s.prepare(
            f"SELECT * FROM {ks}.held_comments WHERE event_id = ? AND position = ?"
        )
        self._claim_held = s.prepare(
            f"UPDATE {ks}.held_comments SET decision = ?, reviewed_by = ?, reviewed_at = ?, "
            "decided_offset = ? WHERE event_id = ? AND position = ? IF decision = null"
        )
        self._claim_held.consistency_level = ConsistencyLevel.LOCAL_QUORUM
        self._claim_held.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
        for stmt in (
            self._insert_comment,
            self._insert_bucket,
            self._insert_by_user,
            self._mark_removed,
            self._insert_held,
        ):
            stmt.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            stmt.is_idempotent = True
        self._known_buckets: set[tuple[str, int]] = set()

    def close(self) -> None:
        self._cluster.shutdown()

    async def _execute(self, statement: Any, params: Any = None) -> Any:
        """One statement, retried with backoff until it succeeds (or the task is cancelled)."""
        delay = 0.05
        while True:
            try:
                return await _await(self._session.execute_async(statement, params, timeout=10))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(
                    "cassandra write failed (%s: %s); retrying in %.2fs", type(e).__name__, e, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)

    async def upsert(self, comments: Sequence[CommentPublished]) -> None:
        """Write every comment and its index rows; returns when all are durable.

        Every row of the batch (``comments_by_event``, ``comments_by_user``, a new bucket's
        index row) goes into a few unlogged batches, one per replica that owns the rows
        (:meth:`_batches`): Cassandra's cost, and the driver's, follow requests, not rows
        (one request per row cost ~3x the CPU per comment on both sides).
        """
        if not comments:
            return
        rows: list[tuple[PreparedStatement, tuple[Any, ...]]] = []
        buckets: set[tuple[str, int]] = set()
        for c in comments:
            bucket = bucket_of(c.position)
            if (c.event_id, bucket) not in self._known_buckets and (
                c.event_id,
                bucket,
            ) not in buckets:
                buckets.add((c.event_id, bucket))
                rows.append((self._insert_bucket, (c.event_id, bucket)))
            submitted, published = c.submitted_at, c.published_at
            rows.append(
                (
                    self._insert_comment,
                    (
                        c.event_id,
                        bucket,
                        c.position,
                        c.previous_position,
                        c.epoch,
                        c.comment_id,
                        c.user_id,
                        c.display_name,
                        list(c.roles),
                        list(c.badges),
                        c.text,
                        c.reply_to,
                        c.language,
                        submitted,
                        published,
                        c.visible_to,
                    ),
                )
            )
            rows.append(
                (
                    self._insert_by_user,
                    (
                        c.user_id,
                        submitted,
                        c.comment_id,
                        c.event_id,
                        c.position,
                        c.text,
                        published,
                    ),
                )
            )
        await self._execute_all([(batch, None) for batch in self._batches(rows)])
        self._known_buckets.update((c.event_id, bucket_of(c.position)) for c in comments)
        if len(self._known_buckets) > 100_000:
            self._known_buckets.clear()

    def _batches(
        self, rows: Sequence[tuple[PreparedStatement, tuple[Any, ...]]]
    ) -> list[BatchStatement]:
        """Unlogged batches of at most ``MAX_BATCH_ROWS`` rows, grouped by the replica that
        owns each row's partition, so a batch goes to a node that applies it locally
        (token-aware) instead of making its coordinator forward rows."""
        metadata = self._cluster.metadata
        by_replica: dict[Any, list[BatchStatement]] = {}
        for statement, params in rows:
            bound = statement.bind(params)
            replicas = metadata.get_replicas(self._keyspace, bound.routing_key)
            owner = replicas[0] if replicas else None
            batches = by_replica.setdefault(owner, [])
            if not batches or len(batches[-1]) >= MAX_BATCH_ROWS:
                batches.append(
                    BatchStatement(
                        batch_type=BatchType.UNLOGGED,
                        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                    )
                )
            batches[-1].add(bound)
        return [batch for batches in by_replica.values() for batch in batches]

    async def _execute_all(self, statements: list[tuple[Any, Any]]) -> None:
        """Send every statement at once; one wake-up when all answered; retry the failed.

        One asyncio future per batch instead of one per statement: the driver answers on
        its own thread, and a thread-safe wake-up per statement cost more than the write.
        """
        delay = 0.05
        pending = statements
        while pending:
            failed = await self._send_all(pending)
            if not failed:
                return
            log.warning(
                "cassandra: %d of %d writes failed (%s); retrying in %.2fs",
                len(failed),
                len(pending),
                failed[0][1],
                delay,
            )
            pending = [statements_item for statements_item, _ in failed]
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    def _send_all(
        self, statements: list[tuple[Any, Any]]
    ) -> asyncio.Future[list[tuple[tuple[Any, Any], BaseException]]]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[tuple[tuple[Any, Any], BaseException]]] = loop.create_future()
        failed: list[tuple[tuple[Any, Any], BaseException]] = []
        remaining = [len(statements)]
        lock = threading.Lock()

        def finish_one(item: tuple[Any, Any], exc: BaseException | None) -> None:
            with lock:
                if exc is not None:
                    failed.append((item, exc))
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                loop.call_soon_threadsafe(_set, done, failed, None)

        for item in statements:
            try:
                future = self._session.execute_async(item[0], item[1], timeout=10)
            except Exception as e:  # e.g. NoHostAvailable raised synchronously
                finish_one(item, e)
                continue
            future.add_callbacks(
                lambda _rows, item=item: finish_one(item, None),
                lambda exc, item=item: finish_one(item, exc),
            )
        return done

    async def locate(self, user_id: str, comment_id: str) -> tuple[str, int] | None:
        """(event_id, position) of a comment of ``user_id`` (its last 30 days)."""
        rows = await self._execute(self._find_by_user, (user_id,))
        for row in rows:
            if row.comment_id == comment_id:
                return row.event_id, row.position
        return None

    async def mark_removed(self, event_id: str, position: int, reason: str, at_ms: int) -> None:
        await self._execute(
            self._mark_removed, (reason, _ts(at_ms), event_id, bucket_of(position), position)
        )

    async def before(self, event_id: str, position: int, limit: int) -> list[StoredComment]:
        """Up to ``limit`` comments with a smaller position, newest first."""
        result: list[StoredComment] = []
        buckets = await self._execute(self._buckets_desc, (event_id, bucket_of(position)))
        for b in buckets:
            rows = await self._execute(
                self._select_before, (event_id, b.bucket, position, limit - len(result))
            )
            result.extend(_row_to_comment(r) for r in rows)
            if len(result) >= limit:
                break
        return result

    async def after(self, event_id: str, position: int, limit: int) -> list[StoredComment]:
        """Up to ``limit`` comments with a greater position, oldest first."""
        result: list[StoredComment] = []
        buckets = await self._execute(self._buckets_asc, (event_id, bucket_of(position)))
        for b in buckets:
            rows = await self._execute(
                self._select_after, (event_id, b.bucket, position, limit - len(result))
            )
            result.extend(_row_to_comment(r) for r in rows)
            if len(result) >= limit:
                break
        return result

    async def previous_position(self, event_id: str, position: int) -> int | None:
        """The public comment before ``position`` (shadow comments are not in the chain)."""
        while True:
            rows = await self.before(event_id, position, 32)
            for row in rows:
                if row.visible_to is None:
                    return row.position
            if len(rows) < 32:
                return None
            position = rows[-1].position

    async def hold(self, held: Sequence[tuple[int, CommentModerated]]) -> None:
        """Put held comments in the review queue: (position, the hold decision) each.

        Writes the comment's own columns only, so a replay never reopens a comment a
        moderator already decided."""
        statements: list[tuple[Any, Any]] = [
            (
                self._insert_held,
                (
                    m.event_id,
                    position,
                    m.comment_id,
                    m.user_id,
                    m.text,
                    m.client_nonce,
                    m.reply_to,
                    _ts(m.submitted_at),
                    m.gateway_id,
                    m.trace_parent,
                    m.language_hint,
                    m.language,
                    dict(m.scores),
                    list(m.reasons),
                    _ts(m.moderated_at),
                ),
            )
            for position, m in held
        ]
        await self._execute_all(statements)

    async def held(
        self,
        event_id: str,
        *,
        after: int | None = None,
        limit: int = 50,
        pending_only: bool = True,
    ) -> list[HeldComment]:
        """Held comments of an event by position (after ``after``), pending ones only by default."""
        result: list[HeldComment] = []
        cursor = -1 if after is None else after
        while len(result) < limit:
            page = 200 if pending_only else limit - len(result)
            rows = await self._execute(self._select_held, (event_id, cursor, page))
            held = [_row_to_held(r) for r in rows]
            result.extend(h for h in held if h.decision is None or not pending_only)
            if len(held) < page:
                break
            cursor = held[-1].position
        return result[:limit]

    async def held_one(self, event_id: str, position: int) -> HeldComment | None:
        rows = await self._execute(self._select_held_one, (event_id, position))
        for row in rows:
            return _row_to_held(row)
        return None

    async def claim_review(self, review: CommentSubmitted, offset: int) -> HeldComment | None:
        """Record a moderator's decision on its held comment, once.

        Returns the held comment when this review record (at ``offset``) is the one that
        decides it — the first time, or again when its batch is re-processed — and None
        when nothing was held there for this comment or another record decided first.
        """
        r = review.review
        assert r is not None
        held = await self.held_one(review.event_id, r.held_position)
        if held is None or held.comment_id != review.comment_id:
            return None
        if held.decision is None:
            rows = await self._execute(
                self._claim_held,
                (
                    r.decision.value,
                    r.reviewed_by,
                    _ts(r.reviewed_at),
                    offset,
                    review.event_id,
                    r.held_position,
                ),
            )
            applied = next(iter(rows), None)
            if applied is not None and bool(applied[0]):
                return held
            held = await self.held_one(review.event_id, r.held_position)
            assert held is not None
        return held if held.decided_offset == offset else None

    async def remove_user_comments(
        self, event_id: str, user_id: str, reason: str, at_ms: int
    ) -> list[int]:
        """Mark every comment of ``user_id`` in ``event_id`` removed (its last 30 days)."""
        rows = await self._execute(self._find_by_user, (user_id,))
        positions = [r.position for r in rows if r.event_id == event_id]
        await self._execute_all(
            [
                (self._mark_removed, (reason, _ts(at_ms), event_id, bucket_of(p), p))
                for p in positions
            ]
        )
        return positions

    async def user_recent(self, user_id: str, limit: int = 50) -> list[tuple[str, str, int, str]]:
        rows = await self._execute(self._by_user, (user_id, limit))
        return [(r.comment_id, r.event_id, r.position, r.text) for r in rows]


def _await(future: ResponseFuture) -> asyncio.Future[Any]:
    """The driver's callback future as an asyncio future of this loop."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Any] = loop.create_future()

    def ok(rows: Any) -> None:
        loop.call_soon_threadsafe(_set, result, rows, None)

    def failed(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_set, result, None, exc)

    future.add_callbacks(ok, failed)
    return result


def _set(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)
