"""Delivery without servers: frames, resume arithmetic, the slow-consumer policy, top mode,
comment ids and the envelope check."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from gateway_fakes import LIMIT, FakeClock, FakeViewer

from connectors.cassandra_store import StoredComment
from gateways import posting
from gateways.fanout import Feed, Hub, Subscription, build_frames, payload_of, rank
from gateways.history import (
    Entry,
    History,
    RecentCache,
    for_viewer,
    holes,
    id_key,
    parse_entry,
    stored_entry,
)
from schemas.records import CommentSubmitted, EventStatus, LiveEvent, UserProfile
from topologies.stages.validate import CommentLimits


def comment(position: int, previous: int | None, **fields: Any) -> Entry:
    data = {
        "comment_id": f"c{position}",
        "event_id": "e",
        "position": position,
        "previous_position": previous,
        "epoch": 1,
        **fields,
    }
    return parse_entry(f"{position + 1}-0", {b"type": b"comment", b"data": json.dumps(data)})


def retract(after_position: int, seq: int = 1) -> Entry:
    data = json.dumps({"comment_id": "c", "position": after_position})
    return parse_entry(f"{after_position + 1}-{seq}", {"type": "retract", "data": data})


def test_holes_finds_where_previous_position_does_not_match_what_came_before() -> None:
    chain = [comment(10, 7), comment(12, 10), comment(20, 15)]
    assert holes(chain, 7) == [(12, 20)]
    assert holes(chain, 5) == [(5, 10), (12, 20)]
    assert holes([comment(3, None)], None) == []
    assert holes([comment(3, 1)], None) == [(None, 3)]
    assert holes([retract(3)], 1) == []


def test_recent_cache_answers_only_for_ranges_it_saw_whole() -> None:
    cache = RecentCache(keep_s=60)
    cache.start_at("11-0")
    cache.add([comment(11, 10), comment(12, 11), retract(12)], now=100.0)
    assert cache.after(id_key("11-0"), id_key("99-0")) is not None
    got = cache.after(id_key("11-0"), id_key("99-0"))
    assert got is not None and [e.stream_id for e in got] == ["12-0", "13-0", "13-1"]
    assert cache.after(id_key("5-0"), id_key("99-0")) is None  # older than the cache
    cache.add([comment(13, 12)], now=200.0)  # the first three age out
    assert cache.after(id_key("12-0"), id_key("99-0")) is None
    assert [e.position for e in cache.after(id_key("13-1"), id_key("99-0")) or []] == [13]


def test_stored_rows_become_the_same_json_as_live_entries_and_removed_ones_keep_their_place() -> (
    None
):
    row = StoredComment(
        "e", 5, 3, 1, "c5", "u", "U", ("moderator",), (), "hi", None, "en", 10, 20, False
    )
    e = stored_entry(row)
    assert (e.stream_id, e.position, e.previous_position) == ("6-0", 5, 3)
    assert json.loads(e.data)["text"] == "hi"
    removed = stored_entry(
        StoredComment("e", 6, 5, 1, "c6", "u", "U", (), (), "bad", None, None, 1, 2, True)
    )
    assert json.loads(removed.data) == {
        "comment_id": "c6",
        "event_id": "e",
        "position": 6,
        "previous_position": 5,
        "epoch": 1,
        "removed": True,
    }


def test_frames_split_comment_and_retraction_runs_and_keep_the_bytes_of_each_item() -> None:
    entries = [comment(1, None), comment(2, 1), retract(2), comment(4, 2)]
    frames = build_frames("e", entries)
    assert [f.kind for f in frames] == ["comments", "retracted", "comments"]
    first = json.loads(payload_of(frames[0].data))
    assert first["type"] == "comments" and [i["position"] for i in first["items"]] == [1, 2]
    assert frames[0].data.count(entries[0].data.encode()) == 1
    assert (frames[0].first, frames[0].last, frames[0].comments) == ((2, 0), (3, 0), 2)


def hub(**kw: Any) -> Hub:
    options: dict[str, Any] = {
        "tick_ms": 50,
        "recent_s": 60,
        "top_per_s": 20,
        "slow_disconnect_s": 30,
        "write_buffer_bytes": LIMIT,
    }
    options.update(kw)
    return Hub(kw.pop("redis", None), None, **options)  # type: ignore[arg-type]


def attach(h: Hub, viewer: FakeViewer, mode: str = "all") -> Feed:
    feed = h.feeds.setdefault("e", Feed("e", 60))
    feed.ready.set()
    feed.subs[id(viewer)] = Subscription(viewer, "e", mode, live=True)  # type: ignore[arg-type]
    return feed


def test_every_viewer_gets_the_very_same_bytes() -> None:
    h = hub()
    a, b = FakeViewer(), FakeViewer()
    feed = attach(h, a)
    attach(h, b)
    h._deliver(feed, [comment(1, None), comment(2, 1)])
    assert a.queue == b.queue and len(a.queue) == 1
    assert a.raw[0] is b.raw[0]  # one frame built and framed once, written to both


def test_a_slow_viewer_is_skipped_forward_with_a_gap_notice_then_disconnected() -> None:
    clock = FakeClock()
    h = hub(slow_disconnect_s=0.2, clock=clock)
    slow = FakeViewer(capacity=2)
    feed = attach(h, slow)
    for p in range(1, 5):
        h._deliver(feed, [comment(p, p - 1 if p > 1 else None)])
    assert len(slow.queue) == 2  # frames 3 and 4 were dropped
    slow.queue.clear()  # the client caught up
    h._deliver(feed, [comment(5, 4)])
    notice = json.loads(slow.queue[0])
    assert notice == {
        "type": "gap",
        "event_id": "e",
        "epoch": 1,
        "position": 2,
        "reason": "slow_consumer",
    }
    assert json.loads(slow.queue[1])["items"][0]["position"] == 5
    # Behind again and staying behind past the limit: closed.
    for p in range(6, 9):
        h._deliver(feed, [comment(p, p - 1)])
    clock.now += 0.25
    h._deliver(feed, [comment(9, 8)])
    assert slow.closed


def test_frames_arriving_during_a_join_are_held_then_sent_without_what_the_backlog_had() -> None:
    h = hub()
    v = FakeViewer(capacity=10)
    feed = attach(h, v)
    feed.subs[id(v)].live = False
    h._deliver(feed, [comment(1, None), comment(2, 1)])
    h._deliver(feed, [comment(3, 2)])
    assert v.queue == []
    h.go_live(v, "e", id_key("2-0"), 1, 1)  # the backlog ended at position 1
    got = [i["position"] for f in v.queue for i in json.loads(f)["items"]]
    assert got == [2, 3]


def test_top_mode_sends_a_ranked_subset_of_a_hot_event_and_replies_to_the_viewer() -> None:
    h = hub(top_per_s=20)  # one comment per 50 ms tick
    everything, top = FakeViewer(capacity=100), FakeViewer(capacity=100)
    top.posted = {"mine"}
    feed = attach(h, everything)
    attach(h, top, "top")
    feed.hot = True
    batch = [
        comment(1, None),
        comment(2, 1, badges=["verified"]),
        comment(3, 2, roles=["moderator"]),
        comment(4, 3, reply_to="mine"),
        comment(5, 4),
    ]
    h._deliver(feed, batch)
    seen_all = [i["position"] for f in everything.queue for i in json.loads(f)["items"]]
    seen_top = [i["position"] for f in top.queue for i in json.loads(f)["items"]]
    assert seen_all == [1, 2, 3, 4, 5]
    assert seen_top == [3, 4]  # the moderator always; the reply to the viewer's comment
    assert rank(batch[2]) > rank(batch[1]) > rank(batch[3]) > rank(batch[0])


def test_an_event_turns_hot_above_its_rate_and_cools_with_hysteresis() -> None:
    feed = Feed("e", 60)
    feed.hot_rate = 100
    for _ in range(40):
        feed._update_rate(10, 0.05)  # 200/s
    assert feed.hot
    for _ in range(40):
        feed._update_rate(5, 0.05)  # 100/s: no longer above the rate, still above 80 %
    assert feed.hot
    for _ in range(40):
        feed._update_rate(2, 0.05)  # 40/s
    assert not feed.hot


def test_comment_ids_are_ulids_ordered_by_time() -> None:
    ids = [posting.new_comment_id(ms) for ms in (1000, 1001, 2**40)]
    assert all(len(i) == 26 for i in ids)
    assert ids == sorted(ids)
    assert len({posting.new_comment_id(5) for _ in range(1000)}) == 1000


def submitted(text: str = "hello") -> CommentSubmitted:
    return CommentSubmitted(
        comment_id=posting.new_comment_id(),
        event_id="e",
        user_id="u",
        text=text,
        submitted_at=int(time.time() * 1000),
        gateway_id="gw",
    )


def live(**kw: Any) -> LiveEvent:
    return LiveEvent(
        event_id="e", title="t", status=EventStatus.LIVE, created_at=0, updated_at=0, **kw
    )


@pytest.mark.parametrize(
    ("comment", "event", "user", "code"),
    [
        (submitted(" \u200b "), live(), None, "empty_text"),
        (submitted("x" * 501), live(), None, "text_too_long"),
        (submitted(), None, None, "event_not_found"),
        (
            submitted(),
            LiveEvent(
                event_id="e", title="t", status=EventStatus.ENDED, created_at=0, updated_at=0
            ),
            None,
            "event_not_live",
        ),
        (
            submitted(),
            live(),
            UserProfile(user_id="u", display_name="U", banned=True, updated_at=0),
            "user_banned",
        ),
        (submitted(), live(members_only=True), None, "members_only"),
    ],
)
def test_the_envelope_check_uses_the_pipelines_codes(
    comment: CommentSubmitted, event: LiveEvent | None, user: UserProfile | None, code: str
) -> None:
    with pytest.raises(posting.PostError) as e:
        posting.check_envelope(comment, event=event, user=user, limits=CommentLimits())
    assert e.value.code == code


def test_the_envelope_check_normalises_the_text() -> None:
    c = posting.check_envelope(
        submitted("  hi\u200b  there "), event=live(), user=None, limits=CommentLimits()
    )
    assert c.text == "hi there"


class SlowHistory:
    """Answers the stream's top id after a pause, as Redis would under load."""

    async def top_id(self, event_id: str) -> str:
        await asyncio.sleep(0.01)
        return "5-0"


