"""What a fresh stack needs before the product runs: topics, tables, schemas.

Every step is idempotent; on a bootstrapped stack it reports and changes nothing.
"""

from __future__ import annotations

import time

from deploy.settings import Settings
from deploy.stack.errors import StackError
from deploy.stack.progress import Progress


def run(settings: Settings, progress: Progress) -> None:
    topics(settings, progress)
    tables(settings, progress)
    schemas(settings, progress)


def topics(settings: Settings, progress: Progress) -> None:
    from confluent_kafka import KafkaException

    from connectors.kafka_admin import admin_client, ensure_topics
    from connectors.topics import kafka_topics

    try:
        report = ensure_topics(
            admin_client(settings.bootstrap_servers),
            kafka_topics(settings),
            settings.replication_factor,
        )
    except KafkaException as e:
        raise StackError("kafka", f"creating topics failed: {e}") from e
    progress.say(
        "topics",
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged",
    )
    for warning in report.warnings:
        progress.say("topics", f"warning: {warning}")


def tables(settings: Settings, progress: Progress) -> None:
    from cassandra.cluster import Cluster, NoHostAvailable, Session

    from connectors.cassandra_schema import apply

    def connected() -> tuple[Cluster, Session]:
        # A node that just said "ready" on a loaded machine may still time out the
        # driver's first connection: try a few times before calling it a failure. A
        # Cluster whose connect failed is shut down for good: each try gets a new one.
        for attempt in range(4):
            cluster = Cluster(
                settings.cassandra_contact_points,
                port=settings.cassandra_port,
                protocol_version=5,
                connect_timeout=30,
            )
            try:
                return cluster, cluster.connect()
            except NoHostAvailable:
                cluster.shutdown()
                if attempt == 3:
                    raise
                time.sleep(5)
        raise AssertionError("unreachable")

    try:
        cluster, session = connected()
    except Exception as e:
        raise StackError("cassandra", f"connecting to apply deploy/cql failed: {e}") from e
    try:
        n = apply(session, settings.cassandra_keyspace, settings.cassandra_replication)
    except Exception as e:
        raise StackError("cassandra", f"applying deploy/cql failed: {e}") from e
    finally:
        cluster.shutdown()
    progress.say("tables", f"{n} CQL statements applied to {settings.cassandra_keyspace}")


def schemas(settings: Settings, progress: Progress) -> None:
    from schemas.codec import AvroCodec

    try:
        with AvroCodec(settings) as codec:
            ids = codec.register_all()
    except Exception as e:
        raise StackError("registry", f"registering the Avro schemas failed: {e}") from e
    progress.say("schemas", f"{len(ids)} subjects registered ({settings.schema_compatibility})")
