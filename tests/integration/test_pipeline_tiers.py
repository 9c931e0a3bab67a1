"""What the gateways will read back: history queries, retractions, analytics windows."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from redis import Redis

from connectors.cassandra_store import CommentStore
from connectors.kafka_admin import admin_client
from connectors.kafka_clients import producer_config
from connectors.redis_streams import stream_key
from connectors.topics import ANALYTICS_EVENTS, COMMENTS_RETRACTED
from deploy.processes import Worker, start_worker, wait_assigned, wait_events_known
from deploy.settings import Settings
from perf.audit import wait_until_persisted
from perf.load import comments, make_events, produce
from schemas.codec import AvroCodec
from schemas.records import AnalyticsEvent, CommentRetracted, RetractionScope


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[Worker]:
    w = start_worker(settings, 0)
    try:
        wait_assigned(settings, [w], settings.partitions_comments)
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def published(
    settings: Settings, codec: AvroCodec, worker: Worker
) -> tuple[str, list[tuple[str, int, str]]]:
    """One event with 120 published comments: (event_id, [(comment_id, position, user)])."""
    [event_id] = make_events(settings, codec, 1, f"tiers-{uuid.uuid4().hex[:6]}")
    wait_events_known(settings, [worker], 1)
    load = produce(settings, codec, comments([event_id], 120, users=7))
    report = wait_until_persisted(settings, load.acked, timeout_s=120)
    assert report.ok, report.as_dict()
    by_id = {a.comment_id: a for a in load.acked}
    rows = asyncio.run(_all_rows(settings, event_id))
    assert {cid for cid, _, _ in rows} == set(by_id)
    return event_id, rows


async def _all_rows(settings: Settings, event_id: str) -> list[tuple[str, int, str]]:
    store = await asyncio.to_thread(CommentStore, settings)
    try:
        rows = await store.after(event_id, -1, 10_000)
        return [(r.comment_id, r.position, r.user_id) for r in rows]
    finally:
        store.close()


def test_history_reads_by_position_in_both_directions(
    settings: Settings, published: tuple[str, list[tuple[str, int, str]]]
) -> None:
    event_id, rows = published
    positions = [p for _, p, _ in rows]
    assert positions == sorted(positions)
    middle = positions[60]

    async def read() -> tuple[list[int], list[int], list[int]]:
        store = await asyncio.to_thread(CommentStore, settings)
        try:
            before = [r.position for r in await store.before(event_id, middle, 25)]
            after = [r.position for r in await store.after(event_id, middle, 25)]
            previous = await store.previous_position(event_id, middle)
            return before, after, [previous or -1]
        finally:
            store.close()

    before, after, [previous] = asyncio.run(read())
    assert before == list(reversed(positions[35:60]))  # newest first
    assert after == positions[61:86]  # oldest first
    assert previous == positions[59]


def test_a_users_recent_comments_come_newest_first(
    settings: Settings, published: tuple[str, list[tuple[str, int, str]]]
) -> None:
    event_id, rows = published
    user = rows[0][2]
    theirs = {cid for cid, _, u in rows if u == user}

    async def read() -> list[tuple[str, str, int, str]]:
        store = await asyncio.to_thread(CommentStore, settings)
        try:
            return await store.user_recent(user, 500)
        finally:
            store.close()

    recent = [r for r in asyncio.run(read()) if r[1] == event_id]
    assert {r[0] for r in recent} == theirs


def test_a_retraction_marks_the_row_removed_and_reaches_the_live_stream(
    settings: Settings, codec: AvroCodec, published: tuple[str, list[tuple[str, int, str]]]
) -> None:
    event_id, rows = published
    comment_id, position, user = rows[10]
    retraction = CommentRetracted(
        comment_id=comment_id,
        event_id=event_id,
        user_id=user,
        position=None,
        reason="moderator_removed",
        actor="mod-1",
        retracted_at=int(time.time() * 1000),
        scope=RetractionScope.COMMENT,
    )
    producer = Producer(producer_config(settings))
    producer.produce(
        COMMENTS_RETRACTED,
        key=event_id.encode(),
        value=codec.encode(COMMENTS_RETRACTED, retraction),
    )
    assert producer.flush(30) == 0

    r = Redis.from_url(settings.redis_address)
    deadline = time.monotonic() + 30
    found = None
    while time.monotonic() < deadline and found is None:
        for _entry_id, fields in r.xrevrange(stream_key(event_id), count=20):
            if fields[b"type"] == b"retract":
                found = json.loads(fields[b"data"])
                break
        time.sleep(0.2)
    r.close()
    assert found is not None, "no retract entry in the event's stream"
    assert found["comment_id"] == comment_id and found["position"] == position

    async def removed() -> bool:
        store = await asyncio.to_thread(CommentStore, settings)
        try:
            [row] = [x for x in await store.after(event_id, position - 1, 1)]
            return row.removed
        finally:
            store.close()

    assert asyncio.run(removed())


def test_analytics_windows_reach_the_topic_for_data_teams(
    settings: Settings, codec: AvroCodec, published: tuple[str, list[tuple[str, int, str]]]
) -> None:
    event_id, rows = published
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    md = admin_client(settings.bootstrap_servers).list_topics(timeout=10).topics[ANALYTICS_EVENTS]
    starts = []
    for p in md.partitions:
        low, _high = consumer.get_watermark_offsets(TopicPartition(ANALYTICS_EVENTS, p))
        starts.append(TopicPartition(ANALYTICS_EVENTS, p, int(low or 0)))
    consumer.assign(starts)
    windows: list[AnalyticsEvent] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            if sum(w.comments for w in windows if w.window_s == 60) >= len(rows):
                break
            continue
        w = codec.decode_as(msg.value() or b"", AnalyticsEvent)
        if w.event_id == event_id:
            windows.append(w)
    consumer.close()
    per_second = [w for w in windows if w.window_s == 1]
    per_minute = [w for w in windows if w.window_s == 60]
    assert sum(w.comments for w in per_second) == len(rows)
    assert sum(w.comments for w in per_minute) == len(rows)
    assert all(w.decisions.get("APPROVE", 0) == w.comments for w in windows)
    assert max(w.unique_commenters for w in per_minute) <= 7
