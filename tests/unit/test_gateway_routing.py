"""Consistent-hash routing of events to gateways."""

from __future__ import annotations

from collections import Counter

import pytest

from gateways.routing import HashRing

NODES = [f"10.0.0.{i}:8765" for i in range(1, 6)]
EVENTS = [f"event-{i}" for i in range(5000)]


def test_an_event_always_routes_to_the_same_gateway_with_a_different_backup() -> None:
    ring = HashRing(NODES)
    for e in EVENTS[:200]:
        primary, backup = ring.route(e)
        assert (primary, backup) == HashRing(list(reversed(NODES))).route(e)
        assert backup is not None and backup != primary


def test_events_spread_evenly_over_the_gateways() -> None:
    counts = Counter(HashRing(NODES).route(e)[0] for e in EVENTS)
    assert set(counts) == set(NODES)
    assert max(counts.values()) < 1.3 * len(EVENTS) / len(NODES)


def test_removing_a_gateway_moves_only_its_events_to_their_backup() -> None:
    ring = HashRing(NODES)
    smaller = HashRing([n for n in NODES if n != NODES[0]])
    moved = 0
    for e in EVENTS:
        primary, backup = ring.route(e)
        now = smaller.route(e)[0]
        if primary == NODES[0]:
            assert now == backup
            moved += 1
        else:
            assert now == primary
    assert moved < 0.3 * len(EVENTS)


def test_pick_falls_back_to_the_backup_then_to_any_alive_node() -> None:
    ring = HashRing(NODES)
    primary, backup = ring.route("final-2026")
    assert ring.pick("final-2026", set(NODES)) == primary
    assert ring.pick("final-2026", set(NODES) - {primary}) == backup
    assert ring.pick("final-2026", set()) is None
    assert HashRing(["solo:1"]).route("x") == ("solo:1", None)


def test_a_ring_needs_distinct_nodes() -> None:
    with pytest.raises(ValueError):
        HashRing([])
    with pytest.raises(ValueError):
        HashRing(["a", "a"])
    assert HashRing.from_setting(" a:1, b:2 ,").nodes == ("a:1", "b:2")
