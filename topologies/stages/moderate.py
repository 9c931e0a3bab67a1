"""moderate: approve, hold for review, or block — with scores and reasons.

The engine is pluggable (:class:`ModerationEngine`): it scores a *batch* of comments, so
ML stages can batch inference. :class:`RulesEngine` is the deterministic part (per-event
blocked and allowed terms matched on the de-obfuscated text, link policy, floods of
capitals, characters or emoji, a user repeating a message); :class:`ModelEngine` adds the
models of ``topologies/moderation`` (toxicity, spam, language, word lists), batched.
:func:`decide` applies the seed's thresholds (block if spam > 0.8 or toxicity > 0.7;
review if spam > 0.6 or toxicity > 0.5), per event through ``LiveEvent.thresholds``.

Reason codes are stable: ``blocked_term``, ``link_not_allowed``, ``caps_flood``,
``char_flood``, ``emoji_flood``, ``repeated_message``, ``profanity``, ``empty_text``,
``model_unavailable``; plus ``spam_score`` / ``toxicity_score`` when a model's score
alone crosses a threshold.

Everything here is pure: the models are loaded elsewhere (``runtime.load``) and the
user's recent posts come in :class:`ModerationInput`.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from schemas.records import (
    CommentSubmitted,
    Decision,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
    Strictness,
    UserProfile,
)
from topologies import metrics as M
from topologies.moderation.features import URL as _URL
from topologies.moderation.features import is_emoji as _is_emoji
from topologies.moderation.features import spam_text
from topologies.moderation.normalize import (
    clean,
    distance,
    skeleton,
    squeeze,
    visible,
    words,
)
from topologies.moderation.runtime import LANGUAGE, SPAM, TOXICITY, Models

log = logging.getLogger(__name__)

ENGINE_VERSION = "rules-2"
# A user's earlier posts this close to the new one (SimHash bits) count as "the same".
NEAR_DUPLICATE_BITS = 12
# How many such earlier posts hold the comment for review, and block it. Short reactions
# ("GOAL", "nice play") are repeated by honest fans: they get more slack.
REPEATS_HOLD = 2
REPEATS_BLOCK = 4
SHORT_WORDS = 3
REPEATS_HOLD_SHORT = 4
REPEAT_WINDOW_MS = 300_000


@dataclass(frozen=True, slots=True)
class Assessment:
    """What an engine found: scores in [0, 1] and the reasons behind them."""

    scores: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    language: str | None = None
    # A model this comment needed was unavailable: never approve (fail closed).
    fail_closed: bool = False


@dataclass(frozen=True, slots=True)
class RecentPost:
    """One of the user's earlier posts in the event, as the moderate stage sees it."""

    at_ms: int
    fingerprint: int
    flagged: bool = False  # moderation held or blocked it: a strike


@dataclass(frozen=True, slots=True)
class ModerationInput:
    comment: CommentSubmitted
    event: LiveEvent
    user: UserProfile | None
    # The user's earlier posts in this event (oldest first) and this one's fingerprint
    # (``normalize.fingerprint``): for the repeated-message rule.
    recent: tuple[RecentPost, ...] = ()
    fingerprint: int = 0


class ModerationEngine(Protocol):
    version: str

    def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
        """One assessment per input, in order."""
        ...


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


def _host(netloc: str) -> str:
    """The host of a URL's authority: no user info, no port."""
    host = netloc.rpartition("@")[2]
    return host.partition(":")[0]


def _domain_allowed(domain: str, allowed: Sequence[str]) -> bool:
    domain = _host(domain).lower().rstrip(".")
    return any(domain == a.lower() or domain.endswith("." + a.lower()) for a in allowed)


def _spans(pattern: re.Pattern[str] | None, text: str) -> list[tuple[int, int]]:
    return [] if pattern is None else [m.span() for m in pattern.finditer(text)]


def _unexcused_hit(blocked: re.Pattern[str], allowed: re.Pattern[str] | None, text: str) -> bool:
    """A blocked term outside every allowed term ("Killer Queen" excuses its "killer")."""
    excused = _spans(allowed, text)
    for m in blocked.finditer(text):
        start, end = m.span()
        if not any(a <= start and end <= b for a, b in excused):
            return True
    return False


