"""The schemas, loaded once, and which topic carries which.

Every Kafka topic of the platform has exactly one value schema, registered under the
Confluent TopicNameStrategy subject ``<topic>-value``. Keys are not Avro: a key is the
plain UTF-8 string of one field of the value (``TopicSpec.key_field``), which keeps
partitioning readable by any tool and identical for every producer.

| topic              | key          | value schema       |
|--------------------|--------------|--------------------|
| comments.submitted | event_id     | CommentSubmitted   |
| moderation.events  | user_id      | CommentModerated   |
| comments.published | event_id     | CommentPublished   |
| comments.retracted | event_id     | CommentRetracted   |
| comments.delivered | event_id     | CommentDelivered   |
| comments.rejected  | event_id     | CommentRejected    |
| analytics.events   | event_type   | AnalyticsEvent     |
| events.settings    | event_id     | LiveEvent          |
| users.profiles     | user_id      | UserProfile        |

Retractions have their own topic, ``comments.retracted``, rather than sharing
``comments.published`` through a union value schema. One schema per subject keeps every
topic readable with stock tools and the default subject strategy, and lets each record
evolve on its own. The price is that a retraction is not ordered with the publications
of its event; ``comments.retracted`` is keyed and partitioned like
``comments.published`` (same key, same partition count) so partition *p* of both holds
the same events, and consumers keep a retraction as a tombstone until the comment it
names arrives. A retraction carries the comment's ``position`` when known, so clients
place it without a lookup.

``comments.delivered`` is new beside DESIGN.md's table: gateways' delivery receipts for
delivery analytics (reach and latency), keyed by event_id. Topic names, key fields and
the namespace are spelled in ``schemas.names``; ``connectors.topics`` adds each topic's
partitions and configs and creates them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro
from fastavro.types import Schema

from schemas.names import TOPICS, TopicSpec
from schemas.records import RECORD_TYPES, AvroRecord

__all__ = ["TOPICS", "Catalog", "SchemaEntry", "TopicSpec", "full_name", "load_catalog"]

# The codec treats timestamps as plain longs: the logical type changes nothing in the
# binary encoding, and dropping it spares a datetime round trip per timestamp per record.
_WIRE_DROPPED_LOGICAL_TYPES = frozenset({"timestamp-millis"})


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One schema as the platform uses it."""

    name: str
    """Avro full name, e.g. ``livecomments.v1.CommentPublished``."""
    definition: Mapping[str, Any]
    """The .avsc file's JSON, docs and logical types included."""
    text: str
    """Compact JSON of ``definition``: what is registered, byte for byte every time."""
    wire: Schema
    """fastavro-parsed schema the codec reads and writes with (timestamps as longs)."""
    record_type: type[AvroRecord]


@dataclass(frozen=True, slots=True)
class Catalog:
    schemas: Mapping[str, SchemaEntry]
    topics: Mapping[str, TopicSpec]

    def topic(self, topic: str) -> TopicSpec:
        return self.topics[topic]

    def value_schema(self, topic: str) -> SchemaEntry:
        return self.schemas[self.topics[topic].value_schema]


def full_name(definition: Mapping[str, Any]) -> str:
    """Avro full name of a named schema (``namespace.name``)."""
    name = str(definition["name"])
    namespace = definition.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def schema_text(definition: Mapping[str, Any]) -> str:
    """The compact JSON form registered for ``definition``."""
    return json.dumps(definition, separators=(",", ":"), ensure_ascii=False)


def parse_wire_schema(definition: Mapping[str, Any] | str) -> Schema:
    """Parse a schema for the codec: ``timestamp-millis`` is read and written as ``int``.

    Accepts a definition or its JSON text (as the registry returns it). Only the
    annotation is dropped; the binary encoding is the same, so bytes written with the
    wire schema are exactly what stock serializers write with the full schema.
    """
    parsed = json.loads(definition) if isinstance(definition, str) else definition
    return fastavro.parse_schema(_drop_logical_types(parsed))


def _drop_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("logicalType") in _WIRE_DROPPED_LOGICAL_TYPES:
            return node["type"]
        return {key: _drop_logical_types(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_drop_logical_types(item) for item in node]
    return node


def _avsc_files() -> Iterator[tuple[str, str]]:
    folder = resources.files("schemas").joinpath("avro")
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.is_file() and item.name.endswith(".avsc"):
            yield item.name, item.read_text(encoding="utf-8")


@functools.cache
def load_catalog() -> Catalog:
    """Parse every ``schemas/avro/*.avsc`` once and pair it with its record class.

    Raises ``RuntimeError`` when files and classes disagree: that is a packaging bug,
    better met at startup than on the first record.
    """
    entries: dict[str, SchemaEntry] = {}
    for filename, text in _avsc_files():
        definition = json.loads(text)
        name = full_name(definition)
        if filename != f"{definition['name']}.avsc":
            raise RuntimeError(f"schemas/avro/{filename} defines {name}; name the file after it")
        record_type = RECORD_TYPES.get(name)
        if record_type is None:
            raise RuntimeError(f"schemas/avro/{filename}: no record class for {name}")
        entries[name] = SchemaEntry(
            name=name,
            definition=definition,
            text=schema_text(definition),
            wire=parse_wire_schema(definition),
            record_type=record_type,
        )
    missing = set(RECORD_TYPES) - set(entries) | {t.value_schema for t in TOPICS} - set(entries)
    if missing:
        raise RuntimeError(f"no .avsc file in schemas/avro for {sorted(missing)}")
    return Catalog(schemas=entries, topics={spec.topic: spec for spec in TOPICS})
