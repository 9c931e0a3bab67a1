"""The fault drills of `python -m perf drills`, short: under load, with viewers on two
gateways, one fault at a time; the independent auditor and every viewer's sequence must
show nothing lost, nothing twice, no gap a viewer was not told about and did not fill.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest

from deploy.settings import Settings
from deploy.stack import launcher
from perf.drills import DRILLS, Rig, Shape, run_drill
from schemas.codec import AvroCodec


@pytest.fixture(scope="module")
def rig(settings: Settings, codec: AvroCodec) -> Iterator[Rig]:
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
