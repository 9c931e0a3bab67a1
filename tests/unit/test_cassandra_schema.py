"""The CQL files apply again and again: every statement is idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from cassandra import InvalidRequest

from connectors.cassandra_schema import apply, statements


class _Session:
    """Answers like Cassandra on a schema that is already applied."""

    def __init__(self, fail_with: str | None = None) -> None:
        self.executed: list[str] = []
        self.fail_with = fail_with

    def execute(self, stmt: str, timeout: float) -> Any:
        self.executed.append(stmt)
        if stmt.startswith("ALTER TABLE") and self.fail_with:
            raise InvalidRequest(self.fail_with)


def test_every_statement_but_column_additions_says_if_not_exists() -> None:
    for stmt in statements("ks", "{'class': 'SimpleStrategy', 'replication_factor': 1}"):
        if stmt.startswith("ALTER TABLE"):
            assert " ADD " in stmt, stmt
        else:
            assert "IF NOT EXISTS" in stmt, stmt


def test_a_column_added_by_an_earlier_run_is_not_an_error() -> None:
    session = _Session("Column with name 'visible_to' already exists")
    n = apply(session, "ks", "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # type: ignore[arg-type]
    assert n == len(session.executed)
    assert any(
        s.startswith("ALTER TABLE ks.comments_by_event ADD visible_to") for s in session.executed
    )


def test_any_other_refusal_of_an_alter_is_an_error() -> None:
    with pytest.raises(InvalidRequest):
        apply(_Session("Unknown keyspace ks"), "ks", "{}")  # type: ignore[arg-type]