class RulesEngine:
    """Deterministic rules; cheap enough to run on every comment."""

    version = ENGINE_VERSION

    def __init__(self) -> None:
        self._patterns: dict[tuple[str, ...], re.Pattern[str] | None] = {}

    def _pattern(self, terms: tuple[str, ...], skel: bool = False) -> re.Pattern[str] | None:
        key = (*terms, "\x00skeleton") if skel else terms
        if key not in self._patterns:
            if len(self._patterns) > 10_000:
                self._patterns.clear()
            self._patterns[key] = _term_pattern([skeleton(t) for t in terms] if skel else terms)
        return self._patterns[key]

    def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
        return [self.one(item) for item in batch]

    def one(self, item: ModerationInput, skel: str | None = None) -> Assessment:
        """The rules' findings for one comment (``skel``: its skeleton, if known)."""
        text, event = clean(item.comment.text), item.event
        folded = fold(text)
        if skel is None:
            skel = skeleton(text)
        spam = 0.0
        toxicity = 0.0
        reasons: list[str] = []

        # Matched on the folded text and on its skeleton, so "S P 0 I L E R" and
        # "sp0iler" with a Cyrillic "o" are the blocked "spoiler" too.
        for form, is_skel in ((folded, False), (skel, True)):
            blocked = self._pattern(event.blocked_terms, is_skel)
            if blocked is not None and _unexcused_hit(
                blocked, self._pattern(event.allowed_terms, is_skel), form
            ):
                toxicity = 1.0
                reasons.append("blocked_term")
                break

        if event.link_policy is not LinkPolicy.ALLOW:
            # Folded: a domain in full-width letters is a link browsers open.
            for m in _URL.finditer(folded):
                domain = m.group(1) or m.group(2) or ""
                if event.link_policy is LinkPolicy.DENY or not _domain_allowed(
                    domain, event.allowed_domains
                ):
                    spam = max(spam, 1.0)
                    reasons.append("link_not_allowed")
                    break

        # map() over str methods: the per-character loops run in C (hot path).
        letters = sum(map(str.isalpha, text))
        if letters >= 12:
            upper = sum(map(str.isupper, text))
            if upper / letters > 0.8:
                spam = max(spam, 0.65)
                reasons.append("caps_flood")
        if _REPEAT.search(folded):
            spam = max(spam, 0.65)
            reasons.append("char_flood")
        if len(text) >= 10:
            emoji = 0 if text.isascii() else sum(map(_is_emoji, text))
            if emoji >= 10 and emoji / len(text) > 0.6:
                spam = max(spam, 0.65)
                reasons.append("emoji_flood")

        repeats = _repeats(item)
        short = len(words(skel)) < SHORT_WORDS
        if repeats >= (REPEATS_HOLD_SHORT if short else REPEATS_HOLD):
            spam = max(spam, 0.85 if repeats >= REPEATS_BLOCK and not short else 0.65)
            reasons.append("repeated_message")

        return Assessment(scores={"spam": spam, "toxicity": toxicity}, reasons=tuple(reasons))


def _repeats(item: ModerationInput) -> int:
    """How many of the user's posts of the last minutes were (nearly) this comment."""
    if not item.fingerprint or not item.recent:
        return 0
    since = item.comment.submitted_at - REPEAT_WINDOW_MS
    return sum(
        1
        for p in item.recent
        if p.at_ms >= since
        and p.fingerprint
        and distance(p.fingerprint, item.fingerprint) <= NEAR_DUPLICATE_BITS
    )


# User and event context (the seed's "contextual analysis"): how much lower (stricter) the
# review thresholds go. A strike is one of the user's posts in this event that moderation
# held or blocked within STRIKE_WINDOW_MS; a first-time commenter has no earlier post in
# the event within the validate stage's history (its last 10 minutes).
STRIKE_WINDOW_MS = 600_000
STRIKE_SHIFT = 0.1
MAX_STRIKE_SHIFT = 0.3
FIRST_TIME_SPAM_SHIFT = 0.1
STRICTNESS_SHIFT = {Strictness.RELAXED: -0.1, Strictness.STANDARD: 0.0, Strictness.STRICT: 0.1}
_TRUSTED_ROLES = frozenset({"moderator", "broadcaster", "admin"})
MIN_REVIEW = 0.05


@dataclass(frozen=True, slots=True)
class Context:
    strikes: int = 0
    first_time: bool = False
    trusted: bool = False  # staff or verified: no strike or first-time penalty


def context_of(item: ModerationInput) -> Context:
    user = item.user
    trusted = user is not None and (user.verified or bool(_TRUSTED_ROLES & set(user.roles)))
    since = item.comment.submitted_at - STRIKE_WINDOW_MS
    strikes = sum(1 for p in item.recent if p.flagged and p.at_ms >= since)
    return Context(strikes=strikes, first_time=not item.recent, trusted=trusted)


