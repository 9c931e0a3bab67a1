"""Applying the CQL retries the first connection, each time with a new driver Cluster.

The driver shuts a Cluster down when its connect fails; retrying on the same object
failed with "Cluster is already shut down" (seen when a drill restarted Cassandra).
"""

from __future__ import annotations

import io
import socket

import pytest

from deploy.settings import Settings
from deploy.stack import bootstrap
from deploy.stack.errors import StackError
from deploy.stack.progress import Progress


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_attempt_connects_afresh_and_the_error_names_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(bootstrap.time, "sleep", sleeps.append)
    settings = Settings(cassandra_port=_closed_port())
    with pytest.raises(StackError) as failed:
        bootstrap.tables(settings, Progress(io.StringIO()))
    assert "connecting to apply deploy/cql failed" in str(failed.value)
    assert "already shut down" not in str(failed.value)
    assert sleeps == [5, 5, 5]
