"""analytics: tumbling windows (1 s and 1 min) per event, in event time.

Counts comments, unique commenters, languages and moderation outcomes (APPROVE,
HOLD_FOR_REVIEW, BLOCK, and REJECTED for validate's rejections). A window closes once
event time passed its end plus the allowed lateness; a record later than that is counted
in ``late`` and dropped (windows are not reopened).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas.records import AnalyticsEvent

WINDOWS_S: tuple[int, ...] = (1, 60)
EVENT_TYPE = "comment_window"


@dataclass(slots=True)
class _Window:
    comments: int = 0
    commenters: set[str] = field(default_factory=set)
    languages: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)


class Windows:
    def __init__(self, lateness_ms: int = 2_000, sizes_s: tuple[int, ...] = WINDOWS_S) -> None:
        self._lateness = lateness_ms
        self._sizes = sizes_s
        self._open: dict[tuple[int, str, int], _Window] = {}
        self._closed_until: dict[int, int] = dict.fromkeys(sizes_s, 0)
        self.late = 0

    def add(
        self, event_id: str, at_ms: int, user_id: str, language: str | None, outcome: str
    ) -> None:
        for size in self._sizes:
            span = size * 1000
            start = at_ms - at_ms % span
            if start + span <= self._closed_until[size]:
                self.late += 1
                continue
            w = self._open.get((size, event_id, start))
            if w is None:
                w = self._open[(size, event_id, start)] = _Window()
            w.decisions[outcome] += 1
            if outcome == "APPROVE":
                w.comments += 1
                w.commenters.add(user_id)
                w.languages[language or "und"] += 1

    def close(self, now_ms: int) -> list[AnalyticsEvent]:
        """Every window whose end plus lateness is before ``now_ms``, oldest first."""
        done: list[AnalyticsEvent] = []
        for key in sorted(self._open, key=lambda k: (k[2], k[0], k[1])):
            size, event_id, start = key
            end = start + size * 1000
            if end + self._lateness > now_ms:
                continue
            w = self._open.pop(key)
            self._closed_until[size] = max(self._closed_until[size], end)
            done.append(
                AnalyticsEvent(
                    event_type=EVENT_TYPE,
                    event_id=event_id,
                    window_start=start,
                    window_end=end,
                    window_s=size,
                    comments=w.comments,
                    unique_commenters=len(w.commenters),
                    languages=dict(w.languages),
                    decisions=dict(w.decisions),
                )
            )
        return done
