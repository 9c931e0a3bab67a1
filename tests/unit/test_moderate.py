"""moderate: the rules engine's findings and the decision with the seed's thresholds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from schemas.records import (
    CommentSubmitted,
    Decision,
    EventStatus,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
)
from topologies.stages.moderate import (
    ENGINE_VERSION,
    Assessment,
    ModerationEngine,
    ModerationInput,
    RulesEngine,
    decide,
    fold,
)

SEED = ModerationThresholds()
EMOJI_10 = "".join(map(chr, [*range(0x1F600, 0x1F608), 0x1F923, 0x1F60A]))  # ten different


def _event(**fields: Any) -> LiveEvent:
    base = LiveEvent(
        event_id="evt-1", title="Final", status=EventStatus.LIVE, created_at=0, updated_at=0
    )
    return replace(base, **fields)


def _comment(text: str) -> CommentSubmitted:
    return CommentSubmitted(
        comment_id="c-1",
        event_id="evt-1",
        user_id="u-1",
        text=text,
        submitted_at=0,
        gateway_id="gw-1",
    )


def _assess(text: str, **event_fields: Any) -> Assessment:
    item = ModerationInput(_comment(text), _event(**event_fields), None)
    [assessment] = RulesEngine().assess([item])
    return assessment


def _moderate(text: str, **event_fields: Any) -> tuple[Decision, tuple[str, ...]]:
    event = _event(**event_fields)
    [assessment] = RulesEngine().assess([ModerationInput(_comment(text), event, None)])
    return decide(assessment, event.thresholds)


def test_the_rules_engine_is_a_moderation_engine_with_a_version() -> None:
    engine: ModerationEngine = RulesEngine()
    assert engine.version == ENGINE_VERSION == "rules-2"


def test_a_batch_gets_one_assessment_per_comment_in_order() -> None:
    texts = ["fine", "spoiler inside", "https://evil.example.com", "also fine"]
    event = _event(blocked_terms=("spoiler",))
    batch = [ModerationInput(_comment(t), event, None) for t in texts]
    reasons = [a.reasons for a in RulesEngine().assess(batch)]
    assert reasons == [(), ("blocked_term",), ("link_not_allowed",), ()]


def test_an_empty_batch_gets_no_assessments() -> None:
    assert RulesEngine().assess([]) == []


def test_an_ordinary_comment_scores_zero_and_is_approved() -> None:
    assessment = _assess("What a goal, incredible finish by Zoë!")
    assert assessment.scores == {"spam": 0.0, "toxicity": 0.0}
    assert assessment.reasons == ()
    assert decide(assessment, SEED) == (Decision.APPROVE, ())


# Blocked terms


@pytest.mark.parametrize(
    ("blocked", "text"),
    [
        ("ass", "what an ass"),
        ("ass", "ASS!"),
        ("ass", "(ass)"),
        ("ass", "ass-kicking"),
        ("cunt", "you cunt"),
        ("cock", "cock."),
        ("spoiler", "Spoiler: he scores"),
        ("bad word", "that is a bad word here"),
    ],
)
def test_a_blocked_term_as_a_whole_word_blocks(blocked: str, text: str) -> None:
    assessment = _assess(text, blocked_terms=(blocked,))
    assert assessment.reasons == ("blocked_term",)
    assert assessment.scores["toxicity"] == 1.0
    assert decide(assessment, SEED) == (Decision.BLOCK, ("blocked_term",))


@pytest.mark.parametrize(
    ("blocked", "text"),
    [
        ("ass", "Assassin's Creed"),
        ("ass", "world class defending"),
        ("ass", "a passing shot"),
        ("ass", "grass_roots"),
        ("ass", "ass2"),
        ("cunt", "Scunthorpe United away"),
        ("cock", "cocktail hour"),
        ("cock", "Hancock scores"),
        ("bad word", "bad words"),
    ],
)
def test_a_blocked_term_inside_a_longer_word_does_not_block(blocked: str, text: str) -> None:
    assessment = _assess(text, blocked_terms=(blocked,))
    assert "blocked_term" not in assessment.reasons
    assert assessment.scores["toxicity"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "SPOILER alert",
        "SpOiLeR alert",
        "\uff33\uff30\uff2f\uff29\uff2c\uff25\uff32 alert",  # full-width letters
        "\U0001d412\U0001d40f\U0001d40e\U0001d408\U0001d40b\U0001d404\U0001d411",  # math bold
    ],
    ids=["upper", "mixed", "full-width", "math-bold"],
)
def test_blocked_terms_match_across_case_and_compatibility_forms(text: str) -> None:
    assert _assess(text, blocked_terms=("spoiler",)).reasons == ("blocked_term",)


def test_blocked_terms_themselves_are_folded_before_matching() -> None:
    blocked = ("\uff33\uff30\uff2f\uff29\uff2c\uff25\uff32", "  Stra\u00dfe  ")
    assert _assess("spoiler", blocked_terms=blocked).reasons == ("blocked_term",)
    assert _assess("STRASSE", blocked_terms=blocked).reasons == ("blocked_term",)


def test_fold_applies_nfkc_and_casefold() -> None:
    assert fold("\uff27\uff4f\uff41\uff4c \ufb01nal STRA\u00dfE") == "goal final strasse"


def test_regex_characters_in_blocked_terms_are_literal() -> None:
    assert _assess("a.b", blocked_terms=("a.b",)).reasons == ("blocked_term",)
    assert _assess("axb", blocked_terms=("a.b",)).reasons == ()
    assert _assess("c++ rocks", blocked_terms=("c++",)).reasons == ("blocked_term",)


def test_blank_blocked_terms_block_nothing() -> None:
    assert _assess("anything at all", blocked_terms=("", "   ")).reasons == ()


def test_any_of_several_blocked_terms_blocks() -> None:
    blocked = ("spoiler", "leak", "final score")
    assert _assess("the FINAL SCORE was", blocked_terms=blocked).reasons == ("blocked_term",)
    assert _assess("a leak!", blocked_terms=blocked).reasons == ("blocked_term",)
    assert _assess("a leaky tap", blocked_terms=blocked).reasons == ()


def test_an_allowed_term_overrides_the_same_blocked_term() -> None:
    event = {"blocked_terms": ("killer",), "allowed_terms": ("Killer",)}
    assessment = _assess("what a KILLER pass", **event)
    assert assessment.reasons == ()
    assert assessment.scores["toxicity"] == 0.0


def test_an_allowed_term_does_not_excuse_other_blocked_terms_in_the_comment() -> None:
    event = {"blocked_terms": ("killer", "spoiler"), "allowed_terms": ("killer",)}
    assert _assess("killer spoiler", **event).reasons == ("blocked_term",)
    assert _assess("killer killer", **event).reasons == ()


def test_an_allowed_name_containing_a_blocked_word_does_not_block() -> None:
    event = {"blocked_terms": ("killer",), "allowed_terms": ("Killer Queen",)}
    assert _assess("Killer Queen live, what a show", **event).reasons == ()


# Links


@pytest.mark.parametrize(
    "text",
    [
        "see https://example.org/path?q=1",
        "see http://example.org",
        "go to www.example.org now",
        "example.com",
        "visit Sub.Example.IO today",
        "free skins at skins-4-u.gg!!",
        "visit HTTPS://EXAMPLE.ORG",
        "mail me@example.com",
    ],
)
def test_deny_blocks_every_link_including_bare_domains(text: str) -> None:
    assessment = _assess(text, link_policy=LinkPolicy.DENY)
    assert assessment.reasons == ("link_not_allowed",)
    assert assessment.scores["spam"] == 1.0
    assert decide(assessment, SEED) == (Decision.BLOCK, ("link_not_allowed",))


@pytest.mark.parametrize(
    "text",
    ["3.14 goals per game", "final.score", "v2.0 is out", "e.g. this", "file.txt", "wow...com"],
)
def test_text_that_only_looks_dotted_is_not_a_link(text: str) -> None:
    assert _assess(text, link_policy=LinkPolicy.DENY).reasons == ()


def test_deny_is_the_default_link_policy() -> None:
    assert _event().link_policy is LinkPolicy.DENY
    assert _assess("example.com").reasons == ("link_not_allowed",)


@pytest.mark.parametrize(
    "text",
    [
        "https://example.org/highlights",
        "https://cdn.example.org/clip.mp4",
        "www.example.org",
        "example.org",
        "a.b.example.org",
        "HTTPS://Example.ORG/x",
        "https://example.org./x",
        "https://tickets.example.com and https://example.org",
    ],
)
def test_allow_list_allows_listed_domains_and_their_subdomains(text: str) -> None:
    event = {
        "link_policy": LinkPolicy.ALLOW_LIST,
        "allowed_domains": ("example.org", "example.com"),
    }
    assert _assess(text, **event).reasons == ()


@pytest.mark.parametrize(
    "text",
    [
        "https://evil.com",
        "https://notexample.org",
        "https://example.org.evil.com/login",
        "example.org-evil.com",
        "www.evil.io",
        "https://example.org and https://evil.com",
    ],
)
def test_allow_list_blocks_every_other_domain(text: str) -> None:
    event = {"link_policy": LinkPolicy.ALLOW_LIST, "allowed_domains": ("example.org",)}
    assert _assess(text, **event).reasons == ("link_not_allowed",)


@pytest.mark.parametrize("text", ["https://example.org:8443/x", "https://me@example.org/"])
def test_allow_list_allows_a_listed_domain_with_a_port_or_user(text: str) -> None:
    event = {"link_policy": LinkPolicy.ALLOW_LIST, "allowed_domains": ("example.org",)}
    assert _assess(text, **event).reasons == ()


def test_deny_blocks_a_domain_written_in_full_width_letters() -> None:
    text = "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d"
    assert _assess(text).reasons == ("link_not_allowed",)


def test_an_empty_allow_list_allows_no_link() -> None:
    assert _assess("example.org", link_policy=LinkPolicy.ALLOW_LIST).reasons == (
        "link_not_allowed",
    )


@pytest.mark.parametrize(
    "text", ["https://evil.com/phish", "example.com", "www.anything.xyz", "http://x.ru"]
)
def test_allow_lets_every_link_through(text: str) -> None:
    assessment = _assess(text, link_policy=LinkPolicy.ALLOW)
    assert assessment.reasons == ()
    assert assessment.scores["spam"] == 0.0


def test_several_links_give_one_link_reason() -> None:
    assert _assess("a.com b.com c.com").reasons == ("link_not_allowed",)


# Floods: spam 0.65, between the seed's review (0.6) and block (0.8) thresholds.


def test_a_caps_flood_is_held_for_review() -> None:
    assessment = _assess("THIS IS THE BEST MATCH EVER")
    assert assessment.reasons == ("caps_flood",)
    assert assessment.scores["spam"] == 0.65
    assert decide(assessment, SEED) == (Decision.HOLD_FOR_REVIEW, ("caps_flood",))


@pytest.mark.parametrize(
    "text",
    [
        "GOAL GOAL GO",  # 10 letters: too short to judge
        "WHAT A GOAL",  # 9 letters
        "ABCDEFGHIJKLmno",  # 12 of 15 upper: exactly 80 %, not more
        "This Is A Normal Title Case Sentence",
        "1234567890 !!! ???",
    ],
)
def test_short_shouting_or_at_most_80_percent_capitals_is_not_a_caps_flood(text: str) -> None:
    assert "caps_flood" not in _assess(text).reasons


def test_more_than_80_percent_capitals_over_12_letters_is_a_caps_flood() -> None:
    assert _assess("ABCDEFGHIJKLMn").reasons == ("caps_flood",)  # 13 of 14


def test_caps_flood_counts_only_letters() -> None:
    assert _assess("GOOOAL!!! 2-1 !!! WHAT A GAME").reasons == ("caps_flood",)


@pytest.mark.parametrize(
    "text",
    [
        "g" + "o" * 10 + "al",
        "!!!!!!!!!!",
        "GO" + "oO" * 4 + "oal",
        "wow ..........",
        "aaaaaaaaaaaaaaa",
    ],
)
def test_ten_of_the_same_character_in_a_row_is_a_char_flood(text: str) -> None:
    assessment = _assess(text)
    assert "char_flood" in assessment.reasons
    assert assessment.scores["spam"] == 0.65
    assert decide(assessment, SEED)[0] is Decision.HOLD_FOR_REVIEW


@pytest.mark.parametrize(
    "text", ["g" + "o" * 9 + "al", "!!!!!!!!!", "hahahahahahahahahaha", "100000000"]
)
def test_nine_in_a_row_or_alternating_characters_is_not_a_char_flood(text: str) -> None:
    assert "char_flood" not in _assess(text).reasons


def test_an_emoji_flood_is_held_for_review() -> None:
    assessment = _assess(EMOJI_10)
    assert assessment.reasons == ("emoji_flood",)
    assert assessment.scores["spam"] == 0.65
    assert decide(assessment, SEED) == (Decision.HOLD_FOR_REVIEW, ("emoji_flood",))


@pytest.mark.parametrize(
    "text",
    [
        EMOJI_10[:9],  # nine emoji
        EMOJI_10 + " goal!!",  # ten emoji in 17 characters: 59 %
        "great goal \U0001f525\U0001f525\U0001f525",
    ],
)
def test_few_emoji_or_emoji_among_text_is_not_an_emoji_flood(text: str) -> None:
    assert "emoji_flood" not in _assess(text).reasons


def test_the_same_emoji_ten_times_is_both_a_char_and_an_emoji_flood() -> None:
    assert _assess("\U0001f525" * 10).reasons == ("char_flood", "emoji_flood")


def test_every_finding_is_listed_and_the_worst_score_decides() -> None:
    assessment = _assess("SPOILER SPOILER AT WWW.LEAKS.COM", blocked_terms=("spoiler",))
    assert assessment.reasons == ("blocked_term", "link_not_allowed", "caps_flood")
    assert assessment.scores == {"spam": 1.0, "toxicity": 1.0}
    assert decide(assessment, SEED)[0] is Decision.BLOCK


def test_floods_follow_the_events_thresholds() -> None:
    strict = ModerationThresholds(spam_block=0.6, spam_review=0.3)
    assert _moderate("THIS IS THE BEST MATCH EVER", thresholds=strict) == (
        Decision.BLOCK,
        ("caps_flood",),
    )
    lenient = ModerationThresholds(spam_review=0.7, spam_block=0.9)
    assert _moderate("THIS IS THE BEST MATCH EVER", thresholds=lenient) == (
        Decision.APPROVE,
        ("caps_flood",),
    )


# decide(): the seed's thresholds, exactly.


@pytest.mark.parametrize(
    ("spam", "toxicity", "decision"),
    [
        (0.0, 0.0, Decision.APPROVE),
        (0.6, 0.0, Decision.APPROVE),
        (0.600001, 0.0, Decision.HOLD_FOR_REVIEW),
        (0.8, 0.0, Decision.HOLD_FOR_REVIEW),
        (0.800001, 0.0, Decision.BLOCK),
        (1.0, 0.0, Decision.BLOCK),
        (0.0, 0.5, Decision.APPROVE),
        (0.0, 0.500001, Decision.HOLD_FOR_REVIEW),
        (0.0, 0.7, Decision.HOLD_FOR_REVIEW),
        (0.0, 0.700001, Decision.BLOCK),
        (0.0, 1.0, Decision.BLOCK),
        (0.6, 0.5, Decision.APPROVE),
        (0.61, 0.71, Decision.BLOCK),
        (0.81, 0.51, Decision.BLOCK),
        (0.8, 0.7, Decision.HOLD_FOR_REVIEW),
    ],
)
def test_the_seed_thresholds_block_above_and_review_above(
    spam: float, toxicity: float, decision: Decision
) -> None:
    assessment = Assessment(scores={"spam": spam, "toxicity": toxicity})
    assert decide(assessment, SEED)[0] is decision


def test_the_default_thresholds_are_the_seeds() -> None:
    seed = ModerationThresholds(
        toxicity_block=0.7, toxicity_review=0.5, spam_block=0.8, spam_review=0.6
    )
    assert seed == SEED
    assert _event().thresholds == SEED


def test_missing_scores_count_as_zero() -> None:
    assert decide(Assessment(), SEED) == (Decision.APPROVE, ())
    assert decide(Assessment(scores={"toxicity": 0.9}), SEED)[0] is Decision.BLOCK
    assert decide(Assessment(scores={"spam": 0.7}), SEED)[0] is Decision.HOLD_FOR_REVIEW


@pytest.mark.parametrize(
    ("toxicity", "decision"),
    [
        (0.19, Decision.APPROVE),
        (0.2, Decision.APPROVE),
        (0.21, Decision.HOLD_FOR_REVIEW),
        (0.4, Decision.HOLD_FOR_REVIEW),
        (0.41, Decision.BLOCK),
        (0.55, Decision.BLOCK),
    ],
)
def test_an_events_stricter_thresholds_are_honoured(toxicity: float, decision: Decision) -> None:
    strict = ModerationThresholds(
        toxicity_block=0.4, toxicity_review=0.2, spam_block=0.5, spam_review=0.3
    )
    assert decide(Assessment(scores={"toxicity": toxicity}), strict)[0] is decision


@pytest.mark.parametrize(
    ("spam", "decision"),
    [(0.85, Decision.APPROVE), (0.91, Decision.HOLD_FOR_REVIEW), (0.99, Decision.BLOCK)],
)
def test_an_events_looser_thresholds_are_honoured(spam: float, decision: Decision) -> None:
    loose = ModerationThresholds(
        toxicity_block=0.95, toxicity_review=0.9, spam_block=0.95, spam_review=0.9
    )
    assert decide(Assessment(scores={"spam": spam}), loose)[0] is decision


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"toxicity": 0.75}, (Decision.BLOCK, ("toxicity_score",))),
        ({"spam": 0.9}, (Decision.BLOCK, ("spam_score",))),
        ({"toxicity": 0.55}, (Decision.HOLD_FOR_REVIEW, ("toxicity_score",))),
        ({"spam": 0.65}, (Decision.HOLD_FOR_REVIEW, ("spam_score",))),
        ({"spam": 0.3, "toxicity": 0.6}, (Decision.HOLD_FOR_REVIEW, ("toxicity_score",))),
    ],
)
def test_a_score_that_decides_alone_is_named_as_the_reason(
    scores: dict[str, float], expected: tuple[Decision, tuple[str, ...]]
) -> None:
    assert decide(Assessment(scores=scores), SEED) == expected


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # Toxicity crossed its block threshold; spam, higher, only its review threshold.
        ({"spam": 0.79, "toxicity": 0.71}, (Decision.BLOCK, ("toxicity_score",))),
        # Spam crossed its review threshold; toxicity, higher, crossed nothing.
        ({"spam": 0.61, "toxicity": 0.5}, (Decision.HOLD_FOR_REVIEW, ("spam_score",))),
        # Both crossed: the higher is named.
        ({"spam": 0.9, "toxicity": 0.8}, (Decision.BLOCK, ("spam_score",))),
        ({"spam": 0.85, "toxicity": 0.95}, (Decision.BLOCK, ("toxicity_score",))),
    ],
)
def test_the_score_named_is_the_one_that_crossed_the_threshold_not_the_higher_one(
    scores: dict[str, float], expected: tuple[Decision, tuple[str, ...]]
) -> None:
    assert decide(Assessment(scores=scores), SEED) == expected


def test_the_score_reason_follows_the_events_thresholds() -> None:
    thresholds = ModerationThresholds(spam_block=0.95, spam_review=0.9, toxicity_block=0.3)
    assert decide(Assessment(scores={"spam": 0.85, "toxicity": 0.35}), thresholds) == (
        Decision.BLOCK,
        ("toxicity_score",),
    )


def test_no_score_reason_is_added_when_findings_explain_the_decision() -> None:
    assessment = Assessment(scores={"spam": 1.0, "toxicity": 0.0}, reasons=("link_not_allowed",))
    assert decide(assessment, SEED) == (Decision.BLOCK, ("link_not_allowed",))


def test_an_approval_adds_no_score_reason_and_keeps_the_findings() -> None:
    assert decide(Assessment(scores={"spam": 0.2}), SEED) == (Decision.APPROVE, ())
    noted = Assessment(scores={"spam": 0.65}, reasons=("caps_flood",))
    lenient = ModerationThresholds(spam_review=0.7)
    assert decide(noted, lenient) == (Decision.APPROVE, ("caps_flood",))
