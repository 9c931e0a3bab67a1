"""How the permanent tier binds values: the driver's slow paths stay out of the hot one."""

from __future__ import annotations

from datetime import UTC, datetime

from cassandra.cqltypes import DateType, UTF8Type
from cassandra.protocol import ColumnMetadata
from cassandra.query import PreparedStatement

import connectors.cassandra_store  # noqa: F401  (installs fast_timestamps)


def statement() -> PreparedStatement:
    columns = [
        ColumnMetadata("ks", "t", "event_id", UTF8Type),
        ColumnMetadata("ks", "t", "at", DateType),
    ]
    return PreparedStatement(
        columns,
        b"id",
        [0],
        "INSERT INTO ks.t (event_id, at) VALUES (?, ?)",
        "ks",
        4,
        None,
        None,
    )


def test_a_timestamp_bound_from_milliseconds_takes_the_fast_path() -> None:
    assert getattr(DateType.serialize, "_livecomments", False)


def test_milliseconds_and_datetimes_bind_to_the_same_bytes() -> None:
    ms = 1_733_600_000_123
    from_int = statement().bind(("e1", ms)).values
    from_datetime = statement().bind(("e1", datetime.fromtimestamp(ms / 1000, tz=UTC))).values
    assert from_int == from_datetime
    assert from_int[1] == ms.to_bytes(8, "big", signed=True)
