"""Which gateway serves an event: a consistent-hash ring over the gateways, with a backup.

Concentrating an event's viewers on few gateways means one Redis reader and one
encoded frame per tick for many viewers. Every gateway serves every event, so routing
is an optimisation, never a correctness condition.

The ring is ketama-style: each node gets ``replicas`` points (MD5 of ``"node-i"``), an
event goes to the first point clockwise of MD5(``event_id``) and its backup to the next
*other* node. Adding or removing one of N nodes moves about 1/N of the events.
``deploy/lb/haproxy.cfg`` applies the same policy at the load balancer (HAProxy's own
consistent hash on the ``event`` query parameter); clients and tools that pick a
gateway themselves (an SDK, a test) use :func:`HashRing.route` with the node list of
``LIVECOMMENTS_GATEWAY_NODES``.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence


def _point(key: str) -> int:
    return int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest()[:8], "big")


class HashRing:
    def __init__(self, nodes: Sequence[str], replicas: int = 160) -> None:
        if not nodes:
            raise ValueError("a ring needs at least one node")
        if len(set(nodes)) != len(nodes):
            raise ValueError("nodes must be distinct")
        self.nodes = tuple(nodes)
        points = sorted((_point(f"{node}-{i}"), node) for node in nodes for i in range(replicas))
        self._keys = [p for p, _ in points]
        self._owners = [n for _, n in points]

    @classmethod
    def from_setting(cls, value: str) -> HashRing:
        """From ``LIVECOMMENTS_GATEWAY_NODES`` (comma-separated addresses)."""
        return cls([n.strip() for n in value.split(",") if n.strip()])

    def route(self, event_id: str) -> tuple[str, str | None]:
        """(primary, backup) for ``event_id``; backup is None on a ring of one."""
        start = bisect.bisect(self._keys, _point(event_id)) % len(self._keys)
        primary = self._owners[start]
        for step in range(1, len(self._owners)):
            other = self._owners[(start + step) % len(self._owners)]
            if other != primary:
                return primary, other
        return primary, None

    def pick(self, event_id: str, alive: set[str]) -> str | None:
        """The node to use when only ``alive`` nodes answer: primary, else backup,
        else the next alive node clockwise."""
        start = bisect.bisect(self._keys, _point(event_id)) % len(self._keys)
        for step in range(len(self._owners)):
            node = self._owners[(start + step) % len(self._owners)]
            if node in alive:
                return node
        return None
