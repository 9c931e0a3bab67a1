"""One batch of submitted comments through validate → moderate → enrich → publish.

:meth:`CommentProcessor.plan` is pure: it takes decoded records with their offsets and
read-only views of state, and returns everything the batch must cause — records to
produce, state to write, rows for the sinks — as a :class:`BatchPlan`. The Faust agent
in ``topologies/app.py`` executes the plan (Kafka, tables, Cassandra, Redis) and only
then acknowledges the batch, so a crash re-plans the same batch to the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schemas.records import (
    CommentModerated,
    CommentPublished,
    CommentRejected,
    CommentSubmitted,
    Decision,
    LiveEvent,
    UserProfile,
)
from topologies.moderation.normalize import fingerprint
from topologies.stages.enrich import enrich
from topologies.stages.moderate import ModerationEngine, ModerationInput, RecentPost, decide
from topologies.stages.publish import UNKNOWN, advance, previous_for, publish
from topologies.stages.validate import (
    HISTORY_KEPT,
    Accepted,
    Limits,
    Post,
    remember,
    validate,
)

REJECTED = "REJECTED"


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
    # State to write back, one value per key (the last one of the batch).
    histories: dict[str, tuple[Post, ...]] = field(default_factory=dict)
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
    def __init__(self, engine: ModerationEngine, limits: Limits) -> None:
        self.engine = engine
        self.limits = limits

    def plan(
        self,
        batch: Sequence[Incoming],
        *,
        events: Callable[[str], LiveEvent | None],
        users: Callable[[str], UserProfile | None],
        history: Callable[[str], tuple[Post, ...]],
        heads: Callable[[str], tuple[int, ...]],
        epochs: Callable[[int], int],
        now_ms: int,
    ) -> BatchPlan:
        plan = BatchPlan()
        accepted: list[tuple[Incoming, CommentSubmitted, LiveEvent, UserProfile | None]] = []
        inputs: list[ModerationInput] = []

        for item in batch:
            comment = item.comment
            if comment is None:
                plan.rejected.append(
                    _rejection(
                        item, item.error_code or "undecodable", item.error_detail, "decode", now_ms
                    )
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
                Post(item.offset, comment.submitted_at, comment.comment_id, print_),
                # The rate limit needs a minute's posts: keep at least that many.
                keep_max=max(HISTORY_KEPT, self.limits.posts_per_minute),
            )
            plan.partition_of[key] = item.partition
            accepted.append((item, verdict.comment, event, user))
            recent = tuple(
                RecentPost(p.at_ms, p.fingerprint) for p in past if p.offset < item.offset
            )
            inputs.append(ModerationInput(verdict.comment, event, user, recent, print_))

        if not accepted:
            return plan

        t0 = time.perf_counter()
        assessments = self.engine.assess(inputs)
        plan.moderation_s = time.perf_counter() - t0

        for (item, comment, event, user), assessment in zip(accepted, assessments, strict=True):
            decision, reasons = decide(assessment, event.thresholds)
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
                continue
            event_heads = plan.heads.get(comment.event_id)
            if event_heads is None:
                event_heads = heads(comment.event_id)
            previous = previous_for(event_heads, item.offset)
            if previous == UNKNOWN:
                plan.unknown_previous.append(len(plan.published))
            plan.heads[comment.event_id] = advance(event_heads, item.offset)
            plan.partition_of[comment.event_id] = item.partition
            plan.published.append(
                publish(
                    comment,
                    author=enrich(comment, user),
                    language=assessment.language,
                    position=item.offset,
                    previous_position=previous,
                    epoch=epochs(item.partition),
                    published_at=now_ms,
                )
            )
        return plan


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
