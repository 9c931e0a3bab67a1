"""The moderate stage with its models: obfuscation caught, ordinary chat approved, bad input
handled, repeated messages held, and missing models failing closed."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deploy.demo import CROWD
from deploy.settings import Settings
from perf.load import PHRASES
from schemas.records import CommentSubmitted, Decision, EventStatus, LiveEvent, Strictness
from topologies import metrics as M
from topologies.moderation import cli, runtime
from topologies.moderation.normalize import fingerprint, skeleton
from topologies.stages.moderate import (
    Assessment,
    ModelEngine,
    ModerationInput,
    RecentPost,
    decide,
)

EVENT = LiveEvent(
    event_id="evt-1", title="Final", status=EventStatus.LIVE, created_at=0, updated_at=0
)


@pytest.fixture(scope="module")
def engine() -> ModelEngine:
    return ModelEngine(runtime.load())


def _item(text: str, *, at: int = 1_000_000, **event: Any) -> ModerationInput:
    comment = CommentSubmitted(
        comment_id="c-1",
        event_id="evt-1",
        user_id="u-1",
        text=text,
        submitted_at=at,
        gateway_id="g",
    )
    return ModerationInput(comment, replace(EVENT, **event), None, (), fingerprint(text))


def _moderate(engine: ModelEngine, text: str, **event: Any) -> tuple[Decision, Assessment]:
    item = _item(text, **event)
    [assessment] = engine.assess([item])
    return decide(assessment, item.event.thresholds)[0], assessment


ORDINARY = list(
    dict.fromkeys(
        [
            *PHRASES,
            *CROWD,
            "Scunthorpe United away",
            "Assassin's Creed",
            "cocktail hour",
            "Hancock scores",
            "world class defending",
            "a passing shot",
            "great game, well played",
        ]
    )
)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_chat_and_words_containing_rude_ones_are_approved(
    engine: ModelEngine, text: str
) -> None:
    decision, assessment = _moderate(engine, text)
    assert decision is Decision.APPROVE, assessment


@pytest.mark.parametrize(
    "text",
    [
        "fuck you",
        "F U C K you",
        "f.u.c.k off",
        "fuuuuuuck you",
        "f\u200bu\u200bc\u200bk you",  # zero-width spaces
        "f\u00fcck you",  # accent
        "f\u0336u\u0336c\u0336k\u0336 you",  # combining strokes
        "\u0441unt",  # Cyrillic es
        "sh1t team",
        "you stupid b!tch",
        "f4ck y0u",
        "what an a$$hole",
        "kill yourself",
    ],
)
def test_obfuscated_abuse_is_not_approved(engine: ModelEngine, text: str) -> None:
    decision, assessment = _moderate(engine, text)
    assert decision is Decision.BLOCK, assessment


def test_a_link_with_promotion_is_blocked_as_spam(engine: ModelEngine) -> None:
    decision, assessment = _moderate(engine, "WIN a FREE phone!!! claim at www.prizes.xyz now")
    assert decision is Decision.BLOCK
    assert assessment.scores["spam"] == 1.0
    assert "link_not_allowed" in assessment.reasons


def test_the_spam_model_scores_sms_style_spam_without_a_link(engine: ModelEngine) -> None:
    _, assessment = _moderate(
        engine, "URGENT! You have won a 1000 cash prize. To claim txt WIN to 87121 now"
    )
    assert assessment.scores["spam"] > 0.8


def test_every_comment_gets_a_language_and_both_scores(engine: ModelEngine) -> None:
    texts = ["What a goal, what a match tonight", "Quel match incroyable ce soir", "这球太漂亮了"]
    found = engine.assess([_item(t) for t in texts])
    assert [a.language for a in found] == ["en", "fr", "zh"]
    assert all(set(a.scores) == {"spam", "toxicity"} for a in found)


def test_a_word_list_of_the_comments_language_holds_it_for_review(engine: ModelEngine) -> None:
    decision, assessment = _moderate(engine, "eres un hijo de puta")
    assert assessment.language == "es"
    assert "profanity" in assessment.reasons
    assert decision is Decision.HOLD_FOR_REVIEW
    assert _moderate(engine, "eres un hijo de puta", strictness=Strictness.STRICT)[0] is (
        Decision.BLOCK
    )
    relaxed = _moderate(engine, "eres un hijo de puta", strictness=Strictness.RELAXED)[1]
    assert "profanity" not in relaxed.reasons


def test_an_events_thresholds_apply_to_model_scores(engine: ModelEngine) -> None:
    _, assessment = _moderate(engine, "you are an idiot")
    assert assessment.scores["toxicity"] > 0.7
    lenient = replace(EVENT.thresholds, toxicity_block=0.9999, toxicity_review=0.99999)
    assert decide(replace(assessment, scores={"toxicity": 0.9}), lenient)[0] is Decision.APPROVE


@pytest.mark.parametrize(
    "text",
    ["", "\u200b\u200c\u2060\ufeff", "   "],
    ids=["empty", "only-invisible", "only-spaces"],
)
def test_text_with_nothing_visible_is_blocked_not_scored(engine: ModelEngine, text: str) -> None:
    decision, assessment = _moderate(engine, text)
    assert decision is Decision.BLOCK
    assert "empty_text" in assessment.reasons


@pytest.mark.parametrize(
    "text",
    ["x" * 100_000, "great \ud800 game", "\U00010330\U00010331\U00010332 \u16a0\u16a2\u16a6"],
    ids=["100kB", "lone-surrogate", "unknown-script"],
)
def test_bad_input_is_assessed_without_error(engine: ModelEngine, text: str) -> None:
    [assessment] = engine.assess([_item(text)])
    assert 0.0 <= assessment.scores["toxicity"] <= 1.0
    assert 0.0 <= assessment.scores["spam"] <= 1.0
    assert not assessment.fail_closed


def test_unknown_script_gets_no_language(engine: ModelEngine) -> None:
    [assessment] = engine.assess([_item("\U00010330\U00010331\U00010332 \u16a0\u16a2\u16a6")])
    assert assessment.language is None


def test_a_batch_is_assessed_in_order(engine: ModelEngine) -> None:
    texts = ["fuck you", "What a goal!", "", "visit www.spam.xyz", "Quel match"]
    found = engine.assess([_item(t) for t in texts])
    decisions = [decide(a, EVENT.thresholds)[0] for a in found]
    assert decisions == [
        Decision.BLOCK,
        Decision.APPROVE,
        Decision.BLOCK,
        Decision.BLOCK,
        Decision.APPROVE,
    ]
    assert engine.assess([]) == []


# Repeated messages: the user's recent posts come in with the input.


def _with_history(text: str, earlier: list[str], at: int = 1_000_000) -> ModerationInput:
    item = _item(text, at=at)
    recent = tuple(RecentPost(at - 1000 * (i + 1), fingerprint(t)) for i, t in enumerate(earlier))
    return replace(item, recent=recent)


def test_the_third_time_the_same_sentence_is_held(engine: ModelEngine) -> None:
    spam = "check out my channel for daily highlights"
    [once, twice, thrice] = engine.assess(
        [_with_history(spam, []), _with_history(spam, [spam]), _with_history(spam, [spam] * 2)]
    )
    assert "repeated_message" not in once.reasons + twice.reasons
    assert "repeated_message" in thrice.reasons
    assert decide(thrice, EVENT.thresholds)[0] is Decision.HOLD_FOR_REVIEW


def test_nearly_the_same_sentence_counts_as_a_repeat(engine: ModelEngine) -> None:
    earlier = [
        "check out my channel for daily highlights!!",
        "Check out my channel for daily highlights",
    ]
    [assessment] = engine.assess(
        [_with_history("check out my channel for daily highlights now", earlier)]
    )
    assert "repeated_message" in assessment.reasons


def test_five_repeats_of_a_sentence_block(engine: ModelEngine) -> None:
    spam = "check out my channel for daily highlights"
    [assessment] = engine.assess([_with_history(spam, [spam] * 4)])
    assert decide(assessment, EVENT.thresholds)[0] is Decision.BLOCK


def test_short_reactions_get_more_slack_and_old_posts_do_not_count(engine: ModelEngine) -> None:
    [goal] = engine.assess([_with_history("GOAL", ["GOAL"] * 3)])
    assert "repeated_message" not in goal.reasons
    [old] = engine.assess(
        [_with_history("check out my channel for daily highlights", ["x"], at=10**9)]
    )
    assert "repeated_message" not in old.reasons


def test_different_sentences_are_not_repeats(engine: ModelEngine) -> None:
    earlier = ["what a save by the keeper", "the referee needs glasses", "come on you reds"]
    [assessment] = engine.assess([_with_history("that was the best goal of the season", earlier)])
    assert "repeated_message" not in assessment.reasons


# Fail closed.


def test_missing_models_hold_every_comment_and_fire_the_alert(tmp_path: Path) -> None:
    engine = ModelEngine(runtime.load(tmp_path))
    before = M.moderation_fail_closed.labels("toxicity")._value.get()
    found = engine.assess([_item("What a goal!"), _item("fuck you")])
    # Neither the models nor the word lists: both held, the abuse is not published either.
    assert [decide(a, EVENT.thresholds)[0] for a in found] == [Decision.HOLD_FOR_REVIEW] * 2
    assert all(a.fail_closed and "model_unavailable" in a.reasons for a in found)
    assert M.moderation_fail_closed.labels("toxicity")._value.get() == before + 2
    assert M.moderation_model_available.labels("toxicity")._value.get() == 0
    runtime.load()


def test_a_model_failing_on_a_batch_holds_that_batch(engine: ModelEngine) -> None:
    class Broken:
        def scores(self, texts: list[str]) -> Any:
            raise RuntimeError("boom")

    models = replace(engine.models, spam=Broken())  # type: ignore[arg-type]
    [assessment] = ModelEngine(models).assess([_item("What a goal!")])
    assert assessment.fail_closed
    assert decide(assessment, EVENT.thresholds)[0] is Decision.HOLD_FOR_REVIEW


def test_skeleton_is_what_the_models_see() -> None:
    assert skeleton("F U C K") == "fuck"
    assert skeleton("G\u200bO\u200bA\u200bL") == "goal"


# The CLI.


def test_the_moderate_command_answers_each_json_line() -> None:
    lines = [
        json.dumps({"text": "What a goal!"}),
        "not json",
        json.dumps({"text": "f u c k you"}),
        json.dumps({"nope": 1}),
    ]
    out = io.StringIO()
    assert cli.run(Settings(), io.StringIO("\n".join(lines) + "\n"), out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r.get("decision") or r["error"] for r in rows] == [
        "APPROVE",
        "invalid_input",
        "BLOCK",
        "invalid_input",
    ]
    assert rows[0]["language"] == "en"
    assert set(rows[2]["scores"]) == {"spam", "toxicity"}
    assert "profanity" in rows[2]["reasons"]


def test_the_pipeline_feeds_a_users_recent_posts_to_the_stage(engine: ModelEngine) -> None:
    from topologies.pipeline import CommentProcessor, Incoming, history_key
    from topologies.stages.validate import CommentLimits, PastPost

    spam = "check out my channel for daily highlights"

    def incoming(offset: int, user: str) -> Incoming:
        comment = CommentSubmitted(
            comment_id=f"c-{offset}",
            event_id="evt-1",
            user_id=user,
            text=spam,
            submitted_at=1_000_000 + offset,
            gateway_id="g",
        )
        return Incoming("comments.submitted", 0, offset, b"", comment)

    stored: dict[str, tuple[PastPost, ...]] = {}
    processor = CommentProcessor(engine, CommentLimits())

    def plan(batch: list[Incoming]) -> list[Decision]:
        result = processor.plan(
            batch,
            events={"evt-1": EVENT}.get,
            users=lambda _: None,
            history=lambda k: stored.get(k, ()),
            heads=lambda _: (),
            epochs=lambda _: 1,
            now_ms=2_000_000,
        )
        stored.update(result.histories)
        return [m.decision for m in result.moderated]

    # Within one batch, and across batches through the stored history (as the worker's
    # user-in-event table): the third time is held, another user is not affected.
    assert (
        plan([incoming(1, "u-a"), incoming(2, "u-b"), incoming(3, "u-a")]) == [Decision.APPROVE] * 3
    )
    assert plan([incoming(4, "u-a")]) == [Decision.HOLD_FOR_REVIEW]
    assert all(p.fingerprint for p in stored[history_key("evt-1", "u-a")])
