"""The stream topology: one Faust app, read top to bottom like the dataflow.

    comments.submitted ─▶ [comments agent]
                            decode ─▶ validate ─▶ moderate ─▶ enrich ─▶ publish
                              │           │            │                   │
                     comments.rejected ◀──┘   moderation.events    comments.published
                                                                           │
                                                    persist (Cassandra) ◀──┤ same batch,
                                                    fanout  (Redis)     ◀──┘ then ack
    (batch N+1 is prepared while batch N is written: topologies/writer.py)
    comments.retracted ─▶ [retractions agent] ─▶ Cassandra (removed) + Redis (retract entry)
    every second        ─▶ [analytics timer]  ─▶ analytics.events + Prometheus

Why persist and fan-out run in the publishing agent instead of a second agent reading
``comments.published``: one Kafka hop less per comment (latency, throughput), while the
log keeps every event-sourced record. The batch is acknowledged only after Kafka,
Cassandra and Redis all have it; a crash re-processes it with the same positions, and
every write is idempotent (DESIGN.md, Guarantees). ``concurrency=1`` per agent keeps
each partition in order (faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import faust
from prometheus_client import generate_latest

from connectors import topics as T
from connectors.cassandra_store import CommentStore
from connectors.kafka_producer import OutputProducer
from connectors.kafka_reader import read_range
from connectors.redis_streams import LiveStreams
from connectors.services import Backbone, Services, StartError
from deploy.settings import Settings
from schemas.clock import now_ms
from schemas.codec import AvroCodec
from schemas.errors import CodecError, RegistryError
from schemas.records import (
    CommentPublished,
    CommentRetracted,
    CommentSubmitted,
    RetractionScope,
)
from topologies import faust_compat as compat
from topologies import metrics as M
from topologies.moderation.engine import build as build_engine
from topologies.pipeline import BatchPlan, CommentProcessor, Incoming
from topologies.stages.analytics import Windows
from topologies.stages.publish import UNKNOWN
from topologies.stages.validate import STATE_LAG_REASONS, CommentLimits, PastPost
from topologies.writer import BatchWriter, Coalescer, PreparedBatch, until_done

log = logging.getLogger(__name__)

# Tiers that keep their own order and take several batches per write (Runtime._writes).
COALESCED = frozenset({"publish", "persist"})
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry call otherwise

Message = Any  # faust.types.Message: a record as Faust's consumer fetched it
Event = Any  # faust.types.EventT: Faust's generics do not type-check usefully


def build(settings: Settings, worker_index: int = 0) -> faust.App:
    compat.short_fetch_wait(settings.fetch_max_wait_ms)
    compat.guard_read_offsets(frozenset({T.COMMENTS_SUBMITTED, T.COMMENTS_RETRACTED}))
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.state_path / "workers" / f"worker-{worker_index}"),
        topic_partitions=settings.partitions_comments,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        broker_max_poll_records=settings.max_poll_records,
        # A new group (first deployment) starts from the beginning of every topic.
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=(
            f"{settings.app_id}-worker-{worker_index}"
            if settings.worker_static_membership
            else None
        ),
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 4),
        web_host=settings.host,
        web_port=settings.worker_port + worker_index,
        web_in_thread=True,
    )

    def topic(name: str) -> faust.TopicT:
        # Our topics are created with their configs by `livecomments stack up`.
        # Not internal, so Faust never creates or alters them.
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    submitted = topic(T.COMMENTS_SUBMITTED)
    retracted = topic(T.COMMENTS_RETRACTED)
    # Outputs (comments.published, moderation.events, comments.rejected, analytics.events)
    # go through Runtime.producer: see connectors/kafka_producer.py.

    # comments.submitted reaches the comments agent in whole fetches, not record by
    # record (topologies/faust_compat.py, batch_intake): Faust's per-record stream
    # machinery cost more than the rest of the pipeline's per-comment work.
    intake = compat.batch_intake(
        compat.BatchIntake(
            T.COMMENTS_SUBMITTED, max_batch=settings.batch_max, high_water=4 * settings.batch_max
        )
    )
    # Each partition's epoch (co-partitioned with comments.submitted). What else a worker
    # knows of a partition (the events' last positions, users' recent posts) lives in
    # memory and is rebuilt when it takes the partition over (Runtime.take_over): a
    # changelog record per comment, and its standby copy, cost more than the rebuild.
    epochs = app.Table(
        "partition-epochs",
        default=int,
        partitions=settings.partitions_comments,
    )

    rt = Runtime(settings, app)

    @app.agent(submitted, concurrency=1)
    async def comments(stream: Any) -> None:
        # The stream itself stays idle: its records come through the intake.
        await rt.started()
        # Batch N+1 is prepared while batch N is written; acks stay in order.
        writer = BatchWriter(settings.batch_in_flight, intake.ack, self_ordered=COALESCED)
        try:
            async for messages in intake.batches():
                batch = await rt.contiguous(messages, intake)
                if batch:
                    prepared = await until_done("comments", rt.prepare, batch, epochs)
                    await writer.submit(batch, prepared)
        finally:
            writer.cancel()
            rt.close_coalescers()

    @app.agent(retracted, concurrency=1)
    async def retractions(stream: Any) -> None:
        await rt.started()
        async for events in stream.noack_take(100, within=0.05):
            await until_done("retractions", rt.retract, events)
            await ack_all(stream, events)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", set())
        intake.drop_partitions(lambda tp: tp not in revoked)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", set())
        intake.drop_partitions(lambda tp: tp in assigned)
        rt.keep_partitions({tp.partition for tp in assigned if tp.topic == T.COMMENTS_SUBMITTED})

    @app.timer(1.0)
    async def close_windows() -> None:
        try:
            await rt.flush_analytics()
        except Exception:  # a lost window must not take the worker down
            log.exception("sending analytics windows failed")

    @app.timer(5.0)
    async def report_lag() -> None:
        rt.report_lag()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus reads plain text.
        return web.bytes(generate_latest(), content_type="text/plain")

    @app.page("/healthz")
    async def health(web: Any, request: Any) -> Any:
        assigned = sorted(
            f"{tp.topic}/{tp.partition}"
            for tp in app.consumer.assignment()
            if tp.topic == T.COMMENTS_SUBMITTED
        )
        return web.json(
            {
                "ok": rt.is_started(),
                "worker": worker_index,
                "assigned": assigned,
                "events": len(rt.state.events) if rt.state else 0,
                "users": len(rt.state.users) if rt.state else 0,
                # How far the events' and users' state is applied: a change written to
                # those topics is in effect here once these pass its offset.
                "state_offsets": dict(rt.state.applied) if rt.state else {},
            }
        )

    app.livecomments_runtime = rt  # type: ignore[attr-defined]
    return app


async def ack_all(stream: Any, events: Sequence[Event]) -> None:
    """Acknowledge a batch once every tier has it; its offsets may be committed after.

    The batches come from ``noack_take``, not ``take_events``: the latter acknowledges a
    batch in a ``finally``, so a worker stopped in the middle of one (SIGTERM, a
    cancelled agent) would commit offsets it never processed.
    """
    for event in events:
        await stream.ack(event)


class PartitionMemory:
    """What a worker keeps in memory about one partition it owns.

    ``heads``: each event's last published positions (``previous_position``);
    ``histories``: each user's recent posts in each event (rate limit, slow mode,
    duplicates, strikes). Both are rebuilt when the partition is taken over: heads from
    Cassandra, one query per event on its first comment (every comment before the
    resume offset is there: a batch is acknowledged after Cassandra has it); histories
    by re-reading the partition's recent past (``worker_history_replay`` records).
    ``epoch``: the partition's epoch as read from (or first written to) its table,
    0 until then (a table read per batch cost more than the rest of a small batch).
    """

    __slots__ = ("epoch", "heads", "histories")

    def __init__(self) -> None:
        self.epoch = 0
        self.heads: dict[str, tuple[int, ...]] = {}
        self.histories: dict[str, tuple[PastPost, ...]] = {}


class Runtime:
    """The I/O around the pure stages: codec, global state, sinks, metrics."""

    def __init__(self, settings: Settings, app: faust.App) -> None:
        self.settings = settings
        self.app = app
        self.processor = CommentProcessor(
            build_engine(settings),
            CommentLimits(
                max_chars=settings.comment_max_chars, posts_per_minute=settings.posts_per_minute
            ),
        )
        self.windows = Windows(lateness_ms=settings.analytics_lateness_ms)
        self._counted: dict[int, int] = {}  # partition → last offset counted in windows
        self._next_offset: dict[int, int] = {}  # partition → offset expected next
        self._holes: dict[int, int] = {}  # partition → offset last sought back to
        self._memory: dict[int, PartitionMemory] = {}  # partition → what we know of it
        self._taken_over: set[int] = set()  # partitions whose memory must be rebuilt
        self._ready: asyncio.Event | None = None
        self._starting: asyncio.Task[None] | None = None
        self.codec: AvroCodec | None = None
        self.store: CommentStore | None = None
        self.streams: LiveStreams | None = None
        self.producer: OutputProducer | None = None
        self.publisher: Coalescer | None = None
        self.persister: Coalescer | None = None
        self.state: Any = None

    def keep_partitions(self, partitions: set[int]) -> None:
        """Forget what we knew of partitions another worker owns now (after a rebalance)."""
        for known in (self._next_offset, self._memory):
            for partition in set(known) - partitions:
                del known[partition]
        self._taken_over &= partitions

    async def contiguous(self, messages: Sequence[Message], intake: Any) -> list[Message]:
        """The batch without the records that come after a skipped offset.

        Offsets of our topics are contiguous, so within a partition a record must follow
        the one processed before it, or the offset we resumed from. Records past a hole
        are left out and the partition is sought back to the hole: they come again, in
        order. Going back (a re-delivery) is fine: processing is idempotent. Faust's
        fetcher was seen handing out such holes around rebalances. The records kept are
        tracked by the consumer at once (a rebalance waits for their acknowledgement).
        """
        consumer = self.app.consumer
        keep: list[Message] = []
        holes: dict[Any, int] = {}
        for message in messages:
            tp, offset = message.tp, message.offset
            if tp in holes:
                continue
            partition = tp.partition
            expected = self._next_offset.get(partition)
            if expected is None:  # first batch of this assignment: rebuild our memory
                self._taken_over.add(partition)
                expected = compat.committed_offset(consumer, tp)
            if expected is not None and offset > expected:
                holes[tp] = expected
                continue
            self._next_offset[partition] = offset + 1
            keep.append(message)
        intake.track(keep)
        for tp, expected in holes.items():
            # Records already buffered past the hole keep coming until the seek lands:
            # report each hole once.
            if self._holes.get(tp.partition) != expected:
                self._holes[tp.partition] = expected
                log.error(
                    "%s[%d]: records past offset %d, the next one expected; seeking back",
                    tp.topic,
                    tp.partition,
                    expected,
                )
                M.offset_jumps.labels(str(tp.partition)).inc()
            await consumer.seek(tp, expected)
        return keep

    def is_started(self) -> bool:
        return self._ready is not None and self._ready.is_set()

    async def started(self) -> None:
        """Connect everything once per worker; agents wait here before their first batch."""
        if self._ready is None:
            self._ready = asyncio.Event()
            self._starting = asyncio.create_task(self._start())
        await self._ready.wait()

    async def _start(self) -> None:
        s = self.settings
        if not s.debug:
            # Debug records of the clients are built (then dropped) on the hot path otherwise.
            for name in ("aiokafka", "faust", "mode", "cassandra", "redis", "httpx"):
                logging.getLogger(name).setLevel(logging.WARNING)
        while True:
            services = Services("worker")
            backbone = Backbone(s)
            backbone.add_to(services, redis=False)  # LiveStreams keeps its own pool
            streams = LiveStreams(s)
            services.add("redis streams", streams.start, streams.close)
            try:
                await services.start()
                break
            except StartError as e:  # the stack may still be starting: keep trying
                log.warning("%s; retrying in 2s", e)
                await asyncio.sleep(2)
        self.services = services
        self.codec, self.store, self.streams = backbone.codec, backbone.store, streams
        self.producer, self.state = backbone.producer, backbone.state
        # The tiers off the viewers' path take several batches per request (Redis, which
        # viewers read, is written per batch).
        linger_s = s.worker_write_linger_ms / 1000
        self.publisher = Coalescer("publish", self._publish, linger_s)
        self.persister = Coalescer("persist", self._persist, linger_s)
        # Everything built so far (Faust, the models, the clients) lives as long as the
        # process: keep it out of the cyclic collector's scans. A full collection over
        # it took ~60 ms, a pause every few thousand allocations: a p99 of its own.
        gc.freeze()
        log.info(
            "worker ready: %d events, %d users known", len(self.state.events), len(self.state.users)
        )
        assert self._ready is not None
        self._ready.set()

    def _decode(self, topic: str, partition: int, offset: int, raw: bytes | None) -> Incoming:
        raw = raw if isinstance(raw, bytes) else b""
        assert self.codec is not None
        try:
            comment = self.codec.decode_as(raw, CommentSubmitted)
            return Incoming(topic, partition, offset, raw, comment)
        except CodecError as e:
            return Incoming(topic, partition, offset, raw, None, e.code, str(e))
        except RegistryError as e:
            if e.code == "registry_unreachable":
                raise  # transient: _decode_all waits for the registry
            # The registry answered, and not with a schema: this record is poison.
            return Incoming(topic, partition, offset, raw, None, e.code, str(e))

    def _memory_of(self, partition: int) -> PartitionMemory:
        memory = self._memory.get(partition)
        if memory is None:
            memory = self._memory[partition] = PartitionMemory()
        return memory

    async def prepare(self, messages: Sequence[Message], epochs: Any) -> PreparedBatch:
        """Plan a batch and remember what it changes; return its writes.

        Memory (heads, users' recent posts) is updated here, before the writes, so the
        next batch can be planned while this one is written (:class:`BatchWriter`): the
        plan is data, and its writes are retried in place until they succeed, never
        planned again. If the worker dies before they succeed, memory dies with it and
        the next owner rebuilds it from the log.
        """
        assert self.codec and self.store and self.streams
        t0 = time.perf_counter()
        M.batch_size.observe(len(messages))
        M.record_age_seconds.observe(max(0.0, time.time() - messages[0].timestamp))
        M.records_in.labels("decode").inc(len(messages))
        items = await self._decode_all(messages)
        last_message = {m.partition: m for m in messages}
        for partition in self._taken_over & set(last_message):
            await self._take_over(
                partition, min(i.offset for i in items if i.partition == partition)
            )
        self._taken_over -= set(last_message)

        def partition_epoch(partition: int) -> int:
            known = self._memory_of(partition)
            if known.epoch:
                return known.epoch
            epoch = int(epochs.get(f"p{partition}") or 0)
            if epoch == 0:
                epoch = now_ms()
                with compat.as_current(compat.MessageEvent(last_message[partition])):
                    epochs[f"p{partition}"] = epoch
            known.epoch = epoch
            return epoch

        batch_epochs = {p: partition_epoch(p) for p in last_message}
        partition_of_event = {
            i.comment.event_id: i.partition for i in items if i.comment is not None
        }
        await self._load_heads(items)
        reviews = await self._claim_reviews(items)
        at_ms = now_ms()
        t1 = time.perf_counter()
        memory = self._memory_of

        def make_plan() -> BatchPlan:
            return self.processor.plan(
                items,
                events=self.state.event,
                users=self.state.user,
                # History keys are "event_id\x1fuser_id" (topologies/pipeline.py).
                history=lambda k: (
                    memory(partition_of_event[k.partition("\x1f")[0]]).histories.get(k) or ()
                ),
                heads=lambda e: memory(partition_of_event[e]).heads.get(e, ()),
                epochs=batch_epochs.__getitem__,
                now_ms=at_ms,
                reviews=reviews,
            )

        plan = make_plan()
        # The event may have been created (or set live) a moment ago and this worker not
        # have read it yet: catch up with the state topics once, then judge again.
        lagging = any(r.reason in STATE_LAG_REASONS for r in plan.rejected)
        if lagging and await self.state.sync():
            plan = make_plan()
        M.stage_latency.labels("validate").observe(time.perf_counter() - t1 - plan.moderation_s)
        M.stage_latency.labels("moderate").observe(plan.moderation_s)
        await self._resolve_unknown_previous(plan)

        # Nothing below awaits or raises: the plan is final.
        for key, history in plan.histories.items():
            memory(plan.partition_of[key]).histories[key] = history
        for event_id, positions in plan.heads.items():
            memory(plan.partition_of[event_id]).heads[event_id] = positions
        return PreparedBatch(tiers=self._writes(plan), finish=lambda: self._finish(plan, t0))

    def _writes(self, plan: BatchPlan) -> list[tuple[str, Any]]:
        """The batch's writes by tier. They run at once; the batch is acknowledged when
        all have it, so their order does not matter (each write is idempotent). Viewers
        may see a comment (Redis) a few ms before Kafka and Cassandra acknowledged it:
        if the worker dies then, the batch is processed again to the same positions."""
        store, streams = self.store, self.streams
        assert store and streams

        publisher, persister = self.publisher, self.persister
        assert publisher and persister
        records = self._records(plan)

        def publish() -> Any:
            return publisher.add(records)

        def persist() -> Any:
            return persister.add(plan.published)

        async def hold() -> None:
            await store.hold(plan.held)

        async def fanout() -> None:
            ts = time.perf_counter()
            before = streams.epoch_changes
            await streams.append(plan.published)
            if streams.epoch_changes > before:
                M.redis_epoch_changes.inc(streams.epoch_changes - before)
            M.stage_latency.labels("fanout").observe(time.perf_counter() - ts)
            live_ms = time.time() * 1000
            for c in plan.published:
                M.submit_to_live_seconds.observe(max(0.0, live_ms - c.submitted_at) / 1000)

        tiers: list[tuple[str, Any]] = [("publish", publish)]
        if plan.published:
            tiers += [("persist", persist), ("fanout", fanout)]
        if plan.held:
            tiers.append(("hold", hold))
        return tiers

    def _finish(self, plan: BatchPlan, t0: float) -> None:
        """After every tier has the batch: analytics and counters."""
        for o in plan.outcomes:
            # A rebalance re-delivers what was not committed: count each offset once.
            if o.offset <= self._counted.get(o.partition, -1):
                continue
            self._counted[o.partition] = o.offset
            self.windows.add(o.event_id, o.at_ms, o.user_id, o.language, o.outcome)
        for m in plan.moderated:
            M.observe_moderation_latency(max(0, m.moderated_at - m.submitted_at) / 1000)
        decisions: dict[str, int] = {}
        for m in plan.moderated:
            decisions[m.decision.value] = decisions.get(m.decision.value, 0) + 1
        for decision, count in decisions.items():
            M.records_out.labels("moderate", decision).inc(count)
        for r in plan.rejected:
            M.dead_letters.labels(r.reason).inc()
            M.records_out.labels(r.stage, "rejected").inc()
        M.records_out.labels("publish", "published").inc(len(plan.published))
        M.stage_latency.labels("batch").observe(time.perf_counter() - t0)

    async def _take_over(self, partition: int, resume_offset: int) -> None:
        """Rebuild what we keep in memory of ``partition`` before processing it from
        ``resume_offset``: heads come from Cassandra on demand (:meth:`_load_heads`);
        users' recent posts from the partition's own recent past, run through the same
        stages (decisions and strikes included) without producing anything."""
        started = time.perf_counter()
        self._memory[partition] = memory = PartitionMemory()
        span = self.settings.worker_history_replay
        if span <= 0 or resume_offset <= 0:
            return
        records = await asyncio.to_thread(
            read_range,
            self.settings,
            T.COMMENTS_SUBMITTED,
            partition,
            max(0, resume_offset - span),
            resume_offset,
        )
        items = [
            self._decode(T.COMMENTS_SUBMITTED, partition, offset, value)
            for offset, value, _ts in records
        ]
        at_ms = now_ms()
        for start in range(0, len(items), self.settings.batch_max):
            chunk = items[start : start + self.settings.batch_max]
            plan = self.processor.plan(
                chunk,
                events=self.state.event,
                users=self.state.user,
                history=lambda k: memory.histories.get(k) or (),
                heads=lambda e: (),
                epochs=lambda p: 0,
                now_ms=at_ms,
            )
            memory.histories.update(plan.histories)
        log.info(
            "took over %s[%d] at offset %d: %d recent records re-read in %.2fs",
            T.COMMENTS_SUBMITTED,
            partition,
            resume_offset,
            len(items),
            time.perf_counter() - started,
        )

    async def _claim_reviews(self, items: list[Incoming]) -> dict[int, Any]:
        """For each moderator's review record of the batch, the held comment it decides
        (claimed in Cassandra once; a re-processed batch finds its own claim) or None."""
        assert self.store
        claimed: dict[int, Any] = {}
        for item in items:
            if item.comment is not None and item.comment.review is not None:
                claimed[item.offset] = await self.store.claim_review(item.comment, item.offset)
                outcome = "claimed" if claimed[item.offset] else "already_reviewed"
                M.records_out.labels("review", outcome).inc()
        return claimed

    async def _load_heads(self, items: list[Incoming]) -> None:
        """Heads from Cassandra for events this worker has not seen since it took their
        partition over: "the event's last public comment before this one" is exact
        there (every comment before the resume offset was persisted before its offset
        was committed). Asked once per event per takeover."""
        assert self.store
        asked: set[str] = set()
        for item in items:
            comment = item.comment
            if comment is None or comment.event_id in asked:
                continue
            asked.add(comment.event_id)
            memory = self._memory_of(item.partition)
            if comment.event_id in memory.heads:
                continue
            previous = await self.store.previous_position(comment.event_id, item.offset)
            memory.heads[comment.event_id] = () if previous is None else (previous,)

    async def _decode_all(self, messages: Sequence[Message]) -> list[Incoming]:
        delay = 0.1
        while True:
            try:
                return [self._decode(m.topic, m.partition, m.offset, m.value) for m in messages]
            except RegistryError as e:  # an unseen schema id and no registry: transient
                log.warning("registry unavailable while decoding (%s); retrying", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _resolve_unknown_previous(self, plan: BatchPlan) -> None:
        assert self.store
        for index in plan.unknown_previous:
            c = plan.published[index]
            previous = await self.store.previous_position(c.event_id, c.position)
            plan.published[index] = replace(c, previous_position=previous)
            assert previous != UNKNOWN

    async def _publish(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """The records of one or more batches at once, acks=all for all of them. A
        failure raises (the write is retried; the producer replaced itself if its error
        was fatal)."""
        assert self.producer
        ts = time.perf_counter()
        await self.producer.send_many(records)
        M.stage_latency.labels("publish").observe(time.perf_counter() - ts)

    async def _persist(self, comments: list[CommentPublished]) -> None:
        assert self.store
        ts = time.perf_counter()
        await self.store.upsert(comments)
        M.stage_latency.labels("persist").observe(time.perf_counter() - ts)

    def close_coalescers(self) -> None:
        for coalescer in (self.publisher, self.persister):
            if coalescer is not None:
                coalescer.close()

    def _records(self, plan: BatchPlan) -> list[tuple[str, bytes | None, bytes]]:
        """A batch's Kafka records, encoded: rejections, moderation audit, publications."""
        assert self.codec
        enc = self.codec.encode
        records: list[tuple[str, bytes | None, bytes]] = [
            (
                T.COMMENTS_REJECTED,
                r.event_id.encode() if r.event_id else None,
                enc(T.COMMENTS_REJECTED, r),
            )
            for r in plan.rejected
        ]
        records += [
            (T.MODERATION_EVENTS, m.user_id.encode(), enc(T.MODERATION_EVENTS, m))
            for m in plan.moderated
        ]
        records += [
            (T.COMMENTS_PUBLISHED, c.event_id.encode(), enc(T.COMMENTS_PUBLISHED, c))
            for c in plan.published
        ]
        return records

    async def retract(self, events: Sequence[Event]) -> None:
        assert self.codec and self.store and self.streams
        for event in events:
            raw = event.message.value
            try:
                r = self.codec.decode_as(raw, CommentRetracted)
            except CodecError as e:
                log.error(
                    "undecodable retraction at %s/%s: %s",
                    event.message.partition,
                    event.message.offset,
                    e,
                )
                M.dead_letters.labels(e.code).inc()
                continue
            position = r.position
            one = r.scope is not RetractionScope.USER_COMMENTS
            if position is None and one and r.comment_id and r.user_id:
                found = await self.store.locate(r.user_id, r.comment_id)
                position = found[1] if found else None
            # Live viewers and history at once: the removal shows as soon as Redis has it.
            await asyncio.gather(
                self.streams.retract(r, position), self._retract_history(r, position)
            )
            # From the moderator's click (the record's time) to every tier having it.
            M.stage_latency.labels("retract").observe(max(0.0, time.time() - r.retracted_at / 1000))
            M.records_out.labels("retract", "retracted").inc()

    async def _retract_history(self, r: CommentRetracted, position: int | None) -> None:
        assert self.store
        if r.scope is RetractionScope.USER_COMMENTS:
            # Every comment of the user in the event (a ban or timeout that clears).
            await self.store.remove_user_comments(r.event_id, r.user_id, r.reason, r.retracted_at)
        elif position is not None:
            await self.store.mark_removed(r.event_id, position, r.reason, r.retracted_at)

    async def flush_analytics(self) -> None:
        if self.codec is None or self.producer is None:
            return
        closed = self.windows.close(now_ms())
        for w in closed:
            if w.window_s == 1:
                M.comments_per_second_by_event.labels(w.event_id).set(w.comments)
        M.refresh_moderation_p99()
        encode = self.codec.encode
        await self.producer.send_many(
            (T.ANALYTICS_EVENTS, w.event_type.encode(), encode(T.ANALYTICS_EVENTS, w))
            for w in closed
        )

    def report_lag(self) -> None:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if tp.topic == T.COMMENTS_SUBMITTED:
                following = self._next_offset.get(tp.partition)
                last = None if following is None else following - 1
            else:
                last = compat.read_offset(consumer, tp)
            if high is not None and last is not None:
                M.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - last - 1))
