"""Set-up and tear-down of a process's connections: start in order, stop in reverse.

A process (the HTTP API, the worker, the gateway) lists what it needs as named steps::

    services = Services("api")
    backbone = Backbone(settings)
    backbone.add_to(services)                     # redis, registry, cassandra, kafka, state
    services.add("poster", start=make_poster)     # what is built on top
    await services.start()                        # in order; a failure names its step
    ...
    await services.stop()                         # what started, in reverse

A step that fails to start stops the steps started before it (in reverse) and raises
:class:`StartError` naming the step, so a half-started process never leaks a
connection. A step that fails to stop is logged and the others still stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from deploy.settings import Settings
from schemas.codec import AvroCodec

log = logging.getLogger(__name__)

Action = Callable[[], Awaitable[None]]


class StartError(RuntimeError):
    """A step did not start; ``step`` names it, ``__cause__`` says why."""

    def __init__(self, process: str, step: str, cause: BaseException) -> None:
        super().__init__(f"{process}: {step} did not start: {cause!r}")
        self.process = process
        self.step = step


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    start: Action
    stop: Action | None = None


class Services:
    """Named steps started in order and stopped in reverse."""

    def __init__(self, process: str) -> None:
        self.process = process
        self._steps: list[Step] = []
        self._started: list[Step] = []

    def add(self, name: str, start: Action, stop: Action | None = None) -> None:
        if any(step.name == name for step in self._steps):
            raise ValueError(f"{self.process}: two steps named {name!r}")
        self._steps.append(Step(name, start, stop))

    @property
    def started(self) -> list[str]:
        return [step.name for step in self._started]

    async def start(self) -> None:
        for step in self._steps:
            t0 = time.perf_counter()
            try:
                await step.start()
            except BaseException as e:
                await self.stop()
                if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
                    raise
                raise StartError(self.process, step.name, e) from e
            self._started.append(step)
            log.debug("%s: %s started in %.2fs", self.process, step.name, time.perf_counter() - t0)

    async def stop(self) -> None:
        while self._started:
            step = self._started.pop()
            if step.stop is None:
                continue
            try:
                await step.stop()
            except Exception:
                log.exception("%s: %s did not stop cleanly", self.process, step.name)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Backbone:
    """The connections every edge process opens: Redis, the registry (codec), Cassandra,
    the Kafka producer and the events/users state. Attributes are set as steps start."""

    def __init__(self, settings: Settings, *, redis_connections: int | None = None) -> None:
        """``redis_connections``: a bounded, blocking pool of that many (a flood of
        requests waits for a connection instead of opening thousands); None: redis-py's
        default pool."""
        self.settings = settings
        self._redis_connections = redis_connections
        self.redis: Any = None
        self.codec: AvroCodec | None = None
        self.store: Any = None
        self.producer: Any = None
        self.state: Any = None

    def add_to(self, services: Services, *, redis: bool = True, state: bool = True) -> None:
        if redis:
            services.add("redis", self._start_redis, self._stop_redis)
        services.add("registry", self._start_codec, self._stop_codec)
        services.add("cassandra", self._start_store, self._stop_store)
        services.add("kafka producer", self._start_producer, self._stop_producer)
        if state:
            services.add("state reader", self._start_state, self._stop_state)

    async def _start_redis(self) -> None:
        import redis.asyncio as aioredis

        if self._redis_connections is None:
            self.redis = aioredis.Redis.from_url(self.settings.redis_address, socket_timeout=10)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.settings.redis_address,
                max_connections=self._redis_connections,
                timeout=20,
                socket_timeout=10,
            )
            self.redis = aioredis.Redis(connection_pool=pool)
        try:
            await self.redis.ping()
        except BaseException:
            await self.redis.aclose()
            raise

    async def _stop_redis(self) -> None:
        await self.redis.aclose()

    async def _start_codec(self) -> None:
        self.codec = AvroCodec(self.settings)
        try:
            await asyncio.to_thread(self.codec.register_all)
        except BaseException:
            self.codec.close()
            raise

    async def _stop_codec(self) -> None:
        assert self.codec is not None
        self.codec.close()

    async def _start_store(self) -> None:
        from connectors.cassandra_store import CommentStore

        self.store = await asyncio.to_thread(CommentStore, self.settings)

    async def _stop_store(self) -> None:
        await asyncio.to_thread(self.store.close)

    async def _start_producer(self) -> None:
        from connectors.kafka_producer import OutputProducer

        self.producer = OutputProducer(self.settings)
        await self.producer.start()

    async def _stop_producer(self) -> None:
        await self.producer.stop()

    async def _start_state(self) -> None:
        from connectors.state_reader import StateReader

        assert self.codec is not None
        self.state = StateReader(self.settings, self.codec)
        try:
            await self.state.start()
            await self.state.ready.wait()
        except BaseException:
            await self.state.stop()
            raise

    async def _stop_state(self) -> None:
        await self.state.stop()
