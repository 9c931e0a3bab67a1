"""One batch of submitted comments through validate → moderate → enrich → publish.

:meth:`CommentProcessor.plan` is pure: it takes decoded records with their offsets and
read-only views of state, and returns everything the batch must cause — records to
produce, state to write, rows for the sinks — as a :class:`BatchPlan`. The Faust agent
in ``topologies/app.py`` executes the plan (Kafka, tables, Cassandra, Redis) and only
then acknowledges the batch, so a crash re-plans the same batch to the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.records import (
    CommentModerated,
    CommentPublished,
    CommentRejected,
    CommentSubmitted,
    Decision,
    LiveEvent,
    ReviewDecision,
    UserProfile,
)
from topologies.moderation.normalize import fingerprint
from topologies.stages.enrich import enrich
from topologies.stages.moderate import (
    ModerationEngine,
    ModerationInput,
    RecentPost,
    context_of,
    decide_in_context,
)
from topologies.stages.publish import UNKNOWN, advance, previous_for, publish
from topologies.stages.validate import (
    HISTORY_KEPT,
    Accepted,
    CommentLimits,
    PastPost,
    remember,
    validate,
)

REJECTED = "REJECTED"
REVIEW_VERSION = "review-1"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A record of ``comments.submitted`` as the agent got it: decoded, or why not."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    comment: CommentSubmitted | None
    error_code: str | None = None
    error_detail: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one comment, for analytics."""

    event_id: str
    at_ms: int
    user_id: str
    language: str | None
    outcome: str  # APPROVE | HOLD_FOR_REVIEW | BLOCK | REJECTED
    partition: int = -1
    offset: int = -1


@dataclass(slots=True)
class BatchPlan:
    rejected: list[CommentRejected] = field(default_factory=list)
    moderated: list[CommentModerated] = field(default_factory=list)
    published: list[CommentPublished] = field(default_factory=list)
    # Comments held for review, with their position: the review queue's new rows.
    held: list[tuple[int, CommentModerated]] = field(default_factory=list)
    # State to write back, one value per key (the last one of the batch).
    histories: dict[str, tuple[PastPost, ...]] = field(default_factory=dict)
    heads: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # The source partition of each state key above (its changelog partition).
    partition_of: dict[str, int] = field(default_factory=dict)
    # Published records whose previous_position must come from the permanent tier.
    unknown_previous: list[int] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    moderation_s: float = 0.0


def history_key(event_id: str, user_id: str) -> str:
    return f"{event_id}\x1f{user_id}"


