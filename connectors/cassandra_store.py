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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, ResponseFuture, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from deploy.settings import Settings
from schemas.records import CommentPublished

log = logging.getLogger(__name__)

BUCKET_BITS = 20  # 1,048,576 positions per Cassandra partition of an event
MAX_BATCH_ROWS = 50


def bucket_of(position: int) -> int:
    return position >> BUCKET_BITS


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


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
        s = self._session
        ks = settings.cassandra_keyspace
        self._insert_comment: PreparedStatement = s.prepare(
            f"INSERT INTO {ks}.comments_by_event (event_id, bucket, position, previous_position, "
            "epoch, comment_id, user_id, display_name, roles, badges, text, reply_to, language, "
            "submitted_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        for stmt in (
            self._insert_comment,
            self._insert_bucket,
            self._insert_by_user,
            self._mark_removed,
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
        """Write every comment and its index rows; returns when all are durable."""
        by_partition: dict[tuple[str, int], list[CommentPublished]] = defaultdict(list)
        for c in comments:
            by_partition[(c.event_id, bucket_of(c.position))].append(c)

        statements: list[tuple[Any, Any]] = []
        for (event_id, bucket), rows in by_partition.items():
            if (event_id, bucket) not in self._known_buckets:
                statements.append((self._insert_bucket, (event_id, bucket)))
            for start in range(0, len(rows), MAX_BATCH_ROWS):
                batch = BatchStatement(
                    batch_type=BatchType.UNLOGGED, consistency_level=ConsistencyLevel.LOCAL_QUORUM
                )
                for c in rows[start : start + MAX_BATCH_ROWS]:
                    batch.add(
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
                            _ts(c.submitted_at),
                            _ts(c.published_at),
                        ),
                    )
                statements.append((batch, None))
        for c in comments:
            statements.append(
                (
                    self._insert_by_user,
                    (
                        c.user_id,
                        _ts(c.submitted_at),
                        c.comment_id,
                        c.event_id,
                        c.position,
                        c.text,
                        _ts(c.published_at),
                    ),
                )
            )
        await self._execute_all(statements)
        self._known_buckets.update(by_partition)
        if len(self._known_buckets) > 100_000:
            self._known_buckets.clear()

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
        rows = await self.before(event_id, position, 1)
        return rows[0].position if rows else None

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
