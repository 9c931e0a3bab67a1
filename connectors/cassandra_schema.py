"""Applying the CQL files of ``deploy/cql`` (in name order, each statement idempotent)."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from cassandra import InvalidRequest
from cassandra.cluster import Session

CQL_DIR = Path(__file__).resolve().parent.parent / "deploy" / "cql"


def statements(keyspace: str, replication: str, cql_dir: Path = CQL_DIR) -> list[str]:
    """Every statement of every file, placeholders filled, comments stripped."""
    result: list[str] = []
    for path in sorted(cql_dir.glob("*.cql")):
        text = Template(path.read_text()).substitute(keyspace=keyspace, replication=replication)
        text = re.sub(r"--[^\n]*", "", text)
        result.extend(s.strip() for s in text.split(";") if s.strip())
    return result


def _adds_a_column(stmt: str) -> bool:
    return bool(re.match(r"(?is)^ALTER\s+TABLE\s+\S+\s+ADD\s", stmt))


def apply(session: Session, keyspace: str, replication: str) -> int:
    count = 0
    for stmt in statements(keyspace, replication):
        try:
            session.execute(stmt, timeout=60)
        except InvalidRequest as e:
            # CQL has no ADD IF NOT EXISTS: a column added by an earlier run is fine.
            if not (_adds_a_column(stmt) and "already exist" in str(e)):
                raise
        count += 1
    return count
