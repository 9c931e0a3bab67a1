"""A cheap WebSocket viewer for load: thousands per process, so the load side is not
the bottleneck of a gateway benchmark.

Each :class:`WsViewer` is a bare ``asyncio.Protocol`` speaking just enough of RFC 6455
and of the livecomments.v1 protocol (docs/protocol.md) to watch one event: the opening
handshake, an ``auth`` and a ``join`` (masked, as a client must), pongs to the
gateway's pings, and frames in. It does not decode what it is sent: a ``comments``
frame is scanned with one regular expression for its items' ``position`` and
``previous_position`` (the chain a careful client checks: a comment whose
``previous_position`` is not the last position seen is a gap, a position seen before a
duplicate) and, on the viewers that sample latency, ``submitted_at``. Every
``full_every``-th frame is parsed as JSON too, and must agree with the scan.

:class:`Tally` is what a process of viewers counts; :func:`open_viewers` connects them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SUBPROTOCOL = "livecomments.v1"
_ITEM = re.compile(rb'"position":(\d+),"previous_position":(\d+|null)')
_SUBMITTED = re.compile(rb'"submitted_at":(\d+)')
_COMMENTS = b'{"type":"comments"'
JOIN_RETRY_S = 0.5


@dataclass
class Tally:
    """What a process of viewers received, counted cheaply."""

    frames: int = 0
    received: int = 0
    chain_breaks: int = 0
    duplicates: int = 0
    gaps: int = 0  # `gap` frames: the gateway declared the viewer slow
    recovered_gaps: int = 0  # re-joins with `since` after a gap that came back complete
    full_parses: int = 0
    parse_mismatches: int = 0
    refused_joins: int = 0
    closed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (submitted, latency)
    per_second: Counter[int] = field(default_factory=Counter)


def _mask(payload: bytes) -> bytes:
    """A client frame must be masked (RFC 6455 §5.3)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    repeated = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + key + masked


def _control(opcode: int, payload: bytes = b"") -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + masked


