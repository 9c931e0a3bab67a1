"""Faults under load: a tier goes away while comments flow; nothing acknowledged is lost.

Each drill runs the load in a thread, breaks a real server through the launcher, brings
it back, and lets the independent auditor count.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from connectors.redis_streams import meta_key, stream_key
from deploy.processes import Worker, wait_events_known
from deploy.settings import Settings
from deploy.stack import launcher
from deploy.stack.local import Cassandra
from deploy.stack.local import Redis as RedisServer
from perf.audit import wait_until_persisted
from perf.load import LoadResult, comments, make_events, produce
from schemas.codec import AvroCodec


@pytest.fixture(autouse=True)
def _stack_restored(settings: Settings) -> Iterator[None]:
    """Whatever a drill broke, the next test gets the whole stack back.

    Autouse, so it is set up before the shared ``workers`` fixture and torn down after
    the workers stopped.
    """
    yield
    launcher.up(settings, out=io.StringIO())


class BackgroundLoad(threading.Thread):
    """The load generator in a thread, so the test can break servers meanwhile."""

    def __init__(
        self, settings: Settings, codec: AvroCodec, events: list[str], total: int, rate: float
    ) -> None:
        super().__init__(daemon=True)
        self._args = (settings, codec, events, total, rate)
        self.result: LoadResult | None = None
        self.start()

    def run(self) -> None:
        settings, codec, events, total, rate = self._args
        self.result = produce(settings, codec, comments(events, total), rate=rate)

    def finish(self) -> LoadResult:
        self.join(timeout=300)
        assert self.result is not None, "the load generator did not finish"
        return self.result


def _group_alive(group: int) -> list[int]:
    """Pids of ``group`` that still run (a zombie waiting for its parent does not)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _wait_group_gone(group: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _group_alive(group):
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} still runs after SIGKILL: {_group_alive(group)}")
        time.sleep(0.05)


def _sleep_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        time.sleep(0.2)


def test_cassandra_stopped_20s_under_load_loses_nothing_and_catches_up(
    settings: Settings, codec: AvroCodec, workers: list[Worker]
) -> None:
    events = make_events(settings, codec, 10, f"drill-c-{uuid.uuid4().hex[:6]}")
    wait_events_known(settings, workers, 10)
    load_thread = BackgroundLoad(settings, codec, events, 30_000, rate=1000)

    start = time.monotonic()
    _sleep_until(start + 5)
    assert Cassandra(settings).process.stop(timeout_s=60)
    _sleep_until(time.monotonic() + 20)
    launcher.up(settings, out=io.StringIO())

    load = load_thread.finish()
    assert load.failed == 0 and len(load.acked) == 30_000
    report = wait_until_persisted(settings, load.acked, timeout_s=300)
    assert report.ok, report.as_dict()
    assert report.persisted == 30_000


def test_redis_losing_its_data_under_load_loses_nothing_and_records_an_epoch(
    settings: Settings, codec: AvroCodec, workers: list[Worker]
) -> None:
    events = make_events(settings, codec, 10, f"drill-r-{uuid.uuid4().hex[:6]}")
    wait_events_known(settings, workers, 10)
    load_thread = BackgroundLoad(settings, codec, events, 15_000, rate=1000)

    _sleep_until(time.monotonic() + 5)
    redis_server = RedisServer(settings)
    pid = redis_server.process.owned_pid()
    assert pid is not None
    # Its data with it: the worst case for the live tier. The whole process group, so a
    # background save or AOF rewrite forked by Redis cannot finish writing its file
    # into the data dir after we removed it (the new server would load it, lose
    # nothing, and record no epoch).
    group = os.getpgid(pid)
    os.killpg(group, signal.SIGKILL)
    _wait_group_gone(group)
    data = redis_server.root / "data"
    shutil.rmtree(data)
    assert not data.exists()
    launcher.up(settings, out=io.StringIO())

    load = load_thread.finish()
    assert len(load.acked) == 15_000
    report = wait_until_persisted(settings, load.acked, timeout_s=240, live_tier_complete=False)
    # The permanent tier has everything, once; the live tier lost what came before the
    # crash and says so with a new epoch, after which it is complete again.
    assert report.lost == 0 and report.duplicated == 0, report.as_dict()
    assert report.order_violations == 0 and report.chain_breaks == 0, report.as_dict()

    r = Redis.from_url(settings.redis_address)
    try:
        for event_id in events:
            meta = r.hgetall(meta_key(event_id))
            assert meta.get(b"epoch"), f"no epoch change recorded for {event_id}"
            entries = r.xrange(stream_key(event_id))
            kinds = [fields[b"type"] for _, fields in entries]
            assert b"epoch" in kinds
            marker = kinds.index(b"epoch")
            after = [
                json.loads(fields[b"data"])
                for _, fields in entries[marker + 1 :]
                if fields[b"type"] == b"comment"
            ]
            assert after, f"nothing reached {event_id}'s stream after the restart"
            positions = [c["position"] for c in after]
            assert positions == sorted(set(positions))
    finally:
        r.close()
