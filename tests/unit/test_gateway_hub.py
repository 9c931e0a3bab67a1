"""The live reader without servers: delivery as soon as read, coalescing only for busy
events, a new event cutting a blocked read short, the frame as written on the wire.

The hub reads time through an injected clock, so nothing here sleeps to wait for a tick.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway_fakes import LIMIT, FakeClock, FakeViewer

from connectors.redis_streams import stream_key
from gateways.fanout import Feed, Hub, Subscription, payload_of, wire


def raw(position: int) -> tuple[bytes, dict[bytes, bytes]]:
    data = {"comment_id": f"c{position}", "position": position, "epoch": 1}
    data["previous_position"] = position - 1 if position else None  # type: ignore[assignment]
    return f"{position + 1}-0".encode(), {b"type": b"comment", b"data": json.dumps(data).encode()}


class ScriptedRedis:
    """``xread`` answers from a script, one answer per call; then blocks forever."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[dict[str, str], int]] = []
        self.cancelled = 0

    async def xread(self, streams: dict[str, str], count: int, block: int) -> Any:
        self.calls.append((dict(streams), block))
        if self.answers:
            return self.answers.pop(0)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return None


def live_hub(redis: Any, clock: FakeClock, **kw: Any) -> tuple[Hub, FakeViewer, Feed]:
    options: dict[str, Any] = {
        "tick_ms": 20,
        "recent_s": 60,
        "top_per_s": 10,
        "slow_disconnect_s": 30,
        "write_buffer_bytes": LIMIT,
        "coalesce_above_per_s": 50,
        "clock": clock,
    }
    options.update(kw)
    h = Hub(redis, None, **options)  # type: ignore[arg-type]
    v = FakeViewer(capacity=1000)
    feed = h.feeds["e"] = Feed("e", 60, clock())
    feed.ready.set()
    feed.subs[id(v)] = Subscription(v, "e", "all", live=True)  # type: ignore[arg-type]
    return h, v, feed


def positions(v: FakeViewer) -> list[list[int]]:
    return [[i["position"] for i in json.loads(f)["items"]] for f in v.queue]


def test_a_quiet_event_is_delivered_as_soon_as_it_is_read_and_read_again_at_once() -> None:
    clock = FakeClock()
    key = stream_key("e").encode()
    redis = ScriptedRedis([[(key, [raw(0)])], [(key, [raw(1)])]])
    h, v, feed = live_hub(redis, clock)

    async def two_reads() -> None:
        await h._read_once()
        assert positions(v) == [[0]]  # delivered before the next read, no tick
        await h._read_once()

    asyncio.run(two_reads())
    assert positions(v) == [[0], [1]]
    assert feed.cursor == "2-0"
    assert [c[0][stream_key("e")] for c in redis.calls] == ["0-0", "1-0"]
    assert all(block == 1000 for _, block in redis.calls)  # nothing held: a long block


def test_a_busy_event_is_held_for_one_tick_and_sent_as_one_frame() -> None:
    clock = FakeClock()
    h, v, feed = live_hub(None, clock)
    feed.busy = True
    feed.rate = 500.0

    async def scenario() -> None:
        await h._settle([(b"event:e:comments", [raw(0), raw(1)])], clock())
        clock.now += 0.005
        await h._settle([(b"event:e:comments", [raw(2)])], clock())
        assert v.queue == []  # within the tick: held
        clock.now += 0.016
        await h._settle(None, clock())

    asyncio.run(scenario())
    assert positions(v) == [[0, 1, 2]]
    assert feed.flush_at is None and feed.held == []


def test_an_event_turns_busy_above_the_coalescing_rate_and_quiet_again_below_it() -> None:
    feed = Feed("e", 60)
    for _ in range(100):
        feed._update_rate(2, 0.02, busy_rate=50)  # 100/s
    assert feed.busy
    for _ in range(200):
        feed._update_rate(0, 0.02, busy_rate=50)
    assert not feed.busy


def test_a_busy_events_tick_ends_while_a_read_is_blocked_and_the_read_stays_in_flight() -> None:
    clock = FakeClock()
    redis = ScriptedRedis([])
    h, v, feed = live_hub(redis, clock)
    feed.busy = True

    async def scenario() -> None:
        await h._settle([(b"event:e:comments", [raw(0), raw(1)])], clock())
        assert v.queue == [] and feed.flush_at is not None
        clock.now = feed.flush_at  # the tick is over: no wait, whatever Redis's clock
        await h._read_once()
        assert h._reading is not None and not h._reading.done()  # not cut for a flush

    asyncio.run(scenario())
    assert positions(v) == [[0, 1]]
    assert redis.calls[0][1] == 1000 and len(redis.calls) == 1


def test_a_new_event_cuts_a_blocked_read_short_and_is_read_from_its_cursor() -> None:
    clock = FakeClock()
    redis = ScriptedRedis([])
    h, _v, _feed = live_hub(redis, clock)

    async def scenario() -> None:
        reading = asyncio.create_task(h._read_once())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        other = h.feeds["f"] = Feed("f", 60, clock())
        other.cursor = "7-0"
        other.ready.set()
        h._changed.set()
        await asyncio.wait_for(reading, 1.0)
        redis.answers.append(None)
        await h._read_once()

    asyncio.run(scenario())
    assert redis.cancelled == 1
    assert redis.calls[-1][0] == {stream_key("e"): "0-0", stream_key("f"): "7-0"}


def test_a_frame_is_an_unmasked_websocket_text_frame_of_its_json() -> None:
    for n in (5, 300, 70_000):
        payload = b"x" * n
        frame = wire(payload)
        assert frame[0] == 0x81 and not frame[1] & 0x80
        assert payload_of(frame) == payload
