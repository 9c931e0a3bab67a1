"""The local stack as a user meets it: status, topic configs, idempotent up, restart."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka_admin import admin_client, describe_configs
from connectors.topics import COMMENTS_SUBMITTED, kafka_topics
from deploy.settings import Settings
from deploy.stack import launcher


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_status_json_lists_every_server_ready_with_address_pid_and_version(
    settings: Settings,
) -> None:
    res = _cli("stack", "status", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"kafka", "cassandra", "redis", "registry"}
    for name, row in rows.items():
        assert row["state"] == "ready", (name, row)
        assert row["address"], name
        assert row["version"], name
        if settings.stack == "local":
            assert isinstance(row["pid"], int), name
            assert row["rss_bytes"] > 0, name
    if settings.stack == "local":
        assert rows["kafka"]["version"].startswith("3.9")
        assert rows["cassandra"]["version"].startswith("5.0")
        assert rows["redis"]["version"].startswith("7.")
        assert rows["registry"]["version"].startswith("3.")


def test_topic_configs_follow_the_design_through_the_admin_api(settings: Settings) -> None:
    admin = admin_client(settings.bootstrap_servers)
    specs = kafka_topics(settings)
    topics = admin.list_topics(timeout=10).topics
    configs = describe_configs(admin, [s.name for s in specs])
    for spec in specs:
        assert spec.name in topics, spec.name
        assert len(topics[spec.name].partitions) == spec.partitions, spec.name
        for key, value in spec.config.items():
            assert configs[spec.name][key] == value, (spec.name, key)
    submitted = configs[COMMENTS_SUBMITTED]
    assert submitted["retention.ms"] == str(24 * 3600 * 1000)
    assert submitted["compression.type"] == "snappy"
    assert configs["comments.rejected"]["compression.type"] == "snappy"
    assert configs["analytics.events"]["compression.type"] == "lz4"
    assert configs["analytics.events"]["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert configs["events.settings"]["cleanup.policy"] == "compact"
    assert configs["users.profiles"]["cleanup.policy"] == "compact"


def test_up_on_a_running_stack_changes_nothing(settings: Settings) -> None:
    before = {s.name: s.pid for s in launcher.status(settings)}
    out = io.StringIO()
    after = {s.name: s.pid for s in launcher.up(settings, out=out)}
    assert before == after
    assert "0 created, 0 updated" in out.getvalue()
    if settings.stack == "local":
        assert out.getvalue().count("already running") == 4


def test_down_then_up_keeps_topics_rows_offsets_and_schemas(settings: Settings) -> None:
    from cassandra.cluster import Cluster

    marker = uuid.uuid4().hex
    group = f"restart-test-{marker}"

    acked: list[tuple[int, int]] = []
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "acks": "all", "enable.idempotence": True}
    )
    producer.produce(
        COMMENTS_SUBMITTED,
        key=marker.encode(),
        value=b"before-restart",
        on_delivery=lambda err, msg: acked.append((msg.partition(), msg.offset())),
    )
    assert producer.flush(30) == 0
    partition, offset = acked[0]

    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(COMMENTS_SUBMITTED, partition, offset)])
    seen = consumer.poll(15.0)
    assert seen is not None and not seen.error() and seen.key() == marker.encode()
    consumer.commit(message=seen, asynchronous=False)
    committed_before = consumer.committed(
        [TopicPartition(COMMENTS_SUBMITTED, partition)], timeout=10
    )
    assert committed_before[0].offset == offset + 1
    consumer.close()

    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
    session = cluster.connect(settings.cassandra_keyspace)
    session.execute(
        "INSERT INTO comments_by_user (user_id, submitted_at, comment_id, event_id, position) "
        "VALUES ('restart-test', '2026-01-01 00:00:00+0000', %s, 'restart-event', 1)",
        (marker,),
    )
    cluster.shutdown()

    subjects_before = httpx.get(f"{settings.registry_address}/subjects", timeout=10).json()
    ids_before = {
        s: httpx.get(f"{settings.registry_address}/subjects/{s}/versions/latest").json()["id"]
        for s in subjects_before
    }

    launcher.down(settings, out=io.StringIO())
    launcher.up(settings, out=io.StringIO())

    ids_after = {
        s: httpx.get(f"{settings.registry_address}/subjects/{s}/versions/latest").json()["id"]
        for s in subjects_before
    }
    assert ids_after == ids_before, "schema ids must survive a restart (they are in every record)"

    admin = admin_client(settings.bootstrap_servers)
    assert {s.name for s in kafka_topics(settings)} <= set(admin.list_topics(timeout=10).topics)

    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    committed_after = consumer.committed(committed_before, timeout=10)
    consumer.close()
    assert [(p.partition, p.offset) for p in committed_after] == [
        (p.partition, p.offset) for p in committed_before
    ]

    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
    session = cluster.connect(settings.cassandra_keyspace)
    row = session.execute(
        "SELECT event_id FROM comments_by_user WHERE user_id = 'restart-test' "
        "AND submitted_at = '2026-01-01 00:00:00+0000' AND comment_id = %s",
        (marker,),
    ).one()
    cluster.shutdown()
    assert row is not None and row.event_id == "restart-event"
