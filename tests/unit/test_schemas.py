"""The .avsc files follow the conventions data teams rely on; the catalog is complete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectors.topics import kafka_topics
from deploy.settings import Settings
from schemas.catalog import TOPICS, load_catalog, parse_wire_schema
from schemas.records import NAMESPACE

CATALOG = load_catalog()
TIME_FIELDS = {"window_start", "window_end", "timeout_until"}


def _named_types(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record and enum in a schema, with a readable path."""
    if isinstance(node, list):
        for branch in node:
            yield from _named_types(branch, path)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "enum", "fixed"):
            yield path, node
        if kind == "record":
            for field in node["fields"]:
                yield from _named_types(field["type"], f"{path}.{field['name']}")
        elif kind == "array":
            yield from _named_types(node["items"], f"{path}[]")
        elif kind == "map":
            yield from _named_types(node["values"], f"{path}{{}}")


def _records() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, entry in CATALOG.schemas.items():
        for path, node in _named_types(dict(entry.definition), name):
            if node["type"] == "record":
                yield path, node


def test_every_record_enum_and_field_has_a_doc() -> None:
    missing = []
    for name, entry in CATALOG.schemas.items():
        for path, node in _named_types(dict(entry.definition), name):
            if not str(node.get("doc", "")).strip():
                missing.append(path)
            for field in node.get("fields", ()):
                if not str(field.get("doc", "")).strip():
                    missing.append(f"{path}.{field['name']}")
    assert missing == []


def test_every_schema_is_in_the_platform_namespace() -> None:
    for name, entry in CATALOG.schemas.items():
        assert entry.definition["namespace"] == NAMESPACE
        assert name == f"{NAMESPACE}.{entry.definition['name']}"


def test_times_are_timestamp_millis_and_named_so() -> None:
    for path, record in _records():
        for field in record["fields"]:
            kind = field["type"]
            branches = kind if isinstance(kind, list) else [kind]
            is_time = any(
                isinstance(b, dict) and b.get("logicalType") == "timestamp-millis" for b in branches
            )
            named_as_time = field["name"].endswith("_at") or field["name"] in TIME_FIELDS
            assert is_time == named_as_time, f"{path}.{field['name']}"
            if is_time:
                assert all(b == "null" or b["type"] == "long" for b in branches)


def test_optional_fields_are_null_first_unions_defaulting_to_null() -> None:
    for path, record in _records():
        for field in record["fields"]:
            if isinstance(field["type"], list):
                assert field["type"][0] == "null", f"{path}.{field['name']}"
                assert field.get("default", "missing") is None, f"{path}.{field['name']}"


def test_collections_default_to_empty_so_they_can_be_added_later() -> None:
    for path, record in _records():
        for field in record["fields"]:
            kind = field["type"]
            if isinstance(kind, dict) and kind["type"] in ("array", "map"):
                assert field.get("default") in ([], {}), f"{path}.{field['name']}"


def test_wire_schema_reads_timestamps_as_plain_longs() -> None:
    wire = parse_wire_schema(
        {
            "type": "record",
            "name": "T",
            "fields": [
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {
                    "name": "maybe",
                    "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
                },
            ],
        }
    )
    assert isinstance(wire, dict)
    assert [f["type"] for f in wire["fields"]] == ["long", ["null", "long"]]


def test_each_topic_has_one_value_schema_under_the_topic_name_subject() -> None:
    assert len({t.topic for t in TOPICS}) == len(TOPICS)
    for spec in TOPICS:
        assert spec.value_schema in CATALOG.schemas
        assert spec.subject() == f"{spec.topic}-value"
        assert spec.subject("run42.") == f"run42.{spec.topic}-value"
        entry = CATALOG.value_schema(spec.topic)
        assert spec.key_field in {f["name"] for f in entry.definition["fields"]}


def test_catalog_keys_agree_with_the_topics_kafka_creates() -> None:
    for created in kafka_topics(Settings()):
        assert created.name in CATALOG.topics, f"{created.name} has no value schema"
        assert CATALOG.topic(created.name).key_field == created.key, created.name


def test_registered_text_is_the_same_on_every_load() -> None:
    # Re-registering identical text is what makes register_all idempotent.
    for name, entry in CATALOG.schemas.items():
        assert "\n" not in entry.text, name
        assert parse_wire_schema(entry.text) == entry.wire, name
