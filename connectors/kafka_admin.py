"""Creating and checking topics through the Kafka admin API (confluent-kafka)."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from connectors.topics import KafkaTopic


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    warnings: list[str]


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def ensure_topics(
    admin: AdminClient, specs: list[KafkaTopic], replication_factor: int, timeout_s: float = 30.0
) -> TopicReport:
    """Create missing topics; bring configs of existing ones to the spec.

    Partition counts are never raised automatically: adding partitions moves keys to
    other partitions and would break the per-event order of the comment log.
    """
    existing = admin.list_topics(timeout=timeout_s).topics
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    warnings: list[str] = []

    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                unchanged.append(name)

    present = [s for s in specs if s.name in existing]
    if present:
        current = describe_configs(admin, [s.name for s in present], timeout_s)
        to_alter = []
        for spec in present:
            have = len(existing[spec.name].partitions)
            if have != spec.partitions:
                warnings.append(
                    f"{spec.name} has {have} partitions, settings ask for {spec.partitions}; "
                    "left as is (changing it would reorder events)"
                )
            diff = {k: v for k, v in spec.config.items() if current[spec.name].get(k) != v}
            if diff:
                entries = [
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in diff.items()
                ]
                to_alter.append(
                    ConfigResource(
                        ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries
                    )
                )
                updated.append(spec.name)
            else:
                unchanged.append(spec.name)
        if to_alter:
            for fut in admin.incremental_alter_configs(to_alter).values():
                fut.result(timeout=timeout_s)
    return TopicReport(created, updated, unchanged, warnings)


def describe_configs(
    admin: AdminClient, topics: list[str], timeout_s: float = 30.0
) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    result: dict[str, dict[str, str]] = {}
    for res, fut in admin.describe_configs(resources).items():
        entries = fut.result(timeout=timeout_s)
        result[res.name] = {k: str(v.value) for k, v in entries.items()}
    return result
