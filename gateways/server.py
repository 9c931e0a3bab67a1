"""The WebSocket gateway: the I/O shell around ``gateways/protocol.py``.

    livecomments gateway [--port 8765] [--processes N]

One process serves WebSocket connections (subprotocol ``livecomments.v1``) and, on the
same port, ``GET /metrics`` (Prometheus) and ``GET /healthz``. It keeps no state that
matters: a viewer who loses it reconnects anywhere and resumes with ``since``.

With ``--processes N`` (``gateway_processes``) a small supervisor runs N such processes
on the one port (``SO_REUSEPORT``: the kernel spreads new connections over them), each
with its own open-files limit and event loop, each its own gateway to presence
(``gateway_id/k``); it forwards SIGTERM/SIGINT (each child drains) and starts again a
child that dies.

What runs in a gateway process:

- one handler task per connection: frames → :class:`~gateways.protocol.Session` →
  requests (join, leave, mode, post, moderate) carried out here; frames are written
  straight to the connection's transport, whose write buffer is the backpressure
  (``gateways/fanout.py`` has the slow-consumer policy);
- the live reader (:class:`~gateways.fanout.Hub`): one blocking ``XREAD`` at a time
  over the streams of every event with local viewers, read again as soon as it returns;
- a 1 s sweep enforcing the sessions' deadlines (auth, token expiry, idle);
- presence: counts to Redis and to viewers every ``gateway_presence_interval_s``;
- the events/users state (``connectors/state_reader.py``) for event checks and posting (a
  timed-out or banned user is refused at once, from the profile it follows);
- moderators' actions through :class:`~gateways.moderation.ModeratorActions`, the
  service the HTTP API uses too.

Shutdown (SIGTERM or SIGINT) is a drain, in the manner of uvicorn: stop accepting,
tell every viewer to reconnect after a random delay, close the stragglers with 1001 at
``gateway_drain_s``, abort what is still open ``gateway_force_close_s`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import signal
import time
from collections import deque
from http import HTTPStatus
from typing import Any, Final

from prometheus_client import generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from connectors.kafka_producer import OutputProducer
from connectors.services import Backbone, Services
from connectors.topics import COMMENTS_PUBLISHED
from deploy.settings import Settings
from gateways import metrics as M
from gateways import protocol as P
from gateways.auth import TokenVerifier
from gateways.fanout import Hub, build_frames, wire
from gateways.history import History, ReplayTier, id_key
from gateways.moderation import ModerationError, ModeratorActions
from gateways.posting import Poster, PostError, pending_view
from gateways.presence import Presence
from schemas.clock import now_ms
from schemas.codec import AvroCodec

log = logging.getLogger(__name__)


class Connection:
    """One viewer's connection: session, subscriptions, and writes straight to its
    transport (no queue, no writer task: ``gateways/fanout.py``)."""

    __slots__ = (
        "__weakref__",
        "_closing",
        "_posted_order",
        "gateway",
        "pinged_at",
        "posted",
        "session",
        "ws",
    )

    def __init__(self, gateway: Gateway, ws: ServerConnection, session: P.Session) -> None:
        self.gateway = gateway
        self.ws = ws
        self.session = session
        # Made on a viewer's first post: most viewers never post.
        self.posted: set[str] = _NO_POSTS
        self._posted_order: deque[str] | None = None
        self._closing: asyncio.Task[None] | None = None
        self.pinged_at = 0.0

    @property
    def closed(self) -> bool:
        return self.ws.protocol.state is not State.OPEN

    @property
    def user_id(self) -> str:
        return self.session.identity.user_id if self.session.identity else ""

    @property
    def viewer_id(self) -> str | None:
        identity = self.session.identity
        return None if identity is None or identity.anonymous else identity.user_id

    # -- the Viewer protocol of the hub --------------------------------------------------

    def buffered(self) -> int:
        transport = self.ws.transport
        # The transport closes (an abort, a reset) a moment before websockets' state
        # says so: both are checked, so a write never reaches a closed handle.
        if transport.is_closing() or self.ws.protocol.state is not State.OPEN:
            return -1
        return int(transport.get_write_buffer_size())

    def write(self, data: bytes) -> None:
        # A whole frame, unfragmented, from the event loop's one thread: it cannot
        # interleave with websockets' own control frames (pings, close).
        transport = self.ws.transport
        if self.ws.protocol.state is State.OPEN and not transport.is_closing():
            try:
                transport.write(data)
            except (RuntimeError, OSError) as e:  # closed under us: its handler cleans up
                log.debug("write to a closing connection: %s", e)

    def write_below(self, data: bytes, limit: int) -> bool:
        ws = self.ws
        transport = ws.transport
        if (
            ws.protocol.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() >= limit
        ):
            return False
        try:
            transport.write(data)
        except (RuntimeError, OSError) as e:  # closed under us: its handler cleans up
            log.debug("write to a closing connection: %s", e)
            return False
        return True

    def close_slow(self) -> None:
        self.session.fail(P.CLOSE_SLOW_CONSUMER, "slow_consumer", P.error("slow_consumer"))
        self.flush()

    # -- replies -------------------------------------------------------------------------

    def reply(self, frame: str, kind: str = "reply") -> None:
        """A reply or notice: written even over the buffer limit (it is small and owed)."""
        data = wire(frame.encode())
        if self.ws.protocol.state is State.OPEN:
            self.write(data)
            M.frames_out.labels(kind).inc()
            M.bytes_out.inc(len(data))

    def flush(self) -> None:
        """Write the session's frames; close if the session says so."""
        for frame in self.session.data_to_send():
            kind = "error" if frame.startswith('{"type":"error"') else "reply"
            if kind == "error":
                code = json.loads(frame).get("code", "")
                M.errors_sent.labels(code).inc()
                if code in ("bad_token", "token_expired", "auth_timeout"):
                    M.auth_failures.labels(code).inc()
            self.reply(frame, kind)
        if self.session.close_code is not None:
            self.close()

    def close(self) -> None:
        """Close with the session's code, once (what was written goes first)."""
        if self._closing is None and self.session.close_code is not None:
            M.closes.labels(str(self.session.close_code)).inc()
            self._closing = asyncio.ensure_future(
                self.ws.close(self.session.close_code, self.session.close_reason)
            )

    def remember_post(self, comment_id: str) -> None:
        if self._posted_order is None:
            self.posted, self._posted_order = set(), deque()
        self.posted.add(comment_id)
        self._posted_order.append(comment_id)
        if len(self._posted_order) > 200:
            self.posted.discard(self._posted_order.popleft())


