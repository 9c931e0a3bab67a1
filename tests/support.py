"""Helpers shared by test modules (import ``support``; fixtures live in conftest.py).

Test modules import from here, never from one another: a helper that lives in a test
module drags that module's fixtures and constants along with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from deploy.processes import Child, Worker, start_worker, wait_assigned
from deploy.settings import Settings
from gateways.auth import mint_token

T = TypeVar("T")


# -- waiting for a condition, with a deadline -------------------------------------------------


PIPELINE_S = 120.0
"""How long a comment may take through the pipeline here: 2 cores are shared with other
stacks, so the pipeline may be slow without being wrong."""


def wait_until(
    what: str, probe: Callable[[], T], within_s: float = PIPELINE_S, *, interval_s: float = 0.3
) -> T:
    """``probe()``'s first truthy answer; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + within_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s:.0f}s (last: {found!r})")
        time.sleep(interval_s)


async def eventually(
    check: Callable[[], Any],
    within_s: float = PIPELINE_S,
    *,
    what: str = "the condition",
    interval_s: float = 0.2,
) -> Any:
    """``check()``'s first truthy answer (awaited if it is awaitable); AssertionError
    naming ``what`` (and the last answer) at the deadline."""
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {within_s:.0f}s (last: {found!r})")
        await asyncio.sleep(interval_s)


# -- real processes --------------------------------------------------------------------------


@contextlib.contextmanager
def running_workers(settings: Settings, count: int = 2) -> Iterator[list[Worker]]:
    """``count`` real worker processes owning every partition; stopped on exit."""
    started = [start_worker(settings, i) for i in range(count)]
    try:
        wait_assigned(settings, started, settings.partitions_comments)
        yield started
    finally:
        for w in started:
            w.stop()


# -- the HTTP API as a real process ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiProcess(Child):
    """A ``livecomments api`` process (``index`` unused: one API per module)."""

    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_api(settings: Settings, env: dict[str, str] | None = None) -> ApiProcess:
    """``livecomments api`` on a free port; returns once ``/readyz`` says ready."""
    port = free_port()
    logs = settings.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"api-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "api", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    api = ApiProcess(0, proc, log, port)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"api exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{api.url}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(f"api on {port} ready (see {log})", ready, 90)
    except AssertionError as e:
        api.stop()
        raise TimeoutError(str(e)) from e
    return api


def bearer(settings: Settings, user: str, *roles: str, ttl_s: int = 3600) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, user, roles=roles, ttl_s=ttl_s)}"}


def error_code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])
