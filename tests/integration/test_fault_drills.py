"""The fault drills of `python -m perf drills`, short: under load, with viewers on two
gateways, one fault at a time; the independent auditor and every viewer's sequence must
show nothing lost, nothing twice, no gap a viewer was not told about and did not fill.

The drills stop and restart the stack's servers, so they must be alone on it
(perf/fence.py): a process this run did not start, connected to the stack, stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from deploy.settings import Settings
from deploy.stack import launcher
from perf.drills import DRILLS, Rig, Shape, run_drill
from perf.fence import Foreign, StackInUse, check_alone, foreign_users, rig_ports
from schemas.codec import AvroCodec


@pytest.fixture(scope="module")
def rig(settings: Settings, codec: AvroCodec) -> Iterator[Rig]:
    try:
        check_alone(settings, rig_ports(settings), "before the fault drills")
    except StackInUse as e:
        pytest.fail(str(e))
    rig = Rig(settings)
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()
        launcher.up(settings, out=io.StringIO())  # whatever a drill broke comes back


@pytest.mark.parametrize("drill", DRILLS)
def test_drill_loses_nothing_and_viewers_see_no_unrecovered_gap(
    settings: Settings, codec: AvroCodec, rig: Rig, drill: str
) -> None:
    try:
        result = asyncio.run(run_drill(settings, codec, rig, drill, Shape.of(quick=True)))
    finally:
        rig.ensure()  # the next drill starts from a whole system, whatever happened here
    assert result.acked > 0
    assert result.ok, result
    assert result.persisted == result.acked


def test_drills_refuse_a_stack_a_foreign_process_is_connected_to(settings: Settings) -> None:
    # `setsid -f` forks and its parent exits at once: the client is re-parented, no
    # longer a descendant of this process — as a process of another session would be.
    marker = f"fence-probe-{os.getpid()}"
    # The probe's sleep is its lifetime, not a wait: it holds a Redis connection until
    # the test kills it (at once, below), and ends by itself if the test dies first.
    client = (
        "import socket, time; "
        f"s = socket.create_connection(({settings.host!r}, {settings.redis_port})); "
        f"time.sleep(60)  # {marker}"
    )
    subprocess.run(["setsid", "-f", sys.executable, "-c", client], check=True)
    found: list[Foreign] = []
    try:
        deadline = time.monotonic() + 10
        while not found and time.monotonic() < deadline:
            found = [f for f in foreign_users(settings, {}) if marker in str(f)]
            time.sleep(0.2)
        assert found, "the foreign Redis client was not seen"
        assert "connected to redis" in found[0].why
        with pytest.raises(StackInUse, match="in use by processes this run did not start"):
            check_alone(settings, {}, "before the drills")
    finally:
        for f in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(f.pid, signal.SIGKILL)