def test_viewers_joining_at_once_all_end_up_on_the_one_feed_of_the_event() -> None:
    async def scenario() -> Hub:
        h = Hub(None, SlowHistory(), tick_ms=50, recent_s=60, top_per_s=10, slow_disconnect_s=30)  # type: ignore[arg-type]
        viewers = [FakeViewer() for _ in range(5)]

        async def join(v: FakeViewer) -> None:
            h.unsubscribe(v, "e")  # a join first drops an older subscription of its own
            await h.subscribe(v, "e", "all")

        await asyncio.gather(*(join(v) for v in viewers))
        return h

    h = asyncio.run(scenario())
    assert list(h.feeds) == ["e"]
    assert len(h.feeds["e"].subs) == 5
    assert h.feeds["e"].cursor == "5-0"


# -- shadow comments (hidden users: ``visible_to``) ---------------------------------------


def shadow(position: int, previous: int | None, user: str, **fields: Any) -> Entry:
    """A hidden user's comment as the live tier stores it: ``visible_to`` in the entry's
    fields and in its JSON; outside the public chain (previous = the public head)."""
    data = {
        "comment_id": f"s{position}",
        "event_id": "e",
        "position": position,
        "previous_position": previous,
        "epoch": 1,
        "user_id": user,
        "text": "only I see this",
        "visible_to": user,
        **fields,
    }
    raw = {b"type": b"comment", b"data": json.dumps(data).encode(), b"visible_to": user.encode()}
    return parse_entry(f"{position + 1}-0", raw)


