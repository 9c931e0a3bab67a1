"""Errors of the schemas package, each with a stable code.

The codes are part of the platform's vocabulary: a dead letter on ``comments.rejected``
carries a decoding code as its ``reason``, logs and metrics label by code, and
docs/schemas.md lists them. Never rename a code; add a new one.

Codec codes (:class:`CodecError`):

``not_wire_format``
    The bytes are not a Confluent-framed Avro record: empty, shorter than the 5-byte
    header, or not starting with magic byte 0.
``unknown_schema_id``
    The registry has no schema with the id in the header.
``unknown_record``
    The writer schema is valid but names a record this code has no class for.
``incompatible_writer_schema``
    The writer schema cannot be resolved against this code's reader schema.
``truncated_body``
    The body ended before the record did (a cut frame; garbage that claims a length
    beyond the end of the frame lands here too).
``corrupt_body``
    The body is not a valid encoding of the writer schema (bad UTF-8, enum or union
    index out of range, bytes left over after the record).
``invalid_record``
    A record could not be encoded with its schema (e.g. a number out of range).
``unknown_topic``, ``wrong_record_type``, ``not_registered``
    Programming errors on the encode side: a topic the catalog does not know, a record
    of another type than the topic's value schema, ``encode`` before ``register_all``.

Registry codes (:class:`RegistryError`):

``registry_unreachable``
    Connection refused, reset or timed out. Transient: retry, do not dead-letter.
``subject_not_found``, ``version_not_found``, ``schema_not_found``
    The registry answered 404 for the named thing.
``incompatible_schema``
    Registering was refused because the schema breaks the subject's compatibility level.
``invalid_schema``
    The registry rejected the schema or the request as malformed (HTTP 422).
``registry_error``
    Any other error answer (5xx, unexpected status or body).
"""

from __future__ import annotations

from typing import Literal

CodecErrorCode = Literal[
    "not_wire_format",
    "unknown_schema_id",
    "unknown_record",
    "incompatible_writer_schema",
    "truncated_body",
    "corrupt_body",
    "invalid_record",
    "unknown_topic",
    "wrong_record_type",
    "not_registered",
]

RegistryErrorCode = Literal[
    "registry_unreachable",
    "subject_not_found",
    "version_not_found",
    "schema_not_found",
    "incompatible_schema",
    "invalid_schema",
    "registry_error",
]


class SchemaError(Exception):
    """Base of the package's errors: a stable ``code`` and a one-sentence ``message``."""

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CodecError(SchemaError):
    """Bytes that cannot be decoded, or a record that cannot be encoded."""

    code: CodecErrorCode

    def __init__(self, code: CodecErrorCode, message: str) -> None:
        super().__init__(code, message)


class RegistryError(SchemaError):
    """The schema registry could not be reached or refused a request."""

    code: RegistryErrorCode

    def __init__(self, code: RegistryErrorCode, message: str, *, status: int | None = None) -> None:
        super().__init__(code, message)
        self.status = status