class CommentProcessor:
    def __init__(self, engine: ModerationEngine, limits: CommentLimits) -> None:
        self.engine = engine
        self.limits = limits

    def plan(
        self,
        batch: Sequence[Incoming],
        *,
        events: Callable[[str], LiveEvent | None],
        users: Callable[[str], UserProfile | None],
        history: Callable[[str], tuple[PastPost, ...]],
        heads: Callable[[str], tuple[int, ...]],
        epochs: Callable[[int], int],
        now_ms: int,
        reviews: Mapping[int, Any] = {},
    ) -> BatchPlan:
        """``reviews``: for each review record of the batch (by offset), the held comment
        it decides (``CommentStore.claim_review``), or None when it decides nothing."""
        plan = BatchPlan()
        accepted: list[tuple[Incoming, CommentSubmitted, LiveEvent, UserProfile | None]] = []
        inputs: list[ModerationInput] = []
        # Where each accepted comment's history entry is, to mark it a strike if flagged.
        history_of: list[str] = []

        for item in batch:
            comment = item.comment
            if comment is None:
                plan.rejected.append(
                    _rejection(
                        item, item.error_code or "undecodable", item.error_detail, "decode", now_ms
                    )
                )
                continue
            if comment.review is not None:
                self._review(
                    plan,
                    item,
                    comment,
                    reviews.get(item.offset),
                    events,
                    users,
                    heads,
                    epochs,
                    now_ms,
                )
                continue
            key = history_key(comment.event_id, comment.user_id)
            past = plan.histories.get(key)
            if past is None:
                past = history(key)
            event = events(comment.event_id)
            user = users(comment.user_id)
            verdict = validate(
                comment,
                offset=item.offset,
                event=event,
                user=user,
                history=past,
                limits=self.limits,
            )
            if not isinstance(verdict, Accepted):
                plan.rejected.append(
                    _rejection(
                        item, verdict.reason, verdict.detail, "validate", now_ms, comment=comment
                    )
                )
                plan.outcomes.append(
                    Outcome(
                        comment.event_id,
                        comment.submitted_at,
                        comment.user_id,
                        None,
                        REJECTED,
                        item.partition,
                        item.offset,
                    )
                )
                continue
            assert event is not None  # validate rejects unknown events
            print_ = fingerprint(verdict.comment.text)
            plan.histories[key] = remember(
                past,
                PastPost(item.offset, comment.submitted_at, comment.comment_id, print_),
                # The rate limit needs a minute's posts: keep at least that many.
                keep_max=max(HISTORY_KEPT, self.limits.posts_per_minute),
            )
            plan.partition_of[key] = item.partition
            accepted.append((item, verdict.comment, event, user))
            history_of.append(key)
            recent = tuple(
                RecentPost(p.at_ms, p.fingerprint, p.flagged)
                for p in past
                if p.offset < item.offset
            )
            inputs.append(ModerationInput(verdict.comment, event, user, recent, print_))

        if not accepted:
            return plan

        t0 = time.perf_counter()
        assessments = self.engine.assess(inputs)
        plan.moderation_s = time.perf_counter() - t0

        for (item, comment, event, user), assessment, moderation_input, key in zip(
            accepted, assessments, inputs, history_of, strict=True
        ):
            decision, reasons = decide_in_context(assessment, event, context_of(moderation_input))
            plan.moderated.append(
                CommentModerated.of(
                    comment,
                    decision=decision,
                    moderated_at=now_ms,
                    engine_version=self.engine.version,
                    scores=assessment.scores,
                    reasons=reasons,
                    language=assessment.language,
                    latency_ms=max(0, now_ms - comment.submitted_at),
                )
            )
            plan.outcomes.append(
                Outcome(
                    comment.event_id,
                    comment.submitted_at,
                    comment.user_id,
                    assessment.language,
                    decision.value,
                    item.partition,
                    item.offset,
                )
            )
            if decision is not Decision.APPROVE:
                _mark_strike(plan, key, item.offset)
                if decision is Decision.HOLD_FOR_REVIEW:
                    plan.held.append((item.offset, plan.moderated[-1]))
                continue
            self._publish(plan, item, comment, user, assessment.language, heads, epochs, now_ms)
        return plan

    @staticmethod
    def _publish(
        plan: BatchPlan,
        item: Incoming,
        comment: CommentSubmitted,
        user: UserProfile | None,
        language: str | None,
        heads: Callable[[str], tuple[int, ...]],
        epochs: Callable[[int], int],
        now_ms: int,
    ) -> None:
        """Publish ``comment`` at ``item.offset``. A hidden author's comment is a shadow
        comment: shown to the author alone, outside the public chain (heads unmoved)."""
        event_heads = plan.heads.get(comment.event_id)
        if event_heads is None:
            event_heads = heads(comment.event_id)
        previous = previous_for(event_heads, item.offset)
        if previous == UNKNOWN:
            plan.unknown_previous.append(len(plan.published))
        hidden = user is not None and user.hidden
        if not hidden:
            plan.heads[comment.event_id] = advance(event_heads, item.offset)
            plan.partition_of[comment.event_id] = item.partition
        published = publish(
            comment,
            author=enrich(comment, user),
            language=language,
            position=item.offset,
            previous_position=previous,
            epoch=epochs(item.partition),
            published_at=now_ms,
        )
        if hidden:
            published = replace(published, visible_to=comment.user_id)
        plan.published.append(published)

    def _review(
        self,
        plan: BatchPlan,
        item: Incoming,
        record: CommentSubmitted,
        held: Any,
        events: Callable[[str], LiveEvent | None],
        users: Callable[[str], UserProfile | None],
        heads: Callable[[str], tuple[int, ...]],
        epochs: Callable[[int], int],
        now_ms: int,
    ) -> None:
        """A moderator's decision about a held comment (``CommentSubmitted.review``):
        APPROVE publishes it here, at this record's offset (it enters the event's order
        when approved, keeping its comment_id); REJECT drops it for good. ``held`` is None
        when the record decides nothing (decided before, or nothing held there)."""
        review = record.review
        assert review is not None
        if held is None:
            plan.rejected.append(
                _rejection(
                    item,
                    "already_reviewed",
                    f"no pending held comment {record.comment_id} at {review.held_position}",
                    "review",
                    now_ms,
                    comment=record,
                )
            )
            return
        event = events(record.event_id)
        approve = review.decision is ReviewDecision.APPROVE
        if approve and (event is None or event.deleted):
            plan.rejected.append(
                _rejection(
                    item,
                    "event_not_found",
                    f"no event {record.event_id!r}",
                    "review",
                    now_ms,
                    comment=record,
                )
            )
            return
        comment = replace(record, review=None)
        plan.moderated.append(
            CommentModerated.of(
                comment,
                decision=Decision.APPROVE if approve else Decision.BLOCK,
                moderated_at=now_ms,
                engine_version=REVIEW_VERSION,
                scores=held.scores,
                reasons=(
                    *held.reasons,
                    "approved_by_moderator" if approve else "rejected_by_moderator",
                ),
                language=held.language,
                latency_ms=0,
                reviewed_by=review.reviewed_by,
            )
        )
        if approve:
            user = users(record.user_id)
            self._publish(plan, item, comment, user, held.language, heads, epochs, now_ms)


def _mark_strike(plan: BatchPlan, key: str, offset: int) -> None:
    """The user's post at ``offset`` was held or blocked: a strike in their history."""
    history = plan.histories.get(key)
    if history:
        plan.histories[key] = tuple(
            replace(p, flagged=True) if p.offset == offset else p for p in history
        )


def _rejection(
    item: Incoming,
    reason: str,
    detail: str,
    stage: str,
    now_ms: int,
    comment: CommentSubmitted | None = None,
) -> CommentRejected:
    return CommentRejected(
        reason=reason,
        detail=detail,
        stage=stage,
        event_id=comment.event_id if comment else None,
        comment_id=comment.comment_id if comment else None,
        user_id=comment.user_id if comment else None,
        gateway_id=comment.gateway_id if comment else None,
        source_topic=item.topic,
        source_partition=item.partition,
        source_offset=item.offset,
        # The original bytes travel with every dead letter: nothing is lost, and a
        # fixed pipeline can replay them.
        raw=item.raw,
        rejected_at=now_ms,
        trace_parent=comment.trace_parent if comment else None,
    )
