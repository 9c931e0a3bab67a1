"""Our codec and the stock Confluent serdes read each other's bytes through a real
registry, and the registry enforces BACKWARD compatibility the way our local check does.

Subjects are prefixed with a per-run id (``run_prefix``), so reruns against a registry
that keeps its data never collide.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.topics import COMMENTS_PUBLISHED
from deploy.settings import Settings
from schemas.catalog import TOPICS, load_catalog
from schemas.codec import AvroCodec, frame_header, read_schema_id
from schemas.compat import backward_problems, released_schemas
from schemas.errors import CodecError, RegistryError
from schemas.records import (
    AnalyticsEvent,
    AvroRecord,
    CommentDelivered,
    CommentModerated,
    CommentPublished,
    CommentRejected,
    CommentRetracted,
    CommentSubmitted,
    Decision,
    EventStatus,
    LiveEvent,
    RetractionScope,
    UserProfile,
)
from schemas.registry import RegistryClient

CATALOG = load_catalog()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_764_300_000_123
TOPIC_OF = {spec.value_schema: spec.topic for spec in TOPICS}


@pytest.fixture(autouse=True)
def _needs_stack(registry_client: RegistryClient) -> None:
    """Overrides the folder's fixture: these tests need the registry alone, which
    ``registry_client`` finds running or brings up with the stack (failing if it cannot)."""


@pytest.fixture(scope="module")
def stock_client(settings: Settings) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": settings.registry_address})


def _records() -> list[AvroRecord]:
    submitted = CommentSubmitted(
        comment_id="01JDZ8Q4J1M3V7X9K2T5R8W6YB",
        event_id="evt-cup-final",
        user_id="u-42",
        text="Quel but !! 🔥",
        client_nonce="n-7",
        submitted_at=T0,
        gateway_id="gw-3",
        trace_parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    return [
        submitted,
        CommentModerated.of(
            submitted,
            decision=Decision.BLOCK,
            moderated_at=T0 + 9,
            engine_version="rules-14",
            scores={"toxicity": 0.91},
            reasons=("toxicity_above_block",),
            latency_ms=2.5,
        ),
        CommentPublished(
            comment_id=submitted.comment_id,
            event_id=submitted.event_id,
            user_id="u-42",
            display_name="Zoé",
            roles=("member",),
            badges=("verified",),
            text=submitted.text,
            language="fr",
            position=9_000_000_001,
            previous_position=9_000_000_000,
            epoch=2,
            submitted_at=T0,
            published_at=T0 + 40,
        ),
        CommentRetracted(
            event_id="evt-cup-final",
            scope=RetractionScope.COMMENT,
            comment_id=submitted.comment_id,
            user_id="u-42",
            position=9_000_000_001,
            reason="removed_by_moderator",
            actor="mod-1",
            retracted_at=T0 + 60_000,
        ),
        CommentDelivered(
            comment_id=submitted.comment_id,
            event_id="evt-cup-final",
            gateway_id="gw-7",
            viewers=48_213,
            delivered_at=T0 + 52,
            latency_ms=12.5,
        ),
        CommentRejected(
            reason="corrupt_body",
            detail="record body is not valid Avro",
            stage="decode",
            source_topic="comments.submitted",
            source_partition=3,
            source_offset=77_123,
            raw=b"\x00\x00\x00\x00\x01\xff",
            rejected_at=T0 + 5,
        ),
        AnalyticsEvent(
            event_type="comment_window",
            event_id="evt-cup-final",
            window_start=T0,
            window_end=T0 + 10_000,
            window_s=10,
            comments=5_400,
            unique_commenters=3_100,
            languages={"en": 4_000, "fr": 1_400},
            decisions={"APPROVE": 5_300, "BLOCK": 100},
        ),
        LiveEvent(
            event_id="evt-cup-final",
            title="Cup final",
            status=EventStatus.LIVE,
            created_at=T0 - 86_400_000,
            updated_at=T0,
            blocked_terms=("spoiler",),
        ),
        UserProfile(user_id="u-42", display_name="Zoé", timeout_until=T0 + 600_000, updated_at=T0),
    ]


def _as_stock_dict(record: AvroRecord) -> dict[str, Any]:
    """What a stock Avro reader returns for ``record``: datetimes, lists, plain strings."""
    definition = CATALOG.schemas[record.SCHEMA_NAME].definition
    times = {f["name"] for f in definition["fields"] if "timestamp-millis" in json.dumps(f["type"])}
    return {
        name: _plain(EPOCH + timedelta(milliseconds=value) if name in times and value else value)
        for name, value in record.to_avro().items()
    }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    return value


def test_stock_deserializer_reads_every_record_our_codec_wrote(
    schema_codec: AvroCodec, stock_client: SchemaRegistryClient, run_prefix: str
) -> None:
    deserializer = AvroDeserializer(stock_client)
    for record in _records():
        topic = TOPIC_OF[record.SCHEMA_NAME]
        data = schema_codec.encode(topic, record)
        context = SerializationContext(f"{run_prefix}{topic}", MessageField.VALUE)
        assert deserializer(data, context) == _as_stock_dict(record), record.SCHEMA_NAME


def test_our_codec_reads_every_record_the_stock_serializer_wrote(
    settings: Settings,
    schema_codec: AvroCodec,
    registry_client: RegistryClient,
    stock_client: SchemaRegistryClient,
    run_prefix: str,
) -> None:
    fresh = AvroCodec(settings, registry=registry_client)  # empty cache: looks ids up
    for record in _records():
        topic = TOPIC_OF[record.SCHEMA_NAME]
        serializer = AvroSerializer(
            stock_client,
            CATALOG.schemas[record.SCHEMA_NAME].text,
            conf={"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"},
        )
        context = SerializationContext(f"{run_prefix}{topic}", MessageField.VALUE)
        data = serializer(_as_stock_dict(record), context)
        assert data is not None
        assert fresh.decode(data) == record, record.SCHEMA_NAME


def test_our_codec_reads_records_a_stock_producer_wrote_with_an_older_schema(
    settings: Settings,
    registry_client: RegistryClient,
    stock_client: SchemaRegistryClient,
    run_prefix: str,
) -> None:
    older = json.loads(CATALOG.schemas[CommentPublished.SCHEMA_NAME].text)
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("badges", "trace_parent")]
    serializer = AvroSerializer(
        stock_client,
        json.dumps(older),
        conf={"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"},
    )
    published = next(r for r in _records() if isinstance(r, CommentPublished))
    kept = {f["name"] for f in older["fields"]}
    datum = {k: v for k, v in _as_stock_dict(published).items() if k in kept}
    context = SerializationContext(f"{run_prefix}older.{COMMENTS_PUBLISHED}", MessageField.VALUE)
    data = serializer(datum, context)
    assert data is not None

    record = AvroCodec(settings, registry=registry_client).decode_as(data, CommentPublished)
    assert record.badges == () and record.trace_parent is None
    assert record.text == published.text and record.position == published.position


def test_register_all_is_idempotent_and_sets_the_compatibility_level(
    settings: Settings, schema_codec: AvroCodec, registry_client: RegistryClient
) -> None:
    ids = schema_codec.register_all()
    assert schema_codec.register_all() == ids
    for spec in TOPICS:
        subject = schema_codec.subject(spec.topic)
        assert registry_client.compatibility(subject) == settings.schema_compatibility
        assert registry_client.latest(subject).schema_id == ids[subject]
        assert json.loads(registry_client.schema_by_id(ids[subject])) == json.loads(
            CATALOG.value_schema(spec.topic).text
        )


@pytest.mark.parametrize("release", list(released_schemas()), ids=lambda r: r.name)
def test_registry_accepts_the_current_schema_over_its_released_version(
    registry_client: RegistryClient, run_prefix: str, release: Any
) -> None:
    subject = f"{run_prefix}compat.{release.name}.v{release.version}-value"
    registry_client.set_compatibility("BACKWARD", subject)
    registry_client.register(subject, json.dumps(release.definition))
    current = CATALOG.schemas[f"livecomments.v1.{release.name}"].text
    assert registry_client.check_compatibility(subject, current).is_compatible


def _evolve(change: str) -> dict[str, Any]:
    schema = copy.deepcopy(dict(CATALOG.schemas[LiveEvent.SCHEMA_NAME].definition))
    fields = {f["name"]: f for f in schema["fields"]}
    if change == "field_added_without_default":
        schema["fields"].append({"name": "sponsor", "type": "string", "doc": "Sponsor."})
    elif change == "field_added_with_default":
        schema["fields"].append({"name": "sponsor", "type": "string", "default": "", "doc": "S."})
    elif change == "enum_symbol_removed":
        fields["status"]["type"]["symbols"].remove("ENDED")
    elif change == "int_widened_to_long":
        fields["slow_mode_s"]["type"] = "long"
    elif change == "int_changed_to_string":
        fields["slow_mode_s"]["type"] = "string"
        fields["slow_mode_s"]["default"] = "0"
    elif change == "field_removed":
        schema["fields"].remove(fields["hot_rate_per_s"])
    return schema


@pytest.mark.parametrize(
    "change",
    [
        "field_added_without_default",
        "field_added_with_default",
        "enum_symbol_removed",
        "int_widened_to_long",
        "int_changed_to_string",
        "field_removed",
    ],
)
def test_registry_and_local_check_agree_on_what_breaks_backward(
    registry_client: RegistryClient, run_prefix: str, change: str
) -> None:
    subject = f"{run_prefix}evolve.{change}-value"
    registry_client.set_compatibility("BACKWARD", subject)
    released = CATALOG.schemas[LiveEvent.SCHEMA_NAME].text
    registry_client.register(subject, released)
    evolved = _evolve(change)

    locally_compatible = backward_problems(json.loads(released), evolved) == []
    verdict = registry_client.check_compatibility(subject, json.dumps(evolved))
    assert verdict.is_compatible == locally_compatible, (change, verdict.messages)
    if not locally_compatible:
        with pytest.raises(RegistryError) as caught:
            registry_client.register(subject, json.dumps(evolved))
        assert caught.value.code == "incompatible_schema"


def test_breaking_change_to_a_live_subject_is_refused(
    schema_codec: AvroCodec, registry_client: RegistryClient
) -> None:
    subject = schema_codec.subject(COMMENTS_PUBLISHED)
    breaking = copy.deepcopy(dict(CATALOG.schemas[CommentPublished.SCHEMA_NAME].definition))
    breaking["fields"].append({"name": "likes", "type": "long", "doc": "Likes."})
    assert not registry_client.check_compatibility(subject, json.dumps(breaking)).is_compatible
    with pytest.raises(RegistryError) as caught:
        registry_client.register(subject, json.dumps(breaking))
    assert caught.value.code == "incompatible_schema"


def test_decoding_an_id_the_registry_does_not_know_is_unknown_schema_id(
    settings: Settings, registry_client: RegistryClient
) -> None:
    codec = AvroCodec(settings, registry=registry_client)
    data = frame_header(2**31 - 7) + b"\x02c"
    assert read_schema_id(data) == 2**31 - 7
    with pytest.raises(CodecError) as caught:
        codec.decode(data)
    assert caught.value.code == "unknown_schema_id"
