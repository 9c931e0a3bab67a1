"""The one settings object of the project.

Every address, port, partition count, timeout and limit lives here. Each field is also
an environment variable with the prefix ``LIVECOMMENTS_`` (``kafka_port`` →
``LIVECOMMENTS_KAFKA_PORT``). The object is frozen: build it once at the edge of a
process (CLI, test fixture) and pass it down; no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

StackBackend = Literal["local", "containers", "external"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECOMMENTS_", frozen=True, extra="ignore")

    # Where the servers come from: started here as processes (`local`), by testcontainers
    # (`containers`, needs a Docker engine) or already running elsewhere (`external`).
    stack: StackBackend = "local"
    state_dir: Path = Field(default=Path(".stack"), description="data, logs, pid files, jars")

    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    cassandra_port: int = 9042
    cassandra_storage_port: int = 7000
    cassandra_jmx_port: int = 7199
    redis_port: int = 6379
    registry_port: int = 8081

    # For `external` (and to override the derived addresses of the other backends).
    kafka_bootstrap: str | None = None
    cassandra_hosts: str | None = None
    redis_url: str | None = None
    registry_url: str | None = None

    kafka_version: str = "3.9.1"
    cassandra_version: str = "5.0.6"
    registry_version: str = "3.0.9"

    kafka_heap_mb: int = 512
    cassandra_heap_mb: int = 1024
    registry_heap_mb: int = 384

    startup_timeout_s: float = 120.0
    maven_timeout_s: float = 900.0

    # Topic layout. Production uses the DESIGN.md figures; locally one box holds all.
    partitions_comments: int = 4
    partitions_rejected: int = 2
    partitions_moderation: int = 2
    partitions_analytics: int = 2
    partitions_state: int = 2
    replication_factor: int = 1

    cassandra_keyspace: str = "livecomments"
    cassandra_replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"

    schema_compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "NONE"] = "BACKWARD"
    registry_timeout_s: float = 10.0

    # Limits the pipeline and gateways enforce (seed figures).
    comment_max_chars: int = 500
    posts_per_minute: int = 60
    redis_stream_maxlen: int = 10_000

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
