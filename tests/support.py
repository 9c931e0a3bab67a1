"""Helpers shared by test modules (import ``support``; fixtures live in conftest.py).

Test modules import from here, never from one another: a helper that lives in a test
module drags that module's fixtures and constants along with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

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


# -- gateways and WebSocket clients -------------------------------------------------------


SUBPROTOCOL = "livecomments.v1"
_WORDS = [
    "goal",
    "keeper",
    "striker",
    "midfield",
    "referee",
    "corner",
    "penalty",
    "crowd",
    "anthem",
    "stadium",
    "guitar",
    "drummer",
    "encore",
    "chorus",
    "ballad",
    "rhythm",
    "stage",
    "lights",
    "keynote",
    "launch",
    "battery",
    "camera",
    "screen",
    "pixel",
    "orange",
    "purple",
    "yellow",
    "silver",
    "window",
    "garden",
    "river",
    "mountain",
    "coffee",
    "bread",
    "cheese",
    "tomato",
    "rocket",
    "planet",
    "comet",
    "harbor",
    "bridge",
    "castle",
    "forest",
    "meadow",
    "thunder",
    "breeze",
    "sunrise",
    "winter",
    "summer",
    "autumn",
    "violin",
    "trumpet",
    "piano",
    "cello",
    "banjo",
    "flute",
    "tango",
    "salsa",
    "waltz",
    "samba",
]


def text(i: int) -> str:
    """A different sentence per post: moderation holds near-repeats of one user."""
    return " ".join(random.Random(i).sample(_WORDS, 5))


@dataclass
class GatewayProcess:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)


def start_gateway(settings: Settings, env: dict[str, str] | None = None) -> GatewayProcess:
    port = free_port()
    logs = settings.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"gateway-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "gateway", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    gw = GatewayProcess(port, proc, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return gw
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    gw.stop()
    raise TimeoutError(f"gateway on {port} not ready; see {log}")


@dataclass
class Client:
    """A real WebSocket client that keeps every frame it got, by type."""

    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    closed: tuple[int | None, str] | None = None

    @classmethod
    async def open(cls, url: str, token: str | None = None, auth: bool = True) -> Client:
        ws = await connect(url, subprotocols=[SUBPROTOCOL], max_size=2**24)  # type: ignore[list-item]
        client = cls(ws)
        client.task = asyncio.create_task(client._read())
        if auth:
            await client.send({"type": "auth", "token": token})
            await client.wait_for(lambda f: f["type"] in ("welcome", "error"))
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
        except ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason or "")

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], within_s: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        seen = 0
        while time.monotonic() < deadline:
            for f in self.frames[seen:]:
                if predicate(f):
                    return f
            seen = len(self.frames)
            if self.closed is not None:
                raise AssertionError(f"closed {self.closed} before the frame came: {self.frames}")
            await asyncio.sleep(0.02)
        raise AssertionError(f"no such frame in {within_s}s; got {self.frames[-10:]}")

    async def wait_closed(self, within_s: float = 30.0) -> tuple[int | None, str]:
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), within_s)
        assert self.closed is not None
        return self.closed

    def comments(self, event_id: str) -> list[dict[str, Any]]:
        return [
            item
            for f in self.frames
            if f["type"] == "comments" and f["event_id"] == event_id
            for item in f["items"]
        ]

    async def join(self, event_id: str, **extra: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex[:8]
        await self.send({"type": "join", "event_id": event_id, "id": request_id, **extra})
        return await self.wait_for(lambda f: f.get("id") == request_id)

    async def post(self, event_id: str, text: str, **extra: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex[:8]
        await self.send(
            {"type": "post", "event_id": event_id, "text": text, "id": request_id, **extra}
        )
        return await self.wait_for(lambda f: f.get("id") == request_id)

    async def close(self) -> None:
        await self.ws.close()
        if self.task:
            await asyncio.wait([self.task], timeout=5)


def token(settings: Settings, user: str, *roles: str) -> str:
    return mint_token(settings, user, roles=roles)
