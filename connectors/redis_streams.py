"""The live tier: one Redis stream per event, ``event:{event_id}:comments``.

Entry ids are derived from positions (``{position + 1}-0``), so a retried write of the same
comment is refused by Redis as "not greater than the top" and counts as done: the write
is idempotent without any read. Retractions get ``{top}-*`` (the sequence after the
current top), so they sit after everything already delivered. Streams are capped with
``MAXLEN ~`` (settings); older history is in Cassandra.

Each entry's fields: ``type`` (``comment`` | ``retract`` | ``epoch``) and ``data`` (the
compact JSON the gateways forward to viewers as is, serialised once here); a shadow
comment of a hidden user also has ``visible_to`` (its author, the only one shown it).

If Redis loses history (a restart without the last writes), the next write to an event
notices that the stream's top is behind what this process wrote, records a new epoch in
``event:{event_id}:meta`` and appends an ``epoch`` entry: gateways then recover the
missing range from Cassandra.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from deploy.settings import Settings
from schemas.records import CommentPublished, CommentRetracted

log = logging.getLogger(__name__)

_RETRACT = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local ms = '0'
if top[1] then ms = string.match(top[1][1], '^(%d+)-') end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ms .. '-*', 'type', 'retract',
                  'data', ARGV[2])
"""


class RedisRestarted(RedisError):
    """A new connection reached a different Redis run (a restart): the command it was
    opened for is not sent; the caller retries after verifying its streams. Not a
    ``ConnectionError``, so the client's own retry does not resend it blindly."""


def stream_key(event_id: str) -> str:
    return f"event:{event_id}:comments"


def meta_key(event_id: str) -> str:
    return f"event:{event_id}:meta"


def entry_id(position: int) -> str:
    """A comment's stream id. ``{position + 1}-0``: retractions and epoch markers take
    ``{top}-{n}`` after the top, and on an empty stream that is ``0-1``, which must stay
    below the id of a comment at position 0."""
    return f"{position + 1}-0"


def position_of(stream_id: str) -> int:
    """The position a comment entry id stands for (inverse of :func:`entry_id`)."""
    return int(stream_id.split("-", 1)[0]) - 1


def comment_fields(c: Any) -> dict[str, Any]:
    """The viewer-facing fields of a comment (docs/protocol.md): of a ``CommentPublished``
    or of a Cassandra row, which carry the same names. ``visible_to`` only on a shadow
    comment (a hidden user's, for its author alone)."""
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
    visible_to = getattr(c, "visible_to", None)
    if visible_to is not None:
        fields["visible_to"] = visible_to
    return fields


def comment_json(c: CommentPublished) -> str:
    """The viewer-facing form of a comment (docs/protocol.md), serialised once."""
    return json.dumps(comment_fields(c), ensure_ascii=False, separators=(",", ":"))