_PING: Final = b"hb"  # the heartbeat's ping payload; one ping in flight per connection
_NO_POSTS: Final[set[str]] = set()  # shared and never written: see remember_post


class Gateway:
    """Config plus server: build from settings, ``await start()``, ``await drain()``."""

    def __init__(
        self, settings: Settings, *, port: int | None = None, child: int | None = None
    ) -> None:
        self.settings = settings
        self.port = settings.gateway_port if port is None else port
        self.gateway_id = settings.gateway_id or f"{settings.host}:{self.port}"
        # One of several processes on the port (``--processes``): each its own gateway.
        self.reuse_port = child is not None
        if child is not None:
            self.gateway_id = f"{self.gateway_id}/{child}"
        self.verifier = TokenVerifier.from_settings(settings)
        self.limits = P.Limits(
            max_message_bytes=settings.gateway_max_message_bytes,
            auth_timeout_ms=int(settings.gateway_auth_timeout_s * 1000),
            idle_timeout_ms=int(settings.gateway_idle_timeout_s * 1000),
            posts_per_minute=settings.posts_per_minute,
        )
        self.post_rate = P.PostRate(settings.posts_per_minute)
        self.connections: set[Connection] = set()
        self.draining = False
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.redis: Any = None
        self.store: Any = None
        self.state: Any = None
        self.producer: OutputProducer | None = None
        self.codec: AvroCodec | None = None
        self.services: Services | None = None
        self.hub: Hub | None = None
        self.history: History | None = None
        self.poster: Poster | None = None
        self.presence: Presence | None = None
        self.moderation: ModeratorActions | None = None
        self.stopped = asyncio.Event()
        self._all_gone = asyncio.Event()

    async def start(self) -> None:
        """Connect to Redis, Cassandra, Kafka and the registry, then listen."""
        s = self.settings
        # Redis: bounded and blocking, a flood of joins waits for a connection instead of
        # opening thousands (Redis refuses past maxclients; the pool raised). 64 ran dry
        # in the drills' reconnect storms (hundreds of joins answered `unavailable`).
        backbone = Backbone(s, redis_connections=s.gateway_redis_connections)
        self.services = Services(f"gateway {self.gateway_id}")
        backbone.add_to(self.services)
        await self.services.start()
        self.redis, self.codec, self.store = backbone.redis, backbone.codec, backbone.store
        self.producer, self.state = backbone.producer, backbone.state
        assert self.codec is not None
        self.history = History(
            self.redis,
            self.store,
            backlog=s.gateway_backlog,
            recovery_max=s.gateway_recovery_max,
            replay=ReplayTier(s.bootstrap_servers, self.codec, COMMENTS_PUBLISHED),
        )
        self.hub = Hub(
            self.redis,
            self.history,
            tick_ms=s.gateway_tick_ms,
            recent_s=s.gateway_recent_s,
            top_per_s=s.gateway_top_per_s,
            slow_disconnect_s=s.gateway_slow_disconnect_s,
            hot_rate_of=self._hot_rate_of,
            coalesce_above_per_s=s.gateway_coalesce_above_per_s,
            write_buffer_bytes=s.gateway_write_buffer_bytes,
        )
        self.poster = Poster.for_edge(s, backbone, self.gateway_id)
        self.presence = Presence(self.redis, self.gateway_id, s.gateway_presence_interval_s)
        self.moderation = ModeratorActions.for_edge(
            backbone,
            event=self._latest_event,
            user=self._latest_user,
            # This gateway reads its own write: a timed-out user's next post here is
            # refused at once (the others follow users.profiles within a fraction of a s).
            written=self._state_synced,
        )
        self._server = await serve(
            self._handle,
            s.host,
            self.port,
            subprotocols=[Subprotocol(P.SUBPROTOCOL)],
            # Per-connection deflate would compress the same frame once per viewer.
            compression=None,
            process_request=self._http,
            open_timeout=s.gateway_handshake_timeout_s,
            # One heartbeat loop for every connection (_heartbeat), not a task each.
            ping_interval=None,
            ping_timeout=None,
            close_timeout=2,
            max_size=s.gateway_max_message_bytes,
            # Clients send a few small requests: a short incoming queue is memory saved
            # per connection (frames out bypass websockets' send buffer, see Connection).
            max_queue=4,
            reuse_port=self.reuse_port,
        )
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="live-reader"),
            asyncio.create_task(self._sweep(), name="deadlines"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._presence_loop(), name="presence"),
        ]
        log.info("gateway %s listening on %s:%s", self.gateway_id, s.host, self.port)

    async def _state_synced(self) -> bool:
        synced: bool = await self.state.sync(timeout_s=2.0)
        return synced

    async def _latest_event(self, event_id: str) -> Any:
        # A moderator's change starts from the latest record, not a stale one.
        await self._state_synced()
        return self.state.event(event_id)

    async def _latest_user(self, user_id: str) -> Any:
        await self._state_synced()
        return self.state.user(user_id)

    def _hot_rate_of(self, event_id: str) -> float:
        event = self.state.event(event_id) if self.state else None
        return float(event.hot_rate_per_s) if event is not None else 100.0

    # -- HTTP on the same port -----------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            return connection.respond(HTTPStatus.OK, generate_latest().decode())
        if path == "/healthz":
            body = json.dumps(
                {
                    "ok": not self.draining,
                    "gateway_id": self.gateway_id,
                    "connections": len(self.connections),
                    "pid": os.getpid(),
                    "events": len(self.hub.feeds) if self.hub else 0,
                }
            )
            status = HTTPStatus.SERVICE_UNAVAILABLE if self.draining else HTTPStatus.OK
            return connection.respond(status, body + "\n")
        if self.draining:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
        return None

    # -- one connection ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        if ws.subprotocol != P.SUBPROTOCOL:
            await ws.close(1002, f"subprotocol {P.SUBPROTOCOL} required")
            return
        session = P.Session(
            self.verifier.verify,
            self.gateway_id,
            now_ms(),
            limits=self.limits,
            post_rate=self.post_rate,
        )
        conn = Connection(self, ws, session)
        self.connections.add(conn)
        M.connections_total.labels(self.gateway_id).inc()
        M.websocket_connections_by_server.labels(self.gateway_id).set(len(self.connections))
        try:
            async for message in ws:
                M.frames_in.inc()
                if isinstance(message, str):
                    session.receive_text(message, now_ms())
                else:
                    session.receive_binary(message, now_ms())
                for request in session.events_received():
                    await self._carry_out(conn, request)
                conn.flush()
                if session.close_code is not None:
                    break
            if session.close_code is not None:
                conn.close()
                closing = conn._closing
                if closing is not None:
                    with contextlib.suppress(TimeoutError, ConnectionClosed):
                        await asyncio.wait_for(asyncio.shield(closing), 5)
        except ConnectionClosed:
            pass
        finally:
            assert self.hub is not None
            for event_id in list(session.events):
                self.hub.unsubscribe(conn, event_id)
            self.connections.discard(conn)
            if not self.connections:
                self._all_gone.set()
            M.websocket_connections_by_server.labels(self.gateway_id).set(len(self.connections))

    async def _carry_out(self, conn: Connection, request: P.Request) -> None:
        if isinstance(request, P.Join):
            await self._join(conn, request)
        elif isinstance(request, P.Post):
            await self._post(conn, request)
        elif isinstance(request, P.Leave):
            assert self.hub is not None
            self.hub.unsubscribe(conn, request.event_id)
            conn.reply(P.left(request.event_id, request.request_id))
        elif isinstance(request, P.SetMode):
            assert self.hub is not None
            hot = self.hub.set_mode(conn, request.event_id, request.mode)
            conn.reply(P.mode_set(request.event_id, request.mode, hot, request.request_id))
        elif isinstance(request, P.Moderate):
            await self._moderate(conn, request)

    async def _join(self, conn: Connection, req: P.Join) -> None:
        assert self.hub and self.history and self.state
        event = self.state.event(req.event_id)
        if event is None:
            await self.state.sync(timeout_s=2.0)
            event = self.state.event(req.event_id)
        if event is None or event.deleted:
            conn.session.left_event(req.event_id)
            conn.reply(P.error("event_not_found", request_id=req.request_id, event_id=req.event_id))
            return
        if req.identity.anonymous and not event.anonymous_read:
            conn.session.left_event(req.event_id)
            conn.reply(
                P.error(
                    "not_authorized",
                    "this event is not open to anonymous viewers; send a token",
                    request_id=req.request_id,
                    event_id=req.event_id,
                )
            )
            return
        # A second join of the same event resumes again (after a gap notice, say).
        self.hub.unsubscribe(conn, req.event_id)
        try:
            feed = await self.hub.subscribe(conn, req.event_id, req.mode)
            upto = feed.cursor
            if req.since is None:
                # Viewers arriving together share one read (a flood of joins).
                history = self.history
                recovery = await feed.shared_backlog(
                    upto, lambda: history.recent(req.event_id, upto)
                )
            else:
                recovery = await self.history.resume(
                    req.event_id, req.since.epoch, req.since.position, upto, feed.cache
                )
        except Exception as e:
            log.warning("join %s failed: %s: %s", req.event_id, type(e).__name__, e)
            self.hub.unsubscribe(conn, req.event_id)
            conn.session.left_event(req.event_id)
            conn.reply(P.error("unavailable", request_id=req.request_id, event_id=req.event_id))
            return
        M.count_tiers(recovery.tiers)
        if req.since is not None:
            M.resumes.labels("complete" if recovery.complete else "incomplete").inc()
        # Shadow comments go to their author alone (the shared backlog has them all).
        recovery = recovery.for_viewer(conn.viewer_id)
        frames = build_frames(req.event_id, recovery.entries)
        for frame in frames:  # owed: written whatever the buffer holds
            conn.write(frame.data)
        M.deliveries.inc(sum(f.comments for f in frames))
        delivered = max([id_key(upto), *(f.last for f in frames)])
        conn.reply(
            P.joined(
                req.event_id,
                epoch=recovery.epoch,
                position=recovery.position,
                recovered=sum(f.comments for f in frames),
                complete=recovery.complete,
                truncated=recovery.truncated,
                mode=req.mode,
                hot=feed.hot,
                request_id=req.request_id,
                reason=recovery.reason,
            )
        )
        if recovery.truncated:
            # Not live yet: the client pages on with `since` = this reply's position.
            self.hub.unsubscribe(conn, req.event_id)
            conn.session.left_event(req.event_id)
            return
        self.hub.go_live(conn, req.event_id, delivered, recovery.epoch, recovery.position)

    async def _post(self, conn: Connection, req: P.Post) -> None:
        assert self.poster is not None
        started = time.perf_counter()
        try:
            posted = await self.poster.submit(
                req.identity, req.event_id, req.text, nonce=req.nonce, reply_to=req.reply_to
            )
        except PostError as e:
            M.posts.labels(e.code).inc()
            conn.reply(
                P.error(
                    e.code,
                    e.message,
                    request_id=req.request_id,
                    event_id=req.event_id,
                    retry_after_ms=e.retry_after_ms,
                )
            )
            return
        M.posts.labels("duplicate" if posted.duplicate else "acked").inc()
        M.post_seconds.observe(time.perf_counter() - started)
        c = posted.comment
        conn.remember_post(c.comment_id)
        ack = P.ack(c.event_id, c.comment_id, c.client_nonce, posted.duplicate, req.request_id)
        conn.reply(ack)
        if not posted.duplicate:
            conn.reply(P.pending(pending_view(c, req.identity)))

    async def _moderate(self, conn: Connection, req: P.Moderate) -> None:
        assert self.moderation is not None
        event_id = req.params.get("event_id")
        method, kwargs = service_call(req.action, req.params)
        try:
            result = await getattr(self.moderation, method)(req.identity, **kwargs)
        except ModerationError as e:
            M.moderations.labels(req.action, e.code).inc()
            conn.reply(P.error(e.code, e.message, request_id=req.request_id, event_id=event_id))
            return
        except Exception as e:
            log.warning("moderate %s failed: %s: %s", req.action, type(e).__name__, e)
            M.moderations.labels(req.action, "unavailable").inc()
            conn.reply(P.error("unavailable", request_id=req.request_id, event_id=event_id))
            return
        M.moderations.labels(req.action, "done").inc()
        conn.reply(P.moderated(req.action, result, req.request_id))

    # -- periodic ------------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = now_ms()
            for conn in list(self.connections):
                conn.session.tick(now)
                conn.flush()

    async def _heartbeat(self) -> None:
        """Ping every connection each ``gateway_ping_interval_s``; abort one whose pong
        is ``gateway_ping_timeout_s`` late (a dead peer). websockets would run a task per
        connection for this; one loop over them all costs a few bytes each instead."""
        s = self.settings
        interval, timeout = s.gateway_ping_interval_s, s.gateway_ping_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, interval / 4))
            now = loop.time()
            for conn in list(self.connections):
                ws = conn.ws
                if ws.protocol.state is not State.OPEN or ws.transport.is_closing():
                    continue
                pending = ws.pending_pings.get(_PING)
                if pending is not None:
                    if now - pending[1] > timeout:
                        log.debug("heartbeat: no pong in %.0fs; aborting", timeout)
                        M.closes.labels("ping_timeout").inc()
                        ws.transport.abort()
                    continue
                if now - conn.pinged_at >= interval:
                    # websockets matches the pong to this entry (acknowledge_pings).
                    ws.pending_pings[_PING] = (loop.create_future(), now)
                    ws.protocol.send_ping(_PING)
                    try:
                        ws.send_data()
                    except (RuntimeError, OSError) as e:  # closed under us
                        log.debug("heartbeat to a closing connection: %s", e)
                    conn.pinged_at = now

    async def _presence_loop(self) -> None:
        assert self.hub and self.presence
        interval = self.settings.gateway_presence_interval_s
        last_sent: dict[str, int] = {}
        while True:
            await asyncio.sleep(interval)
            counts = {e: len(f.subs) for e, f in self.hub.feeds.items()}
            try:
                totals = await self.presence.report(counts)
            except Exception as e:
                log.warning("presence: %s: %s", type(e).__name__, e)
                continue
            for event_id, total in totals.items():
                if last_sent.get(event_id) != total:
                    self.hub.broadcast(event_id, P.presence(event_id, total).encode(), "presence")
                    last_sent[event_id] = total
            for event_id in list(last_sent):
                if event_id not in totals:
                    del last_sent[event_id]

    # -- shutdown ------------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop accepting; viewers reconnect elsewhere with jitter; 1001; force."""
        if self.draining:
            return
        self.draining = True
        s = self.settings
        log.info("draining %d connections", len(self.connections))
        assert self._server is not None
        # 1. Stop accepting (the listening socket closes; handshakes in flight get 503).
        self._server.close(close_connections=False)
        # 2. Tell every viewer to reconnect, each after a random delay within the
        #    window, so they do not all land on the other gateways at once.
        window_ms = int(s.gateway_drain_s * 1000 * 0.8)
        for conn in list(self.connections):
            conn.reply(P.reconnect(random.randint(0, window_ms), "draining"), "reconnect")
        # 3. Wait for them to go, up to the drain time.
        await self._until_no_connections(s.gateway_drain_s)
        # 4. Close the rest with 1001 (their writers flush first).
        for conn in list(self.connections):
            conn.session.fail(P.CLOSE_GOING_AWAY, "draining")
            conn.close()
        await self._until_no_connections(s.gateway_force_close_s)
        # 5. Abort whatever is still open.
        for conn in list(self.connections):
            conn.ws.transport.abort()
        log.info("drained; stopping")
        await self.stop()
        log.info("stopped")

    async def _until_no_connections(self, timeout_s: float) -> None:
        self._all_gone.clear()
        if not self.connections:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_gone.wait(), timeout_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.presence is not None:
            with contextlib.suppress(Exception):
                await self.presence.withdraw()
        if self._server is not None:
            self._server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self.services is not None:
            await self.services.stop()  # what started, in reverse
        self.stopped.set()


