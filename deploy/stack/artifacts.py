"""Resolving the JVM servers from Maven Central and Redis from Debian, once per version.

Maven keeps its own cache (``~/.m2``); the jars are then copied into the state dir so a
server's classpath is exactly its own ``lib/`` and nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from deploy.stack.errors import StackError

POM = Path(__file__).resolve().parent.parent / "pom.xml"
_STAMP = ".resolved"


def _stamp_ok(dest: Path, version: str) -> bool:
    try:
        return (dest / _STAMP).read_text().strip() == version
    except FileNotFoundError:
        return False


def _mvn(args: list[str], what: str, log: Path, timeout_s: float) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(what, "Maven (`mvn`) is not on PATH; install Maven 3.8+ (Debian: maven)")
    if shutil.which("java") is None:
        raise StackError(what, "Java is not on PATH; install OpenJDK 17 (Debian: openjdk-17-jdk)")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            rc = subprocess.run(
                [mvn, "-B", "-q", "-f", str(POM), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
            ).returncode
        except subprocess.TimeoutExpired:
            raise StackError(
                what, f"Maven did not finish in {timeout_s:.0f} s; see {log}"
            ) from None
    if rc != 0:
        raise StackError(what, f"Maven could not resolve the artifacts (exit {rc}); see {log}")


def resolve_jars(profile: str, version: str, dest: Path, log: Path, timeout_s: float) -> Path:
    """Copy the profile's jars with their dependencies into ``dest`` (idempotent)."""
    if _stamp_ok(dest, version):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _mvn(
        [
            "-P",
            profile,
            f"-D{profile}.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={dest}",
            "-DincludeScope=runtime",
        ],
        profile,
        log,
        timeout_s,
    )
    (dest / _STAMP).write_text(version + "\n")
    return dest


def resolve_registry(version: str, dest: Path, log: Path, timeout_s: float) -> Path:
    """Fetch Apicurio's `all` zip and unpack it; returns the directory with the runner jar."""
    if _stamp_ok(dest, version):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    download = dest.parent / f"{dest.name}.download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    _mvn(
        [
            "-P",
            "registry",
            f"-Dregistry.version={version}",
            "dependency:copy",
            f"-DoutputDirectory={download}",
        ],
        "registry",
        log,
        timeout_s,
    )
    zips = list(download.glob("*.zip"))
    if not zips:
        raise StackError("registry", f"Maven finished but left no zip in {download}")
    dest.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zips[0]) as z:
            z.extractall(dest)
    except zipfile.BadZipFile as e:
        raise StackError("registry", f"the downloaded zip is corrupt ({e}); run `up` again") from e
    shutil.rmtree(download, ignore_errors=True)
    (dest / _STAMP).write_text(version + "\n")
    return dest


def find_redis_server(log: Path) -> str:
    """`redis-server` from PATH, else installed from Debian's packages (needs root)."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            "redis",
            "redis-server is not on PATH; install Redis 7 (Debian: `apt-get install redis-server`)",
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("ab") as out:
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
        ):
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            if rc != 0:
                raise StackError("redis", f"`{' '.join(argv)}` failed (exit {rc}); see {log}")
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise StackError("redis", f"redis-server still missing after apt-get; see {log}")
    return found
