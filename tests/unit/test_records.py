"""Records and schemas agree, and every record survives an Avro round trip."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro

from schemas.catalog import load_catalog
from schemas.codec import decode_framed, encode_framed
from schemas.records import (
    RECORD_TYPES,
    AvroRecord,
    CommentModerated,
    CommentSubmitted,
    Decision,
    ModerationThresholds,
)

CATALOG = load_catalog()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _fields(definition: Any) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in definition["fields"]}


def _plain(value: Any) -> Any:
    """Python values as Avro defaults spell them (tuples as lists, enums as str)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    return value


def test_every_record_round_trips_through_avro(every_record: list[AvroRecord]) -> None:
    for record in every_record:
        entry = CATALOG.schemas[record.SCHEMA_NAME]
        data = encode_framed(7, entry.wire, record.to_avro())
        assert type(record).from_avro(decode_framed(data, entry.wire)) == record


def test_record_classes_have_exactly_the_schema_fields_in_order() -> None:
    for name, entry in CATALOG.schemas.items():
        record_type = RECORD_TYPES[name]
        assert dataclasses.is_dataclass(record_type)
        assert [f.name for f in dataclasses.fields(record_type)] == [
            f["name"] for f in entry.definition["fields"]
        ], name
    nested = _fields(CATALOG.schemas["livecomments.v1.LiveEvent"].definition)["thresholds"]
    assert [f.name for f in dataclasses.fields(ModerationThresholds)] == [
        f["name"] for f in nested["type"]["fields"]
    ]


def test_python_defaults_are_the_schema_defaults(every_record: list[AvroRecord]) -> None:
    for record in every_record:
        defaults = _python_defaults(type(record))
        for name, field in _fields(CATALOG.schemas[record.SCHEMA_NAME].definition).items():
            if "default" not in field:
                assert name not in defaults, f"{record.SCHEMA_NAME}.{name}: no Avro default"
                continue
            python_default = defaults[name]
            if hasattr(python_default, "to_avro"):
                python_default = python_default.to_avro()
            assert _plain(python_default) == field["default"], f"{record.SCHEMA_NAME}.{name}"


def test_moderated_repeats_every_submitted_field_with_the_same_type() -> None:
    submitted = _fields(CATALOG.schemas[CommentSubmitted.SCHEMA_NAME].definition)
    moderated = _fields(CATALOG.schemas[CommentModerated.SCHEMA_NAME].definition)
    # `review` is not part of the comment: a human decision is CommentModerated.reviewed_by.
    del submitted["review"]
    for name, field in submitted.items():
        assert name in moderated, f"CommentModerated lacks {name}"
        assert moderated[name]["type"] == field["type"], name
        assert moderated[name].get("default") == field.get("default"), name


def test_a_held_comment_is_rebuilt_exactly_from_its_moderation_record(
    submitted: CommentSubmitted,
) -> None:
    moderated = CommentModerated.of(
        submitted, decision=Decision.HOLD_FOR_REVIEW, moderated_at=1, engine_version="v1"
    )
    assert moderated.submitted() == submitted


def test_wire_bytes_are_what_a_stock_writer_produces_with_datetimes(
    every_record: list[AvroRecord],
) -> None:
    # The codec drops the timestamp-millis annotation; the bytes must not change.
    for record in every_record:
        entry = CATALOG.schemas[record.SCHEMA_NAME]
        full_schema = fastavro.parse_schema(dict(entry.definition))
        datum = record.to_avro()
        as_datetimes = {
            k: _as_datetime(v) if _is_timestamp(entry.definition, k) else v
            for k, v in datum.items()
        }
        stock = io.BytesIO()
        fastavro.schemaless_writer(stock, full_schema, as_datetimes)
        assert encode_framed(1, entry.wire, datum)[5:] == stock.getvalue(), record.SCHEMA_NAME


def test_registry_of_record_classes_covers_every_schema_file() -> None:
    assert set(RECORD_TYPES) == set(CATALOG.schemas)
    for name, record_type in RECORD_TYPES.items():
        assert name == record_type.SCHEMA_NAME
        assert CATALOG.schemas[name].record_type is record_type


def _python_defaults(record_type: type[AvroRecord]) -> dict[str, Any]:
    assert dataclasses.is_dataclass(record_type)
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(record_type):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def _is_timestamp(definition: Any, name: str) -> bool:
    kind = _fields(definition)[name]["type"]
    branches = kind if isinstance(kind, list) else [kind]
    return any(isinstance(b, dict) and b.get("logicalType") == "timestamp-millis" for b in branches)


def _as_datetime(millis: int | None) -> datetime | None:
    if millis is None:
        return None
    return EPOCH + timedelta(milliseconds=millis)