def thresholds_for(
    base: ModerationThresholds, strictness: Strictness, ctx: Context
) -> tuple[ModerationThresholds, tuple[str, ...]]:
    """The event's thresholds moved by its strictness and the user's context, and the
    reason codes of what moved them (``event_strict``, ``user_strikes``,
    ``first_time_commenter``). Only review thresholds move; block stays the event's."""
    shift = STRICTNESS_SHIFT.get(strictness, 0.0)
    why: list[str] = ["event_strict"] if shift > 0 else []
    spam_shift = shift
    if not ctx.trusted:
        if ctx.strikes:
            shift += min(ctx.strikes * STRIKE_SHIFT, MAX_STRIKE_SHIFT)
            spam_shift = shift
            why.append("user_strikes")
        if ctx.first_time:
            spam_shift += FIRST_TIME_SPAM_SHIFT
            why.append("first_time_commenter")
    if not shift and not spam_shift:
        return base, ()

    def moved(review: float, block: float, by: float) -> float:
        return min(block, max(MIN_REVIEW, review - by))

    return (
        ModerationThresholds(
            toxicity_block=base.toxicity_block,
            toxicity_review=moved(base.toxicity_review, base.toxicity_block, shift),
            spam_block=base.spam_block,
            spam_review=moved(base.spam_review, base.spam_block, spam_shift),
        ),
        tuple(why),
    )


def decide_in_context(
    assessment: Assessment, event: LiveEvent, ctx: Context
) -> tuple[Decision, tuple[str, ...]]:
    """:func:`decide` with the thresholds moved by context; when the context changed the
    decision, its reason codes are added."""
    thresholds, why = thresholds_for(event.thresholds, event.strictness, ctx)
    decision, reasons = decide(assessment, thresholds)
    if why and decision is not decide(assessment, event.thresholds)[0]:
        reasons = (*reasons, *why)
    return decision, reasons


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
    elif assessment.fail_closed:
        # Unmoderated is never published: a human decides (``model_unavailable``).
        return Decision.HOLD_FOR_REVIEW, tuple(reasons)
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


_RAW_EDGES = ".,;:?!\"'()[]"


class _Lexicon:
    """glin-profanity's word lists as filtered at training time (``lexicon.json``).

    *Severe* English entries (the toxicity data call ≥ 80 % of comments holding them
    offensive) count in every comment: English swearing is everywhere. *Mild* entries
    count only in a comment of their language (a French word list says nothing about a
    Spanish comment) and only where the event is not relaxed.
    """

    def __init__(self, data: dict[str, object]) -> None:
        def table(key: str) -> dict[str, frozenset[str]]:
            raw = data.get(key)
            assert isinstance(raw, dict)
            return {lang: frozenset(entries) for lang, entries in raw.items()}

        self.severe = frozenset().union(*table("severe").values())
        obfuscated = data.get("obfuscated", [])
        assert isinstance(obfuscated, list)
        self.obfuscated = frozenset(str(x) for x in obfuscated)
        self.mild = table("mild")
        self.no_spaces = frozenset(str(x) for x in data.get("no_spaces", []))  # type: ignore[attr-defined]
        # A stretched word ("fuuuck") is matched with its runs squeezed ("fuck").
        self.severe_squeezed = {squeeze(w): w for w in self.severe}

    def severe_hit(self, tokens: list[str], raw_tokens: list[str]) -> bool:
        for tok in tokens:
            if tok in self.severe:
                return True
            # Only a word with a repeated letter can be a stretched one.
            if len(set(tok)) < len(tok):
                squeezed = squeeze(tok)
                if squeezed != tok and squeezed in self.severe_squeezed:
                    return True
        return any(tok in self.severe or tok in self.obfuscated for tok in raw_tokens)

    def mild_hit(self, tokens: list[str], skel: str, language: str | None) -> bool:
        entries = self.mild.get(language or "")
        if not entries:
            return False
        if language in self.no_spaces:
            compact = skel.replace(" ", "")
            return any(e in compact for e in entries)
        grams = set(tokens)
        grams.update(" ".join(tokens[i : i + 2]) for i in range(len(tokens) - 1))
        grams.update(" ".join(tokens[i : i + 3]) for i in range(len(tokens) - 2))
        return not grams.isdisjoint(entries)


