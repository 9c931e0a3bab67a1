"""Avro records in the Confluent wire format, with a local schema cache.

A framed record is::

    byte 0      magic byte 0
    bytes 1-4   schema id, unsigned big-endian (the registry's id of the writer schema)
    bytes 5-    the record, Avro binary encoding, no container header

Stock Confluent serializers read and write exactly this, so data teams read our topics
with their usual tools (docs/schemas.md).

The pure core (:func:`encode_framed`, :func:`read_schema_id`, :func:`decode_framed`)
does no I/O and is what the unit tests exercise. :class:`AvroCodec` wraps it with the
registry: ``register_all()`` at startup registers every value schema under its topic's
subject and remembers the ids, so ``encode`` never waits on HTTP; ``decode`` finds the
writer schema by id in a cache and asks the registry only for an id it has not seen
(then keeps it). Records written with an older version of a schema are resolved to the
current one (Avro schema resolution), so old records are read by new code.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.types import Schema

from schemas.catalog import Catalog, full_name, load_catalog, parse_wire_schema
from schemas.errors import CodecError, RegistryError
from schemas.records import AvroRecord, R
from schemas.registry import RegistryClient, RegistrySettings, SchemaRegistry

MAGIC_BYTE = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">BI")


def frame_header(schema_id: int) -> bytes:
    """The 5-byte header that precedes a record written with ``schema_id``."""
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def encode_framed(schema_id: int, schema: Schema, datum: Mapping[str, Any]) -> bytes:
    """Frame ``datum`` written with the parsed ``schema`` registered as ``schema_id``."""
    return _encode(frame_header(schema_id), schema, datum)


def read_schema_id(data: bytes) -> int:
    """The writer schema id in the header of ``data``; ``not_wire_format`` if none."""
    if len(data) < HEADER_SIZE:
        what = "empty" if not data else f"{len(data)} bytes, shorter than the 5-byte header"
        raise CodecError("not_wire_format", f"not a Confluent-framed Avro record: {what}")
    if data[0] != MAGIC_BYTE:
        raise CodecError(
            "not_wire_format",
            f"not a Confluent-framed Avro record: first byte is {data[0]:#04x}, not 0x00",
        )
    schema_id: int = _HEADER.unpack_from(data)[1]
    return schema_id


def decode_framed(
    data: bytes, writer_schema: Schema, reader_schema: Schema | None = None
) -> dict[str, Any]:
    """The record in ``data``, written with ``writer_schema``.

    With ``reader_schema``, the record is resolved to it (fields added since the writer
    get their defaults, removed ones are skipped). The header is checked but the id in
    it is not compared with anything: the caller chose the writer schema by that id.
    """
    read_schema_id(data)
    return _decode_body(data, writer_schema, reader_schema)


def _encode(header: bytes, schema: Schema, datum: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(header)
    try:
        schemaless_writer(buffer, schema, datum)
    except Exception as exc:
        # fastavro raises a different type per mismatch (TypeError, ValueError,
        # AttributeError, ...); callers need one code to count and log.
        raise CodecError(
            "invalid_record", f"record does not fit its schema: {type(exc).__name__}: {exc}"
        ) from exc
    return buffer.getvalue()


def _decode_body(data: bytes, writer: Schema, reader: Schema | None) -> dict[str, Any]:
    # BytesIO over an immutable bytes object shares its buffer: no copy of the body.
    buffer = io.BytesIO(data)
    buffer.seek(HEADER_SIZE)
    try:
        datum = schemaless_reader(buffer, writer, reader)
    except SchemaResolutionError as exc:
        raise CodecError(
            "incompatible_writer_schema", f"writer schema cannot be read as ours: {exc}"
        ) from exc
    except (EOFError, IndexError) as exc:
        # fastavro says "ran out of input" with EOFError, or IndexError when a varint is
        # cut; the same errors far from the end mean a bad length or index instead.
        if buffer.tell() >= len(data):
            raise CodecError(
                "truncated_body",
                f"record body ends early ({len(data) - HEADER_SIZE} bytes): {exc or 'EOF'}",
            ) from exc
        raise CodecError("corrupt_body", f"record body is not valid Avro: {exc}") from exc
    except Exception as exc:
        raise CodecError(
            "corrupt_body", f"record body is not valid Avro: {type(exc).__name__}: {exc}"
        ) from exc
    if buffer.tell() != len(data):
        raise CodecError(
            "corrupt_body",
            f"{len(data) - buffer.tell()} bytes left over after the record",
        )
    if not isinstance(datum, dict):
        raise CodecError("corrupt_body", "writer schema is not a record")
    return datum


@dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: Schema
    record_type: type[AvroRecord]


@dataclass(frozen=True, slots=True)
class _Reader:
    writer: Schema
    reader: Schema | None  # None when the writer schema is our current one
    record_type: type[AvroRecord]


class AvroCodec:
    """Encode records for a topic and decode records from any of our topics.

    Build one per process from the settings, call :meth:`register_all` once at
    startup, then share it: ``encode`` and ``decode`` keep no per-call state. The codec
    talks to the settings' registry (``registry_address``, ``registry_timeout_s``) and
    sets ``schema_compatibility`` on every subject it registers.

    ``registry`` replaces the HTTP client, e.g. with ``InMemoryRegistry`` in unit tests.
    ``topic_prefix`` is prepended to topic names to form subjects (``<prefix><topic>-
    value``): the physical topic name when a deployment or a test run prefixes its
    topics. ``encode`` still takes the catalog's topic names.
    """

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        registry: SchemaRegistry | None = None,
        catalog: Catalog | None = None,
        topic_prefix: str = "",
    ) -> None:
        self._owned_client: RegistryClient | None = None
        if registry is None:
            registry = self._owned_client = RegistryClient.from_settings(settings)
        self._registry = registry
        self._catalog = catalog or load_catalog()
        self._topic_prefix = topic_prefix
        self._compatibility = settings.schema_compatibility
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[int, _Reader] = {}

    def close(self) -> None:
        """Release the HTTP client the codec made (not one passed in as ``registry``)."""
        if self._owned_client is not None:
            self._owned_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def subject(self, topic: str) -> str:
        """Registry subject of ``topic``'s value schema."""
        return self._catalog.topic(topic).subject(self._topic_prefix)

    def register_all(self) -> dict[str, int]:
        """Register every topic's value schema; return subject → schema id.

        Idempotent: a schema already registered keeps its id. Sets each subject's
        compatibility level first, so the registry refuses a breaking schema with
        ``incompatible_schema`` rather than storing it. Raises
        ``registry_unreachable`` when the registry is down: startup should fail then.
        """
        ids: dict[str, int] = {}
        for spec in self._catalog.topics.values():
            entry = self._catalog.schemas[spec.value_schema]
            subject = spec.subject(self._topic_prefix)
            self._registry.set_compatibility(self._compatibility, subject)
            schema_id = self._registry.register(subject, entry.text)
            ids[subject] = schema_id
            self._writers[spec.topic] = _Writer(
                frame_header(schema_id), entry.wire, entry.record_type
            )
            self._readers[schema_id] = _Reader(entry.wire, None, entry.record_type)
        return ids

    def schema_id(self, topic: str) -> int:
        """Id of the schema ``encode`` writes ``topic`` with (after ``register_all``)."""
        return int(_HEADER.unpack(self._writer(topic).header)[1])

    def encode(self, topic: str, record: AvroRecord) -> bytes:
        """``record`` framed for ``topic``; never calls the registry."""
        writer = self._writers.get(topic) or self._writer(topic)
        if type(record) is not writer.record_type:
            raise CodecError(
                "wrong_record_type",
                f"{topic} carries {writer.record_type.__name__}, not {type(record).__name__}",
            )
        return _encode(writer.header, writer.schema, record.to_avro())

    def decode(self, data: bytes) -> AvroRecord:
        """The record in ``data``, as the record class of its schema, current version.

        Calls the registry only for a schema id not seen before. Raises
        :class:`CodecError` for bytes that cannot be decoded (dead-letter them), and
        ``RegistryError('registry_unreachable')`` when an unseen id cannot be looked up
        (transient: retry).
        """
        schema_id = read_schema_id(data)
        reader = self._readers.get(schema_id) or self._load_reader(schema_id)
        return reader.record_type.from_avro(_decode_body(data, reader.writer, reader.reader))

    def decode_as(self, data: bytes, record_type: type[R]) -> R:
        """Like :meth:`decode`, and ``wrong_record_type`` unless it is a ``record_type``."""
        record = self.decode(data)
        if not isinstance(record, record_type):
            raise CodecError(
                "wrong_record_type",
                f"expected {record_type.__name__}, read {type(record).__name__}",
            )
        return record

    def _writer(self, topic: str) -> _Writer:
        writer = self._writers.get(topic)
        if writer is not None:
            return writer
        if topic not in self._catalog.topics:
            raise CodecError("unknown_topic", f"no value schema for topic {topic!r}")
        raise CodecError(
            "not_registered", f"schema of {topic!r} not registered: call register_all() first"
        )

    def _load_reader(self, schema_id: int) -> _Reader:
        try:
            text = self._registry.schema_by_id(schema_id)
        except RegistryError as exc:
            if exc.code == "schema_not_found":
                raise CodecError(
                    "unknown_schema_id", f"the registry has no schema with id {schema_id}"
                ) from exc
            raise
        definition = json.loads(text)
        name = full_name(definition) if isinstance(definition, dict) else None
        entry = self._catalog.schemas.get(name) if name is not None else None
        if entry is None:
            raise CodecError(
                "unknown_record",
                f"schema id {schema_id} is {name or 'not a named record'}, "
                "which no record class reads",
            )
        reader = _Reader(
            writer=parse_wire_schema(definition),
            # Resolution costs per record: skip it when the writer is our current schema.
            reader=None if definition == entry.definition else entry.wire,
            record_type=entry.record_type,
        )
        self._readers[schema_id] = reader
        return reader
