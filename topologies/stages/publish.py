"""publish: the CommentPublished record, with its place in the event's order.

**position** is the Kafka offset of the comment's ``CommentSubmitted`` in its partition
of ``comments.submitted``. Every event lives in one partition, so positions strictly
increase in the event's order; re-processing a record after a crash gives it the same
position again, which makes every sink's write idempotent.

**previous_position** is the position of the event's previous published comment, so a
client tells a real gap (it missed ``previous_position``) from a jump (rejected or held
comments in between). The stage remembers the last few positions per event
(:data:`HEADS_KEPT`); a replay older than that asks the permanent tier.

**epoch** names the continuity of positions of a partition; it changes only when
the submitted log itself loses history (a topic recreated: offsets start over).
"""

from __future__ import annotations

from typing import Final

from schemas.records import CommentPublished, CommentSubmitted
from topologies.stages.enrich import Author

HEADS_KEPT: Final = 64
UNKNOWN: Final = -1


def previous_for(heads: tuple[int, ...], position: int) -> int | None:
    """Position of the published comment before ``position``, from the remembered heads.

    Returns ``None`` for an event's first comment and :data:`UNKNOWN` when the heads
    do not reach back far enough (a long replay): the caller then asks Cassandra.
    """
    earlier = [p for p in heads if p < position]
    if earlier:
        return earlier[-1]
    if len(heads) >= HEADS_KEPT:
        return UNKNOWN
    return None


def advance(heads: tuple[int, ...], position: int) -> tuple[int, ...]:
    """Heads after publishing ``position`` (a replayed position replaces its future)."""
    kept = [p for p in heads if p < position]
    kept.append(position)
    return tuple(kept[-HEADS_KEPT:])


def publish(
    comment: CommentSubmitted,
    *,
    author: Author,
    language: str | None,
    position: int,
    previous_position: int | None,
    epoch: int,
    published_at: int,
) -> CommentPublished:
    return CommentPublished(
        comment_id=comment.comment_id,
        event_id=comment.event_id,
        user_id=comment.user_id,
        display_name=author.display_name,
        roles=author.roles,
        badges=author.badges,
        text=comment.text,
        reply_to=comment.reply_to,
        language=language or comment.language_hint,
        position=position,
        previous_position=previous_position,
        epoch=epoch,
        submitted_at=comment.submitted_at,
        published_at=published_at,
        trace_parent=comment.trace_parent,
    )
