"""The comment pipeline against the real stack, with real worker processes.

Every test drives comments into ``comments.submitted`` exactly as a gateway does (Avro,
acks=all) and checks the tiers with the independent auditor of ``perf/audit.py``.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from connectors.kafka_admin import admin_client
from connectors.state_writer import StateWriter
from connectors.topics import COMMENTS_REJECTED
from deploy.processes import (
    Worker,
    wait_events_known,
    wait_users_known,
)
from deploy.settings import Settings
from perf.audit import audit, wait_until_persisted
from perf.load import comments, make_events, produce
from schemas.codec import AvroCodec
from schemas.records import CommentRejected, CommentSubmitted, UserProfile


def _prefix() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def test_20000_comments_across_50_events_land_exactly_once_in_order(
    settings: Settings, codec: AvroCodec, workers: list[Worker]
) -> None:
    events = make_events(settings, codec, 50, _prefix())
    wait_events_known(settings, workers, 50)
    load = produce(settings, codec, comments(events, 20_000))
    assert load.failed == 0 and len(load.acked) == 20_000

    report = wait_until_persisted(settings, load.acked, timeout_s=240)
    assert report.ok, report.as_dict()
    assert report.persisted == 20_000
    assert report.in_redis == 20_000


def test_kill_9_of_one_worker_mid_load_loses_and_duplicates_nothing(
    settings: Settings, codec: AvroCodec, workers: list[Worker]
) -> None:
    events = make_events(settings, codec, 20, _prefix())
    wait_events_known(settings, workers, 20)
    first = produce(settings, codec, comments(events, 6_000), rate=3_000)
    workers[1].kill()  # SIGKILL: no goodbye to the group, no flush, no commit
    second = produce(settings, codec, comments(events, 6_000), rate=3_000)
    acked = first.acked + second.acked
    assert len(acked) == 12_000

    # The survivor takes the dead worker's partitions after the session timeout and
    # re-processes what was not committed; every write is idempotent.
    report = wait_until_persisted(settings, acked, timeout_s=240)
    assert report.ok, report.as_dict()
    assert report.persisted == 12_000


def _rejections(
    settings: Settings, codec: AvroCodec, since: dict[int, int]
) -> list[CommentRejected]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(COMMENTS_REJECTED, p, o) for p, o in since.items()])
    found: list[CommentRejected] = []
    idle = 0
    while idle < 3:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            continue
        if msg.error():
            continue
        found.append(codec.decode_as(msg.value() or b"", CommentRejected))
    consumer.close()
    return found


def _rejected_ends(settings: Settings) -> dict[int, int]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "test-ends",
            "enable.auto.commit": False,
        }
    )
    md = admin_client(settings.bootstrap_servers).list_topics(timeout=10).topics[COMMENTS_REJECTED]
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(COMMENTS_REJECTED, p))[1]
        for p in md.partitions
    }
    consumer.close()
    return {p: int(o or 0) for p, o in ends.items()}


def test_poison_and_invalid_comments_are_dead_lettered_and_the_rest_flows(
    settings: Settings, codec: AvroCodec, workers: list[Worker]
) -> None:
    prefix = _prefix()
    events = make_events(settings, codec, 2, prefix)
    banned = f"{prefix}-banned"
    users_before = min(int(str((w.health(settings) or {}).get("users", 0))) for w in workers)
    StateWriter(settings, codec).put_user(
        UserProfile(
            user_id=banned, display_name="Banned", banned=True, updated_at=int(time.time() * 1000)
        )
    )
    wait_events_known(settings, workers, 2)
    wait_users_known(settings, workers, users_before + 1)
    before = _rejected_ends(settings)

    now = int(time.time() * 1000)
    good = list(comments(events, 200))
    bad = [
        CommentSubmitted(
            comment_id=f"{prefix}-long",
            event_id=events[0],
            user_id="u1",
            text="x" * (settings.comment_max_chars + 1),
            submitted_at=now,
            gateway_id="test",
        ),
        CommentSubmitted(
            comment_id=f"{prefix}-nowhere",
            event_id=f"{prefix}-no-such-event",
            user_id="u2",
            text="hello?",
            submitted_at=now,
            gateway_id="test",
        ),
        CommentSubmitted(
            comment_id=f"{prefix}-banned",
            event_id=events[1],
            user_id=banned,
            text="let me in",
            submitted_at=now,
            gateway_id="test",
        ),
    ]
    mixed = good[:100] + bad + good[100:]
    poison = [(events[0].encode(), b"\x00\x00\x00\x00"), (events[1].encode(), b"not avro at all")]
    load = produce(settings, codec, iter(mixed), raw_extra=poison)
    good_ids = {c.comment_id for c in good}
    good_acked = [a for a in load.acked if a.comment_id in good_ids]
    assert len(good_acked) == 200

    report = wait_until_persisted(settings, good_acked, timeout_s=120)
    assert report.ok and report.persisted == 200, report.as_dict()

    deadline = time.monotonic() + 60
    reasons: dict[str, CommentRejected] = {}
    while time.monotonic() < deadline and len(reasons) < 5:
        for r in _rejections(settings, codec, before):
            key = r.comment_id or f"raw:{r.raw!r}"
            if (r.comment_id or "").startswith(prefix) or r.raw in {p[1] for p in poison}:
                reasons[key] = r
    by_reason = {r.reason for r in reasons.values()}
    assert {"text_too_long", "event_not_found", "user_banned"} <= by_reason, reasons
    raw_dead = [r for r in reasons.values() if r.comment_id is None]
    assert {r.raw for r in raw_dead} == {p[1] for p in poison}
    assert all(r.stage == "decode" for r in raw_dead)
    assert audit(settings, good_acked).ok
