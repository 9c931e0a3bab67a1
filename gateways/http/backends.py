"""What the HTTP API connects to, and what it builds on those connections.

Set-up and tear-down are ``connectors.services`` steps (in order, in reverse, each
named): the shared backbone (Redis, registry, Cassandra, Kafka producer, state), then
the state writer, the admin client, the ``Poster`` and the ``ModeratorActions``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from connectors.services import Backbone, Services
from deploy.settings import Settings
from gateways.moderation import ModeratorActions
from gateways.posting import Poster
from schemas.codec import AvroCodec
from schemas.records import LiveEvent, UserProfile

CHECK_TIMEOUT_S: Final = 2.0
SYNC_FRESH_S: Final = 0.25


class Backends:
    """Connections to Redis, Cassandra, Kafka and the registry, and what is built on them."""

    def __init__(self, settings: Settings, api_id: str) -> None:
        self.settings = settings
        self.api_id = api_id
        self.backbone = Backbone(settings)
        self.services = Services(api_id)
        self.backbone.add_to(self.services)
        self.services.add("state writer", self._start_writer)
        self.services.add("kafka admin", self._start_admin)
        self.services.add("poster and moderator actions", self._start_actions)
        self.writer: Any = None
        self.poster: Poster | None = None
        self.actions: ModeratorActions | None = None
        self.admin: Any = None
        self._sync: asyncio.Task[bool] | None = None
        self._synced_at = float("-inf")

    # The backbone's connections, under the names the routes have always used.
    @property
    def redis(self) -> Any:
        return self.backbone.redis

    @property
    def store(self) -> Any:
        return self.backbone.store

    @property
    def codec(self) -> AvroCodec | None:
        return self.backbone.codec

    @property
    def producer(self) -> Any:
        return self.backbone.producer

    @property
    def state(self) -> Any:
        return self.backbone.state

    async def start(self) -> None:
        await self.services.start()

    async def stop(self) -> None:
        await self.services.stop()

    async def _start_writer(self) -> None:
        from connectors.state_writer import StateWriter

        assert self.codec is not None
        self.writer = StateWriter(self.settings, self.codec)

    async def _start_admin(self) -> None:
        from connectors.kafka_admin import admin_client

        self.admin = admin_client(self.settings.bootstrap_servers)

    async def _start_actions(self) -> None:
        s = self.settings
        assert self.codec is not None
        self.poster = Poster.for_edge(s, self.backbone, self.api_id)
        self.actions = ModeratorActions.for_edge(
            self.backbone, event=self.latest_event, user=self.latest_user, written=self.synced
        )

    async def event(self, event_id: str) -> LiveEvent | None:
        """The event's current settings; one catch-up with events.settings if unknown."""
        event: LiveEvent | None = self.state.event(event_id)
        if event is None:
            await self.catch_up()
            event = self.state.event(event_id)
        return None if event is None or event.deleted else event

    async def synced(self) -> None:
        """Up to the end of events.settings and users.profiles (read your writes)."""
        await self.state.sync(timeout_s=5.0)

    async def latest_event(self, event_id: str) -> LiveEvent | None:
        """The event as last written, for a read-modify-write of its settings."""
        await self.synced()
        event: LiveEvent | None = self.state.event(event_id)
        return None if event is None or event.deleted else event

    async def latest_user(self, user_id: str) -> UserProfile | None:
        """The user's profile as last written: a ban must not undo a timeout set a
        moment ago by another process."""
        await self.synced()
        user: UserProfile | None = self.state.user(user_id)
        return user

    async def catch_up(self) -> None:
        """Read events.settings up to its end. Requests for unknown events share one
        catch-up, and one that ended within ``SYNC_FRESH_S`` counts: a flood of made-up
        event ids must not become a flood of offset requests to Kafka."""
        loop = asyncio.get_running_loop()
        if self._sync is None:
            if loop.time() - self._synced_at < SYNC_FRESH_S:
                return
            self._sync = loop.create_task(self.state.sync(timeout_s=2.0))
        task = self._sync
        try:
            await asyncio.shield(task)
        finally:
            if self._sync is task and task.done():
                self._sync = None
                self._synced_at = loop.time()

    async def checks(self) -> dict[str, str]:
        """Each server the API needs: "ok" or what failed."""

        async def kafka() -> None:
            await asyncio.to_thread(self.admin.list_topics, timeout=CHECK_TIMEOUT_S)

        async def cassandra() -> None:
            # The store retries reads until they succeed: the deadline is ours.
            await self.store.before("readyz-probe", 1, 1)

        async def redis() -> None:
            await self.redis.ping()

        async def one(check: Callable[[], Awaitable[None]]) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_S + 1)
            except TimeoutError:
                return "timeout"
            except Exception as e:
                return f"{type(e).__name__}: {e}"
            return "ok"

        names = ("kafka", "cassandra", "redis")
        results = await asyncio.gather(one(kafka), one(cassandra), one(redis))
        found = dict(zip(names, results, strict=True))
        found["state"] = "ok" if self.state.ready.is_set() else "loading events.settings"
        return found