class ModelEngine:
    """Rules, then the models over the whole batch: toxicity, spam, language, word lists.

    ``models`` is a loaded :class:`topologies.moderation.runtime.Models`; a model it
    lacks makes every comment of the batch ``fail_closed`` (held, ``model_unavailable``)
    rather than judged without it. Scores are the higher of rules and models.
    """

    def __init__(self, models: Models, rules: RulesEngine | None = None) -> None:
        self.models = models
        self.rules = rules or RulesEngine()
        self.lexicon = _Lexicon(models.lexicon) if models.lexicon is not None else None
        self.version = f"{self.rules.version}+{models.version}"

    def assess(self, batch: Sequence[ModerationInput]) -> list[Assessment]:
        if not batch:
            return []
        raws = [clean(item.comment.text) for item in batch]
        skels = [skeleton(t) for t in raws]
        found = [self.rules.one(item, s) for item, s in zip(batch, skels, strict=True)]
        # Only comments with something visible go to the models; the rest are empty_text.
        todo = [i for i, s in enumerate(skels) if words(s) or s.strip()]
        failed: set[str] = set(self.models.unavailable)
        toxicity = np.zeros(len(batch), dtype=np.float32)
        spam = np.zeros(len(batch), dtype=np.float32)
        languages: list[str | None] = [None] * len(batch)
        if todo:
            toxicity[todo] = self._run(
                TOXICITY,
                failed,
                len(todo),
                lambda: self.models.toxicity_scores([skels[i] for i in todo]),
            )
            spam[todo] = self._run(
                SPAM,
                failed,
                len(todo),
                lambda: self.models.spam_scores([spam_text(raws[i], skels[i]) for i in todo]),
            )
            detected = self._detect([visible(raws[i]) for i in todo], failed)
            for i, lang in zip(todo, detected, strict=True):
                languages[i] = lang
        for name in failed:
            M.moderation_fail_closed.labels(name).inc(len(batch))

        out: list[Assessment] = []
        for i, (item, rules) in enumerate(zip(batch, found, strict=True)):
            reasons = list(rules.reasons)
            tox = max(rules.scores["toxicity"], float(toxicity[i]))
            spm = max(rules.scores["spam"], float(spam[i]))
            if i not in todo:
                spm = max(spm, 1.0)
                reasons.append("empty_text")
            elif self.lexicon is not None:
                level = self._profanity(item, skels[i], raws[i], languages[i])
                if level > 0:
                    tox = max(tox, level)
                    reasons.append("profanity")
            if failed:
                reasons.append("model_unavailable")
            out.append(
                Assessment(
                    scores={"spam": round(spm, 4), "toxicity": round(tox, 4)},
                    reasons=tuple(reasons),
                    language=languages[i],
                    fail_closed=bool(failed),
                )
            )
        return out

    def _run(self, name: str, failed: set[str], n: int, fn: Callable[[], np.ndarray]) -> np.ndarray:
        if name in failed:
            return np.zeros(n, dtype=np.float32)
        try:
            scores = fn()
        except Exception:  # a model that raises on a batch: hold the batch, keep going
            log.exception("moderation model %s failed on a batch of %d", name, n)
            failed.add(name)
            return np.zeros(n, dtype=np.float32)
        # NaN (a broken model) counts as certain; everything into [0, 1]. Plain ufuncs:
        # np.nan_to_num and np.clip cost ≈ 25 µs a call in Python wrappers, per batch.
        clipped: np.ndarray = np.where(np.isnan(scores), np.float32(1.0), scores)
        np.maximum(clipped, 0.0, out=clipped)
        np.minimum(clipped, 1.0, out=clipped)
        return clipped

    def _detect(self, texts: list[str], failed: set[str]) -> list[str | None]:
        if LANGUAGE in failed:
            return [None] * len(texts)
        try:
            return [lang for lang, _ in self.models.languages(texts)]
        except Exception:
            log.exception("language identification failed on a batch of %d", len(texts))
            failed.add(LANGUAGE)
            return [None] * len(texts)

    def _profanity(self, item: ModerationInput, skel: str, raw: str, language: str | None) -> float:
        assert self.lexicon is not None
        tokens = words(skel)
        strictness = item.event.strictness
        raw_tokens = [t.strip(_RAW_EDGES) for t in fold(raw).split()]
        if self.lexicon.severe_hit(tokens, raw_tokens):
            return 0.75  # blocks at the seed's threshold; a looser event may hold instead
        if strictness is Strictness.RELAXED:
            return 0.0
        lang = language or "en"
        if lang == "en" and strictness is not Strictness.STRICT:
            return 0.0  # English mild words: the toxicity model judges those
        if self.lexicon.mild_hit(tokens, skel, lang):
            return 0.75 if strictness is Strictness.STRICT else 0.55
        return 0.0
