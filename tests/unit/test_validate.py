"""validate: every reason code, Unicode normalisation, and verdicts that survive a replay."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import replace
from typing import Any

import pytest

from schemas.records import CommentSubmitted, EventStatus, LiveEvent, UserProfile
from topologies.stages.validate import (
    HISTORY_KEEP_MS,
    MAX_ID_LENGTH,
    Accepted,
    CommentLimits,
    PastPost,
    Rejected,
    Verdict,
    normalize_text,
    remember,
    validate,
)

NOW = 1_764_300_000_000
OFFSET = 1_000
LIMITS = CommentLimits()


def _comment(**fields: Any) -> CommentSubmitted:
    base = CommentSubmitted(
        comment_id="c-new",
        event_id="evt-1",
        user_id="u-1",
        text="What a goal!",
        submitted_at=NOW,
        gateway_id="gw-1",
    )
    return replace(base, **fields)


def _event(**fields: Any) -> LiveEvent:
    base = LiveEvent(
        event_id="evt-1", title="Final", status=EventStatus.LIVE, created_at=0, updated_at=0
    )
    return replace(base, **fields)


def _user(**fields: Any) -> UserProfile:
    return replace(UserProfile(user_id="u-1", display_name="Ada", updated_at=0), **fields)


def _check(
    comment: CommentSubmitted | None = None,
    *,
    offset: int = OFFSET,
    event: LiveEvent | None = None,
    user: UserProfile | None = None,
    history: tuple[PastPost, ...] = (),
    limits: CommentLimits = LIMITS,
    no_event: bool = False,
) -> Verdict:
    return validate(
        comment or _comment(),
        offset=offset,
        event=None if no_event else (event or _event()),
        user=user,
        history=history,
        limits=limits,
    )


def _rejected(verdict: Verdict) -> Rejected:
    assert isinstance(verdict, Rejected), verdict
    return verdict


def _accepted(verdict: Verdict) -> CommentSubmitted:
    assert isinstance(verdict, Accepted), verdict
    return verdict.comment


def _posts(count: int, *, first_offset: int, every_ms: int, last_at: int) -> tuple[PastPost, ...]:
    """``count`` earlier posts, ``every_ms`` apart, the last one at ``last_at``."""
    return tuple(
        PastPost(first_offset + i, last_at - (count - 1 - i) * every_ms, f"c-{first_offset + i}")
        for i in range(count)
    )


def test_a_well_formed_comment_is_accepted_as_is() -> None:
    comment = _comment()
    assert _accepted(_check(comment, user=_user())) is comment


def test_a_user_without_a_profile_yet_may_post() -> None:
    _accepted(_check(user=None))


@pytest.mark.parametrize("name", ["comment_id", "event_id", "user_id"])
def test_an_empty_id_is_a_missing_field(name: str) -> None:
    verdict = _rejected(_check(_comment(**{name: ""})))
    assert verdict.reason == "missing_field"
    assert name in verdict.detail


@pytest.mark.parametrize("name", ["comment_id", "event_id", "user_id"])
@pytest.mark.parametrize(
    "value", ["has space", "slash/inside", "ünïcode", "semi;colon", "x" * (MAX_ID_LENGTH + 1)]
)
def test_a_malformed_or_too_long_id_is_an_invalid_field(name: str, value: str) -> None:
    verdict = _rejected(_check(_comment(**{name: value})))
    assert verdict.reason == "invalid_field"
    assert name in verdict.detail


def test_ids_of_every_allowed_character_up_to_the_maximum_length_are_valid() -> None:
    longest = ("Az09._:@-" * MAX_ID_LENGTH)[:MAX_ID_LENGTH]
    _accepted(_check(_comment(comment_id=longest, user_id="user@example.org")))


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n\t\r ",
        "\x00\x1f\x7f\x85",
        "\u200b\u200c\u2060\ufeff",
        "\u200e\u200f\u202a\u202e\u2066\u2069",
        "\u00ad\u034f\u115f\u3164\uffa0",
        " \u200b \u200b ",
    ],
    ids=["empty", "space", "whitespace", "controls", "zero-width", "bidi", "fillers", "mixed"],
)
def test_text_with_nothing_visible_is_empty_text(text: str) -> None:
    assert _rejected(_check(_comment(text=text))).reason == "empty_text"


@pytest.mark.parametrize(
    "text",
    ["\u200d", "\u200d\u200d", " \u200d \u200d ", "\ufe0f", "\u0301\u0301", "\U000e0067"],
    ids=["joiner", "joiners", "spaced-joiners", "variation-selector", "lone-marks", "tag"],
)
def test_text_made_only_of_joiners_selectors_or_lone_marks_is_empty_text(text: str) -> None:
    assert _rejected(_check(_comment(text=text))).reason == "empty_text"


def test_text_over_the_limit_is_text_too_long_with_both_counts() -> None:
    verdict = _rejected(_check(_comment(text="a" * 501)))
    assert verdict.reason == "text_too_long"
    assert "501" in verdict.detail and "500" in verdict.detail


def test_text_of_exactly_the_limit_is_accepted() -> None:
    _accepted(_check(_comment(text="a" * 500)))


def test_the_length_limit_applies_to_the_normalised_text() -> None:
    padded = "  " + "a" * 250 + "\u200b" * 100 + "\n\n\n" + "b" * 249 + "  "
    assert len(_accepted(_check(_comment(text=padded))).text) == 500


def test_the_length_limit_is_configurable() -> None:
    verdict = _rejected(_check(_comment(text="a" * 11), limits=CommentLimits(max_chars=10)))
    assert verdict.reason == "text_too_long"


def test_a_comment_on_an_event_nobody_knows_is_event_not_found() -> None:
    verdict = _rejected(_check(no_event=True))
    assert verdict.reason == "event_not_found"
    assert "evt-1" in verdict.detail


def test_a_comment_on_a_deleted_event_is_event_not_found() -> None:
    assert _rejected(_check(event=_event(deleted=True))).reason == "event_not_found"


@pytest.mark.parametrize(
    ("status", "word"), [(EventStatus.SCHEDULED, "scheduled"), (EventStatus.ENDED, "ended")]
)
def test_a_comment_on_an_event_that_is_not_live_is_event_not_live(
    status: EventStatus, word: str
) -> None:
    verdict = _rejected(_check(event=_event(status=status)))
    assert verdict.reason == "event_not_live"
    assert word in verdict.detail


def test_a_banned_user_is_user_banned() -> None:
    assert _rejected(_check(user=_user(banned=True))).reason == "user_banned"


def test_a_banned_moderator_is_still_user_banned() -> None:
    assert _rejected(_check(user=_user(banned=True, roles=("moderator",)))).reason == (
        "user_banned"
    )


def test_a_timed_out_user_is_told_the_remaining_milliseconds() -> None:
    verdict = _rejected(_check(user=_user(timeout_until=NOW + 12_345)))
    assert verdict.reason == "user_timed_out"
    assert "12345 ms" in verdict.detail


@pytest.mark.parametrize("until", [NOW, NOW - 1, NOW - 86_400_000])
def test_a_timeout_that_has_ended_at_submission_time_does_not_reject(until: int) -> None:
    _accepted(_check(user=_user(timeout_until=until)))


def test_timeouts_are_judged_at_the_submission_time_not_the_processing_time() -> None:
    comment = _comment(submitted_at=NOW - 5_000)
    verdict = _rejected(_check(comment, user=_user(timeout_until=NOW)))
    assert "5000 ms" in verdict.detail


@pytest.mark.parametrize(
    "user",
    [None, _user(), _user(roles=("subscriber",))],
    ids=["no-profile", "no-roles", "other-role"],
)
def test_a_non_member_in_a_members_only_event_is_members_only(user: UserProfile | None) -> None:
    verdict = _rejected(_check(event=_event(members_only=True), user=user))
    assert verdict.reason == "members_only"


@pytest.mark.parametrize("role", ["member", "moderator", "broadcaster", "admin"])
def test_members_and_staff_may_post_in_a_members_only_event(role: str) -> None:
    _accepted(_check(event=_event(members_only=True), user=_user(roles=(role,))))


def test_a_comment_id_seen_earlier_is_a_duplicate() -> None:
    history = (PastPost(OFFSET - 5, NOW - 3_000, "c-new"),)
    verdict = _rejected(_check(history=history))
    assert verdict.reason == "duplicate"
    assert "c-new" in verdict.detail


def test_duplicates_are_caught_even_for_privileged_users() -> None:
    history = (PastPost(OFFSET - 5, NOW - 3_000, "c-new"),)
    assert _rejected(_check(history=history, user=_user(roles=("admin",)))).reason == ("duplicate")


def test_posting_again_inside_the_slow_mode_interval_is_slow_mode_with_the_wait() -> None:
    history = (PastPost(OFFSET - 1, NOW - 2_000, "c-prev"),)
    verdict = _rejected(_check(event=_event(slow_mode_s=5), history=history))
    assert verdict.reason == "slow_mode"
    assert "3000 ms" in verdict.detail


def test_slow_mode_measures_from_the_latest_earlier_post() -> None:
    history = (
        PastPost(OFFSET - 2, NOW - 60_000, "c-old"),
        PastPost(OFFSET - 1, NOW - 1_000, "c-prev"),
    )
    verdict = _rejected(_check(event=_event(slow_mode_s=5), history=history))
    assert "4000 ms" in verdict.detail


@pytest.mark.parametrize("ago_ms", [5_000, 5_001, 30_000])
def test_posting_once_the_slow_mode_interval_has_passed_is_accepted(ago_ms: int) -> None:
    history = (PastPost(OFFSET - 1, NOW - ago_ms, "c-prev"),)
    _accepted(_check(event=_event(slow_mode_s=5), history=history))


def test_without_slow_mode_back_to_back_posts_are_accepted() -> None:
    history = (PastPost(OFFSET - 1, NOW - 1, "c-prev"),)
    _accepted(_check(event=_event(slow_mode_s=0), history=history))


@pytest.mark.parametrize("role", ["moderator", "broadcaster", "admin"])
def test_privileged_roles_bypass_slow_mode(role: str) -> None:
    history = (PastPost(OFFSET - 1, NOW - 1, "c-prev"),)
    _accepted(_check(event=_event(slow_mode_s=60), history=history, user=_user(roles=(role,))))


def test_a_member_does_not_bypass_slow_mode() -> None:
    history = (PastPost(OFFSET - 1, NOW - 1, "c-prev"),)
    verdict = _check(event=_event(slow_mode_s=60), history=history, user=_user(roles=("member",)))
    assert _rejected(verdict).reason == "slow_mode"


def test_the_61st_post_within_a_minute_is_rate_limited_with_the_wait() -> None:
    history = _posts(60, first_offset=OFFSET - 60, every_ms=900, last_at=NOW - 100)
    verdict = _rejected(_check(history=history))
    assert verdict.reason == "rate_limited"
    oldest = history[0].at_ms
    assert f"60 per minute: wait {oldest + 60_000 - NOW} ms" == verdict.detail


def test_the_60th_post_within_a_minute_is_accepted() -> None:
    history = _posts(59, first_offset=OFFSET - 59, every_ms=900, last_at=NOW - 100)
    _accepted(_check(history=history))


def test_posts_a_full_minute_old_no_longer_count_towards_the_rate() -> None:
    recent = _posts(59, first_offset=OFFSET - 59, every_ms=500, last_at=NOW - 100)
    history = (PastPost(OFFSET - 61, NOW - 60_000, "c-old"), *recent)
    _accepted(_check(history=history))


def test_the_rate_limit_wait_is_until_the_oldest_counted_post_leaves_the_minute() -> None:
    # 70 posts in the last minute (a privileged past): the wait is until only 59 remain.
    history = _posts(70, first_offset=OFFSET - 70, every_ms=800, last_at=NOW - 10)
    verdict = _rejected(_check(history=history))
    assert verdict.detail.endswith(f"wait {history[-60].at_ms + 60_000 - NOW} ms")


def test_the_rate_limit_is_configurable() -> None:
    history = _posts(3, first_offset=OFFSET - 3, every_ms=1_000, last_at=NOW - 1_000)
    verdict = _rejected(_check(history=history, limits=CommentLimits(posts_per_minute=3)))
    assert verdict.reason == "rate_limited"
    assert verdict.detail.startswith("3 per minute")


@pytest.mark.parametrize("role", ["moderator", "broadcaster", "admin"])
def test_privileged_roles_bypass_the_rate_limit(role: str) -> None:
    history = _posts(100, first_offset=OFFSET - 100, every_ms=100, last_at=NOW - 10)
    _accepted(_check(history=history, user=_user(roles=(role,))))


@pytest.mark.parametrize(
    ("comment", "event", "user", "reason"),
    [
        (_comment(user_id="", text=""), _event(), _user(), "missing_field"),
        (_comment(text="\u200b"), None, _user(banned=True), "empty_text"),
        (_comment(text="x" * 501), _event(status=EventStatus.ENDED), None, "text_too_long"),
        (_comment(), _event(deleted=True, status=EventStatus.ENDED), None, "event_not_found"),
        (_comment(), _event(status=EventStatus.ENDED), _user(banned=True), "event_not_live"),
        (_comment(), _event(members_only=True), _user(banned=True), "user_banned"),
        (_comment(), _event(members_only=True), _user(timeout_until=NOW + 1), "user_timed_out"),
    ],
    ids=["id", "text", "length", "event", "status", "ban", "timeout"],
)
def test_the_first_failing_check_gives_the_reason(
    comment: CommentSubmitted, event: LiveEvent | None, user: UserProfile | None, reason: str
) -> None:
    verdict = validate(comment, offset=OFFSET, event=event, user=user, history=(), limits=LIMITS)
    assert _rejected(verdict).reason == reason


def test_a_duplicate_is_reported_before_slow_mode_and_rate_limit() -> None:
    history = _posts(60, first_offset=OFFSET - 61, every_ms=10, last_at=NOW - 1)
    history = (*history, PastPost(OFFSET - 1, NOW - 1, "c-new"))
    verdict = _check(event=_event(slow_mode_s=30), history=history)
    assert _rejected(verdict).reason == "duplicate"


def test_slow_mode_is_reported_before_the_rate_limit() -> None:
    history = _posts(60, first_offset=OFFSET - 60, every_ms=10, last_at=NOW - 1)
    assert _rejected(_check(event=_event(slow_mode_s=30), history=history)).reason == ("slow_mode")


# Unicode normalisation


def test_text_is_normalised_to_nfc() -> None:
    decomposed = "Cafe\u0301 Zoe\u0308 Ångstro\u0308m"
    text = _accepted(_check(_comment(text=decomposed))).text
    assert text == "Café Zoë Ångström"
    assert unicodedata.is_normalized("NFC", text)


def test_text_is_nfc_even_when_an_invisible_character_split_a_combining_sequence() -> None:
    text = normalize_text("Cafe\u200b\u0301")
    assert text == "Café"
    assert unicodedata.is_normalized("NFC", text)


def test_compatibility_forms_are_kept_only_canonical_ones_composed() -> None:
    # NFC, not NFKC: full-width letters and ligatures are what the poster typed.
    typed = "\uff27\uff2f\uff21\uff2c \ufb01nally"  # full-width GOAL, "fi" ligature
    assert normalize_text(typed) == typed


def test_control_characters_become_single_spaces() -> None:
    assert normalize_text("one\ntwo\r\nthree\tfour\x00five\x1bsix\x85seven") == (
        "one two three four five six seven"
    )


def test_whitespace_runs_collapse_and_ends_are_trimmed() -> None:
    assert normalize_text("  so \u00a0\u2003 close \u2028 \u3000") == "so close"


@pytest.mark.parametrize(
    "hidden",
    [
        "\u200b",
        "\u200c",
        "\u200e",
        "\u200f",
        "\u202a",
        "\u202b",
        "\u202c",
        "\u202d",
        "\u202e",
        "\u2060",
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",
        "\ufeff",
        "\u00ad",
        "\u061c",
        "\u180e",
    ],
)
def test_zero_width_and_direction_characters_are_dropped(hidden: str) -> None:
    assert normalize_text(f"sp{hidden}oi{hidden}ler") == "spoiler"


def test_a_bidi_override_cannot_reverse_what_viewers_read() -> None:
    text = _accepted(_check(_comment(text="gg \u202eelgoog.moc\u202c ok"))).text
    assert text == "gg elgoog.moc ok"


@pytest.mark.parametrize(
    "emoji",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
        "\U0001f469\U0001f3fd\u200d\U0001f4bb",  # woman technologist, skin tone
        "\u2764\ufe0f\u200d\U0001f525",  # heart on fire
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    ],
    ids=["family", "rainbow-flag", "technologist", "heart-on-fire", "tag-flag"],
)
def test_emoji_sequences_survive_normalisation_intact(emoji: str) -> None:
    text = f"what a show {emoji}{emoji}!"
    assert normalize_text(text) == text
    assert _accepted(_check(_comment(text=text))).text == text


def test_the_accepted_comment_carries_the_normalised_text_and_nothing_else_changes() -> None:
    comment = _comment(text="  Cafe\u0301\n\u200bole\u0301  ", trace_parent="tp", reply_to="c-0")
    accepted = _accepted(_check(comment))
    assert accepted == replace(comment, text="Café olé")


# Replay determinism: the verdict depends only on the record and posts before its offset.


def test_revalidating_an_accepted_record_with_itself_in_history_is_not_a_duplicate() -> None:
    before = (PastPost(OFFSET - 10, NOW - 20_000, "c-prev"),)
    first = _check(event=_event(slow_mode_s=5), history=before)
    after = remember(before, PastPost(OFFSET, NOW, "c-new"))
    assert _check(event=_event(slow_mode_s=5), history=after) == first
    _accepted(first)


def test_posts_after_the_record_are_ignored_for_slow_mode_and_rate() -> None:
    before = (PastPost(OFFSET - 10, NOW - 20_000, "c-prev"),)
    future = tuple(PastPost(OFFSET + i, NOW + i, f"c-f{i}") for i in range(1, 70))
    event = _event(slow_mode_s=5)
    first = _check(event=event, history=before)
    assert _check(event=event, history=before + future) == first
    _accepted(first)


def test_a_post_at_the_same_offset_is_the_record_itself_not_its_past() -> None:
    itself = (PastPost(OFFSET, NOW, "c-new"),)
    _accepted(_check(event=_event(slow_mode_s=60), history=itself))


@pytest.mark.parametrize(
    ("history", "event", "reason"),
    [
        ((PastPost(OFFSET - 1, NOW - 500, "c-new"),), _event(), "duplicate"),
        ((PastPost(OFFSET - 1, NOW - 500, "c-prev"),), _event(slow_mode_s=5), "slow_mode"),
        (_posts(60, first_offset=OFFSET - 60, every_ms=100, last_at=NOW - 1), _event(), None),
    ],
    ids=["duplicate", "slow_mode", "rate_limited"],
)
def test_a_rejection_is_the_same_when_replayed_with_later_posts_in_history(
    history: tuple[PastPost, ...], event: LiveEvent, reason: str | None
) -> None:
    first = _rejected(_check(event=event, history=history))
    assert first.reason == (reason or "rate_limited")
    later = history
    for i in range(1, 4):
        later = remember(later, PastPost(OFFSET + i, NOW + 200 * i, f"c-later-{i}"))
    assert _check(event=event, history=later) == first


def test_a_rate_limited_record_stays_rejected_after_a_later_post_pruned_history() -> None:
    history = _posts(60, first_offset=OFFSET - 60, every_ms=100, last_at=NOW - 1)
    first = _rejected(_check(history=history))
    wait_ms = int(first.detail.rsplit("wait ", 1)[1].split()[0])
    # The user's next post, once the wait is over, is accepted and remembered...
    later = PastPost(OFFSET + 1, NOW + wait_ms, "c-later")
    assert isinstance(
        _check(
            _comment(comment_id="c-later", submitted_at=later.at_ms),
            offset=later.offset,
            history=history,
        ),
        Accepted,
    )
    # ...then a crash before the offset commit replays the rate-limited record.
    assert _check(history=remember(history, later)) == first


def test_a_stream_revalidated_against_its_final_history_gives_the_same_verdicts() -> None:
    rng = random.Random(7)
    event = _event(slow_mode_s=1)
    limits = CommentLimits(posts_per_minute=20)
    records = []
    at = NOW
    for i in range(200):
        at += rng.choice([50, 300, 1_100, 2_500])
        cid = f"c-{rng.randrange(150)}"  # some ids come back: retries
        records.append((OFFSET + 3 * i, _comment(comment_id=cid, submitted_at=at)))

    history: tuple[PastPost, ...] = ()
    verdicts = []
    for offset, comment in records[:30]:  # a span short enough that nothing is pruned
        verdict = _check(comment, offset=offset, event=event, history=history, limits=limits)
        verdicts.append(verdict)
        if isinstance(verdict, Accepted):
            history = remember(history, PastPost(offset, comment.submitted_at, comment.comment_id))
    assert {type(v) for v in verdicts} == {Accepted, Rejected}

    for (offset, comment), verdict in zip(records[:30], verdicts, strict=True):
        replayed = _check(comment, offset=offset, event=event, history=history, limits=limits)
        assert replayed == verdict


# remember(): what history keeps.


def test_remember_appends_the_new_post() -> None:
    first = PastPost(1, NOW, "a")
    second = PastPost(2, NOW + 1, "b")
    assert remember((), first) == (first,)
    assert remember((first,), second) == (first, second)


def test_remembering_a_replayed_offset_replaces_it_and_its_future() -> None:
    history = tuple(PastPost(o, NOW + o, f"c{o}") for o in (1, 2, 3, 4))
    replayed = PastPost(2, NOW + 2, "c2")
    assert remember(history, replayed) == (history[0], replayed)


def test_remember_keeps_history_ordered_by_offset_even_when_replaying_out_of_order() -> None:
    rng = random.Random(11)
    history: tuple[PastPost, ...] = ()
    for _ in range(500):
        offset = rng.randrange(1_000)
        history = remember(history, PastPost(offset, NOW + offset * 10, f"c{offset}"))
        offsets = [p.offset for p in history]
        assert offsets == sorted(set(offsets))
        assert history[-1].offset == offset


def test_remember_keeps_at_most_keep_max_posts_the_most_recent() -> None:
    history: tuple[PastPost, ...] = ()
    posts = [PastPost(i, NOW + i, f"c{i}") for i in range(100)]
    for post in posts:
        history = remember(history, post)
        assert len(history) <= 64
    assert history == tuple(posts[-64:])
    assert remember(history, PastPost(100, NOW + 100, "c100"), keep_max=3) == (
        posts[-2],
        posts[-1],
        PastPost(100, NOW + 100, "c100"),
    )


def test_remember_forgets_posts_ten_minutes_older_than_the_new_one() -> None:
    old = PastPost(1, NOW - HISTORY_KEEP_MS, "old")
    recent = PastPost(2, NOW - HISTORY_KEEP_MS + 1, "recent")
    new = PastPost(3, NOW, "new")
    assert remember((old, recent), new) == (recent, new)
    assert remember((old, recent), new, keep_ms=10_000) == (new,)


def test_remember_keeps_enough_history_for_the_default_rate_limit() -> None:
    history: tuple[PastPost, ...] = ()
    for i in range(60):
        history = remember(history, PastPost(i, NOW - 59_000 + i * 900, f"c{i}"))
    verdict = _check(_comment(comment_id="c-61"), offset=60, history=history)
    assert _rejected(verdict).reason == "rate_limited"


def test_remember_does_not_change_the_history_it_was_given() -> None:
    history = (PastPost(1, NOW, "a"),)
    remember(history, PastPost(2, NOW, "b"))
    assert history == (PastPost(1, NOW, "a"),)