def items(queue: list[bytes]) -> list[int]:
    return [i["position"] for f in queue for i in json.loads(f)["items"]]


def test_a_shadow_entry_says_whose_it_is_and_its_json_never_does() -> None:
    e = shadow(11, 10, "troll")
    assert e.visible_to == "troll"
    assert "visible_to" not in json.loads(e.data) and "visible_to" not in e.fields
    assert json.loads(e.data)["text"] == "only I see this"
    # The JSON alone marks it too (as the replay tier's records do).
    data = json.dumps({"position": 3, "previous_position": 2, "epoch": 1, "visible_to": "x"})
    assert parse_entry("4-0", {"type": "comment", "data": data}).visible_to == "x"
    assert comment(12, 10).visible_to is None


def test_public_entries_keep_the_bytes_they_were_stored_with() -> None:
    stored = '{"comment_id":"c1","position":1,"previous_position":null,"epoch":1}'
    assert parse_entry("2-0", {b"type": b"comment", b"data": stored.encode()}).data == stored


def test_shadow_comments_are_not_links_of_the_public_chain() -> None:
    chain = [comment(10, 7), shadow(11, 10, "troll"), comment(12, 10), shadow(13, 12, "troll")]
    assert holes(chain, 7) == []
    # A public comment missing after a shadow one is still a hole.
    assert holes([comment(10, 7), shadow(11, 10, "troll"), comment(14, 12)], 7) == [(10, 14)]
    # Without the shadow comments (what everyone else gets) the chain is whole as well.
    assert holes(for_viewer(chain, "someone"), 7) == []


