"""Readiness and version probes: each asks the real server a real question.

Kafka: cluster metadata answers. Cassandra: a CQL query answers. Redis: PING.
Registry: its health endpoint says UP and the Confluent-compatible API answers.
Every probe returns False (never raises) while the server is not ready.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import httpx

from deploy.settings import Settings

# cassandra-driver logs every refused connection at WARNING while we poll a starting node.
logging.getLogger("cassandra").setLevel(logging.CRITICAL)
# librdkafka logs refused connections too; a logger that goes nowhere keeps probes quiet.
_QUIET = logging.getLogger("livecomments.probes.kafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def kafka_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET}
        admin = AdminClient(conf)
        md = admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return bool(md.brokers) and md.controller_id >= 0


def kafka_version(bootstrap: str, timeout_s: float = 5.0) -> str | None:
    """The broker's protocol version (``3.9-IV0`` → ``3.9``): what Kafka tells clients."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    try:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET}
        admin = AdminClient(conf)
        brokers = admin.list_topics(timeout=timeout_s).brokers
        if not brokers:
            return None
        resource = ConfigResource(ConfigResource.Type.BROKER, str(next(iter(brokers))))
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
    except Exception:
        return None
    entry = entries.get("inter.broker.protocol.version")
    value = str(entry.value) if entry is not None and entry.value else ""
    return value.split("-", 1)[0] or None


def _cassandra_query(settings: Settings, cql: str, timeout_s: float = 3.0) -> list[object] | None:
    from cassandra.cluster import Cluster, NoHostAvailable
    from cassandra.policies import RoundRobinPolicy

    cluster = Cluster(
        settings.cassandra_contact_points,
        port=settings.cassandra_port,
        connect_timeout=timeout_s,
        control_connection_timeout=timeout_s,
        load_balancing_policy=RoundRobinPolicy(),
        protocol_version=5,
    )
    try:
        session = cluster.connect()
        return list(session.execute(cql, timeout=timeout_s))
    except (NoHostAvailable, OSError, Exception):
        return None
    finally:
        with contextlib.suppress(Exception):
            cluster.shutdown()


def cassandra_ready(settings: Settings) -> bool:
    return _cassandra_query(settings, "SELECT release_version FROM system.local") is not None


def cassandra_version(settings: Settings) -> str | None:
    rows = _cassandra_query(settings, "SELECT release_version FROM system.local")
    return str(rows[0].release_version) if rows else None  # type: ignore[attr-defined]


def redis_ready(settings: Settings) -> bool:
    import redis

    try:
        with redis.Redis.from_url(settings.redis_address, socket_timeout=1.0) as r:
            return bool(r.ping())
    except Exception:
        return False


def redis_version(settings: Settings) -> str | None:
    import redis

    try:
        with redis.Redis.from_url(settings.redis_address, socket_timeout=1.0) as r:
            return str(r.info("server")["redis_version"])
    except Exception:
        return None


def _registry_root(settings: Settings) -> str:
    return settings.registry_address.split("/apis/", 1)[0]


def registry_ready(settings: Settings) -> bool:
    try:
        health = httpx.get(f"{_registry_root(settings)}/health/ready", timeout=2.0)
        api = httpx.get(f"{settings.registry_address}/subjects", timeout=2.0)
    except httpx.HTTPError:
        return False
    return health.status_code == 200 and api.status_code == 200


def registry_version(settings: Settings) -> str | None:
    try:
        info = httpx.get(f"{_registry_root(settings)}/apis/registry/v3/system/info", timeout=2.0)
        return str(info.json().get("version")) if info.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
