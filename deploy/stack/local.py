"""The `local` backend: each server a plain process on this machine, all state in one dir.

Layout of the state dir (default ``.stack/``)::

    lib/{kafka,cassandra,registry}/   jars resolved by Maven (kept across `down --purge`)
    kafka/      server.properties, log4j.properties, data/, logs/, cluster-id
    cassandra/  cassandra.yaml, logback.xml, data/, logs/
    redis/      redis.conf, data/ (AOF on), redis.log
    registry/   data/ (H2 file database), registry.log
    run/        pid files
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from string import Template

from deploy.settings import Settings
from deploy.stack import artifacts, probes
from deploy.stack.errors import StackError
from deploy.stack.process import ManagedProcess, without_memory_locking

TEMPLATES = Path(__file__).resolve().parent / "templates"


class LocalComponent:
    """What every local server has in common; subclasses say how to prepare and launch it."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings

    @property
    def root(self) -> Path:
        return self.settings.state_path / self.name

    @property
    def process(self) -> ManagedProcess:
        run = self.settings.state_path / "run"
        return ManagedProcess(
            name=self.name,
            pid_file=run / f"{self.name}.pid",
            log_file=self.log_file,
            marker=self.marker,
        )

    @property
    def marker(self) -> str:
        return f"-Dlivecomments.component={self.name}@{self.settings.state_path}"

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "stdout.log"

    def ports(self) -> list[int]:
        raise NotImplementedError

    def address(self) -> str:
        raise NotImplementedError

    def resolve(self) -> None:
        """Fetch binaries (slow the first time, a no-op after)."""

    def prepare(self) -> None:
        """Write configs and format storage; must be safe to repeat."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def preexec(self) -> Callable[[], None] | None:
        return None

    def ready(self) -> bool:
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    def logs(self) -> list[Path]:
        return [self.log_file]


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("java", "Java is not on PATH; install OpenJDK 17 (Debian: openjdk-17-jdk)")
    return java


def _render(template: str, dest: Path, **values: object) -> None:
    text = Template((TEMPLATES / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


class Kafka(LocalComponent):
    def __init__(self, settings: Settings) -> None:
        super().__init__("kafka", settings)

    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.kafka_port}"

    @property
    def lib(self) -> Path:
        return self.settings.state_path / "lib" / "kafka"

    def resolve(self) -> None:
        artifacts.resolve_jars(
            "kafka",
            self.settings.kafka_version,
            self.lib,
            self.settings.state_path / "lib" / "maven.log",
            self.settings.maven_timeout_s,
        )

    def prepare(self) -> None:
        s = self.settings
        data = self.root / "data"
        _render(
            "kafka-server.properties",
            self.root / "server.properties",
            host=s.host,
            port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            data_dir=data,
            partitions=s.partitions_comments,
        )
        shutil.copyfile(TEMPLATES / "kafka-log4j.properties", self.root / "log4j.properties")
        cluster_file = self.root / "cluster-id"
        meta = data / "meta.properties"
        if meta.exists():
            found = re.search(r"^cluster\.id=(.+)$", meta.read_text(), re.MULTILINE)
            expected = cluster_file.read_text().strip() if cluster_file.exists() else None
            if found is None or (expected is not None and found.group(1).strip() != expected):
                raise StackError(
                    "kafka",
                    f"the data dir {data} is formatted for another cluster or half-formatted; "
                    "remove it (`livecomments stack down --purge`) to start afresh",
                )
            if expected is None:
                cluster_file.write_text(found.group(1).strip() + "\n")
            return
        if data.exists() and any(data.iterdir()):
            raise StackError(
                "kafka",
                f"{data} holds files but no meta.properties (a half-formatted state dir); "
                "remove it (`livecomments stack down --purge`) to start afresh",
            )
        if not cluster_file.exists():
            # KRaft cluster ids are 16 random bytes in URL-safe base64 without padding.
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cluster_file.write_text(cid + "\n")
        log = self.root / "logs" / "format.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            rc = subprocess.run(
                [
                    _java(),
                    "-cp",
                    f"{self.lib}/*",
                    f"-Dlog4j.configuration=file:{self.root / 'log4j.properties'}",
                    f"-Dkafka.logs.dir={self.root / 'logs'}",
                    "kafka.tools.StorageTool",
                    "format",
                    # One argument: an id may start with "-" (base64url), which the
                    # tool would take for an option if it came separately.
                    f"--cluster-id={cluster_file.read_text().strip()}",
                    "-c",
                    str(self.root / "server.properties"),
                    "--ignore-formatted",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            ).returncode
        if rc != 0:
            raise StackError("kafka", f"formatting the storage failed (exit {rc}); see {log}")

    def argv(self) -> list[str]:
        heap = self.settings.kafka_heap_mb
        return [
            _java(),
            f"-Xms{heap}M",
            f"-Xmx{heap}M",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            self.marker,
            f"-Dkafka.logs.dir={self.root / 'logs'}",
            f"-Dlog4j.configuration=file:{self.root / 'log4j.properties'}",
            "-cp",
            f"{self.lib}/*",
            "kafka.Kafka",
            str(self.root / "server.properties"),
        ]

    def ready(self) -> bool:
        return probes.kafka_ready(self.address())

    def version(self) -> str:
        return self.settings.kafka_version

    def logs(self) -> list[Path]:
        return [self.root / "logs" / "server.log", self.log_file]


class Cassandra(LocalComponent):
    def __init__(self, settings: Settings) -> None:
        super().__init__("cassandra", settings)

    def ports(self) -> list[int]:
        s = self.settings
        return [s.cassandra_port, s.cassandra_storage_port, s.cassandra_jmx_port]

    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.cassandra_port}"

    @property
    def lib(self) -> Path:
        return self.settings.state_path / "lib" / "cassandra"

    def resolve(self) -> None:
        artifacts.resolve_jars(
            "cassandra",
            self.settings.cassandra_version,
            self.lib,
            self.settings.state_path / "lib" / "maven.log",
            self.settings.maven_timeout_s,
        )

    def prepare(self) -> None:
        s = self.settings
        _render(
            "cassandra.yaml",
            self.root / "cassandra.yaml",
            data_dir=self.root / "data",
            host=s.host,
            native_port=s.cassandra_port,
            storage_port=s.cassandra_storage_port,
        )
        shutil.copyfile(TEMPLATES / "logback-cassandra.xml", self.root / "logback.xml")
        (self.root / "data" / "triggers").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        s = self.settings
        heap = s.cassandra_heap_mb
        # One option per line, as in Cassandra's jvm*.options; `--add-opens x` is two args.
        options = [
            arg
            for line in (TEMPLATES / "cassandra-jvm17.options").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
            for arg in shlex.split(line)
        ]
        return [
            _java(),
            f"-Xms{heap}M",
            f"-Xmx{heap}M",
            *options,
            self.marker,
            f"-Dcassandra.config=file://{self.root / 'cassandra.yaml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={self.root / 'data'}",
            f"-Dcassandra.logdir={self.root / 'logs'}",
            f"-Dlogback.configurationFile=file://{self.root / 'logback.xml'}",
            f"-Dcassandra.triggers_dir={self.root / 'data' / 'triggers'}",
            f"-Dcassandra.jmx.local.port={s.cassandra_jmx_port}",
            f"-Dcom.sun.management.jmxremote.rmi.port={s.cassandra_jmx_port}",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.initial_token=0",
            "-Dcassandra.ring_delay_ms=1000",
            "-cp",
            f"{self.lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def preexec(self) -> Callable[[], None] | None:
        return without_memory_locking

    def ready(self) -> bool:
        return probes.cassandra_ready(self.settings)

    def version(self) -> str:
        return probes.cassandra_version(self.settings) or self.settings.cassandra_version

    def logs(self) -> list[Path]:
        return [self.root / "logs" / "system.log", self.log_file]


class Redis(LocalComponent):
    def __init__(self, settings: Settings) -> None:
        super().__init__("redis", settings)

    @property
    def marker(self) -> str:
        # redis-server shows its config path in its command line; it is unique to our dir.
        return str(self.root / "redis.conf")

    def ports(self) -> list[int]:
        return [self.settings.redis_port]

    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.redis_port}"

    def resolve(self) -> None:
        self._binary = artifacts.find_redis_server(self.settings.state_path / "redis" / "apt.log")

    def prepare(self) -> None:
        _render(
            "redis.conf",
            self.root / "redis.conf",
            host=self.settings.host,
            port=self.settings.redis_port,
            data_dir=self.root / "data",
            log_file=self.root / "redis.log",
        )
        (self.root / "data").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        binary = getattr(self, "_binary", None) or shutil.which("redis-server") or "redis-server"
        return [binary, str(self.root / "redis.conf")]

    def ready(self) -> bool:
        return probes.redis_ready(self.settings)

    def version(self) -> str:
        return probes.redis_version(self.settings) or "?"

    def logs(self) -> list[Path]:
        return [self.root / "redis.log", self.log_file]


class Registry(LocalComponent):
    def __init__(self, settings: Settings) -> None:
        super().__init__("registry", settings)

    def ports(self) -> list[int]:
        return [self.settings.registry_port]

    def address(self) -> str:
        return self.settings.registry_address

    @property
    def lib(self) -> Path:
        return self.settings.state_path / "lib" / "registry"

    def resolve(self) -> None:
        artifacts.resolve_registry(
            self.settings.registry_version,
            self.lib,
            self.settings.state_path / "lib" / "maven.log",
            self.settings.maven_timeout_s,
        )

    def prepare(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        s = self.settings
        runner = next(self.lib.glob("*-runner.jar"), None) or next(self.lib.glob("*.jar"), None)
        if runner is None:
            raise StackError("registry", f"no runner jar in {self.lib}; remove it and run `up`")
        heap = s.registry_heap_mb
        return [
            _java(),
            f"-Xmx{heap}M",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            self.marker,
            f"-Dquarkus.http.host={s.host}",
            f"-Dquarkus.http.port={s.registry_port}",
            # The default is an in-memory H2: schemas (and their ids, which are inside every
            # record we wrote) would vanish with a restart. A file database keeps them.
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.root / 'data' / 'registry'}",
            "-Dquarkus.log.file.enable=true",
            f"-Dquarkus.log.file.path={self.root / 'logs' / 'registry.log'}",
            "-Dquarkus.log.console.level=WARN",
            "-jar",
            str(runner),
        ]

    def ready(self) -> bool:
        return probes.registry_ready(self.settings)

    def version(self) -> str:
        return probes.registry_version(self.settings) or self.settings.registry_version

    def logs(self) -> list[Path]:
        return [self.root / "logs" / "registry.log", self.log_file]


def components(settings: Settings) -> list[LocalComponent]:
    return [Kafka(settings), Cassandra(settings), Redis(settings), Registry(settings)]
