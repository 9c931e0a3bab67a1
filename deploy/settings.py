"""The one settings object of the project.

Every address, port, partition count, timeout and limit lives here. Each field is also
an environment variable with the prefix ``LIVECOMMENTS_`` (``kafka_port`` →
``LIVECOMMENTS_KAFKA_PORT``). The object is frozen: build it once at the edge of a
process (CLI, test fixture) and pass it down; no other module reads the environment.

``python -m deploy.settings`` prints the README's configuration table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

StackBackend = Literal["local", "containers", "external"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECOMMENTS_", frozen=True, extra="ignore")

    stack: StackBackend = Field(
        "local",
        description="where the servers come from: `local` processes, `containers` "
        "(testcontainers, needs Docker) or `external` (addresses below)",
    )
    debug: bool = Field(False, description="show tracebacks of unexpected CLI errors")
    state_dir: Path = Field(Path(".stack"), description="data, logs, pid files and jars")

    host: str = Field("127.0.0.1", description="address the local servers bind to")
    kafka_port: int = Field(9092, description="Kafka broker listener")
    kafka_controller_port: int = Field(9093, description="Kafka KRaft controller listener")
    cassandra_port: int = Field(9042, description="Cassandra CQL native port")
    cassandra_storage_port: int = Field(7000, description="Cassandra inter-node port")
    cassandra_jmx_port: int = Field(7199, description="Cassandra JMX (local only)")
    redis_port: int = Field(6379, description="Redis port")
    registry_port: int = Field(8081, description="schema registry HTTP port")

    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers (default: host:kafka_port)"
    )
    cassandra_hosts: str | None = Field(
        None, description="comma-separated Cassandra contact points (default: host)"
    )
    redis_url: str | None = Field(
        None, description="Redis URL (default: redis://host:redis_port/0)"
    )
    registry_url: str | None = Field(
        None, description="Confluent-compatible registry URL (default: Apicurio's ccompat/v7)"
    )

    kafka_version: str = Field("3.9.1", description="Apache Kafka (kafka_2.13) from Maven")
    cassandra_version: str = Field("5.0.6", description="Apache Cassandra (cassandra-all)")
    registry_version: str = Field("3.0.9", description="Apicurio Registry (app, `all` zip)")
    kafka_heap_mb: int = Field(512, description="Kafka JVM heap")
    cassandra_heap_mb: int = Field(1024, description="Cassandra JVM heap")
    registry_heap_mb: int = Field(384, description="registry JVM heap")
    startup_timeout_s: float = Field(180.0, description="how long `stack up` waits per server")
    maven_timeout_s: float = Field(900.0, description="how long one Maven resolution may take")

    partitions_comments: int = Field(
        4, description="partitions of comments.submitted/published/retracted (prod: 100)"
    )
    partitions_rejected: int = Field(2, description="partitions of comments.rejected (prod: 10)")
    partitions_moderation: int = Field(2, description="partitions of moderation.events (prod: 20)")
    partitions_analytics: int = Field(2, description="partitions of analytics.events (prod: 50)")
    partitions_state: int = Field(2, description="partitions of events.settings, users.profiles")
    replication_factor: int = Field(1, description="replicas per topic (prod: 3)")

    cassandra_keyspace: str = Field("livecomments", description="Cassandra keyspace")
    cassandra_replication: str = Field(
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        description="keyspace replication map (prod: NetworkTopologyStrategy)",
    )

    schema_compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "NONE"] = Field(
        "BACKWARD", description="registry compatibility mode of our subjects"
    )
    registry_timeout_s: float = Field(10.0, description="HTTP timeout towards the registry")

    app_id: str = Field("livecomments", description="Faust app id = Kafka consumer group")
    worker_port: int = Field(
        6066, description="first worker's HTTP port (/metrics); worker N uses worker_port + N"
    )
    worker_static_membership: bool = Field(
        True,
        description="static group membership: a restarted worker gets its partitions "
        "back without a rebalance of everyone",
    )
    worker_session_timeout_s: float = Field(
        10.0, description="a worker silent this long loses its partitions to the others"
    )
    batch_max: int = Field(500, description="largest batch a worker takes from a partition")
    batch_in_flight: int = Field(
        16,
        ge=1,
        description="batches a worker writes at once while it prepares the next "
        "(each tier takes them in order; acknowledged in order)",
    )
    worker_write_linger_ms: int = Field(
        25,
        ge=0,
        description="how long a worker gathers batches into one write to Kafka "
        "(comments.published) and one to Cassandra; Redis, which viewers read, is "
        "written per batch",
    )
    max_poll_records: int = Field(1000, description="Kafka records fetched per poll")
    fetch_max_wait_ms: int = Field(
        100,
        description="longest the broker holds a worker's fetch when there is no data "
        "(records arriving end it at once; shorter costs the broker CPU when idle)",
    )
    analytics_lateness_ms: int = Field(2000, description="how late a record may join its window")
    producer_linger_ms: int = Field(
        1, description="how long a producer of the project waits to fill a batch (librdkafka)"
    )
    worker_history_replay: int = Field(
        5000,
        description="records of a partition's recent past a worker re-reads when it takes "
        "the partition over (users' recent posts: rate limit, slow mode, duplicates, strikes)",
    )

    comment_max_chars: int = Field(500, description="longest comment text accepted")
    posts_per_minute: int = Field(60, description="posts per user per minute")
    redis_stream_maxlen: int = Field(10_000, description="approximate length of an event's stream")

    moderation_ml: bool = Field(
        True,
        description="run the moderation models (toxicity, spam, language); off: rules only",
    )
    moderation_models_dir: Path | None = Field(
        None,
        description="folder of the moderation models (default: the ones shipped in "
        "topologies/moderation/models)",
    )

    gateway_port: int = Field(8765, description="WebSocket gateway port (also /metrics, /healthz)")
    gateway_id: str | None = Field(
        None, description="this gateway's name in presence and receipts (default: host:port)"
    )
    gateway_nodes: str = Field(
        "",
        description="comma-separated gateway addresses, in ring order, for consistent-hash "
        "routing of events",
    )
    gateway_jwt_secret: str = Field(
        "dev-only-secret-change-me-0123456789",
        description="HS256 key of viewers' tokens (and of `livecomments token`)",
    )
    gateway_jwt_public_key_file: Path | None = Field(
        None, description="PEM public key: RS256 tokens are accepted when set"
    )
    gateway_jwt_audience: str | None = Field(None, description="required `aud` claim, if any")
    gateway_auth_timeout_s: float = Field(5.0, description="a connection must authenticate in this")
    gateway_handshake_timeout_s: float = Field(3.0, description="WebSocket opening handshake limit")
    gateway_ping_interval_s: float = Field(30.0, description="heartbeat ping interval")
    gateway_ping_timeout_s: float = Field(30.0, description="close when a ping's pong is this late")
    gateway_idle_timeout_s: float = Field(
        300.0, description="close a connection that sent nothing and joined nothing for this long"
    )
    gateway_max_message_bytes: int = Field(
        4096, description="largest client frame; larger ones close the connection with 1009"
    )
    gateway_tick_ms: int = Field(
        10,
        description="a busy event's comments are coalesced into one frame per tick; "
        "others are delivered as soon as read",
    )
    gateway_coalesce_above_per_s: float = Field(
        50.0, description="comments per second above which an event is busy (coalesced)"
    )
    gateway_write_buffer_bytes: int = Field(
        131_072,
        description="bytes waiting in a connection's write buffer before the slow-consumer "
        "policy applies",
    )
    gateway_processes: int = Field(
        1, description="gateway processes sharing the port (SO_REUSEPORT) under one supervisor"
    )
    gateway_slow_disconnect_s: float = Field(
        30.0, description="a viewer still overflowing its queue after this long is disconnected"
    )
    gateway_backlog: int = Field(50, description="comments sent on a join without `since`")
    gateway_redis_connections: int = Field(
        256,
        description="Redis connections per gateway; joins beyond wait (20 s, then `unavailable`)",
    )
    gateway_recovery_max: int = Field(
        5000, description="most comments one resume sends; more are fetched by joining again"
    )
    gateway_recent_s: float = Field(
        60.0, description="how long the in-process cache (L1) keeps an event's recent comments"
    )
    gateway_presence_interval_s: float = Field(
        5.0, description="presence counts written to Redis and pushed to viewers this often"
    )
    gateway_top_per_s: float = Field(
        10.0, description="comments per second an event's viewers in `top` mode get when hot"
    )
    gateway_nonce_ttl_s: int = Field(
        86_400, description="how long a client nonce maps to its comment_id"
    )
    gateway_drain_s: float = Field(
        10.0, description="on SIGTERM viewers are told to reconnect and closed (1001) within this"
    )
    gateway_force_close_s: float = Field(
        5.0, description="after the drain, connections still open are aborted after this"
    )

    api_port: int = Field(
        8080,
        description="HTTP API port (OpenAPI at /openapi.json, docs at /docs, the web page at /)",
    )
    api_page_size: int = Field(
        50, description="comments in a history page when `limit` is not given"
    )
    api_page_max: int = Field(500, description="largest `limit` of a history page")
    api_page_max_age_s: int = Field(
        86_400, description="how long caches (a CDN) may keep a full, immutable history page"
    )
    api_live_max_age_s: int = Field(
        2, description="how long caches may keep a partial history page (the live edge)"
    )
    api_gateway_url: str | None = Field(
        None,
        description="WebSocket URL the web page connects to (default: ws://host:gateway_port/)",
    )
    api_dev_tokens: bool = Field(
        False,
        description="serve development tokens at /v1/dev/token for the web page "
        "(never in production)",
    )
    api_cors_origins: str = Field(
        "*",
        description="comma-separated origins whose web apps may call the API from a browser "
        "(`*`: any; empty: none); tokens travel in a header, never in cookies",
    )

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.kafka_port}"

    @property
    def cassandra_contact_points(self) -> list[str]:
        if self.cassandra_hosts:
            return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]
        return [self.host]

    @property
    def redis_address(self) -> str:
        return self.redis_url or f"redis://{self.host}:{self.redis_port}/0"

    @property
    def registry_address(self) -> str:
        """Base URL of the Confluent-compatible API (what confluent-kafka clients take)."""
        return self.registry_url or f"http://{self.host}:{self.registry_port}/apis/ccompat/v7"

    @property
    def state_path(self) -> Path:
        return self.state_dir.resolve()


def load() -> Settings:
    """Settings from the environment; the only place the environment is read."""
    return Settings()


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        rows.append(f"| `LIVECOMMENTS_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
