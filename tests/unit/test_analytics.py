"""analytics: tumbling 1 s and 60 s windows in event time, closed after the lateness."""

from __future__ import annotations

from dataclasses import replace

from schemas.records import AnalyticsEvent
from topologies.stages.analytics import EVENT_TYPE, WINDOWS_S, Windows

T = 1_764_300_000_000  # a whole minute: windows of both sizes start here
LATE = 2_000


def _by_size(closed: list[AnalyticsEvent]) -> dict[int, list[AnalyticsEvent]]:
    out: dict[int, list[AnalyticsEvent]] = {}
    for w in closed:
        out.setdefault(w.window_s, []).append(w)
    return out


def test_the_windows_are_one_second_and_one_minute() -> None:
    assert WINDOWS_S == (1, 60)


def test_an_approved_comment_is_counted_in_a_one_second_and_a_one_minute_window() -> None:
    windows = Windows(lateness_ms=LATE)
    windows.add("evt-1", T + 1_500, "u-1", "en", "APPROVE")
    closed = windows.close(T + 60_000 + LATE)
    minute = AnalyticsEvent(
        event_type=EVENT_TYPE,
        event_id="evt-1",
        window_start=T,
        window_end=T + 60_000,
        window_s=60,
        comments=1,
        unique_commenters=1,
        languages={"en": 1},
        decisions={"APPROVE": 1},
    )
    second = replace(minute, window_start=T + 1_000, window_end=T + 2_000, window_s=1)
    assert closed == [minute, second]  # oldest start first


def test_windows_are_aligned_to_whole_seconds_and_minutes() -> None:
    windows = Windows(lateness_ms=0)
    windows.add("evt-1", T + 61_999, "u-1", "en", "APPROVE")
    spans = {(w.window_s, w.window_start, w.window_end) for w in windows.close(T + 10**6)}
    assert spans == {(1, T + 61_000, T + 62_000), (60, T + 60_000, T + 120_000)}


def test_a_window_includes_its_start_and_excludes_its_end() -> None:
    windows = Windows(lateness_ms=0, sizes_s=(1,))
    for at in (T, T + 999, T + 1_000):
        windows.add("evt-1", at, "u-1", "en", "APPROVE")
    assert [(w.window_start, w.comments) for w in windows.close(T + 10_000)] == [
        (T, 2),
        (T + 1_000, 1),
    ]


def test_commenters_are_counted_once_per_window() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    for user in ("u-1", "u-2", "u-1", "u-1", "u-3"):
        windows.add("evt-1", T + 100, user, "en", "APPROVE")
    [w] = windows.close(T + 1_000 + LATE)
    assert (w.comments, w.unique_commenters) == (5, 3)


def test_languages_are_counted_with_und_for_undetected() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    for language in ("en", "fr", None, "en", None, "pt-BR"):
        windows.add("evt-1", T + 100, "u-1", language, "APPROVE")
    [w] = windows.close(T + 1_000 + LATE)
    assert w.languages == {"en": 2, "fr": 1, "und": 2, "pt-BR": 1}


def test_every_decision_is_counted_including_validate_rejections() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    outcomes = ["APPROVE", "REJECTED", "BLOCK", "HOLD_FOR_REVIEW", "APPROVE", "REJECTED"]
    for i, outcome in enumerate(outcomes):
        windows.add("evt-1", T + i, f"u-{i}", "en", outcome)
    [w] = windows.close(T + 1_000 + LATE)
    assert w.decisions == {"APPROVE": 2, "REJECTED": 2, "BLOCK": 1, "HOLD_FOR_REVIEW": 1}


def test_only_approved_comments_count_as_comments_commenters_and_languages() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T, "u-1", "en", "APPROVE")
    windows.add("evt-1", T, "u-2", "fr", "BLOCK")
    windows.add("evt-1", T, "u-3", None, "REJECTED")
    windows.add("evt-1", T, "u-4", "de", "HOLD_FOR_REVIEW")
    [w] = windows.close(T + 1_000 + LATE)
    assert (w.comments, w.unique_commenters, w.languages) == (1, 1, {"en": 1})
    assert sum(w.decisions.values()) == 4


def test_a_window_with_only_rejections_is_still_reported() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T, "u-1", None, "REJECTED")
    [w] = windows.close(T + 1_000 + LATE)
    assert (w.comments, w.unique_commenters, w.languages, w.decisions) == (
        0,
        0,
        {},
        {"REJECTED": 1},
    )


