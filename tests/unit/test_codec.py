"""The codec: Confluent framing, stable error codes, the schema cache, no I/O."""

from __future__ import annotations

import json
import struct
from typing import Any, get_args

import pytest

from connectors.topics import COMMENTS_PUBLISHED, COMMENTS_SUBMITTED
from deploy.settings import Settings
from schemas.catalog import TOPICS, load_catalog, parse_wire_schema
from schemas.codec import (
    HEADER_SIZE,
    AvroCodec,
    decode_framed,
    encode_framed,
    frame_header,
    read_schema_id,
)
from schemas.errors import CodecError, CodecErrorCode, RegistryError
from schemas.records import AvroRecord, CommentPublished, CommentSubmitted, UserProfile
from schemas.registry import InMemoryRegistry

CATALOG = load_catalog()
PUBLISHED = CATALOG.schemas[CommentPublished.SCHEMA_NAME]
SUBMITTED = CATALOG.schemas[CommentSubmitted.SCHEMA_NAME]


class CountingRegistry(InMemoryRegistry):
    """Counts lookups by id, to prove which decodes reach the registry."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[int] = []
        self.down = False

    def schema_by_id(self, schema_id: int) -> str:
        self.lookups.append(schema_id)
        if self.down:
            raise RegistryError("registry_unreachable", "connection refused")
        return super().schema_by_id(schema_id)


@pytest.fixture
def registry() -> CountingRegistry:
    return CountingRegistry()


@pytest.fixture
def codec(settings: Settings, registry: CountingRegistry) -> AvroCodec:
    codec = AvroCodec(settings, registry=registry)
    codec.register_all()
    return codec


def _published(every_record: list[AvroRecord]) -> CommentPublished:
    return next(r for r in every_record if isinstance(r, CommentPublished))


def _code(data: bytes, writer: Any = PUBLISHED.wire) -> str:
    with pytest.raises(CodecError) as caught:
        decode_framed(data, writer)
    return caught.value.code


def test_frame_is_magic_byte_then_big_endian_schema_id_then_avro_body(
    every_record: list[AvroRecord],
) -> None:
    record = _published(every_record)
    data = encode_framed(0x01020304, PUBLISHED.wire, record.to_avro())
    assert data[:HEADER_SIZE] == b"\x00\x01\x02\x03\x04" == frame_header(0x01020304)
    assert read_schema_id(data) == 0x01020304
    assert CommentPublished.from_avro(decode_framed(data, PUBLISHED.wire)) == record


def test_largest_schema_id_fits_the_header() -> None:
    assert read_schema_id(frame_header(2**32 - 1) + b"\x00") == 2**32 - 1
    with pytest.raises(struct.error):
        frame_header(2**32)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_bytes_shorter_than_the_header_are_not_wire_format(data: bytes) -> None:
    assert _code(data) == "not_wire_format"


@pytest.mark.parametrize("magic", [1, 0x7B, 0xFF])  # 0x7b: someone wrote JSON
def test_wrong_magic_byte_is_not_wire_format(magic: int) -> None:
    data = bytes([magic]) + encode_framed(1, PUBLISHED.wire, _minimal_published())[1:]
    assert _code(data) == "not_wire_format"


def test_a_record_cut_anywhere_in_its_body_is_truncated(every_record: list[AvroRecord]) -> None:
    data = encode_framed(1, PUBLISHED.wire, _published(every_record).to_avro())
    codes = {_code(data[:cut]) for cut in range(HEADER_SIZE, len(data))}
    assert codes == {"truncated_body"}


def test_invalid_utf8_is_a_corrupt_body() -> None:
    # comment_id claims 4 bytes that are not UTF-8, and the frame goes on after them.
    assert _code(frame_header(1) + b"\x08\xff\xfe\xfd\xfc" + b"\x00" * 40) == "corrupt_body"


def test_enum_index_out_of_range_is_a_corrupt_body() -> None:
    moderated = CATALOG.schemas["livecomments.v1.CommentModerated"].wire
    body = b"\x02c\x02e\x02u" + b"\x0e" + b"\x00" * 30  # decision index 7 of 3
    assert _code(frame_header(1) + body, moderated) == "corrupt_body"


def test_bytes_left_after_the_record_are_a_corrupt_body() -> None:
    data = encode_framed(1, PUBLISHED.wire, _minimal_published())
    assert _code(data + b"\x00") == "corrupt_body"


def test_a_header_without_a_body_is_truncated() -> None:
    assert _code(frame_header(1)) == "truncated_body"


def test_error_codes_are_the_documented_ones_and_lead_the_message() -> None:
    with pytest.raises(CodecError) as caught:
        decode_framed(b"", PUBLISHED.wire)
    assert caught.value.code in get_args(CodecErrorCode)
    assert str(caught.value).startswith("not_wire_format: ")


def test_a_record_that_does_not_fit_its_schema_is_invalid_record() -> None:
    datum = _minimal_published() | {"position": "not a number"}
    with pytest.raises(CodecError) as caught:
        encode_framed(1, PUBLISHED.wire, datum)
    assert caught.value.code == "invalid_record"


def test_register_all_registers_every_topic_under_its_value_subject(
    settings: Settings, registry: CountingRegistry
) -> None:
    codec = AvroCodec(settings, registry=registry, topic_prefix="t1.")
    ids = codec.register_all()
    assert set(ids) == {f"t1.{spec.topic}-value" for spec in TOPICS}
    assert registry.subjects() == sorted(ids)
    assert set(registry.levels) == set(ids)
    assert set(registry.levels.values()) == {settings.schema_compatibility}
    assert codec.register_all() == ids
    assert codec.schema_id(COMMENTS_PUBLISHED) == ids[f"t1.{COMMENTS_PUBLISHED}-value"]


def test_every_record_round_trips_through_its_topic(
    codec: AvroCodec, registry: CountingRegistry, every_record: list[AvroRecord]
) -> None:
    by_schema = {spec.value_schema: spec.topic for spec in TOPICS}
    for record in every_record:
        data = codec.encode(by_schema[record.SCHEMA_NAME], record)
        assert codec.decode(data) == record
        assert codec.decode_as(data, type(record)) == record
    assert registry.lookups == [], "decoding our own schemas must not ask the registry"


def test_decode_fetches_an_unseen_schema_once_then_serves_it_from_cache(
    settings: Settings, codec: AvroCodec, registry: CountingRegistry
) -> None:
    data = codec.encode(COMMENTS_PUBLISHED, _published_record())
    fresh = AvroCodec(settings, registry=registry)  # another process, nothing registered
    assert fresh.decode(data) == _published_record()
    assert fresh.decode(data) == _published_record()
    assert registry.lookups == [read_schema_id(data)]


def test_records_written_with_an_older_schema_get_the_defaults_of_new_fields(
    settings: Settings, registry: CountingRegistry
) -> None:
    older = json.loads(PUBLISHED.text)
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("badges", "trace_parent")]
    older_id = registry.register("comments.published-value", json.dumps(older))
    datum = {k: v for k, v in _minimal_published().items() if k not in ("badges", "trace_parent")}
    datum["roles"] = ["member"]
    data = encode_framed(older_id, parse_wire_schema(older), datum)
    record = AvroCodec(settings, registry=registry).decode_as(data, CommentPublished)
    assert record.badges == () and record.trace_parent is None
    assert record.roles == ("member",)


def test_unknown_schema_id_is_reported_as_such(codec: AvroCodec) -> None:
    data = frame_header(987_654) + b"\x02c"
    with pytest.raises(CodecError) as caught:
        codec.decode(data)
    assert caught.value.code == "unknown_schema_id"


def test_a_schema_no_record_class_reads_is_unknown_record(
    codec: AvroCodec, registry: CountingRegistry
) -> None:
    foreign = {"type": "record", "name": "Other", "namespace": "elsewhere", "fields": []}
    foreign_id = registry.register("elsewhere-value", json.dumps(foreign))
    with pytest.raises(CodecError) as caught:
        codec.decode(frame_header(foreign_id))
    assert caught.value.code == "unknown_record"


def test_registry_outage_on_a_cache_miss_is_transient_not_a_decode_error(
    settings: Settings, codec: AvroCodec, registry: CountingRegistry
) -> None:
    data = codec.encode(COMMENTS_PUBLISHED, _published_record())
    fresh = AvroCodec(settings, registry=registry)
    registry.down = True
    with pytest.raises(RegistryError) as caught:
        fresh.decode(data)
    assert caught.value.code == "registry_unreachable"
    registry.down = False
    assert fresh.decode(data) == _published_record()


def test_encode_refuses_misuse_with_stable_codes(settings: Settings, codec: AvroCodec) -> None:
    record = _published_record()
    cases: list[tuple[AvroCodec, str, AvroRecord, str]] = [
        (
            AvroCodec(settings, registry=InMemoryRegistry()),
            COMMENTS_PUBLISHED,
            record,
            "not_registered",
        ),
        (codec, "comments.unknown", record, "unknown_topic"),
        (codec, COMMENTS_SUBMITTED, record, "wrong_record_type"),
    ]
    for target, topic, rec, code in cases:
        with pytest.raises(CodecError) as caught:
            target.encode(topic, rec)
        assert caught.value.code == code


def test_decode_as_refuses_another_record_type(codec: AvroCodec) -> None:
    data = codec.encode(COMMENTS_PUBLISHED, _published_record())
    with pytest.raises(CodecError) as caught:
        codec.decode_as(data, UserProfile)
    assert caught.value.code == "wrong_record_type"


def test_key_is_the_key_field_as_utf8() -> None:
    spec = CATALOG.topic(COMMENTS_PUBLISHED)
    assert spec.key_of(_published_record()) == b"e1"


def _minimal_published() -> dict[str, Any]:
    return _published_record().to_avro()


def _published_record() -> CommentPublished:
    return CommentPublished(
        comment_id="c1",
        event_id="e1",
        user_id="u1",
        display_name="u",
        text="hi",
        position=10,
        previous_position=4,
        epoch=1,
        submitted_at=1,
        published_at=2,
    )
