"""The launcher's answers to a broken machine: one clear sentence, non-zero, never a hang.

These start no server; they use a private state dir and free ports so they never touch
the stack the integration tests use.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.settings import Settings
from deploy.stack import launcher
from deploy.stack.errors import StackError
from deploy.stack.local import Kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _private(tmp_path: Path, **overrides: object) -> Settings:
    ports = {
        name: _free_port()
        for name in (
            "kafka_port",
            "kafka_controller_port",
            "cassandra_port",
            "cassandra_storage_port",
            "cassandra_jmx_port",
            "redis_port",
            "registry_port",
        )
    }
    return Settings(
        state_dir=tmp_path / "state", stack="local", startup_timeout_s=30, **{**ports, **overrides}
    )  # type: ignore[arg-type]


@pytest.fixture()
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_port_taken_by_a_stranger_is_named_and_nothing_starts(
    tmp_path: Path, listener: int
) -> None:
    settings = _private(tmp_path, kafka_port=listener)
    with pytest.raises(StackError) as err:
        launcher.up(settings, out=io.StringIO())
    assert err.value.component == "kafka"
    assert f"port {listener}" in err.value.message
    assert "did not start" in err.value.message
    assert not list((settings.state_path / "run").glob("*.pid"))


def test_a_half_formatted_kafka_dir_is_refused_with_a_way_out(tmp_path: Path) -> None:
    settings = _private(tmp_path)
    data = settings.state_path / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "__cluster_metadata-0").mkdir()
    with pytest.raises(StackError) as err:
        Kafka(settings).prepare()
    assert "half-formatted" in err.value.message
    assert "--purge" in err.value.message


def test_a_kafka_dir_of_another_cluster_is_refused(tmp_path: Path) -> None:
    settings = _private(tmp_path)
    root = settings.state_path / "kafka"
    (root / "data").mkdir(parents=True)
    (root / "data" / "meta.properties").write_text("version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    (root / "cluster-id").write_text("BBBBBBBBBBBBBBBBBBBBBB\n")
    with pytest.raises(StackError) as err:
        Kafka(settings).prepare()
    assert "another cluster" in err.value.message


def test_maven_unable_to_resolve_says_so_and_points_at_its_log(tmp_path: Path) -> None:
    settings = _private(tmp_path, kafka_version="0.0.0-does-not-exist")
    with pytest.raises(StackError) as err:
        launcher.up(settings, out=io.StringIO())
    assert err.value.component == "kafka"
    assert "Maven could not resolve" in err.value.message
    assert "maven.log" in err.value.message


def test_missing_java_and_maven_give_one_sentence_and_exit_1(tmp_path: Path) -> None:
    settings = _private(tmp_path)
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent),  # the venv only: no java, no mvn
        "LIVECOMMENTS_STATE_DIR": str(settings.state_dir),
        **{
            f"LIVECOMMENTS_{k.upper()}": str(getattr(settings, k))
            for k in (
                "kafka_port",
                "kafka_controller_port",
                "cassandra_port",
                "cassandra_storage_port",
                "cassandra_jmx_port",
                "redis_port",
                "registry_port",
            )
        },
    }
    res = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "stack", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "is not on PATH" in res.stderr
    assert "Traceback" not in res.stderr
