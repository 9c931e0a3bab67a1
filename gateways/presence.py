"""Presence: how many viewers an event has across every gateway — a count, never a list.

Every ``gateway_presence_interval_s`` each gateway writes, per event it follows, its
own viewer count into ``presence:{event_id}:counts`` (a hash: gateway → count) and its
heartbeat into ``presence:{event_id}:seen`` (a sorted set: gateway → Redis time), and
reads back the sum over gateways seen within three intervals. A gateway that dies
stops refreshing, so its viewers drop out of the sum after three intervals; both keys
expire when no gateway writes at all. One script call per event per interval.
"""

from __future__ import annotations

from typing import Any, Final

_UPDATE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], now, ARGV[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
for _, g in ipairs(dead) do
  redis.call('HDEL', KEYS[1], g)
  redis.call('ZREM', KEYS[2], g)
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
return total
"""


def counts_key(event_id: str) -> str:
    # The braces make both keys of an event one Redis Cluster slot (hash tag).
    return f"presence:{{{event_id}}}:counts"


def seen_key(event_id: str) -> str:
    return f"presence:{{{event_id}}}:seen"


class Presence:
    def __init__(self, redis: Any, gateway_id: str, interval_s: float) -> None:
        self._gateway_id = gateway_id
        self._ttl_ms = int(interval_s * 3 * 1000)
        self._script = redis.register_script(_UPDATE)
        self._reported: set[str] = set()

    async def report(self, local_counts: dict[str, int]) -> dict[str, int]:
        """Write this gateway's counts (0 for events it no longer follows); returns the
        total per event across gateways."""
        totals: dict[str, int] = {}
        gone = self._reported - local_counts.keys()
        for event_id in gone:
            await self._update(event_id, 0)
        for event_id, count in local_counts.items():
            totals[event_id] = await self._update(event_id, count)
        self._reported = {e for e, c in local_counts.items() if c > 0}
        return totals

    async def withdraw(self) -> None:
        """Remove this gateway's counts (a drain)."""
        await self.report({})

    async def _update(self, event_id: str, count: int) -> int:
        total = await self._script(
            keys=[counts_key(event_id), seen_key(event_id)],
            args=[self._gateway_id, count, self._ttl_ms],
        )
        return int(total)
