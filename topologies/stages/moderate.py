"""moderate: approve, hold for review, or block — with scores and reasons.

The engine is pluggable (:class:`ModerationEngine`): it scores a *batch* of comments, so
ML stages can batch inference. This module ships the rules engine (per-event blocked
terms, link policy, floods of capitals or characters) and the decision logic with the
seed's thresholds (block if spam > 0.8 or toxicity > 0.7; review if spam > 0.6 or
toxicity > 0.5), per event through ``LiveEvent.thresholds``.

Reason codes are stable: ``blocked_term``, ``link_not_allowed``, ``caps_flood``,
``char_flood``, ``emoji_flood``; plus ``spam_score`` / ``toxicity_score`` when a model's
score alone crosses a threshold.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from schemas.records import (
    CommentSubmitted,
    Decision,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
    UserProfile,
)

ENGINE_VERSION = "rules-1"


@dataclass(frozen=True, slots=True)
class Assessment:
    """What an engine found: scores in [0, 1] and the reasons behind them."""

    scores: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ModerationInput:
    comment: CommentSubmitted
    event: LiveEvent
    user: UserProfile | None


class ModerationEngine(Protocol):
    version: str

    def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
        """One assessment per input, in order."""
        ...


_URL = re.compile(
    r"(?:https?://|www\.)([^\s/?#]+)|\b((?:[a-z0-9-]+\.)+(?:com|net|org|io|gg|tv|ly|co|me|"
    r"xyz|info|biz|ru|cn|app|dev|link|click|shop|live|site|online|top)\b)",
    re.IGNORECASE,
)
_REPEAT = re.compile(r"(.)\1{9,}")


def fold(text: str) -> str:
    """Text as matching sees it: compatibility forms folded, case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def _term_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    words = sorted({fold(t).strip() for t in terms if t.strip()}, key=len, reverse=True)
    if not words:
        return None
    # Word boundaries: "ass" must not match "assassin", "Scunthorpe" stays clean.
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)")


def _domain_allowed(domain: str, allowed: Sequence[str]) -> bool:
    domain = domain.lower().rstrip(".")
    return any(domain == a.lower() or domain.endswith("." + a.lower()) for a in allowed)


def _is_emoji(c: str) -> bool:
    return unicodedata.category(c) == "So" or 0x1F000 <= ord(c) <= 0x1FAFF


class RulesEngine:
    """Deterministic rules; cheap enough to run on every comment."""

    version = ENGINE_VERSION

    def __init__(self) -> None:
        self._patterns: dict[tuple[str, ...], re.Pattern[str] | None] = {}

    def _pattern(self, terms: tuple[str, ...]) -> re.Pattern[str] | None:
        if terms not in self._patterns:
            if len(self._patterns) > 10_000:
                self._patterns.clear()
            self._patterns[terms] = _term_pattern(terms)
        return self._patterns[terms]

    def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
        return [self._one(item) for item in batch]

    def _one(self, item: ModerationInput) -> Assessment:
        text, event = item.comment.text, item.event
        folded = fold(text)
        spam = 0.0
        toxicity = 0.0
        reasons: list[str] = []

        pattern = self._pattern(event.blocked_terms)
        if pattern is not None and pattern.search(folded):
            allowed = self._pattern(event.allowed_terms)
            hits = {m.group(0) for m in pattern.finditer(folded)}
            if allowed is None or any(not allowed.fullmatch(h) for h in hits):
                toxicity = 1.0
                reasons.append("blocked_term")

        if event.link_policy is not LinkPolicy.ALLOW:
            for m in _URL.finditer(text):
                domain = m.group(1) or m.group(2) or ""
                if event.link_policy is LinkPolicy.DENY or not _domain_allowed(
                    domain, event.allowed_domains
                ):
                    spam = max(spam, 1.0)
                    reasons.append("link_not_allowed")
                    break

        letters = [c for c in text if c.isalpha()]
        if len(letters) >= 12:
            upper = sum(1 for c in letters if c.isupper())
            if upper / len(letters) > 0.8:
                spam = max(spam, 0.65)
                reasons.append("caps_flood")
        if _REPEAT.search(folded):
            spam = max(spam, 0.65)
            reasons.append("char_flood")
        if len(text) >= 10:
            emoji = sum(1 for c in text if _is_emoji(c))
            if emoji >= 10 and emoji / len(text) > 0.6:
                spam = max(spam, 0.65)
                reasons.append("emoji_flood")

        return Assessment(scores={"spam": spam, "toxicity": toxicity}, reasons=tuple(reasons))


def decide(
    assessment: Assessment, thresholds: ModerationThresholds
) -> tuple[Decision, tuple[str, ...]]:
    """The decision and its reasons; score reasons are added when a score decides alone."""
    spam = assessment.scores.get("spam", 0.0)
    toxicity = assessment.scores.get("toxicity", 0.0)
    reasons = list(assessment.reasons)
    if spam > thresholds.spam_block or toxicity > thresholds.toxicity_block:
        decision = Decision.BLOCK
    elif spam > thresholds.spam_review or toxicity > thresholds.toxicity_review:
        decision = Decision.HOLD_FOR_REVIEW
    else:
        return Decision.APPROVE, tuple(reasons)
    if not reasons:
        # Name the score that crossed this decision's threshold (the higher if both did).
        if decision is Decision.BLOCK:
            spam_over = spam > thresholds.spam_block
            toxicity_over = toxicity > thresholds.toxicity_block
        else:
            spam_over = spam > thresholds.spam_review
            toxicity_over = toxicity > thresholds.toxicity_review
        spam_decides = spam_over and (not toxicity_over or spam >= toxicity)
        reasons.append("spam_score" if spam_decides else "toxicity_score")
    return decision, tuple(reasons)
