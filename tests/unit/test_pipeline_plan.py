"""CommentProcessor.plan: one batch through validate → moderate → enrich → publish.

The state the Faust agent keeps (histories, heads) is plain dicts here; ``_Stack.run``
plans a batch and then writes the plan's state back, as the agent does after its sinks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from schemas.records import (
    CommentPublished,
    CommentSubmitted,
    Decision,
    EventStatus,
    LiveEvent,
    UserProfile,
)
from topologies.pipeline import (
    REJECTED,
    BatchPlan,
    CommentProcessor,
    Incoming,
    Outcome,
    history_key,
)
from topologies.stages.moderate import ENGINE_VERSION, Assessment, ModerationInput, RulesEngine
from topologies.stages.publish import HEADS_KEPT, UNKNOWN
from topologies.stages.validate import CommentLimits, PastPost

TOPIC = "comments.submitted"
NOW = 1_764_300_060_000
T0 = NOW - 5_000
EPOCH = 1_700_000_000_000


def _live(event_id: str, **fields: Any) -> LiveEvent:
    event = LiveEvent(
        event_id=event_id, title=event_id, status=EventStatus.LIVE, created_at=0, updated_at=0
    )
    return replace(event, **fields)


def _user(user_id: str, **fields: Any) -> UserProfile:
    return replace(
        UserProfile(user_id=user_id, display_name=user_id.upper(), updated_at=0), **fields
    )


@dataclass
class _Stack:
    """Global state as dicts, and the partitioned state the agent writes back."""

    events: dict[str, LiveEvent] = field(
        default_factory=lambda: {
            "evt-1": _live("evt-1", blocked_terms=("spoiler",)),
            "evt-2": _live("evt-2"),
        }
    )
    users: dict[str, UserProfile] = field(
        default_factory=lambda: {
            "u-ada": _user("u-ada", badges=("subscriber",), verified=True),
            "u-bob": _user("u-bob"),
            "u-eve": _user("u-eve", banned=True),
        }
    )
    histories: dict[str, tuple[PastPost, ...]] = field(default_factory=dict)
    heads: dict[str, tuple[int, ...]] = field(default_factory=dict)
    limits: CommentLimits = field(default_factory=CommentLimits)

    def plan(
        self, batch: list[Incoming], now_ms: int = NOW, reviews: dict[int, Any] | None = None
    ) -> BatchPlan:
        return CommentProcessor(RulesEngine(), self.limits).plan(
            batch,
            events=self.events.get,
            users=self.users.get,
            history=lambda key: self.histories.get(key, ()),
            heads=lambda event_id: self.heads.get(event_id, ()),
            epochs=lambda partition: EPOCH + partition,
            now_ms=now_ms,
            reviews=reviews or {},
        )

    def write_back(self, plan: BatchPlan) -> None:
        self.histories.update(plan.histories)
        self.heads.update(plan.heads)

    def run(self, batch: list[Incoming], now_ms: int = NOW) -> BatchPlan:
        plan = self.plan(batch, now_ms)
        self.write_back(plan)
        return plan


def _in(
    offset: int,
    text: str = "nice play",
    *,
    user: str = "u-ada",
    event: str = "evt-1",
    partition: int = 3,
    at: int | None = None,
    cid: str | None = None,
) -> Incoming:
    comment = CommentSubmitted(
        comment_id=cid or f"c-{offset}",
        event_id=event,
        user_id=user,
        text=text,
        submitted_at=T0 + offset if at is None else at,
        gateway_id="gw-1",
        trace_parent=f"trace-{offset}",
    )
    return Incoming(TOPIC, partition, offset, f"raw-{offset}".encode(), comment)


def _undecodable(offset: int, code: str | None = "corrupt_body", partition: int = 3) -> Incoming:
    return Incoming(
        TOPIC, partition, offset, b"\x00\x00\x00\x00\x07\xff", None, code, f"{code}: bad body"
    )


def _positions(plan: BatchPlan) -> list[tuple[int, int | None]]:
    return [(c.position, c.previous_position) for c in plan.published]


# Dead letters


def test_an_undecodable_record_is_dead_lettered_with_its_error_code_and_raw_bytes() -> None:
    plan = _Stack().plan([_undecodable(41, "truncated_body", partition=5)])
    [rejected] = plan.rejected
    assert rejected.reason == "truncated_body"
    assert rejected.detail == "truncated_body: bad body"
    assert rejected.stage == "decode"
    assert rejected.raw == b"\x00\x00\x00\x00\x07\xff"
    assert (rejected.source_topic, rejected.source_partition, rejected.source_offset) == (
        TOPIC,
        5,
        41,
    )
    assert rejected.rejected_at == NOW
    assert (rejected.event_id, rejected.comment_id, rejected.user_id) == (None, None, None)
    assert (plan.moderated, plan.published, plan.outcomes) == ([], [], [])
    assert (plan.histories, plan.heads, plan.partition_of) == ({}, {}, {})


def test_an_undecodable_record_without_a_code_is_undecodable() -> None:
    [rejected] = _Stack().plan([_undecodable(1, None)]).rejected
    assert rejected.reason == "undecodable"


def test_an_undecodable_record_does_not_stop_the_batch() -> None:
    plan = _Stack().plan([_in(10), _undecodable(11), _in(12)])
    assert [r.source_offset for r in plan.rejected] == [11]
    assert _positions(plan) == [(10, None), (12, 10)]


def test_banned_users_and_unknown_events_are_rejected_while_their_neighbours_publish() -> None:
    batch = [
        _in(10),
        _in(11, user="u-eve"),
        _in(12, user="u-bob"),
        _in(13, event="evt-gone"),
        _in(14),
    ]
    plan = _Stack().plan(batch)
    assert [c.position for c in plan.published] == [10, 12, 14]
    assert [(r.reason, r.stage, r.source_offset) for r in plan.rejected] == [
        ("user_banned", "validate", 11),
        ("event_not_found", "validate", 13),
    ]
    banned = plan.rejected[0]
    assert (banned.event_id, banned.comment_id, banned.user_id) == ("evt-1", "c-11", "u-eve")
    assert (banned.gateway_id, banned.trace_parent, banned.raw) == ("gw-1", "trace-11", b"raw-11")
    assert banned.source_partition == 3


def test_a_rejected_comment_is_neither_moderated_nor_remembered() -> None:
    plan = _Stack().plan([_in(11, user="u-eve")])
    assert plan.moderated == []
    assert plan.histories == {}
    assert plan.heads == {}


# Positions


def test_positions_are_the_submitted_records_offsets() -> None:
    plan = _Stack().plan([_in(7), _in(8, user="u-bob"), _in(20)])
    assert [c.position for c in plan.published] == [7, 8, 20]


def test_previous_positions_chain_through_a_batch() -> None:
    plan = _Stack().plan([_in(7), _in(8, user="u-bob"), _in(20)])
    assert _positions(plan) == [(7, None), (8, 7), (20, 8)]
    assert plan.heads == {"evt-1": (7, 8, 20)}
    assert plan.unknown_previous == []


def test_previous_positions_chain_per_event() -> None:
    batch = [_in(1), _in(2, event="evt-2"), _in(3), _in(4, event="evt-2"), _in(5)]
    plan = _Stack().plan(batch)
    assert [(c.event_id, c.position, c.previous_position) for c in plan.published] == [
        ("evt-1", 1, None),
        ("evt-2", 2, None),
        ("evt-1", 3, 1),
        ("evt-2", 4, 2),
        ("evt-1", 5, 3),
    ]


def test_previous_positions_chain_across_batches_when_heads_are_written_back() -> None:
    stack = _Stack()
    first = stack.run([_in(7), _in(8, user="u-bob")])
    second = stack.run([_in(15), _in(16, user="u-bob")], now_ms=NOW + 1_000)
    assert _positions(first) == [(7, None), (8, 7)]
    assert _positions(second) == [(15, 8), (16, 15)]
    assert stack.heads["evt-1"] == (7, 8, 15, 16)


def test_without_written_back_heads_every_batch_would_start_a_new_chain() -> None:
    stack = _Stack()
    stack.plan([_in(7)])
    assert _positions(stack.plan([_in(15)])) == [(15, None)]


def test_held_and_blocked_comments_are_skipped_by_the_chain() -> None:
    plan = _Stack().plan(
        [_in(10), _in(11, "WHAT A GOAL BY THE KEEPER"), _in(12, "spoiler: 3-1"), _in(13)]
    )
    assert _positions(plan) == [(10, None), (13, 10)]


def test_a_replay_older_than_the_remembered_heads_asks_the_permanent_tier() -> None:
    stack = _Stack()
    stack.heads["evt-1"] = tuple(range(100, 100 + HEADS_KEPT))
    plan = stack.plan([_in(50), _in(51)])
    assert _positions(plan) == [(50, UNKNOWN), (51, 50)]
    assert plan.unknown_previous == [0]
    assert plan.heads == {"evt-1": (50, 51)}


def test_a_batch_newer_than_the_remembered_heads_chains_onto_them() -> None:
    stack = _Stack()
    stack.heads["evt-1"] = tuple(range(100, 100 + HEADS_KEPT))
    plan = stack.plan([_in(500), _in(501)])
    assert _positions(plan) == [(500, 100 + HEADS_KEPT - 1), (501, 500)]
    assert plan.unknown_previous == []
    assert plan.heads["evt-1"] == (*range(102, 100 + HEADS_KEPT), 500, 501)


def test_the_published_record_carries_the_partitions_epoch() -> None:
    plan = _Stack().plan([_in(1, partition=0), _in(2, event="evt-2", partition=7)])
    assert [c.epoch for c in plan.published] == [EPOCH, EPOCH + 7]


def test_published_comments_are_enriched_with_the_authors_profile() -> None:
    stack = _Stack()
    stack.users["u-mod"] = _user("u-mod", display_name="", roles=("moderator",))
    plan = stack.plan([_in(1), _in(2, user="u-new"), _in(3, user="u-mod")])
    authors = [(c.display_name, c.roles, c.badges) for c in plan.published]
    assert authors == [
        ("U-ADA", (), ("subscriber", "verified")),
        ("u-new", (), ()),  # no profile yet: the id stands in
        ("u-mod", ("moderator",), ()),
    ]


def test_the_published_record_keeps_the_submitted_fields() -> None:
    incoming = _in(9)
    assert incoming.comment is not None
    comment = replace(incoming.comment, reply_to="c-1", language_hint="fr")
    [published] = _Stack().plan([replace(incoming, comment=comment)]).published
    assert published == CommentPublished(
        comment_id="c-9",
        event_id="evt-1",
        user_id="u-ada",
        display_name="U-ADA",
        badges=("subscriber", "verified"),
        text="nice play",
        reply_to="c-1",
        language="fr",
        position=9,
        previous_position=None,
        epoch=EPOCH + 3,
        submitted_at=T0 + 9,
        published_at=NOW,
        trace_parent="trace-9",
    )


def test_the_normalised_text_is_what_gets_moderated_and_published() -> None:
    plan = _Stack().plan([_in(1, "  what\u200b a\n\n goal  ")])
    assert plan.moderated[0].text == plan.published[0].text == "what a goal"


# Replays: the same batch, the same result.


def test_replaying_a_batch_after_its_state_was_written_publishes_identical_records() -> None:
    stack = _Stack()
    stack.run([_in(1), _in(2, user="u-bob")])
    batch = [
        _in(5),
        _in(6, user="u-eve"),
        _in(7, "spoiler!"),
        _undecodable(8),
        _in(9, user="u-bob"),
        _in(10, event="evt-2"),
        _in(11, cid="c-5"),  # a retry of c-5: duplicate
    ]
    first = stack.run(batch)
    state = (dict(stack.histories), dict(stack.heads))

    replayed = stack.run(batch)  # crash after the state write, before the commit
    assert replayed.published == first.published
    assert replayed.moderated == first.moderated
    assert replayed.rejected == first.rejected
    assert replayed.outcomes == first.outcomes
    assert (replayed.histories, replayed.heads) == (first.histories, first.heads)
    assert (dict(stack.histories), dict(stack.heads)) == state
    assert [r.reason for r in first.rejected] == ["user_banned", "corrupt_body", "duplicate"]


def test_a_replay_at_another_time_differs_only_in_the_processing_times() -> None:
    stack = _Stack()
    batch = [_in(5), _in(6, user="u-bob"), _in(7)]
    first = stack.run(batch)
    replayed = stack.run(batch, now_ms=NOW + 30_000)
    assert [replace(c, published_at=NOW) for c in replayed.published] == first.published


def test_replaying_the_tail_of_a_batch_gives_the_same_records_for_it() -> None:
    stack = _Stack()
    batch = [_in(5), _in(6, user="u-bob"), _in(7), _in(8, user="u-bob")]
    first = stack.run(batch)
    stack.run([_in(9)])  # the next batch was processed too
    tail = stack.run(batch[2:])
    assert tail.published == first.published[2:]


def test_a_comment_replayed_with_itself_in_history_is_not_a_duplicate() -> None:
    stack = _Stack()
    stack.events["evt-1"] = _live("evt-1", slow_mode_s=30)
    first = stack.run([_in(5)])
    assert stack.histories[history_key("evt-1", "u-ada")] == (PastPost(5, T0 + 5, "c-5"),)
    assert stack.run([_in(5)]).published == first.published


def test_replaying_a_batch_spanning_a_minute_does_not_publish_a_caught_retry() -> None:
    stack = _Stack()
    stack.run([_in(1, at=T0, cid="c-1")])  # committed
    batch = [_in(2, at=T0 + 1_000, cid="c-1"), _in(3, at=T0 + 61_000)]  # a retry, then later
    first = stack.run(batch)
    assert [r.reason for r in first.rejected] == ["duplicate"]
    replayed = stack.run(batch)  # crash after the state write, before the commit
    assert replayed.published == first.published


# Moderation outcomes


def test_a_held_and_a_blocked_comment_are_moderated_but_not_published() -> None:
    plan = _Stack().plan([_in(1), _in(2, "WHAT A GOAL BY THE KEEPER"), _in(3, "spoiler: 3-1")])
    assert [(m.comment_id, m.decision, m.reasons) for m in plan.moderated] == [
        ("c-1", Decision.APPROVE, ()),
        ("c-2", Decision.HOLD_FOR_REVIEW, ("caps_flood",)),
        ("c-3", Decision.BLOCK, ("blocked_term",)),
    ]
    assert [c.comment_id for c in plan.published] == ["c-1"]
    assert plan.rejected == []


def test_the_moderation_record_says_who_decided_when_and_on_which_scores() -> None:
    plan = _Stack().plan([_in(3, "spoiler: 3-1")])
    [moderated] = plan.moderated
    assert moderated.engine_version == ENGINE_VERSION
    assert moderated.moderated_at == NOW
    assert moderated.latency_ms == NOW - (T0 + 3)
    assert moderated.scores == {"spam": 0.0, "toxicity": 1.0}
    assert moderated.submitted() == _in(3, "spoiler: 3-1").comment


def test_the_events_own_terms_and_thresholds_decide() -> None:
    plan = _Stack().plan([_in(1, "spoiler", event="evt-2"), _in(2, "spoiler", event="evt-1")])
    assert [m.decision for m in plan.moderated] == [Decision.APPROVE, Decision.BLOCK]


def test_held_and_blocked_comments_still_count_for_rate_and_duplicates() -> None:
    stack = _Stack()
    plan = stack.plan([_in(1, "spoiler"), _in(2, "spoiler again", cid="c-1")])
    assert [r.reason for r in plan.rejected] == ["duplicate"]
    assert stack.plan([_in(1, "spoiler")]).histories == {
        history_key("evt-1", "u-ada"): (PastPost(1, T0 + 1, "c-1"),)
    }


# State and bookkeeping


def test_histories_follow_the_batch_and_feed_later_comments_of_it() -> None:
    stack = _Stack()
    stack.events["evt-1"] = _live("evt-1", slow_mode_s=10)
    plan = stack.plan([_in(1, at=T0), _in(2, at=T0 + 3_000), _in(3, at=T0 + 10_000)])
    assert [r.reason for r in plan.rejected] == ["slow_mode"]
    assert plan.histories == {
        history_key("evt-1", "u-ada"): (PastPost(1, T0, "c-1"), PastPost(3, T0 + 10_000, "c-3"))
    }


def test_histories_written_back_carry_the_rate_limit_across_batches() -> None:
    stack = _Stack()
    stack.limits = CommentLimits(posts_per_minute=3)
    stack.run([_in(1), _in(2), _in(3)])
    plan = stack.run([_in(4)])
    assert [r.reason for r in plan.rejected] == ["rate_limited"]


def test_a_rate_limit_above_the_default_history_size_is_still_enforced() -> None:
    stack = _Stack()
    stack.limits = CommentLimits(posts_per_minute=100)
    stack.run([_in(i, at=T0 + i * 100) for i in range(1, 101)])
    plan = stack.run([_in(101, at=T0 + 101 * 100)])
    assert [r.reason for r in plan.rejected] == ["rate_limited"]


def test_partition_of_names_the_source_partition_of_every_state_key() -> None:
    batch = [
        _in(1, partition=2),
        _in(2, user="u-bob", partition=2),
        _in(1, event="evt-2", partition=5),
        _in(3, user="u-eve", partition=2),  # rejected: writes no state
    ]
    plan = _Stack().plan(batch)
    assert plan.partition_of == {
        history_key("evt-1", "u-ada"): 2,
        history_key("evt-1", "u-bob"): 2,
        "evt-1": 2,
        history_key("evt-2", "u-ada"): 5,
        "evt-2": 5,
    }
    assert set(plan.partition_of) == set(plan.histories) | set(plan.heads)


def test_a_history_key_cannot_collide_across_events_and_users() -> None:
    assert history_key("evt-1", "u-1") != history_key("evt-1u", "-1")
    assert history_key("a", "b") == "a\x1fb"


def test_outcomes_cover_every_decoded_comment() -> None:
    batch = [
        _in(1),
        _in(2, "WHAT A GOAL BY THE KEEPER", user="u-bob"),
        _in(3, "spoiler: 3-1"),
        _in(4, user="u-eve"),
        _undecodable(5),
        _in(6, event="evt-nowhere"),
        _in(7, user="u-bob", event="evt-2"),
    ]
    plan = _Stack().plan(batch)
    expected = Counter(
        [
            Outcome("evt-1", T0 + 1, "u-ada", None, "APPROVE", 3, 1),
            Outcome("evt-1", T0 + 2, "u-bob", None, "HOLD_FOR_REVIEW", 3, 2),
            Outcome("evt-1", T0 + 3, "u-ada", None, "BLOCK", 3, 3),
            Outcome("evt-1", T0 + 4, "u-eve", None, REJECTED, 3, 4),
            Outcome("evt-nowhere", T0 + 6, "u-ada", None, REJECTED, 3, 6),
            Outcome("evt-2", T0 + 7, "u-bob", None, "APPROVE", 3, 7),
        ]
    )
    assert Counter(plan.outcomes) == expected
    decoded = [item for item in batch if item.comment is not None]
    assert len(plan.outcomes) == len(decoded)
    assert len(plan.rejected) + len(plan.moderated) == len(batch)


def test_an_empty_batch_plans_nothing() -> None:
    plan = _Stack().plan([])
    assert plan == BatchPlan()


def test_a_batch_of_only_rejections_never_calls_the_engine() -> None:
    class Refusing:
        version = "never"

        def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
            raise AssertionError("no comment should reach moderation")

    stack = _Stack()
    plan = CommentProcessor(Refusing(), CommentLimits()).plan(
        [_in(1, user="u-eve"), _undecodable(2)],
        events=stack.events.get,
        users=stack.users.get,
        history=lambda key: (),
        heads=lambda event_id: (),
        epochs=lambda partition: EPOCH,
        now_ms=NOW,
    )
    assert [r.reason for r in plan.rejected] == ["user_banned", "corrupt_body"]
    assert plan.moderation_s == 0.0


@pytest.mark.parametrize("size", [1, 50, 500])
def test_the_plan_is_a_pure_function_of_its_inputs(size: int) -> None:
    batch = [
        _in(i, user=("u-ada", "u-bob", "u-eve")[i % 3], event=("evt-1", "evt-2")[i % 2])
        for i in range(size)
    ]
    one, two = _Stack().plan(batch), _Stack().plan(batch)
    one.moderation_s = two.moderation_s = 0.0
    assert one == two


# Human review: a moderator's decision travels comments.submitted (CommentSubmitted.review)


def _held_row(offset: int, text: str = "WHAT A GOAL BY THE KEEPER", user: str = "u-ada") -> Any:
    from connectors.cassandra_store import HeldComment

    submitted = _in(offset, text, user=user).comment
    assert submitted is not None
    return HeldComment(
        event_id=submitted.event_id,
        position=offset,
        comment_id=submitted.comment_id,
        user_id=submitted.user_id,
        text=submitted.text,
        client_nonce=None,
        reply_to=None,
        submitted_at=submitted.submitted_at,
        gateway_id=submitted.gateway_id,
        trace_parent=submitted.trace_parent,
        language_hint=None,
        language="en",
        scores={"spam": 0.65, "toxicity": 0.0},
        reasons=["caps_flood"],
        held_at=NOW,
    )


def _review(offset: int, held: Any, decision: str = "APPROVE") -> Incoming:
    record = held.as_review(decision, "mod-1", NOW)
    return Incoming(TOPIC, 3, offset, f"raw-{offset}".encode(), record)


def test_a_held_comment_is_queued_for_review_with_its_position() -> None:
    plan = _Stack().plan([_in(1), _in(2, "WHAT A GOAL BY THE KEEPER")])
    assert [(position, m.comment_id) for position, m in plan.held] == [(2, "c-2")]


def test_an_approved_comment_is_published_at_the_review_records_offset_in_the_chain() -> None:
    stack = _Stack()
    stack.run([_in(1), _in(2, "WHAT A GOAL BY THE KEEPER"), _in(3)])
    held = _held_row(2)
    plan = stack.plan([_review(7, held), _in(8)], now_ms=NOW + 1, reviews={7: held})
    assert [(c.comment_id, c.position, c.previous_position) for c in plan.published] == [
        ("c-2", 7, 3),
        ("c-8", 8, 7),
    ]
    approved = plan.published[0]
    assert approved.text == "WHAT A GOAL BY THE KEEPER" and approved.language == "en"
    [decision, _] = plan.moderated
    assert (decision.decision, decision.reviewed_by) == (Decision.APPROVE, "mod-1")
    assert decision.reasons[-1] == "approved_by_moderator"


def test_a_rejected_comment_is_never_published() -> None:
    held = _held_row(2)
    plan = _Stack().plan([_review(7, held, "REJECT")], now_ms=NOW + 1, reviews={7: held})
    assert plan.published == []
    [decision] = plan.moderated
    assert (decision.decision, decision.reviewed_by) == (Decision.BLOCK, "mod-1")


def test_a_review_that_decides_nothing_is_dead_lettered_as_already_reviewed() -> None:
    review = _review(7, _held_row(2))
    plan = CommentProcessor(RulesEngine(), CommentLimits()).plan(
        [review],
        events=_Stack().events.get,
        users=_Stack().users.get,
        history=lambda key: (),
        heads=lambda event_id: (),
        epochs=lambda partition: EPOCH,
        now_ms=NOW,
        reviews={7: None},
    )
    assert plan.published == [] and plan.moderated == []
    assert [(r.reason, r.stage, r.comment_id) for r in plan.rejected] == [
        ("already_reviewed", "review", "c-2")
    ]


def test_reviews_are_neither_validated_nor_remembered_as_posts() -> None:
    stack = _Stack()
    stack.users["u-ada"] = _user("u-ada", verified=True)
    held = _held_row(2)
    # A review arrives long after slow mode or the rate limit would have refused a post.
    stack.events["evt-1"] = _live("evt-1", slow_mode_s=600)
    plan = stack.plan([_review(7, held)], reviews={7: held})
    assert [c.comment_id for c in plan.published] == ["c-2"]
    assert plan.histories == {}


# Hidden users: shadow comments


def test_a_hidden_users_comment_is_a_shadow_outside_the_public_chain() -> None:
    stack = _Stack()
    stack.users["u-bob"] = _user("u-bob", hidden=True)
    plan = stack.run([_in(1), _in(2, user="u-bob"), _in(3)])
    assert [(c.position, c.previous_position, c.visible_to) for c in plan.published] == [
        (1, None, None),
        (2, 1, "u-bob"),
        (3, 1, None),
    ]
    assert stack.heads["evt-1"] == (1, 3)


# User context: strikes and first-time commenters


def test_a_held_or_blocked_post_is_a_strike_in_the_users_history() -> None:
    stack = _Stack()
    stack.run([_in(1, "nice play", user="u-bob"), _in(2, "spoiler", user="u-bob")])
    assert [p.flagged for p in stack.histories[history_key("evt-1", "u-bob")]] == [False, True]


class _Scores:
    """Scores every comment the same, so only context can change the decision."""

    version = "fixed"

    def __init__(self, spam: float, toxicity: float = 0.0) -> None:
        self.scores = {"spam": spam, "toxicity": toxicity}

    def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
        return [Assessment(scores=dict(self.scores)) for _ in batch]


def _decide(engine: Any, batch: list[Incoming], stack: _Stack) -> BatchPlan:
    plan = CommentProcessor(engine, CommentLimits()).plan(
        batch,
        events=stack.events.get,
        users=stack.users.get,
        history=lambda key: stack.histories.get(key, ()),
        heads=lambda event_id: (),
        epochs=lambda partition: EPOCH,
        now_ms=NOW,
    )
    stack.write_back(plan)
    return plan


def test_a_first_time_commenter_gets_a_stricter_spam_review_threshold() -> None:
    stack = _Stack()
    first = _decide(_Scores(spam=0.55), [_in(1, "buy now", user="u-bob")], stack)
    [m] = first.moderated
    assert (m.decision, m.reasons) == (
        Decision.HOLD_FOR_REVIEW,
        ("spam_score", "first_time_commenter"),
    )
    # The same score from a verified regular passes.
    again = _decide(_Scores(spam=0.55), [_in(2, "buy now", user="u-ada")], stack)
    assert again.moderated[0].decision is Decision.APPROVE


def test_strikes_lower_the_review_thresholds_of_that_user_only() -> None:
    stack = _Stack()
    t = T0
    stack.histories[history_key("evt-1", "u-bob")] = (
        PastPost(1, t, "c-1", flagged=True),
        PastPost(2, t + 1, "c-2", flagged=True),
    )
    stack.histories[history_key("evt-1", "u-carl")] = (PastPost(3, t + 2, "c-3"),)
    plan = _decide(
        _Scores(spam=0.0, toxicity=0.35),
        [_in(5, "meh", user="u-bob"), _in(6, "meh", user="u-carl")],
        stack,
    )
    assert [(m.user_id, m.decision) for m in plan.moderated] == [
        ("u-bob", Decision.HOLD_FOR_REVIEW),
        ("u-carl", Decision.APPROVE),
    ]
    assert plan.moderated[0].reasons == ("toxicity_score", "user_strikes")


def test_a_strict_event_holds_more_and_a_relaxed_one_less() -> None:
    from schemas.records import Strictness

    for strictness, expected in (
        (Strictness.STRICT, Decision.HOLD_FOR_REVIEW),
        (Strictness.STANDARD, Decision.APPROVE),
    ):
        stack = _Stack()
        stack.events["evt-1"] = _live("evt-1", strictness=strictness)
        plan = _decide(_Scores(spam=0.0, toxicity=0.45), [_in(1, "meh", user="u-ada")], stack)
        assert plan.moderated[0].decision is expected, strictness
    stack = _Stack()
    stack.events["evt-1"] = _live("evt-1", strictness=Strictness.RELAXED)
    plan = _decide(_Scores(spam=0.0, toxicity=0.55), [_in(1, "meh", user="u-ada")], stack)
    assert plan.moderated[0].decision is Decision.APPROVE
