"""Released schema versions stay readable by the current ones (BACKWARD), checked locally.

Every released version of a schema has a snapshot in schemas/avro/released. Changing a
schema in a way the registry would refuse under BACKWARD fails here first, before any
registry sees it.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import fastavro.utils
import pytest

from schemas.catalog import load_catalog, parse_wire_schema
from schemas.codec import decode_framed, encode_framed
from schemas.compat import backward_problems, released_schemas
from schemas.errors import CodecError

CATALOG = load_catalog()
NAMESPACE = "livecomments.v1"


def _current(name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(CATALOG.schemas[f"{NAMESPACE}.{name}"].definition))


def _released(name: str) -> dict[str, Any]:
    return dict(next(r for r in released_schemas() if r.name == name).definition)


def _unreadable_samples(writer: dict[str, Any], reader: dict[str, Any]) -> list[str]:
    """Errors met reading generated data written with ``writer`` through ``reader``."""
    random.seed(20251128)
    writer_wire, reader_wire = parse_wire_schema(writer), parse_wire_schema(reader)
    errors: list[str] = []
    for datum in fastavro.utils.generate_many(writer_wire, 50):
        try:
            decode_framed(encode_framed(1, writer_wire, datum), writer_wire, reader_wire)
        except CodecError as exc:
            errors.append(exc.code)
    return errors


def test_every_schema_has_a_released_snapshot() -> None:
    released = {f"{NAMESPACE}.{r.name}" for r in released_schemas()}
    assert released == set(CATALOG.schemas)


@pytest.mark.parametrize(
    "release", list(released_schemas()), ids=lambda r: f"{r.name}.v{r.version}"
)
def test_current_schema_reads_what_the_released_version_wrote(release: Any) -> None:
    current = _current(release.name)
    assert backward_problems(release.definition, current) == []
    assert _unreadable_samples(dict(release.definition), current) == []


def test_check_refuses_a_field_added_without_default() -> None:
    current = _current("CommentPublished")
    current["fields"].append({"name": "likes", "type": "long", "doc": "Likes."})
    released = _released("CommentPublished")
    assert backward_problems(released, current) == [
        "CommentPublished.likes: added without a default"
    ]
    assert set(_unreadable_samples(released, current)) == {"incompatible_writer_schema"}


def test_check_accepts_a_field_added_with_default_and_a_field_removed() -> None:
    current = _current("CommentPublished")
    current["fields"].append({"name": "likes", "type": "long", "default": 0, "doc": "Likes."})
    current["fields"] = [f for f in current["fields"] if f["name"] != "trace_parent"]
    released = _released("CommentPublished")
    assert backward_problems(released, current) == []
    assert _unreadable_samples(released, current) == []


def test_check_refuses_a_removed_enum_symbol_unless_the_enum_has_a_default() -> None:
    current = _current("LiveEvent")
    status = next(f for f in current["fields"] if f["name"] == "status")
    status["type"]["symbols"].remove("ENDED")
    assert backward_problems(_released("LiveEvent"), current) == [
        "LiveEvent.status: enum symbols removed: ['ENDED']"
    ]
    status["type"]["default"] = "LIVE"
    assert backward_problems(_released("LiveEvent"), current) == []


def test_check_refuses_a_type_change_that_does_not_promote() -> None:
    current = _current("CommentDelivered")
    viewers = next(f for f in current["fields"] if f["name"] == "viewers")
    viewers["type"] = "long"  # int -> long promotes
    assert backward_problems(_released("CommentDelivered"), current) == []
    viewers["type"] = "string"
    assert backward_problems(_released("CommentDelivered"), current) == [
        "CommentDelivered.viewers: int cannot be read as string"
    ]


def test_check_refuses_a_renamed_field_unless_aliased() -> None:
    current = _current("CommentSubmitted")
    text = next(f for f in current["fields"] if f["name"] == "text")
    text["name"] = "body"
    assert backward_problems(_released("CommentSubmitted"), current) == [
        "CommentSubmitted.body: added without a default"
    ]
    text["aliases"] = ["text"]
    assert backward_problems(_released("CommentSubmitted"), current) == []


def test_check_refuses_a_nullable_field_made_required() -> None:
    current = _current("CommentSubmitted")
    reply_to = next(f for f in current["fields"] if f["name"] == "reply_to")
    reply_to["type"] = "string"
    del reply_to["default"]
    assert backward_problems(_released("CommentSubmitted"), current) == [
        "CommentSubmitted.reply_to: null cannot be read as string"
    ]


def test_check_looks_inside_nested_records() -> None:
    current = _current("LiveEvent")
    thresholds = next(f for f in current["fields"] if f["name"] == "thresholds")
    thresholds["type"]["fields"].append({"name": "hate_block", "type": "double", "doc": "x"})
    assert backward_problems(_released("LiveEvent"), current) == [
        "LiveEvent.thresholds.hate_block: added without a default"
    ]
