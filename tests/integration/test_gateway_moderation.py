"""Moderation over the WebSocket protocol against the real stack: real gateway processes,
real workers, real WebSocket clients; moderators act with `moderate` messages.

- a hidden user's comment (a shadow comment) reaches that user's own connections and
  no other viewer, live and in a fresh join's backlog, and nobody sees a gap for it;
- a timed-out user's post is refused at once with `user_timed_out` and the time left,
  a banned user's with `user_banned`, on a gateway other than the moderator's;
- a moderator's `remove` takes the comment away from every connected viewer (a
  `retracted` frame) within a second of the moderator's `moderated` reply;
- a non-moderator's `moderate` gets `not_authorized`.

Users are new in every test: profiles live in a compacted topic that outlives the run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from support import Client, GatewayProcess, eventually, text, token

from deploy.processes import Worker, wait_state_applied
from deploy.settings import Settings

PIPELINE_S = 180.0  # 2 cores shared with other stacks: the pipeline may be slow, not wrong
# A change to users.profiles reaches every gateway "within about a second" (docs); the
# deadline leaves room for a loaded machine, the tests take only as long as it needs.
STATE_S = 10.0


async def refusal(client: Client, event_id: str, n: int, code: str) -> dict[str, Any] | None:
    """The error frame if a post is refused with ``code``; None if it went through."""
    reply = await client.post(event_id, text(n))
    return reply if reply["type"] == "error" and reply["code"] == code else None


async def acked(client: Client, event_id: str, n: int) -> bool:
    return bool((await client.post(event_id, text(n)))["type"] == "ack")


def new_user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def moderate(client: Client, action: str, **fields: Any) -> dict[str, Any]:
    request_id = uuid.uuid4().hex[:8]
    await client.send({"type": "moderate", "action": action, "id": request_id, **fields})
    return await client.wait_for(lambda f: f.get("id") == request_id, within_s=60)


def ids(client: Client, event_id: str) -> list[str]:
    return [x["comment_id"] for x in client.comments(event_id)]


def test_a_hidden_users_comment_reaches_only_their_own_connections_live_and_in_backlogs(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    hidden = new_user("shadowed")

    async def scenario() -> None:
        mod = await Client.open(gateways[1].url, token(settings, new_user("mod"), "moderator"))
        done = await moderate(mod, "hide", user_id=hidden)
        assert done["type"] == "moderated", done
        assert done["result"]["hidden"] is True
        # The workers follow users.profiles too: wait until they have applied the change.
        await asyncio.to_thread(wait_state_applied, settings, pipeline)

        author = await Client.open(gateways[0].url, token(settings, hidden))
        author_elsewhere = await Client.open(gateways[1].url, token(settings, hidden))
        near = await Client.open(gateways[0].url, token(settings, "near-viewer"))
        far = await Client.open(gateways[1].url, token(settings, "far-viewer"))
        anonymous = await Client.open(gateways[0].url)
        fan = await Client.open(gateways[1].url, token(settings, new_user("fan")))
        for c in (author, author_elsewhere, near, far, anonymous, fan):
            assert (await c.join(event_id))["type"] == "joined"

        before = (await fan.post(event_id, text(1)))["comment_id"]
        await near.wait_for(lambda _f: before in ids(near, event_id), within_s=PIPELINE_S)
        shadow = await author.post(event_id, text(2))
        assert shadow["type"] == "ack", shadow
        after = (await fan.post(event_id, text(3)))["comment_id"]

        for c in (author, author_elsewhere):
            await c.wait_for(
                lambda _f, c=c: (
                    after in ids(c, event_id) and shadow["comment_id"] in ids(c, event_id)
                ),
                within_s=PIPELINE_S,
            )
            assert ids(c, event_id) == [before, shadow["comment_id"], after]
            assert all("visible_to" not in x for x in c.comments(event_id))
        for c in (near, far, anonymous, fan):
            await c.wait_for(lambda _f, c=c: after in ids(c, event_id), within_s=PIPELINE_S)
        # An event's comments reach a viewer in order, and the shadow comment was acked
        # before `after` was posted: had it been coming to these viewers, it came first.
        for c in (near, far, anonymous, fan):
            assert ids(c, event_id) == [before, after]
            assert shadow["comment_id"] not in json.dumps(c.frames)
            # The public chain skips the shadow comment: no gap for anyone.
            first, second = c.comments(event_id)
            assert second["previous_position"] == first["position"]

        # A fresh join's backlog, and a resume across the shadow comment.
        late = await Client.open(gateways[1].url, token(settings, "late-viewer"))
        joined = await late.join(event_id)
        assert joined["complete"] is True
        assert ids(late, event_id) == [before, after]
        assert joined["position"] == late.comments(event_id)[-1]["position"]
        author_again = await Client.open(gateways[1].url, token(settings, hidden))
        await author_again.join(event_id)
        assert ids(author_again, event_id) == [before, shadow["comment_id"], after]
        first = near.comments(event_id)[0]
        resumed = await Client.open(gateways[0].url, token(settings, "resumer"))
        back = await resumed.join(
            event_id, since={"epoch": first["epoch"], "position": first["position"]}
        )
        assert back["complete"] is True and back["recovered"] == 1
        assert ids(resumed, event_id) == [after]
        for c in (mod, author, author_elsewhere, near, far, anonymous, fan, late):
            await c.close()
        for c in (author_again, resumed):
            await c.close()

    asyncio.run(scenario())


def test_a_timed_out_user_is_refused_at_once_with_the_time_left_and_a_banned_one_too(
    settings: Settings,
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    pest, troll = new_user("pest"), new_user("troll")

    async def scenario() -> None:
        mod = await Client.open(gateways[1].url, token(settings, new_user("mod"), "moderator"))
        poster = await Client.open(gateways[0].url, token(settings, pest))
        other = await Client.open(gateways[0].url, token(settings, troll))

        done = await moderate(mod, "timeout", user_id=pest, duration_s=120, reason="spam")
        assert done["type"] == "moderated" and done["action"] == "timeout", done
        until = done["result"]["timeout_until"]
        assert until > time.time() * 1000
        # The other gateway follows users.profiles: within about a second it knows.
        # (A post before then is acked here and dead-lettered by the workers.)
        refused = await eventually(
            lambda: refusal(poster, event_id, 10, "user_timed_out"),
            STATE_S,
            what="the poster's gateway refuses the timed-out user",
        )
        assert refused["event_id"] == event_id
        assert 100_000 < refused["retry_after_ms"] <= 120_000
        assert abs(refused["retry_after_ms"] - (until - time.time() * 1000)) < 5_000

        done = await moderate(mod, "ban", user_id=troll, reason="abuse")
        assert done["type"] == "moderated" and done["result"]["banned"] is True, done
        await eventually(
            lambda: refusal(other, event_id, 11, "user_banned"),
            STATE_S,
            what="the other gateway refuses the banned user",
        )

        # Lifted: the user may post again (the envelope check passes; refused no more).
        assert (await moderate(mod, "untimeout", user_id=pest))["type"] == "moderated"
        await eventually(
            lambda: acked(poster, event_id, 12),
            STATE_S,
            what="the poster's gateway takes the user's posts again",
        )
        for c in (mod, poster, other):
            await c.close()

    asyncio.run(scenario())


def test_a_moderators_remove_takes_the_comment_from_every_viewer_within_a_second(
    settings: Settings,
    pipeline: list[Worker],
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()

    async def scenario() -> None:
        viewers = [
            await Client.open(gateways[i % 2].url, token(settings, f"rm-viewer-{i}"))
            for i in range(4)
        ]
        poster = await Client.open(gateways[0].url, token(settings, new_user("regretful")))
        mod = await Client.open(gateways[1].url, token(settings, new_user("mod"), "moderator"))
        for c in (*viewers, mod):
            await c.join(event_id)
        posted = (await poster.post(event_id, text(20)))["comment_id"]
        for c in (*viewers, mod):
            await c.wait_for(lambda _f, c=c: posted in ids(c, event_id), within_s=PIPELINE_S)
        shown = mod.comments(event_id)[0]

        # The service finds the comment in Cassandra, which may trail the live tier a bit.
        deadline = time.monotonic() + 60
        while True:
            done = await moderate(
                mod,
                "remove",
                event_id=event_id,
                comment_id=posted,
                position=shown["position"],
                reason="spam",
            )
            if done.get("code") != "comment_not_found" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert done["type"] == "moderated" and done["action"] == "remove", done
        assert done["result"]["comment_id"] == posted
        acted = time.monotonic()

        def removed(f: dict[str, Any]) -> bool:
            return f["type"] == "retracted" and any(x["comment_id"] == posted for x in f["items"])

        for c in (*viewers, mod):
            await c.wait_for(removed, within_s=30)
        took = time.monotonic() - acted
        assert took < 1.0, f"every viewer had the retraction {took:.2f}s after `moderated`"
        for c in (*viewers, poster, mod):
            await c.close()

    asyncio.run(scenario())


def test_moderate_from_a_non_moderator_is_not_authorized_and_changes_nothing(
    settings: Settings,
    gateways: list[GatewayProcess],
    new_event: Callable[..., str],
) -> None:
    event_id = new_event()
    victim = new_user("victim")

    async def scenario() -> None:
        viewer = await Client.open(gateways[0].url, token(settings, new_user("viewer")))
        for action, fields in (
            ("timeout", {"user_id": victim, "duration_s": 60}),
            ("remove", {"event_id": event_id, "position": 1}),
            ("held", {"event_id": event_id}),
        ):
            reply = await moderate(viewer, action, **fields)
            assert reply["type"] == "error" and reply["code"] == "not_authorized", reply
        # A moderator may; the service's own rules still apply (nobody times out
        # themselves), with its code.
        moderator = new_user("mod")
        mod = await Client.open(gateways[1].url, token(settings, moderator, "moderator"))
        held = await moderate(mod, "held", event_id=event_id)
        assert held["type"] == "moderated" and held["result"]["items"] == [], held
        reply = await moderate(mod, "timeout", user_id=moderator, duration_s=60)
        assert reply["type"] == "error" and reply["code"] == "not_authorized", reply
        reply = await moderate(mod, "held", event_id="no-such-event-" + uuid.uuid4().hex[:6])
        assert reply["code"] == "event_not_found", reply
        # The victim was never timed out: their post passes the envelope check.
        victim_client = await Client.open(gateways[0].url, token(settings, victim))
        assert (await victim_client.post(event_id, text(30)))["type"] == "ack"
        for c in (viewer, mod, victim_client):
            await c.close()

    asyncio.run(scenario())
