"""The `containers` backend: the official images through testcontainers (needs Docker).

Containers get fixed names (``livecomments-<component>``) and publish the settings' ports
on the host, so every later command (tests, workers, `stack status`) finds them at the
same addresses the `local` backend uses. Ryuk, testcontainers' reaper, is turned off for
them: the stack must outlive the `stack up` command. `down` stops the containers and
keeps them (and their data); `down --purge` removes them.

The same images are in ``deploy/compose.yaml`` for people who use compose.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from deploy.settings import Settings
from deploy.stack import probes
from deploy.stack.errors import StackError

if TYPE_CHECKING:
    from deploy.stack.progress import Progress

IMAGES = {
    "kafka": "apache/kafka:3.9.1",
    "cassandra": "cassandra:5.0.6",
    "redis": "redis:7.4",
    "registry": "apicurio/apicurio-registry:3.0.9",
}
LABEL = "io.livecomments.stack"


def _docker() -> Any:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as e:
        raise StackError(
            "docker",
            f"no Docker engine answers ({type(e).__name__}); use LIVECOMMENTS_STACK=local",
        ) from e
    return client


def _specs(s: Settings) -> dict[str, dict[str, Any]]:
    return {
        "kafka": {
            "ports": {9092: s.kafka_port},
            "env": {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
                "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{s.host}:{s.kafka_port}",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
                "KAFKA_HEAP_OPTS": f"-Xms{s.kafka_heap_mb}M -Xmx{s.kafka_heap_mb}M",
            },
        },
        "cassandra": {
            "ports": {9042: s.cassandra_port},
            "env": {
                "MAX_HEAP_SIZE": f"{s.cassandra_heap_mb}M",
                "HEAP_NEWSIZE": "128M",
                "CASSANDRA_SNITCH": "SimpleSnitch",
                "JVM_OPTS": "-Dcassandra.skip_wait_for_gossip_to_settle=0 "
                "-Dcassandra.initial_token=0",
            },
        },
        "redis": {
            "ports": {6379: s.redis_port},
            "command": ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec"],
        },
        "registry": {
            "ports": {8080: s.registry_port},
            "env": {"QUARKUS_HTTP_PORT": "8080"},
        },
    }


def up(settings: Settings, progress: Progress) -> None:
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer

    client = _docker()
    for name, spec in _specs(settings).items():
        cname = f"livecomments-{name}"
        found = client.containers.list(all=True, filters={"name": f"^{cname}$"})
        if found:
            if found[0].status != "running":
                found[0].start()
                progress.say(name, "restarted existing container")
            else:
                progress.say(name, "already running")
            continue
        container = DockerContainer(IMAGES[name], name=cname, labels={LABEL: "1"})
        for inner, outer in spec["ports"].items():
            container.with_bind_ports(inner, outer)
        for k, v in spec.get("env", {}).items():
            container.with_env(k, v)
        if "command" in spec:
            container.with_command(spec["command"])
        container.start()
        progress.say(name, f"starting ({IMAGES[name]})")

    checks: dict[str, Callable[[], bool]] = {
        "kafka": lambda: probes.kafka_ready(settings.bootstrap_servers),
        "cassandra": lambda: probes.cassandra_ready(settings),
        "redis": lambda: probes.redis_ready(settings),
        "registry": lambda: probes.registry_ready(settings),
    }
    deadline = time.monotonic() + settings.startup_timeout_s * 2
    for name, check in checks.items():
        while not check():
            if time.monotonic() > deadline:
                logs = client.containers.get(f"livecomments-{name}").logs(tail=25).decode()
                raise StackError(name, "container not ready in time", log_tail=logs)
            time.sleep(1.0)
        progress.say(name, "ready")


def down(settings: Settings, out: TextIO, purge: bool = False) -> None:
    client = _docker()
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        c.stop(timeout=20)
        if purge:
            c.remove(v=True)
        out.write(f"  {c.name:<22} {'removed' if purge else 'stopped'}\n")