def test_each_event_has_its_own_windows() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T, "u-1", "en", "APPROVE")
    windows.add("evt-2", T, "u-1", "en", "APPROVE")
    windows.add("evt-2", T, "u-2", "en", "APPROVE")
    closed = windows.close(T + 1_000 + LATE)
    assert {w.event_id: w.comments for w in closed} == {"evt-1": 1, "evt-2": 2}


def test_a_window_closes_only_once_its_end_plus_lateness_has_passed() -> None:
    windows = Windows(lateness_ms=LATE)
    windows.add("evt-1", T + 500, "u-1", "en", "APPROVE")
    assert windows.close(T + 1_000) == []
    assert windows.close(T + 1_000 + LATE - 1) == []
    [second] = windows.close(T + 1_000 + LATE)
    assert second.window_s == 1
    assert windows.close(T + 60_000 + LATE - 1) == []
    [minute] = windows.close(T + 60_000 + LATE)
    assert minute.window_s == 60


def test_a_closed_window_is_reported_once() -> None:
    windows = Windows(lateness_ms=LATE)
    windows.add("evt-1", T, "u-1", "en", "APPROVE")
    assert len(windows.close(T + 10**6)) == 2
    assert windows.close(T + 10**6) == []
    assert windows.close(T + 10**7) == []


def test_closed_windows_come_oldest_first() -> None:
    windows = Windows(lateness_ms=0)
    for at, event_id in ((T + 2_500, "evt-b"), (T + 500, "evt-a"), (T + 1_500, "evt-c")):
        windows.add(event_id, at, "u-1", "en", "APPROVE")
    closed = windows.close(T + 10**6)
    assert [(w.window_start, w.window_s, w.event_id) for w in closed] == [
        (T, 1, "evt-a"),
        (T, 60, "evt-a"),
        (T, 60, "evt-b"),
        (T, 60, "evt-c"),
        (T + 1_000, 1, "evt-c"),
        (T + 2_000, 1, "evt-b"),
    ]


def test_a_record_within_the_lateness_still_counts_in_its_window() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T + 100, "u-1", "en", "APPROVE")
    assert windows.close(T + 1_500) == []
    windows.add("evt-1", T + 900, "u-2", "en", "APPROVE")  # arrives after the window end
    [w] = windows.close(T + 1_000 + LATE)
    assert w.comments == 2
    assert windows.late == 0


def test_a_record_for_a_closed_window_is_counted_late_and_dropped() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T + 100, "u-1", "en", "APPROVE")
    assert len(windows.close(T + 1_000 + LATE)) == 1
    windows.add("evt-1", T + 200, "u-2", "en", "APPROVE")
    windows.add("evt-2", T + 999, "u-3", None, "REJECTED")
    assert windows.late == 2
    assert windows.close(T + 10**6) == []  # the window is not reopened


def test_a_late_record_is_late_only_for_the_windows_already_closed() -> None:
    windows = Windows(lateness_ms=LATE)
    windows.add("evt-1", T + 100, "u-1", "en", "APPROVE")
    assert [w.window_s for w in windows.close(T + 1_000 + LATE)] == [1]
    windows.add("evt-1", T + 200, "u-2", "en", "APPROVE")
    assert windows.late == 1
    [minute] = windows.close(T + 60_000 + LATE)
    assert (minute.window_s, minute.comments) == (60, 2)
    windows.add("evt-1", T + 300, "u-3", "en", "APPROVE")
    assert windows.late == 3


def test_a_record_for_a_later_window_is_not_late() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T, "u-1", "en", "APPROVE")
    windows.close(T + 1_000 + LATE)
    windows.add("evt-1", T + 1_000, "u-1", "en", "APPROVE")
    assert windows.late == 0
    [w] = windows.close(T + 2_000 + LATE)
    assert w.window_start == T + 1_000


def test_windows_of_an_event_are_closed_when_another_events_are() -> None:
    windows = Windows(lateness_ms=LATE, sizes_s=(1,))
    windows.add("evt-1", T, "u-1", "en", "APPROVE")
    windows.add("evt-2", T + 100, "u-1", "en", "APPROVE")
    closed = windows.close(T + 1_000 + LATE)
    assert sorted(w.event_id for w in closed) == ["evt-1", "evt-2"]
    windows.add("evt-2", T + 200, "u-2", "en", "APPROVE")
    assert windows.late == 1