class WsViewer(asyncio.Protocol):
    """One connection watching one event."""

    __slots__ = (
        "buf",
        "close_code",
        "dead",
        "event_id",
        "full_every",
        "host",
        "joined",
        "last",
        "path",
        "ready",
        "record_latency",
        "tally",
        "token",
        "transport",
        "upgraded",
        "wait_kind",
        "waiter",
    )

    def __init__(
        self,
        tally: Tally,
        host: str,
        path: str,
        token: str,
        event_id: str,
        *,
        record_latency: bool,
        full_every: int,
        ready: asyncio.Future[None],
    ) -> None:
        self.tally = tally
        self.host = host
        self.path = path
        self.token = token
        self.event_id = event_id
        self.record_latency = record_latency
        self.full_every = full_every
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.joined = False
        self.last: int | None = None
        self.dead = False  # stopped reading on purpose (a dead peer, for heartbeat checks)
        self.close_code: int | None = None  # 1006: closed without a close frame
        self.waiter: asyncio.Future[float] | None = None  # a probe: pong or app pong
        self.wait_kind = 0

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # uvloop's transports are no asyncio.Transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed += 1
        if self.close_code is None:
            self.close_code = 1006
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before joining: {exc}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                self._fail(f"handshake: {status[:80]!r}")
                return
            self.upgraded = True
            buf = buf[end + 4 :]
            self.send({"type": "auth", "token": self.token})
            self._join()
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + n:
                break
            payload = buf[pos + head : pos + head + n]
            pos += head + n
            opcode = b0 & 0x0F
            if opcode == 1:
                self._text(payload)
            elif opcode == 9 and self.transport is not None:  # ping: pong it back
                self.transport.write(_control(0xA, payload))
            elif opcode == 0xA:
                self._answered(0xA)
            elif opcode == 8 and self.transport is not None:
                if len(payload) >= 2:
                    self.close_code = int.from_bytes(payload[:2], "big")
                self.transport.close()
        self.buf = buf[pos:] if pos < size else b""

    # -- protocol ---------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_mask(json.dumps(frame).encode()))

    def _answered(self, kind: int) -> None:
        if self.waiter is not None and self.wait_kind == kind and not self.waiter.done():
            self.waiter.set_result(time.perf_counter())

    async def probe(self, timeout_s: float = 10.0) -> tuple[float, float]:
        """A WebSocket ping, then a protocol ping: each round trip in ms."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        out = []
        for kind in (0xA, 1):
            self.waiter, self.wait_kind = loop.create_future(), kind
            t0 = time.perf_counter()
            if kind == 0xA:
                self.transport.write(_control(0x9, b"probe"))
            else:
                self.send({"type": "ping", "id": "k"})
            answered = await asyncio.wait_for(self.waiter, timeout_s)
            out.append((answered - t0) * 1000)
        self.waiter = None
        return out[0], out[1]

    def go_dead(self) -> None:
        """Stop reading: to the gateway, a dead peer."""
        self.dead = True
        if self.transport is not None:
            self.transport.pause_reading()

    @property
    def open(self) -> bool:
        return self.transport is not None and self.close_code is None

    def _join(self) -> None:
        self.send({"type": "join", "event_id": self.event_id, "id": "j"})

    def _fail(self, why: str) -> None:
        self.tally.errors[why[:120]] += 1
        if self.transport is not None:
            self.transport.close()

    def _text(self, payload: bytes) -> None:
        tally = self.tally
        if payload.startswith(_COMMENTS):
            tally.frames += 1
            got = 0
            last = self.last
            for position_b, previous_b in _ITEM.findall(payload):
                position = int(position_b)
                if last is not None:
                    if position <= last:
                        # Overlap is expected after a gap (the re-join's backlog).
                        if not tally.gaps:
                            tally.duplicates += 1
                        continue
                    if previous_b != b"null" and int(previous_b) != last:
                        tally.chain_breaks += 1
                last = position
                got += 1
            self.last = last
            tally.received += got
            now_ms = time.time() * 1000
            tally.per_second[int(now_ms // 1000)] += got
            if self.record_latency:
                for s in _SUBMITTED.findall(payload):
                    submitted = float(s)
                    tally.samples.append((submitted, now_ms - submitted))
            if tally.frames % self.full_every == 0:
                tally.full_parses += 1
                items = json.loads(payload)["items"]
                if len(items) != len(_ITEM.findall(payload)):
                    tally.parse_mismatches += 1
            return
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "joined":
            if frame.get("id") == "r" and frame.get("complete"):
                tally.recovered_gaps += 1
            self.joined = True
            if frame.get("position") is not None and self.last is None:
                self.last = int(frame["position"])
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "pong":
            self._answered(1)
        elif kind == "gap":
            # Declared slow: join again with `since`, as a careful client does; the
            # backlog fills the hole (positions already seen are skipped above).
            tally.gaps += 1
            since = {"epoch": frame.get("epoch"), "position": frame.get("position")}
            self.send({"type": "join", "event_id": self.event_id, "id": "r", "since": since})
        elif kind == "error":
            code = str(frame.get("code"))
            if code in ("unavailable", "event_not_found") and not self.joined:
                tally.refused_joins += 1
                asyncio.get_running_loop().call_later(JOIN_RETRY_S, self._join)
            else:
                tally.errors[f"error {code}"] += 1


async def open_viewers(
    url: str,
    tokens: Sequence[str],
    events: Sequence[str],
    *,
    tally: Tally,
    latency_every: int = 10,
    full_every: int = 1000,
    concurrency: int = 200,
    timeout_s: float = 120.0,
    local_ip: str | None = None,
    report_all: bool = False,
) -> list[WsViewer]:
    """Connect one viewer per token (watching ``events[i]``) and wait until all joined.
    Every ``latency_every``-th viewer records the latency of every comment it gets."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    viewers: list[WsViewer] = []

    async def one(i: int) -> None:
        ready: asyncio.Future[None] = loop.create_future()
        v = WsViewer(
            tally,
            f"{host}:{port}",
            parts.path or "/",
            tokens[i],
            events[i],
            record_latency=i % latency_every == 0,
            full_every=full_every,
            ready=ready,
        )
        async with gate:
            local = (local_ip, 0) if local_ip else None
            await loop.create_connection(lambda: v, host, port, local_addr=local)
            try:
                await asyncio.wait_for(ready, timeout_s)
            except BaseException:
                if v.transport is not None:
                    v.transport.abort()
                raise
        viewers.append(v)

    results = await asyncio.gather(*(one(i) for i in range(len(tokens))), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    for r in failed if report_all else failed[:5]:
        tally.errors[f"open: {type(r).__name__}: {r}"[:120]] += 1
    return viewers


def close_all(viewers: Sequence[WsViewer]) -> None:
    for v in viewers:
        if v.transport is not None:
            v.transport.abort()
