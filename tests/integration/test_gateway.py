"""The WebSocket gateway against the real stack: real gateway processes, real workers,
real WebSocket clients. Every test uses events of its own."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
from support import Client, GatewayProcess, start_gateway, text, token
from websockets.exceptions import ConnectionClosed

from connectors.redis_streams import stream_key
from connectors.state_writer import StateWriter
from deploy.processes import Worker
from deploy.settings import Settings
from gateways.auth import mint_token
from schemas.codec import AvroCodec
from schemas.records import UserProfile


def test_posted_comments_reach_every_viewer_of_the_event_in_one_order_on_two_gateways(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    other_event = new_event()

    async def scenario() -> None:
        a = await Client.open(gateways[0].url, token(settings, "viewer-a"))
        b = await Client.open(gateways[1].url)  # anonymous
        poster = await Client.open(gateways[0].url, token(settings, "poster"))
        bystander = await Client.open(gateways[1].url, token(settings, "bystander"))
        for c in (a, b, poster):
            joined = await c.join(event_id)
            assert joined["type"] == "joined" and joined["complete"] is True
        await bystander.join(other_event)
        acks = []
        for i in range(20):
            reply = await poster.post(event_id, text(i), nonce=f"n-{i}")
            assert reply["type"] == "ack", reply
            acks.append(reply["comment_id"])
        assert acks == sorted(acks), "comment ids are time-ordered"
        # `pending` is the frame after the `ack`: the client may not have read it yet.
        await poster.wait_for(
            lambda f: f["type"] == "pending" and f["comment"]["comment_id"] == acks[-1]
        )
        pending = [f for f in poster.frames if f["type"] == "pending"]
        assert [p["comment"]["comment_id"] for p in pending] == acks
        assert all(p["comment"]["pending"] is True for p in pending)
        for c in (a, b, poster):
            await c.wait_for(lambda _f, c=c: len(c.comments(event_id)) >= 20, within_s=180)
        orders = [[x["comment_id"] for x in c.comments(event_id)] for c in (a, b, poster)]
        assert orders[0] == orders[1] == orders[2] == acks
        positions = [x["position"] for x in a.comments(event_id)]
        assert positions == sorted(positions)
        prevs = [x["previous_position"] for x in a.comments(event_id)]
        assert prevs == [None, *positions[:-1]]
        assert bystander.comments(event_id) == []
        for c in (a, b, poster, bystander):
            await c.close()

    asyncio.run(scenario())


def test_resume_with_since_on_another_gateway_receives_exactly_the_missed_comments(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()

    async def scenario() -> None:
        viewer = await Client.open(gateways[0].url, token(settings, "resumer"))
        poster = await Client.open(gateways[1].url, token(settings, "poster-2"))
        await viewer.join(event_id)
        for i in range(5):
            assert (await poster.post(event_id, text(i)))["type"] == "ack"
        await viewer.wait_for(lambda _f: len(viewer.comments(event_id)) >= 5, within_s=180)
        last = viewer.comments(event_id)[-1]
        await viewer.close()

        missed = [(await poster.post(event_id, text(100 + i)))["comment_id"] for i in range(7)]
        # Wait until the pipeline published them (the poster's own view shows that).
        await poster.join(event_id)
        await poster.wait_for(
            lambda _f: missed[-1] in {x["comment_id"] for x in poster.comments(event_id)},
            within_s=180,
        )

        back = await Client.open(gateways[1].url, token(settings, "resumer"))
        joined = await back.join(
            event_id, since={"epoch": last["epoch"], "position": last["position"]}
        )
        assert joined["type"] == "joined"
        assert joined["complete"] is True
        assert joined["recovered"] == 7
        got = [x["comment_id"] for x in back.comments(event_id)]
        assert got == missed, "exactly the missed comments, in order, nothing twice"
        assert back.comments(event_id)[0]["previous_position"] == last["position"]

        live = (await poster.post(event_id, text(200)))["comment_id"]
        await back.wait_for(
            lambda _f: live in {x["comment_id"] for x in back.comments(event_id)}, within_s=180
        )
        got = [x["comment_id"] for x in back.comments(event_id)]
        assert got == [*missed, live]
        for c in (back, poster):
            await c.close()

    asyncio.run(scenario())


def test_resume_reads_cassandra_when_the_redis_stream_lost_the_range(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()

    async def scenario() -> None:
        poster = await Client.open(gateways[0].url, token(settings, "poster-3"))
        await poster.join(event_id)
        for i in range(12):
            assert (await poster.post(event_id, text(i)))["type"] == "ack"
        await poster.wait_for(lambda _f: len(poster.comments(event_id)) >= 12, within_s=180)
        all_comments = poster.comments(event_id)
        await poster.close()
        # The live tier loses this event's history (as after a Redis restart without
        # its last writes); Cassandra still has every comment.
        r = redis.Redis.from_url(settings.redis_address)
        r.delete(stream_key(event_id))
        r.close()
        since = all_comments[3]
        viewer = await Client.open(gateways[1].url, token(settings, "late"))
        joined = await viewer.join(
            event_id, since={"epoch": since["epoch"], "position": since["position"]}
        )
        assert joined["complete"] is True
        got = [x["comment_id"] for x in viewer.comments(event_id)]
        assert got == [x["comment_id"] for x in all_comments[4:]]
        await viewer.close()

    asyncio.run(scenario())


def test_resume_reads_kafka_when_redis_and_cassandra_both_lack_the_range(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    from cassandra.cluster import Cluster

    event_id = new_event()

    async def scenario() -> None:
        poster = await Client.open(gateways[0].url, token(settings, "poster-k"))
        await poster.join(event_id)
        for i in range(8):
            assert (await poster.post(event_id, text(500 + i)))["type"] == "ack"
        await poster.wait_for(lambda _f: len(poster.comments(event_id)) >= 8, within_s=180)
        all_comments = poster.comments(event_id)
        await poster.close()
        # The live tier lost the event, and the permanent tier never got it (as if
        # Cassandra were behind): only comments.published, the replay tier, has it.
        r = redis.Redis.from_url(settings.redis_address)
        r.delete(stream_key(event_id))
        r.close()
        cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
        session = cluster.connect(settings.cassandra_keyspace)
        for row in session.execute(
            "SELECT bucket FROM comment_buckets_by_event WHERE event_id = %s", (event_id,)
        ):
            session.execute(
                "DELETE FROM comments_by_event WHERE event_id = %s AND bucket = %s",
                (event_id, row.bucket),
            )
        cluster.shutdown()

        since = all_comments[1]
        viewer = await Client.open(gateways[1].url, token(settings, "from-kafka"))
        joined = await viewer.join(
            event_id, since={"epoch": since["epoch"], "position": since["position"]}
        )
        got = viewer.comments(event_id)
        assert [x["comment_id"] for x in got] == [x["comment_id"] for x in all_comments[2:]]
        assert [x["text"] for x in got] == [x["text"] for x in all_comments[2:]]
        assert joined["complete"] is True
        await viewer.close()

    asyncio.run(scenario())


def test_a_retraction_reaches_viewers_as_its_own_frame(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    from confluent_kafka import Producer

    from connectors.kafka_clients import producer_config
    from connectors.topics import COMMENTS_RETRACTED
    from schemas.records import CommentRetracted

    event_id = new_event()
    codec = AvroCodec(settings)
    codec.register_all()

    async def scenario() -> None:
        viewer = await Client.open(gateways[1].url, token(settings, "watcher"))
        poster = await Client.open(gateways[0].url, token(settings, "regretful"))
        await viewer.join(event_id)
        posted = await poster.post(event_id, text(600))
        await viewer.wait_for(lambda _f: len(viewer.comments(event_id)) == 1, within_s=180)
        shown = viewer.comments(event_id)[0]
        producer = Producer(producer_config(settings))
        producer.produce(
            COMMENTS_RETRACTED,
            key=event_id.encode(),
            value=codec.encode(
                COMMENTS_RETRACTED,
                CommentRetracted(
                    event_id=event_id,
                    comment_id=posted["comment_id"],
                    user_id="regretful",
                    position=shown["position"],
                    reason="spam",
                    actor="moderator-1",
                    retracted_at=int(time.time() * 1000),
                ),
            ),
        )
        assert producer.flush(30) == 0
        frame = await viewer.wait_for(lambda f: f["type"] == "retracted", within_s=180)
        assert frame["items"][0]["comment_id"] == posted["comment_id"]
        assert frame["items"][0]["position"] == shown["position"]
        for c in (viewer, poster):
            await c.close()

    asyncio.run(scenario())


def test_a_repeated_nonce_gets_the_same_comment_id_and_is_published_once(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()

    async def scenario() -> None:
        poster = await Client.open(gateways[0].url, token(settings, "retrier"))
        await poster.join(event_id)
        first = await poster.post(event_id, "only once, really", nonce="same-nonce")
        again = await poster.post(event_id, "only once, really", nonce="same-nonce")
        elsewhere = await Client.open(gateways[1].url, token(settings, "retrier"))
        third = await elsewhere.post(event_id, "only once, really", nonce="same-nonce")
        assert first["type"] == again["type"] == third["type"] == "ack"
        assert first["comment_id"] == again["comment_id"] == third["comment_id"]
        assert (first["duplicate"], again["duplicate"]) == (False, True)
        marker = (await poster.post(event_id, text(300)))["comment_id"]
        await poster.wait_for(
            lambda _f: marker in {x["comment_id"] for x in poster.comments(event_id)}, within_s=180
        )
        ids = [x["comment_id"] for x in poster.comments(event_id)]
        assert ids == [first["comment_id"], marker]
        for c in (poster, elsewhere):
            await c.close()

    asyncio.run(scenario())


def test_bad_input_gets_its_error_code_and_other_viewers_notice_nothing(
    settings: Settings,
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    open_event = new_event()
    private_event = new_event(anonymous_read=False)

    async def scenario() -> None:
        calm = await Client.open(gateways[0].url, token(settings, "calm"))
        await calm.join(open_event)

        c = await Client.open(gateways[0].url, token(settings, "noisy"))
        await c.ws.send("{not json")
        assert (await c.wait_for(lambda f: f["type"] == "error"))["code"] == "bad_json"
        await c.ws.send(b"\x00\x01")
        await c.wait_for(lambda f: f.get("code") == "binary_not_supported")
        await c.send({"type": "dance"})
        await c.wait_for(lambda f: f.get("code") == "unknown_type")
        await c.send({"type": "join"})
        await c.wait_for(lambda f: f.get("code") == "missing_field")
        reply = await c.join("no-such-event-" + uuid.uuid4().hex[:6])
        assert reply["code"] == "event_not_found"
        reply = await c.post(open_event, " \u200b ")
        assert reply["code"] == "empty_text"
        reply = await c.post(open_event, "x" * 600)
        assert reply["code"] == "text_too_long"
        assert (await c.join(open_event))["type"] == "joined"  # still up

        anon = await Client.open(gateways[1].url)
        reply = await anon.post(open_event, "hello")
        assert reply["code"] == "not_authorized"
        reply = await anon.join(private_event)
        assert reply["code"] == "not_authorized"
        await anon.close()

        forged = mint_token(settings.model_copy(update={"gateway_jwt_secret": "x" * 40}), "eve")
        bad = await Client.open(gateways[0].url, forged)
        assert (await bad.wait_for(lambda f: f["type"] == "error"))["code"] == "bad_token"
        assert (await bad.wait_closed())[0] == 4003

        expired = mint_token(settings, "late", ttl_s=-10)
        old = await Client.open(gateways[0].url, expired)
        assert (await old.wait_for(lambda f: f["type"] == "error"))["code"] == "token_expired"
        assert (await old.wait_closed())[0] == 4002

        big = await Client.open(gateways[0].url, token(settings, "big"))
        await big.ws.send(json.dumps({"type": "post", "event_id": open_event, "text": "x" * 5000}))
        assert (await big.wait_closed())[0] == 1009

        silent = await Client.open(gateways[0].url, auth=False)
        code, _ = await silent.wait_closed(within_s=15)
        assert code == 4001  # no auth within 5 s

        assert [f for f in calm.frames if f["type"] == "error"] == []
        await calm.send({"type": "ping", "id": "still-there"})
        await calm.wait_for(lambda f: f.get("id") == "still-there")
        for x in (calm, c):
            await x.close()

    asyncio.run(scenario())


def test_drain_tells_viewers_to_reconnect_then_closes_with_1001_and_loses_no_acked_comment(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    draining = start_gateway(
        settings, {"LIVECOMMENTS_GATEWAY_DRAIN_S": "3", "LIVECOMMENTS_GATEWAY_FORCE_CLOSE_S": "2"}
    )

    async def scenario() -> None:
        viewer = await Client.open(draining.url, token(settings, "drained"))
        poster = await Client.open(draining.url, token(settings, "drain-poster"))
        await viewer.join(event_id)
        acked: list[str] = []

        async def post_until_closed() -> None:
            i = 0
            # Under the per-user limit of 60 a minute: every ack must be publishable.
            while poster.closed is None and i < 50:
                try:
                    reply = await poster.post(event_id, text(i))
                except (AssertionError, ConnectionClosed):
                    return
                if reply["type"] == "ack":
                    acked.append(reply["comment_id"])
                    if len(acked) >= 5:
                        flowing.set()
                i += 1
                await asyncio.sleep(0.05)  # the pace of the posts, not a wait

        flowing = asyncio.Event()  # drain while posts flow
        posting = asyncio.create_task(post_until_closed())
        await asyncio.wait_for(flowing.wait(), 30)
        started = time.monotonic()
        draining.signal(signal.SIGTERM)
        notice = await viewer.wait_for(lambda f: f["type"] == "reconnect", within_s=10)
        assert 0 <= notice["after_ms"] <= 3000
        code, _ = await viewer.wait_closed(within_s=15)
        assert code == 1001
        assert time.monotonic() - started < 3 + 2 + 2
        await asyncio.wait([posting], timeout=15)
        assert acked, "some posts were acked before the drain"

        # Every acked comment is published (the live tier has each, once).
        r = redis.Redis.from_url(settings.redis_address)
        deadline = time.monotonic() + 180
        published: list[str] = []
        while time.monotonic() < deadline:
            entries = r.xrange(stream_key(event_id))
            published = [json.loads(f[b"data"])["comment_id"] for _, f in entries]
            if set(acked) <= set(published):
                break
            await asyncio.sleep(0.2)
        r.close()
        assert set(acked) <= set(published)
        assert len(published) == len(set(published))

    try:
        asyncio.run(scenario())
        try:
            draining.proc.wait(20)  # the drain ends the process by itself
        except subprocess.TimeoutExpired:
            tail = draining.log.read_text()[-3000:]
            pytest.fail(f"gateway still running after its drain: {tail}")
    finally:
        draining.stop()
    assert draining.proc.returncode == 0, draining.log.read_text()[-3000:]


def test_after_kill_9_of_its_gateway_a_viewer_resumes_on_another_gap_free(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    doomed = start_gateway(settings)

    async def scenario() -> None:
        viewer = await Client.open(doomed.url, token(settings, "survivor"))
        poster = await Client.open(gateways[0].url, token(settings, "poster-9"))
        await viewer.join(event_id)
        await poster.join(event_id)
        sent: list[str] = []
        for i in range(6):
            sent.append((await poster.post(event_id, text(400 + i)))["comment_id"])
        await viewer.wait_for(lambda _f: len(viewer.comments(event_id)) >= 3, within_s=180)
        doomed.signal(signal.SIGKILL)
        await viewer.wait_closed(within_s=30)
        seen = viewer.comments(event_id)
        for i in range(6, 12):
            sent.append((await poster.post(event_id, text(400 + i)))["comment_id"])
        await poster.wait_for(
            lambda _f: sent[-1] in {x["comment_id"] for x in poster.comments(event_id)},
            within_s=180,
        )
        back = await Client.open(gateways[1].url, token(settings, "survivor"))
        last = seen[-1]
        joined = await back.join(
            event_id, since={"epoch": last["epoch"], "position": last["position"]}
        )
        assert joined["complete"] is True
        resumed = [x["comment_id"] for x in back.comments(event_id)]
        assert [x["comment_id"] for x in seen] + resumed == sent
        for c in (back, poster):
            await c.close()

    try:
        asyncio.run(scenario())
    finally:
        doomed.stop()


def test_presence_counts_viewers_across_gateways_and_metrics_are_served(
    settings: Settings,
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()

    async def scenario() -> None:
        viewers = [
            await Client.open(gateways[i % 2].url, token(settings, f"p-{i}")) for i in range(5)
        ]
        for v in viewers:
            await v.join(event_id)
        # Within two presence intervals every viewer hears the total over both gateways.
        for v in viewers:
            await v.wait_for(lambda f: f["type"] == "presence" and f["viewers"] == 5, within_s=15)
        for v in viewers[:3]:
            await v.close()
        await viewers[3].wait_for(
            lambda f: f["type"] == "presence" and f["viewers"] == 2, within_s=15
        )
        for v in viewers[3:]:
            await v.close()

    asyncio.run(scenario())
    text_metrics = httpx.get(f"http://127.0.0.1:{gateways[0].port}/metrics", timeout=5).text
    for name in (
        "websocket_connections_by_server",
        "gateway_frames_out_total",
        "gateway_bytes_out_total",
        "gateway_comment_deliveries_total",
        "gateway_queue_drops_total",
        "gateway_auth_failures_total",
        "gateway_delivery_seconds_bucket",
        "cache_hit_ratio_by_tier",
    ):
        assert name in text_metrics, name


def test_an_open_connection_is_closed_when_its_token_expires(
    settings: Settings, gateways: list[GatewayProcess], new_event: Callable[..., str]
) -> None:
    event_id = new_event()

    async def scenario() -> None:
        short = await Client.open(gateways[0].url, mint_token(settings, "brief", ttl_s=3))
        await short.join(event_id)
        warning = await short.wait_for(lambda f: f["type"] == "token_expiring", within_s=10)
        assert warning["expires_at"] > 0
        error = await short.wait_for(lambda f: f["type"] == "error", within_s=10)
        assert error["code"] == "token_expired"
        assert (await short.wait_closed(within_s=10))[0] == 4002

    asyncio.run(scenario())


def test_top_mode_viewers_of_a_hot_event_get_a_ranked_subset_and_all_mode_gets_everything(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
    writer: StateWriter,
) -> None:
    event_id = new_event(hot_rate_per_s=1)
    moderator_id = f"mod-{uuid.uuid4().hex[:6]}"
    # Roles on published comments come from the user's profile (enrich), not the token.
    writer.put_user(
        UserProfile(
            user_id=moderator_id,
            display_name="Mod",
            roles=("moderator",),
            updated_at=int(time.time() * 1000),
        )
    )

    async def scenario() -> None:
        everything = await Client.open(gateways[0].url, token(settings, "all-viewer"))
        top = await Client.open(gateways[0].url, token(settings, "top-viewer"))
        await everything.join(event_id)
        assert (await top.join(event_id, mode="top"))["mode"] == "top"
        posters = [
            await Client.open(gateways[1].url, token(settings, f"fan-{i}")) for i in range(6)
        ]
        moderator = await Client.open(gateways[1].url, token(settings, moderator_id, "moderator"))
        sent: list[str] = []
        for round_ in range(4):
            for i, p in enumerate(posters):
                sent.append((await p.post(event_id, text(700 + round_ * 10 + i)))["comment_id"])
        pinned = (await moderator.post(event_id, text(799)))["comment_id"]
        for round_ in range(2):
            for i, p in enumerate(posters):
                sent.append((await p.post(event_id, text(800 + round_ * 10 + i)))["comment_id"])
        await everything.wait_for(
            lambda _f: sent[-1] in {x["comment_id"] for x in everything.comments(event_id)},
            within_s=180,
        )
        # Both viewers' frames of each read are written together; a ping answered on
        # `top` comes after every frame written to it before (one ordered connection).
        await top.send({"type": "ping", "id": "barrier"})
        await top.wait_for(lambda f: f.get("id") == "barrier")
        all_ids = [x["comment_id"] for x in everything.comments(event_id)]
        top_ids = [x["comment_id"] for x in top.comments(event_id)]
        assert set(sent) | {pinned} == set(all_ids)
        assert pinned in top_ids, "a moderator's comment always passes top mode"
        assert len(top_ids) < len(all_ids), "top mode thins a hot event"
        assert top_ids == [i for i in all_ids if i in set(top_ids)], "in the event's order"
        reply = await top.send({"type": "mode", "event_id": event_id, "mode": "all", "id": "m"})
        assert reply is None
        assert (await top.wait_for(lambda f: f.get("id") == "m"))["mode"] == "all"
        for c in (everything, top, moderator, *posters):
            await c.close()

    asyncio.run(scenario())


def test_gateway_processes_share_one_port_each_delivers_and_all_drain_on_sigterm(
    settings: Settings,
    pipeline: list[Worker],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    many = start_gateway(
        settings,
        {
            "LIVECOMMENTS_GATEWAY_PROCESSES": "2",
            "LIVECOMMENTS_GATEWAY_DRAIN_S": "2",
            "LIVECOMMENTS_GATEWAY_FORCE_CLOSE_S": "1",
        },
    )
    try:
        # Each new connection lands on either process: ask until both have answered.
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            r = httpx.get(f"http://127.0.0.1:{many.port}/healthz", timeout=5)
            pids.add(int(r.json()["pid"]))
        assert len(pids) == 2, "two processes answer on the one port"

        async def scenario() -> None:
            viewers = [await Client.open(many.url, token(settings, f"multi-{i}")) for i in range(8)]
            for v in viewers:
                await v.join(event_id)
            posted = (await viewers[0].post(event_id, text(900)))["comment_id"]
            for v in viewers:
                await v.wait_for(
                    lambda _f, v=v: posted in {x["comment_id"] for x in v.comments(event_id)},
                    within_s=180,
                )
            for v in viewers:
                await v.close()

        asyncio.run(scenario())
        many.signal(signal.SIGTERM)
        try:
            many.proc.wait(30)  # the supervisor ends once both processes drained
        except subprocess.TimeoutExpired:
            pytest.fail(f"supervisor still running after SIGTERM: {many.log.read_text()[-3000:]}")
        assert many.proc.returncode == 0, many.log.read_text()[-3000:]
    finally:
        many.stop()