def test_for_viewer_keeps_public_entries_and_the_viewers_own_shadows_only() -> None:
    entries = [comment(1, None), shadow(2, 1, "troll"), shadow(3, 1, "spammer"), comment(4, 1)]
    assert [e.position for e in for_viewer(entries, "troll")] == [1, 2, 4]
    assert [e.position for e in for_viewer(entries, "spammer")] == [1, 3, 4]
    assert [e.position for e in for_viewer(entries, "alice")] == [1, 4]
    assert [e.position for e in for_viewer(entries, None)] == [1, 4]
    public = [comment(1, None), comment(2, 1)]
    assert for_viewer(public, "alice") is public  # no copy on the usual path


def test_stored_shadow_rows_are_marked_and_their_json_is_an_ordinary_comment() -> None:
    row = StoredComment(
        "e", 5, 3, 1, "c5", "troll", "T", (), (), "hi", None, "en", 10, 20, False, "troll"
    )
    e = stored_entry(row)
    assert e.visible_to == "troll"
    assert "visible_to" not in json.loads(e.data)
    removed = StoredComment(
        "e", 6, 3, 1, "c6", "troll", "T", (), (), "x", None, None, 1, 2, True, "troll"
    )
    assert stored_entry(removed).visible_to == "troll"


def test_the_shared_frame_has_no_shadow_comment_and_its_author_gets_a_frame_of_their_own() -> None:
    h = hub()
    alice, bob = FakeViewer(viewer_id="alice"), FakeViewer(viewer_id="bob")
    troll, anon = FakeViewer(viewer_id="troll"), FakeViewer(viewer_id=None)
    other = FakeViewer(viewer_id="spammer")
    feed = attach(h, alice)
    for v in (bob, troll, anon, other):
        attach(h, v)
    h._deliver(
        feed, [comment(1, None), shadow(2, 1, "troll"), comment(3, 1), shadow(4, 3, "nobody")]
    )
    assert items(alice.queue) == items(bob.queue) == items(anon.queue) == [1, 3]
    assert alice.raw[0] is bob.raw[0] is anon.raw[0]  # one shared frame, one encoding
    assert b"only I see this" not in alice.queue[0]
    assert items(troll.queue) == [1, 2, 3]  # in the event's order
    assert items(other.queue) == [1, 3]  # another hidden user sees no shadow but their own


def test_the_author_sees_their_shadow_comment_in_top_mode_too() -> None:
    h = hub(top_per_s=20)
    troll = FakeViewer(capacity=100, viewer_id="troll")
    fan = FakeViewer(capacity=100, viewer_id="fan")
    feed = attach(h, troll, "top")
    attach(h, fan, "top")
    feed.hot = True
    h._deliver(feed, [comment(1, None, roles=["moderator"]), shadow(2, 1, "troll")])
    assert items(fan.queue) == [1]
    assert items(troll.queue) == [1, 2]


