"""Every test in this folder needs the real stack (see tests/conftest.py: never skipped)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import GatewayProcess, running_workers, start_gateway

from connectors.state_writer import StateWriter
from deploy.processes import Worker
from deploy.settings import Settings
from schemas.codec import AvroCodec
from schemas.errors import RegistryError
from schemas.records import EventStatus, LiveEvent
from schemas.registry import RegistryClient

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _needs_stack(stack: Settings) -> None:
    """Brings the stack up once per session before the first integration test."""


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """Topic prefix unique to this test run, so subjects never collide across reruns
    against a registry that outlives the run."""
    return f"it-{uuid.uuid4().hex[:12]}."


@pytest.fixture(scope="session")
def registry_client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[RegistryClient]:
    """Our registry client on the settings' registry.

    A registry that already answers is used as is; otherwise the stack is brought up
    first. FAILS the test if the registry still does not answer.
    """
    client = RegistryClient.from_settings(settings)
    try:
        client.subjects()
    except RegistryError:
        request.getfixturevalue("stack")
        try:
            client.subjects()
        except RegistryError as e:
            client.close()
            pytest.fail(f"schema registry at {settings.registry_address} is not usable: {e}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def schema_codec(settings: Settings, registry_client: RegistryClient, run_prefix: str) -> AvroCodec:
    """A codec with every schema registered under this run's subjects."""
    codec = AvroCodec(settings, registry=registry_client, topic_prefix=run_prefix)
    codec.register_all()
    return codec


@pytest.fixture(scope="module")
def codec(settings: Settings) -> Iterator[AvroCodec]:
    """A codec on the real registry with every schema registered (topic names unprefixed)."""
    with AvroCodec(settings) as c:
        c.register_all()
        yield c


@pytest.fixture()
def workers(settings: Settings) -> Iterator[list[Worker]]:
    """Two real worker processes owning every partition; stopped after the test."""
    with running_workers(settings) as started:
        yield started


@pytest.fixture(scope="module")
def pipeline(stack: Settings) -> Iterator[list[Worker]]:
    """Two real workers for the whole module."""
    with running_workers(stack) as started:
        yield started


@pytest.fixture(scope="module")
def gateways(stack: Settings) -> Iterator[list[GatewayProcess]]:
    started = [start_gateway(stack), start_gateway(stack)]
    yield started
    for g in started:
        g.stop()


@pytest.fixture(scope="module")
def writer(stack: Settings) -> StateWriter:
    codec = AvroCodec(stack)
    codec.register_all()
    return StateWriter(stack, codec)


@pytest.fixture()
def new_event(writer: StateWriter) -> Callable[..., str]:
    def make(**overrides: Any) -> str:
        event_id = f"gw-{uuid.uuid4().hex[:10]}"
        now = int(time.time() * 1000)
        writer.put_event(
            LiveEvent(
                event_id=event_id,
                title="gateway test",
                status=EventStatus.LIVE,
                created_at=now,
                updated_at=now,
                **overrides,
            )
        )
        return event_id

    return make