def service_call(action: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The :class:`~gateways.moderation.ModeratorActions` method and keyword arguments
    (after the acting identity) that carry out a ``moderate`` request's ``action``."""
    if action in ("approve", "reject"):
        return "review", {**params, "decision": action}
    if action == "slow_mode":
        return "event_settings", {"event_id": params["event_id"], "slow_mode_s": params["seconds"]}
    if action == "strictness":
        strictness = params["strictness"]
        return "event_settings", {"event_id": params["event_id"], "strictness": strictness}
    return action, dict(params)


def _hung(after_s: float) -> None:
    log.error("shutdown did not finish %.0fs after SIGTERM; exiting anyway", after_s)
    logging.shutdown()
    os._exit(70)


async def serve_until_signalled(
    settings: Settings, port: int | None = None, child: int | None = None
) -> None:
    gateway = Gateway(settings, port=port, child=child)
    await gateway.start()
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if not draining:
            draining.append(loop.create_task(gateway.drain()))
            # The process must end even if a client library hangs in its shutdown.
            limit = settings.gateway_drain_s + settings.gateway_force_close_s + 15
            loop.call_later(limit, _hung, limit)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    print(f"gateway {gateway.gateway_id}: ws://{settings.host}:{gateway.port}/ ", flush=True)
    await gateway.stopped.wait()


def raise_open_files() -> int:
    """Raise this process's open-files limit to its hard limit (one descriptor per
    connection); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(
    settings: Settings,
    port: int | None = None,
    loglevel: str = "info",
    *,
    processes: int | None = None,
    child: int | None = None,
) -> int:
    """``livecomments gateway``: serve until SIGTERM/SIGINT, then drain."""
    import uvloop

    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("aiokafka", "cassandra", "websockets", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    raise_open_files()
    n = settings.gateway_processes if processes is None else processes
    if child is None and n > 1:
        return supervise(n, port or settings.gateway_port, loglevel)
    uvloop.run(serve_until_signalled(settings, port, child))
    return 0


def supervise(processes: int, port: int, loglevel: str, restart_after_s: float = 1.0) -> int:
    """Run ``processes`` gateways on ``port`` (SO_REUSEPORT) until SIGTERM/SIGINT, which
    each child gets (and drains on); a child that dies otherwise is started again."""
    import subprocess
    import sys

    def spawn(k: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "deploy.cli", "gateway", "--port", str(port)]
        return subprocess.Popen([*cmd, "--child", str(k), "-l", loglevel])

    children = {k: spawn(k) for k in range(processes)}
    stopping: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        for proc in children.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pids = " ".join(str(p.pid) for p in children.values())
    print(f"gateway supervisor {os.getpid()}: {processes} processes on port {port}: {pids}")
    sys.stdout.flush()
    while True:
        for k, proc in list(children.items()):
            code = proc.poll()
            if code is None:
                continue
            if stopping:
                del children[k]
            else:
                log.warning("gateway process %d exited with %s; starting it again", k, code)
                time.sleep(restart_after_s)
                children[k] = spawn(k)
        if not children:
            return 0
        time.sleep(0.2)
