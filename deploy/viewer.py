"""A viewer, as a client app would be one: the load side of fan-out benchmarks and drills.

It speaks the documented protocol only (docs/protocol.md): authenticates, joins events,
keeps the ``(epoch, position)`` of the last comment per event, and on any disconnect
reconnects to the next gateway of its list and resumes with ``since``. It checks what
it is given the way a careful client would:

- every comment's ``previous_position`` must be the position of the comment it had
  before (else a **gap**: a missed comment);
- a ``gap`` frame (slow consumer) or a ``joined`` with ``complete: false`` is a gap the
  gateway *declared*; the viewer re-joins with ``since`` and counts it as recovered
  when the re-join is complete;
- a position seen twice is a **duplicate**;
- a join refused with ``unavailable`` (the gateway could not read the event's history:
  Redis or Cassandra not answering) is retried on the same connection with backoff, as
  the protocol asks (docs/protocol.md, error codes), and counted as ``refused_joins``,
  not as an error.

Latency is receive time minus the comment's ``submitted_at`` (same machine clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

SUBPROTOCOL = "livecomments.v1"
# A join refused as `unavailable` is sent again after this, doubling up to the maximum
# (with jitter, so viewers refused together do not come back together).
JOIN_RETRY_FIRST_S = 0.2
JOIN_RETRY_MAX_S = 5.0


@dataclass
class EventView:
    epoch: int | None = None
    position: int | None = None
    joined: bool = False
    awaiting_recovery: bool = False  # a declared gap, until a complete re-join
    retry_delay_s: float = 0.0  # the next wait after a join refused as `unavailable`
    recover_from: tuple[int | None, int | None] = (None, None)
    positions: set[int] = field(default_factory=set)
    comment_ids: set[str] = field(default_factory=set)


@dataclass
class ViewerStats:
    received: int = 0
    duplicates: int = 0
    unrecovered_gaps: int = 0  # a comment whose previous_position we never got
    declared_gaps: int = 0  # `gap` frames and incomplete joins
    recovered_gaps: int = 0  # declared gaps whose re-join completed
    reconnects: int = 0
    refused_joins: int = 0  # joins answered `unavailable`, each retried
    retracted: int = 0
    errors: list[str] = field(default_factory=list)


class ViewerClient:
    """One WebSocket connection (re-opened as needed) watching some events."""

    def __init__(
        self,
        urls: Sequence[str],
        token: str | None,
        events: Sequence[str],
        *,
        latencies: list[float] | None = None,
        sample: float = 1.0,
    ) -> None:
        self.urls = list(urls)
        self.token = token
        self.views = {e: EventView() for e in events}
        self.stats = ViewerStats()
        self.latencies = latencies if latencies is not None else []
        self.sample = sample
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._url_index = random.randrange(len(self.urls))
        self._rejoin: list[str] = []
        self._reconnect_after_s: float | None = None
        self._join_retries: dict[str, asyncio.Task[None]] = {}

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until ``stop()``; reconnect with backoff and resume."""
        delay = 0.1
        while not self._stop.is_set():
            url = self.urls[self._url_index % len(self.urls)]
            try:
                async with connect(
                    url, subprotocols=[Subprotocol(SUBPROTOCOL)], open_timeout=5, max_size=2**22
                ) as ws:
                    self._ws = ws
                    await self._session(ws)
                    delay = 0.1
                if not self._stop.is_set():  # a clean close: say why, as an error would
                    self.stats.errors.append(f"closed: {ws.close_code} {ws.close_reason}"[:200])
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as e:
                if self._stop.is_set():
                    break
                self.stats.errors.append(f"{type(e).__name__}: {e}"[:200])
            finally:
                self._ws = None
                self.connected.clear()
                self._cancel_join_retries()
                for view in self.views.values():
                    view.joined = False
            if self._stop.is_set():
                break
            self.stats.reconnects += 1
            self._url_index += 1  # the next gateway (a drained or dead one is skipped)
            if self._reconnect_after_s is not None:
                await asyncio.sleep(self._reconnect_after_s)
                self._reconnect_after_s = None
            else:
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    async def stop(self) -> None:
        self._stop.set()
        self._cancel_join_retries()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def _session(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "auth", "token": self.token}))
        for event_id in self.views:
            await self._join(ws, event_id)
        async for raw in ws:
            self._handle(ws, json.loads(raw))
            if self._rejoin:
                for event_id in self._rejoin:
                    await self._join(ws, event_id)
                self._rejoin = []

    async def _join(self, ws: ClientConnection, event_id: str) -> None:
        view = self.views[event_id]
        frame: dict[str, Any] = {"type": "join", "event_id": event_id, "id": event_id}
        epoch, position = view.recover_from if view.awaiting_recovery else (None, None)
        if position is None:
            epoch, position = view.epoch, view.position
        if position is not None:
            frame["since"] = {"epoch": epoch, "position": position}
        await ws.send(json.dumps(frame))

    # -- frames --------------------------------------------------------------------

    def _handle(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "comments":
            self._comments(frame["event_id"], frame["items"])
        elif kind == "joined":
            view = self.views.get(frame["event_id"])
            if view is None:
                return
            if frame.get("truncated"):  # a page of a long recovery: ask for the next
                self._rejoin = [*self._rejoin, frame["event_id"]]
                return
            view.joined = True
            view.retry_delay_s = 0.0
            if frame.get("complete") is False:
                self.stats.declared_gaps += 1
            elif view.awaiting_recovery:
                self.stats.recovered_gaps += 1
                view.awaiting_recovery = False
            if all(v.joined for v in self.views.values()):
                self.connected.set()
        elif kind == "gap":
            self.stats.declared_gaps += 1
            view = self.views[frame["event_id"]]
            view.awaiting_recovery = True
            view.recover_from = (frame.get("epoch"), frame.get("position"))
            self._rejoin = [*self._rejoin, frame["event_id"]]
        elif kind == "reconnect":  # the gateway drains: go elsewhere after its delay
            self._reconnect_after_s = float(frame.get("after_ms", 0)) / 1000
            asyncio.get_running_loop().create_task(ws.close())
        elif kind == "retracted":
            self.stats.retracted += len(frame.get("items", []))
        elif kind == "error":
            event_id = frame.get("event_id")
            if frame.get("code") == "unavailable" and event_id in self.views:
                self._retry_join(ws, str(event_id))
            else:
                self.stats.errors.append(f"{frame.get('code')}: {frame.get('message')}"[:200])

    def _retry_join(self, ws: ClientConnection, event_id: str) -> None:
        """Send the refused join again after a backoff, on this connection.

        A retry is a task (not the ``_rejoin`` list) because the refused event may be the
        only one this viewer watches: no later frame would come to trigger it. A
        reconnect cancels it, since a new session joins every event anyway.
        """
        self.stats.refused_joins += 1
        if event_id in self._join_retries:
            return
        view = self.views[event_id]
        view.retry_delay_s = min(JOIN_RETRY_MAX_S, max(JOIN_RETRY_FIRST_S, view.retry_delay_s * 2))
        delay = view.retry_delay_s * (0.5 + random.random())

        async def retry() -> None:
            try:
                await asyncio.sleep(delay)
                if self._ws is ws and not self._stop.is_set():
                    await self._join(ws, event_id)
            except websockets.exceptions.ConnectionClosed:
                pass  # the session ends; the reconnect joins again
            finally:
                if self._join_retries.get(event_id) is asyncio.current_task():
                    del self._join_retries[event_id]

        self._join_retries[event_id] = asyncio.get_running_loop().create_task(retry())

    def _cancel_join_retries(self) -> None:
        for task in self._join_retries.values():
            task.cancel()
        self._join_retries.clear()

    def _comments(self, event_id: str, items: list[dict[str, Any]]) -> None:
        view = self.views.get(event_id)
        if view is None:
            return
        now_ms = time.time() * 1000
        for c in items:
            position = int(c["position"])
            if position in view.positions:
                # Overlap is expected while a declared gap is being filled.
                if not view.awaiting_recovery:
                    self.stats.duplicates += 1
                continue
            chained = c.get("previous_position") == view.position or c.get("removed")
            same_epoch = view.position is not None and c.get("epoch") == view.epoch
            if same_epoch and not chained and not view.awaiting_recovery:
                self.stats.unrecovered_gaps += 1
            view.positions.add(position)
            view.epoch = c.get("epoch", view.epoch)
            if view.position is None or position > view.position:
                view.position = position
            if c.get("comment_id"):
                view.comment_ids.add(str(c["comment_id"]))
            self.stats.received += 1
            # Live comments only: a backlog is history, not delivery latency.
            if view.joined and "submitted_at" in c and random.random() < self.sample:
                self.latencies.append(now_ms - float(c["submitted_at"]))

    def missing(self, event_id: str, published: Sequence[int]) -> int:
        """Positions of ``published`` (the event's truth, from Cassandra) that this
        viewer should have had (between its first and last) but never got."""
        seen = self.views[event_id].positions
        if not seen:
            return 0
        lo, hi = min(seen), max(seen)
        return sum(1 for p in published if lo <= p <= hi and p not in seen)


async def watch(
    viewers: Sequence[ViewerClient], timeout_s: float = 60.0
) -> list[asyncio.Task[None]]:
    """Start the viewers and wait until every one has joined all its events."""
    tasks = [asyncio.create_task(v.run()) for v in viewers]
    deadline = time.monotonic() + timeout_s
    for v in viewers:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"viewers did not all join within {timeout_s}s")
        await asyncio.wait_for(v.connected.wait(), timeout=left)
    return tasks


async def stop_all(viewers: Sequence[ViewerClient], tasks: Sequence[asyncio.Task[None]]) -> None:
    await asyncio.gather(*(v.stop() for v in viewers), return_exceptions=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))])