def test_a_shadow_comment_does_not_move_the_live_readers_place_in_the_chain() -> None:
    h = hub()
    feed = Feed("e", 60)
    feed.last_position = 1
    got = asyncio.run(h._fill_live_holes(feed, [comment(3, 1), shadow(4, 3, "troll")]))
    assert [e.position for e in got] == [3, 4]
    assert feed.last_position == 3


class FakeStream:
    """XRANGE/XREVRANGE over one event's entries, as redis-py answers them."""

    def __init__(self, entries: list[Entry]) -> None:
        self._raw = []
        for e in entries:
            raw: dict[bytes, bytes] = {b"type": e.kind.encode(), b"data": e.data.encode()}
            if e.visible_to is not None:
                raw[b"visible_to"] = e.visible_to.encode()
            self._raw.append((e.stream_id.encode(), raw))

    @staticmethod
    def _key(sid: str) -> tuple[int, int]:
        return id_key(sid.lstrip("("))

    async def xrevrange(
        self, key: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[Any]:
        top = None if max == "+" else self._key(max)
        found = [r for r in reversed(self._raw) if top is None or id_key(r[0].decode()) <= top]
        return found[:count]

    async def xrange(
        self, key: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[Any]:
        low = None if min == "-" else self._key(min)
        top = None if max == "+" else self._key(max)
        found = [
            r
            for r in self._raw
            if (low is None or id_key(r[0].decode()) > low)
            and (top is None or id_key(r[0].decode()) <= top)
        ]
        return found[:count]


def test_a_fresh_join_backlog_gives_shadow_comments_to_their_author_only() -> None:
    log = [comment(1, None), comment(2, 1), shadow(3, 2, "troll"), comment(4, 2)]
    history = History(FakeStream(log), None, backlog=2, recovery_max=100)
    recovery = asyncio.run(history.recent("e", "5-0"))
    # Two public comments make the backlog; the shadow between them comes along.
    assert [e.position for e in recovery.entries] == [2, 3, 4]
    everyone = recovery.for_viewer("alice")
    assert [e.position for e in everyone.entries] == [2, 4]
    assert (everyone.epoch, everyone.position, everyone.complete) == (1, 4, True)
    mine = recovery.for_viewer("troll")
    assert [e.position for e in mine.entries] == [2, 3, 4]


def test_a_resume_skips_others_shadow_comments_without_looking_like_a_gap() -> None:
    log = [comment(1, None), comment(2, 1), shadow(3, 2, "troll"), comment(4, 2)]
    history = History(FakeStream(log), None, backlog=50, recovery_max=100)
    recovery = asyncio.run(history.resume("e", 1, 1, "5-0"))
    assert recovery.complete
    assert [e.position for e in recovery.for_viewer("troll").entries] == [2, 3, 4]
    alice = recovery.for_viewer("alice")
    assert [e.position for e in alice.entries] == [2, 4] and alice.complete
    # Nothing but someone else's shadow comment after `since`: the viewer stays where it was.
    only_shadow = asyncio.run(history.resume("e", 1, 2, "4-0")).for_viewer("alice")
    assert only_shadow.entries == [] and (only_shadow.epoch, only_shadow.position) == (1, 2)
    # From the recent cache (L1) the same.
    cache = RecentCache(keep_s=60)
    cache.start_at("2-0")
    cache.add(log[1:])
    cached = asyncio.run(history.resume("e", 1, 1, "5-0", cache))
    assert cached.tiers["l1"] == 3
    assert [e.position for e in cached.for_viewer("bob").entries] == [2, 4]


def test_a_timed_out_user_is_told_how_long_is_left() -> None:
    c = submitted()
    until = c.submitted_at + 90_000
    user = UserProfile(user_id="u", display_name="U", timeout_until=until, updated_at=0)
    with pytest.raises(posting.PostError) as e:
        posting.check_envelope(c, event=live(), user=user, limits=CommentLimits())
    assert e.value.code == "user_timed_out"
    assert e.value.retry_after_ms == 90_000
    expired = UserProfile(user_id="u", display_name="U", timeout_until=1, updated_at=0)
    assert (
        posting.check_envelope(c, event=live(), user=expired, limits=CommentLimits()).text
        == "hello"
    )
