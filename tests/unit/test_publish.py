"""publish: positions, the previous position of each comment, and the published record."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from schemas.records import CommentSubmitted
from topologies.stages.enrich import Author
from topologies.stages.publish import HEADS_KEPT, UNKNOWN, advance, previous_for, publish


def _publish_all(positions: list[int], heads: tuple[int, ...] = ()) -> list[int | None]:
    previous: list[int | None] = []
    for position in positions:
        previous.append(previous_for(heads, position))
        heads = advance(heads, position)
    return previous


def test_an_events_first_comment_has_no_previous_position() -> None:
    assert previous_for((), 42) is None
    assert advance((), 42) == (42,)


def test_each_comment_points_at_the_one_published_before_it() -> None:
    positions = [3, 7, 8, 20, 1_000_000]
    assert _publish_all(positions) == [None, 3, 7, 8, 20]


def test_positions_need_not_be_contiguous_gaps_are_jumps_not_losses() -> None:
    heads: tuple[int, ...] = ()
    for position in (10, 11, 15):
        heads = advance(heads, position)
    assert previous_for(heads, 40) == 15


def test_replaying_a_position_gives_its_original_previous_position() -> None:
    positions = [3, 7, 8, 20, 31]
    first = _publish_all(positions)
    heads: tuple[int, ...] = ()
    for position in positions:
        heads = advance(heads, position)
    assert [previous_for(heads, p) for p in positions] == first


def test_replaying_a_batch_with_the_heads_already_advanced_repeats_it_exactly() -> None:
    batch = [100, 104, 109]
    heads: tuple[int, ...] = (50, 60)
    first = _publish_all(batch, heads)
    advanced = heads
    for position in batch:
        advanced = advance(advanced, position)
    assert _publish_all(batch, advanced) == first == [60, 100, 104]


def test_advancing_to_a_replayed_position_forgets_its_future() -> None:
    assert advance((3, 7, 8, 20), 8) == (3, 7, 8)
    assert advance((3, 7, 8, 20), 5) == (3, 5)


def test_advance_does_not_change_the_heads_it_was_given() -> None:
    heads = (1, 2, 3)
    advance(heads, 4)
    assert heads == (1, 2, 3)


def test_heads_are_bounded_at_heads_kept_and_keep_the_latest() -> None:
    heads: tuple[int, ...] = ()
    for position in range(0, 1_000, 5):
        heads = advance(heads, position)
        assert len(heads) <= HEADS_KEPT
    assert HEADS_KEPT == 64
    assert heads == tuple(range(1_000 - 5 * HEADS_KEPT, 1_000, 5))


def test_a_replay_older_than_the_heads_reach_is_unknown() -> None:
    heads = tuple(range(100, 100 + HEADS_KEPT))
    assert previous_for(heads, 99) == UNKNOWN
    assert previous_for(heads, 0) == UNKNOWN
    # The oldest head's own previous position was forgotten too.
    assert previous_for(heads, 100) == UNKNOWN
    assert previous_for(heads, 101) == 100


def test_unknown_is_not_a_position() -> None:
    assert UNKNOWN == -1
    assert UNKNOWN is not None


def test_a_replay_older_than_short_heads_is_an_events_first_comment() -> None:
    heads = tuple(range(100, 100 + HEADS_KEPT - 1))
    assert previous_for(heads, 50) is None


def test_previous_positions_form_one_chain_under_random_replays() -> None:
    rng = random.Random(5)
    order = sorted(rng.sample(range(10_000), 200))
    truth = dict(zip(order, [None, *order[:-1]], strict=True))
    heads: tuple[int, ...] = ()
    done = 0
    while done < len(order):
        # Publish a few, then (sometimes) replay from an earlier point.
        for position in order[done : done + 10]:
            assert previous_for(heads, position) == truth[position]
            heads = advance(heads, position)
        done += 10
        done = max(0, done - rng.choice([0, 0, 3, 10]))
    assert [previous_for(heads, p) for p in order[-HEADS_KEPT + 1 :]] == [
        truth[p] for p in order[-HEADS_KEPT + 1 :]
    ]


def _submitted(**fields: Any) -> CommentSubmitted:
    base = CommentSubmitted(
        comment_id="c-1",
        event_id="evt-1",
        user_id="u-1",
        text="Golazo!",
        reply_to="c-0",
        submitted_at=1_000,
        gateway_id="gw-1",
        trace_parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        language_hint="es-ES",
    )
    return replace(base, **fields)


def test_the_published_record_carries_position_previous_epoch_and_author() -> None:
    comment = _submitted()
    author = Author(display_name="Zoé", roles=("member",), badges=("verified",))
    record = publish(
        comment,
        author=author,
        language="es",
        position=77,
        previous_position=70,
        epoch=3,
        published_at=1_040,
    )
    assert (record.position, record.previous_position, record.epoch) == (77, 70, 3)
    assert (record.display_name, record.roles, record.badges) == ("Zoé", ("member",), ("verified",))
    assert (record.comment_id, record.event_id, record.user_id) == ("c-1", "evt-1", "u-1")
    assert (record.text, record.reply_to, record.language) == ("Golazo!", "c-0", "es")
    assert (record.submitted_at, record.published_at) == (1_000, 1_040)
    assert record.trace_parent == comment.trace_parent


@pytest.mark.parametrize(
    ("detected", "hint", "language"),
    [("es", "es-ES", "es"), (None, "es-ES", "es-ES"), (None, None, None)],
)
def test_the_detected_language_wins_over_the_posters_hint(
    detected: str | None, hint: str | None, language: str | None
) -> None:
    record = publish(
        _submitted(language_hint=hint),
        author=Author(display_name="u-1"),
        language=detected,
        position=1,
        previous_position=None,
        epoch=1,
        published_at=2,
    )
    assert record.language == language
