"""Moderator actions without servers: validation, who may act on whom, the records built.

The service is driven with an in-memory producer and store (what it sends is decoded
back with no registry): the shape of the records is the point here; the real round trip
through Kafka, the pipeline and Cassandra is tests/integration/test_api_moderation.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.topics import COMMENTS_RETRACTED, COMMENTS_SUBMITTED, USERS_PROFILES
from gateways.auth import Identity
from gateways.moderation import (
    CODES,
    ModerationError,
    ModeratorActions,
    changed_profile,
    checked_decision,
    checked_duration,
    held_page,
    rank,
    require_may_act_on,
    user_view,
)
from schemas.records import (
    CommentRetracted,
    EventStatus,
    LiveEvent,
    RetractionScope,
    Strictness,
    UserProfile,
)

NOW = 1_800_000_000_000
MOD = Identity("mod-1", "Mod", roles=("moderator",))
BROADCASTER = Identity("bc-1", "Broadcaster", roles=("broadcaster",))
ADMIN = Identity("admin-1", "Admin", roles=("admin",))
VIEWER = Identity("alice", "Alice")


def profile(user_id: str, *roles: str, **fields: Any) -> UserProfile:
    return UserProfile(
        user_id=user_id, display_name=user_id.title(), roles=roles, updated_at=NOW - 5, **fields
    )


def code_of(e: pytest.ExceptionInfo[ModerationError]) -> str:
    return e.value.code


# -- pure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [10, 60, 86_400])
def test_a_timeout_lasts_ten_seconds_to_a_day(seconds: int) -> None:
    assert checked_duration(seconds) == seconds


@pytest.mark.parametrize("seconds", [9, 0, -5, 86_401, True, 30.0, "60"])
def test_other_timeouts_are_invalid_field(seconds: Any) -> None:
    with pytest.raises(ModerationError) as e:
        checked_duration(seconds)
    assert code_of(e) == "invalid_field" and e.value.status == 400


def test_a_missing_duration_is_missing_field() -> None:
    with pytest.raises(ModerationError) as e:
        checked_duration(None)
    assert code_of(e) == "missing_field"


def test_decisions_are_approve_or_reject() -> None:
    assert checked_decision("approve") == "APPROVE"
    assert checked_decision("REJECT") == "REJECT"
    with pytest.raises(ModerationError) as e:
        checked_decision("maybe")
    assert code_of(e) == "invalid_field"


def test_ranks_take_the_highest_role() -> None:
    assert rank(()) == 0
    assert rank(("member",)) == 0
    assert rank(("moderator",)) == 1
    assert rank(("member", "admin", "moderator")) == 3


def test_a_moderator_acts_on_viewers_and_unknown_users() -> None:
    require_may_act_on(MOD, "alice", profile("alice"))
    require_may_act_on(MOD, "nobody-yet", None)


@pytest.mark.parametrize("role", ["moderator", "broadcaster", "admin"])
def test_a_moderator_cannot_act_on_a_moderator_broadcaster_or_admin(role: str) -> None:
    with pytest.raises(ModerationError) as e:
        require_may_act_on(MOD, "other", profile("other", role))
    assert code_of(e) == "not_authorized" and e.value.status == 403
    assert role in e.value.message


def test_higher_roles_act_on_lower_ones_only() -> None:
    require_may_act_on(BROADCASTER, "m", profile("m", "moderator"))
    require_may_act_on(ADMIN, "b", profile("b", "broadcaster"))
    with pytest.raises(ModerationError):
        require_may_act_on(BROADCASTER, "b2", profile("b2", "broadcaster"))


def test_nobody_acts_on_themselves_but_may_remove_their_own_comment() -> None:
    with pytest.raises(ModerationError) as e:
        require_may_act_on(MOD, MOD.user_id, None)
    assert code_of(e) == "not_authorized"
    require_may_act_on(MOD, MOD.user_id, None, self_ok=True)


def test_viewers_are_not_authorized_at_all() -> None:
    with pytest.raises(ModerationError) as e:
        require_may_act_on(VIEWER, "bob", None)
    assert code_of(e) == "not_authorized"


def test_a_profile_change_starts_from_the_current_profile_and_moves_updated_at() -> None:
    current = profile("alice", badges=("verified",), hidden=True)
    banned = changed_profile(current, "alice", NOW, banned=True)
    assert banned.banned and banned.hidden and banned.badges == ("verified",)
    assert banned.display_name == "Alice" and banned.updated_at == NOW
    # A clock behind the profile (another process wrote a moment ago) still moves forward.
    later = changed_profile(banned, "alice", NOW - 1000, banned=False)
    assert later.updated_at == NOW + 1


def test_a_user_without_a_profile_gets_one_named_after_their_id() -> None:
    created = changed_profile(None, "bob", NOW, timeout_until=NOW + 60_000)
    assert created == UserProfile(
        user_id="bob", display_name="bob", timeout_until=NOW + 60_000, updated_at=NOW
    )


def test_the_user_view_hides_a_timeout_that_ran_out() -> None:
    assert user_view("a", profile("a", timeout_until=NOW - 1), NOW)["timeout_until"] is None
    view = user_view("a", profile("a", "member", timeout_until=NOW + 5, banned=True), NOW)
    assert view == {
        "user_id": "a",
        "banned": True,
        "timeout_until": NOW + 5,
        "hidden": False,
        "roles": ["member"],
    }


def test_every_code_has_a_status_and_a_sentence() -> None:
    assert CODES["already_reviewed"][0] == 409
    assert {CODES[c][0] for c in ("comment_not_found", "user_not_found", "event_not_found")} == {
        404
    }
    assert ModerationError("post_failed").status == 503
    assert ModerationError("already_reviewed").message


# -- the service with an in-memory producer and store --------------------------------------


@dataclass
class FakeHeld:
    event_id: str
    position: int
    comment_id: str
    user_id: str = "troll"
    decision: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "position": self.position, "decision": self.decision}

    def as_review(self, decision: str, reviewed_by: str, now_ms: int) -> dict[str, Any]:
        return {
            "review_of": self.comment_id,
            "decision": decision,
            "reviewed_by": reviewed_by,
            "at": now_ms,
        }


@dataclass
class Row:
    event_id: str
    position: int
    comment_id: str
    user_id: str


@dataclass
class FakeStore:
    held_rows: list[FakeHeld] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    async def held(
        self, event_id: str, *, after: int | None = None, limit: int = 50, pending_only: bool = True
    ) -> list[FakeHeld]:
        return [
            h
            for h in self.held_rows
            if h.event_id == event_id and (after is None or h.position > after)
        ][:limit]

    async def held_one(self, event_id: str, position: int) -> FakeHeld | None:
        return next(
            (h for h in self.held_rows if (h.event_id, h.position) == (event_id, position)), None
        )

    async def after(self, event_id: str, position: int, limit: int) -> list[Row]:
        return [r for r in self.rows if r.event_id == event_id and r.position > position][:limit]

    async def before(self, event_id: str, position: int, limit: int) -> list[Row]:
        found = [r for r in self.rows if r.event_id == event_id and r.position < position]
        return list(reversed(found))[:limit]


class FakeCodec:
    """Keeps the record itself as the "bytes", so a test reads back what was sent."""

    def encode(self, topic: str, record: Any) -> Any:
        return record


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes | None, Any]] = []
        self.fail = fail

    async def deliver(self, topic: str, key: bytes | None, value: Any, timeout_s: float) -> None:
        if self.fail:
            raise RuntimeError("broker gone")
        self.sent.append((topic, key, value))


EVENT = LiveEvent(
    event_id="final", title="Final", status=EventStatus.LIVE, created_at=NOW, updated_at=NOW
)


def service(
    store: FakeStore | None = None,
    users: dict[str, UserProfile] | None = None,
    producer: FakeProducer | None = None,
) -> tuple[ModeratorActions, FakeProducer, dict[str, UserProfile]]:
    users = {} if users is None else users
    producer = producer or FakeProducer()

    async def user(user_id: str) -> UserProfile | None:  # async lookups are awaited
        return users.get(user_id)

    async def written() -> None:
        # What the edge's state does when it reads its own write.
        for topic, _key, value in producer.sent:
            if topic == USERS_PROFILES:
                users[value.user_id] = value

    actions = ModeratorActions(
        codec=FakeCodec(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
        store=store or FakeStore(),
        event=lambda event_id: EVENT if event_id == EVENT.event_id else None,  # sync lookup
        user=user,
        written=written,
        clock=lambda: NOW,
    )
    return actions, producer, users


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_held_lists_pending_comments_with_the_next_page() -> None:
    store = FakeStore(held_rows=[FakeHeld("final", p, f"c{p}") for p in (3, 7, 9)])
    actions, _, _ = service(store)
    page = run(actions.held(MOD, "final", limit=2))
    assert [i["position"] for i in page["items"]] == [3, 7] and page["next_after"] == 7
    rest = run(actions.held(MOD, "final", after=7, limit=2))
    assert [i["position"] for i in rest["items"]] == [9] and rest["next_after"] is None
    assert held_page("final", [], 50) == {"event_id": "final", "items": [], "next_after": None}


def test_held_needs_a_moderator_and_a_known_event() -> None:
    actions, _, _ = service()
    with pytest.raises(ModerationError) as e:
        run(actions.held(VIEWER, "final"))
    assert code_of(e) == "not_authorized"
    with pytest.raises(ModerationError) as e:
        run(actions.held(MOD, "no-such-event"))
    assert code_of(e) == "event_not_found"
    with pytest.raises(ModerationError) as e:
        run(actions.held(MOD, "final", limit=0))
    assert code_of(e) == "invalid_field"


def test_a_review_produces_the_held_comments_review_keyed_by_event() -> None:
    store = FakeStore(held_rows=[FakeHeld("final", 12, "c12")])
    actions, producer, _ = service(store)
    result = run(actions.review(MOD, "final", 12, "approve"))
    assert result == {
        "event_id": "final",
        "position": 12,
        "comment_id": "c12",
        "decision": "approve",
        "status": "accepted",
    }
    [(topic, key, value)] = producer.sent
    assert (topic, key) == (COMMENTS_SUBMITTED, b"final")
    assert value == {"review_of": "c12", "decision": "APPROVE", "reviewed_by": "mod-1", "at": NOW}


def test_a_review_of_nothing_held_or_of_a_decided_comment_is_refused() -> None:
    store = FakeStore(held_rows=[FakeHeld("final", 12, "c12", decision="REJECT")])
    actions, producer, _ = service(store)
    with pytest.raises(ModerationError) as e:
        run(actions.review(MOD, "final", 13, "approve"))
    assert code_of(e) == "comment_not_found" and e.value.status == 404
    with pytest.raises(ModerationError) as e:
        run(actions.review(MOD, "final", 12, "approve"))
    assert code_of(e) == "already_reviewed" and e.value.status == 409
    assert producer.sent == []


def test_a_timeout_writes_the_profile_and_clears_the_event_when_asked() -> None:
    users = {"alice": profile("alice", badges=("verified",))}
    actions, producer, users = service(users=users)
    result = run(actions.timeout(MOD, "alice", 600, "spam", event_id="final", clear=True))
    assert result["timeout_until"] == NOW + 600_000 and result["retracted_in"] == "final"
    (t1, k1, written), (t2, k2, retraction) = producer.sent
    assert (t1, k1, t2, k2) == (USERS_PROFILES, b"alice", COMMENTS_RETRACTED, b"final")
    assert written.timeout_until == NOW + 600_000 and written.badges == ("verified",)
    assert written.updated_at == NOW
    assert retraction == CommentRetracted(
        event_id="final",
        scope=RetractionScope.USER_COMMENTS,
        user_id="alice",
        reason="user_timed_out",
        actor="mod-1",
        retracted_at=NOW,
    )
    assert users["alice"].timeout_until == NOW + 600_000  # `written` ran: state reads it


def test_a_ban_clears_by_default_and_an_unban_reads_the_banned_profile() -> None:
    actions, producer, users = service()
    run(actions.ban(MOD, "troll", event_id="final"))
    assert [t for t, _, _ in producer.sent] == [USERS_PROFILES, COMMENTS_RETRACTED]
    assert producer.sent[1][2].reason == "user_banned"
    assert users["troll"].display_name == "troll" and users["troll"].banned
    result = run(actions.unban(MOD, "troll"))
    assert result["banned"] is False and result["retracted_in"] is None
    assert producer.sent[-1][2].banned is False


def test_a_ban_without_clear_or_without_an_event_retracts_nothing() -> None:
    actions, producer, _ = service()
    run(actions.ban(MOD, "troll", event_id="final", clear=False))
    run(actions.ban(MOD, "troll2"))
    assert [t for t, _, _ in producer.sent] == [USERS_PROFILES, USERS_PROFILES]


def test_lifting_a_measure_of_an_unknown_user_is_user_not_found() -> None:
    actions, _, _ = service()
    for lift in (actions.unban, actions.untimeout, actions.unhide):
        with pytest.raises(ModerationError) as e:
            run(lift(MOD, "ghost"))
        assert code_of(e) == "user_not_found"


def test_a_moderator_cannot_ban_another_moderator() -> None:
    actions, producer, _ = service(users={"m2": profile("m2", "moderator")})
    with pytest.raises(ModerationError) as e:
        run(actions.ban(MOD, "m2"))
    assert code_of(e) == "not_authorized"
    assert producer.sent == []
    run(actions.ban(ADMIN, "m2"))
    assert producer.sent[0][2].banned


def test_hide_sets_hidden() -> None:
    actions, producer, _ = service()
    assert run(actions.hide(MOD, "shady"))["hidden"] is True
    assert producer.sent[0][2].hidden is True
    assert run(actions.unhide(MOD, "shady"))["hidden"] is False


def test_a_removal_by_position_finds_the_author() -> None:
    store = FakeStore(rows=[Row("final", 40, "c40", "carol"), Row("final", 41, "c41", "dan")])
    actions, producer, _ = service(store)
    result = run(actions.remove(MOD, "final", position=41, reason="spam"))
    assert result == {
        "event_id": "final",
        "scope": "comment",
        "user_id": "dan",
        "comment_id": "c41",
        "position": 41,
        "reason": "spam",
    }
    [(topic, key, record)] = producer.sent
    assert (topic, key) == (COMMENTS_RETRACTED, b"final")
    assert record.actor == "mod-1" and record.scope is RetractionScope.COMMENT


def test_a_removal_by_comment_id_alone_looks_it_up() -> None:
    store = FakeStore(rows=[Row("final", 40, "c40", "carol")])
    actions, _, _ = service(store)
    assert run(actions.remove(MOD, "final", comment_id="c40"))["position"] == 40
    with pytest.raises(ModerationError) as e:
        run(actions.remove(MOD, "final", comment_id="nope"))
    assert code_of(e) == "comment_not_found"
    with pytest.raises(ModerationError) as e:
        run(actions.remove(MOD, "final", position=40, comment_id="other"))
    assert code_of(e) == "comment_not_found"


def test_a_removal_needs_a_comment_or_a_user() -> None:
    actions, _, _ = service()
    with pytest.raises(ModerationError) as e:
        run(actions.remove(MOD, "final"))
    assert code_of(e) == "missing_field"
    with pytest.raises(ModerationError) as e:
        run(actions.remove(MOD, "final", scope="user_comments"))
    assert code_of(e) == "missing_field"
    with pytest.raises(ModerationError) as e:
        run(actions.remove(MOD, "final", scope="everything", user_id="x"))
    assert code_of(e) == "invalid_field"


def test_a_moderator_cannot_remove_a_broadcasters_comment() -> None:
    store = FakeStore(rows=[Row("final", 5, "c5", "bc-1")])
    actions, _, _ = service(store, users={"bc-1": profile("bc-1", "broadcaster")})
    with pytest.raises(ModerationError) as e:
        run(actions.remove(MOD, "final", position=5))
    assert code_of(e) == "not_authorized"


def test_event_settings_change_slow_mode_and_strictness() -> None:
    actions, producer, _ = service()
    view = run(actions.event_settings(MOD, "final", slow_mode_s=30, strictness="strict"))
    assert view["slow_mode_s"] == 30 and view["strictness"] == "strict"
    [(_, key, event)] = producer.sent
    assert key == b"final" and event.strictness is Strictness.STRICT and event.updated_at > NOW
    with pytest.raises(ModerationError) as e:
        run(actions.event_settings(MOD, "final", slow_mode_s=-1))
    assert code_of(e) == "invalid_field"


def test_kafka_refusing_the_record_is_post_failed() -> None:
    actions, _, _ = service(producer=FakeProducer(fail=True))
    with pytest.raises(ModerationError) as e:
        run(actions.ban(MOD, "troll"))
    assert code_of(e) == "post_failed" and e.value.status == 503