class LiveStreams:
    def __init__(self, settings: Settings, *, retry_max_s: float = 5.0) -> None:
        self._redis = aioredis.Redis.from_url(
            settings.redis_address,
            socket_timeout=10,
            health_check_interval=10,
            redis_connect_func=self._connected,
        )

        self._maxlen = settings.redis_stream_maxlen
        self._retry_max_s = retry_max_s
        # Last position this process wrote per event: the yardstick for noticing that
        # Redis lost history. Bounded: an event not written for a while is forgotten.
        self._written: OrderedDict[str, int] = OrderedDict()
        self._run_id: str | None = None
        self._verify: set[str] = set()
        self.epoch_changes = 0
        self._retract = self._redis.register_script(_RETRACT)

    async def start(self) -> None:
        """Reach Redis once and note its run id (a later change means a restart)."""
        await self._check_server()

    async def close(self) -> None:
        await self._redis.aclose()

    async def _connected(self, connection: Any) -> None:
        """Every new connection checks the server's run id before carrying a command.

        A restarted Redis (maybe empty) is only reached through a new connection, so
        this replaces an INFO round trip per batch. If the server changed, the command
        the connection was opened for fails (a retried write), and the retry verifies
        every stream this process wrote before writing again (:meth:`append`).
        """
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        info = await connection.read_response()
        text = info.decode() if isinstance(info, bytes) else str(info)
        run_id = next(
            (
                line.split(":", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("run_id:")
            ),
            None,
        )
        if run_id is None:
            return
        if self._run_id is not None and run_id != self._run_id:
            log.warning("redis restarted (run id changed); verifying streams before writing")
            self._run_id = run_id
            self._verify.update(self._written)
            raise RedisRestarted("redis restarted: streams are verified before writing")
        self._run_id = run_id

    async def _check_server(self) -> None:
        """A new Redis run id means a restart: verify every stream we know before writing."""
        info = await self._redis.info("server")
        run_id = str(info.get("run_id"))
        if self._run_id is not None and run_id != self._run_id:
            log.warning("redis restarted (run id changed); verifying streams before writing")
            self._verify.update(self._written)
        self._run_id = run_id

    async def _retrying(self, what: str, fn: Any) -> Any:
        delay = 0.05
        while True:
            try:
                if self._run_id is None:
                    await self._check_server()
                return await fn()
            except asyncio.CancelledError:
                raise
            except RedisRestarted:
                continue  # _connected filled _verify: the next attempt verifies first
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                log.warning("redis %s failed (%s); retrying in %.2fs", what, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                with contextlib.suppress(
                    RedisConnectionError, RedisTimeoutError, RedisRestarted, OSError
                ):
                    await self._check_server()

    async def append(self, comments: Sequence[CommentPublished]) -> int:
        """Append comments (in position order per event); returns how many were new."""
        if not comments:
            return 0
        verify = self._verify_lost_history_for(comments)

        async def write() -> int:
            # Every attempt checks first: Redis may have restarted empty during the last.
            await verify()
            pipe = self._redis.pipeline(transaction=False)
            for c in comments:
                entry: dict[Any, Any] = {"type": "comment", "data": comment_json(c)}
                if c.visible_to is not None:
                    # Gateways deliver it to this user's connections alone.
                    entry["visible_to"] = c.visible_to
                pipe.xadd(
                    stream_key(c.event_id),
                    entry,
                    id=entry_id(c.position),
                    maxlen=self._maxlen,
                    approximate=True,
                )
            results = await pipe.execute(raise_on_error=False)
            new = 0
            for res in results:
                if isinstance(res, ResponseError):
                    if "equal or smaller" in str(res):
                        continue  # already written: a replay
                    raise res
                if isinstance(res, Exception):
                    raise res
                new += 1
            return new

        new: int = await self._retrying("append", write)
        for c in comments:
            self._written[c.event_id] = c.position
            self._written.move_to_end(c.event_id)
        while len(self._written) > 50_000:
            self._written.popitem(last=False)
        return new

    def _verify_lost_history_for(self, comments: Sequence[CommentPublished]) -> Any:
        async def verify() -> None:
            # A restart between two batches must not go unnoticed (the client reconnects
            # silently, and a worker that was idle saw no error): ``_connected`` checks
            # the run id of every new connection and fills ``_verify``.
            if not self._verify:
                return
            for event_id in {c.event_id for c in comments} & self._verify:
                expected = self._written.get(event_id)
                top: Any = await self._redis.xrevrange(stream_key(event_id), count=1)
                top_ms = int(top[0][0].decode().split("-")[0]) if top else 0
                if expected is not None and top_ms < int(entry_id(expected).split("-")[0]):
                    await self._record_epoch(event_id, top_ms=top_ms, expected=expected)
                self._verify.discard(event_id)

        return verify

    async def _record_epoch(self, event_id: str, *, top_ms: int, expected: int) -> None:
        epoch = int(time.time() * 1000)
        self.epoch_changes += 1
        lost_after = top_ms - 1  # the last position still there (-1: nothing)
        log.warning(
            "redis lost history of %s: top at %s, %s was written; new live-tier epoch %s",
            event_id,
            lost_after,
            expected,
            epoch,
        )
        data = json.dumps({"epoch": epoch, "lost_after": lost_after, "written_up_to": expected})
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(meta_key(event_id), mapping={"epoch": epoch, "lost_after": lost_after})
        pipe.xadd(
            stream_key(event_id),
            {"type": "epoch", "data": data},
            id=f"{top_ms}-*",
        )
        await pipe.execute()

    async def retract(self, r: CommentRetracted, position: int | None) -> None:
        data = json.dumps(
            {
                "comment_id": r.comment_id,
                "event_id": r.event_id,
                "position": position,
                "reason": r.reason,
                "user_id": r.user_id,
                "scope": str(r.scope),
            },
            separators=(",", ":"),
        )

        async def write() -> None:
            await self._retract(keys=[stream_key(r.event_id)], args=[self._maxlen, data])

        await self._retrying("retract", write)

    async def entries(
        self, event_id: str, count: int = 100_000
    ) -> list[tuple[str, dict[str, Any]]]:
        """Every entry of an event's stream, oldest first (for tests and tools)."""
        raw: Any = await self._redis.xrange(stream_key(event_id), count=count)
        return [
            (i.decode(), {k.decode(): v.decode() for k, v in fields.items()}) for i, fields in raw
        ]
