"""connectors.services: steps start in order, stop in reverse, a failure names its step."""

from __future__ import annotations

import asyncio

import pytest

from connectors.services import Services, StartError


def _recording(log: list[str], services: Services, name: str, *, fail: bool = False) -> None:
    async def start() -> None:
        if fail:
            raise ConnectionRefusedError(name)
        log.append(f"start {name}")

    async def stop() -> None:
        log.append(f"stop {name}")

    services.add(name, start, stop)


def test_steps_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    services = Services("test")
    for name in ("redis", "registry", "kafka"):
        _recording(log, services, name)

    async def run() -> None:
        async with services:
            assert services.started == ["redis", "registry", "kafka"]

    asyncio.run(run())
    assert log == [
        "start redis",
        "start registry",
        "start kafka",
        "stop kafka",
        "stop registry",
        "stop redis",
    ]


def test_a_step_that_fails_stops_what_started_and_is_named() -> None:
    log: list[str] = []
    services = Services("api")
    _recording(log, services, "redis")
    _recording(log, services, "cassandra", fail=True)
    _recording(log, services, "kafka")
    with pytest.raises(StartError) as failed:
        asyncio.run(services.start())
    assert failed.value.step == "cassandra"
    assert "api: cassandra did not start" in str(failed.value)
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)
    assert log == ["start redis", "stop redis"]
    assert services.started == []


def test_a_step_that_fails_to_stop_does_not_keep_the_others_running() -> None:
    log: list[str] = []
    services = Services("gateway")
    _recording(log, services, "redis")

    async def broken() -> None:
        raise OSError("socket already closed")

    async def nothing() -> None:
        return None

    services.add("producer", nothing, broken)

    async def run() -> None:
        await services.start()
        await services.stop()

    asyncio.run(run())
    assert log == ["start redis", "stop redis"]


def test_two_steps_may_not_share_a_name() -> None:
    services = Services("worker")

    async def nothing() -> None:
        return None

    services.add("redis", nothing)
    with pytest.raises(ValueError, match="two steps named 'redis'"):
        services.add("redis", nothing)
