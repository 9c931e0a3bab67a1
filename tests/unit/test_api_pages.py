"""History pages of the HTTP API, without I/O: cursors, wholeness, links, ETags, caching."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.http import pages
from gateways.http.pages import Cursor, CursorError, Page, choose, is_whole


def comments(*positions: int, first_prev: int | None = None) -> list[dict[str, Any]]:
    """Items chained through ``previous_position`` (the first points at ``first_prev``)."""
    out: list[dict[str, Any]] = []
    prev = first_prev
    for p in positions:
        out.append({"comment_id": f"c{p}", "position": p, "previous_position": prev, "text": "x"})
        prev = p
    return out


def test_choose_reads_one_cursor_and_the_limit() -> None:
    assert choose(None, None, None, default=50, maximum=500) == Cursor("latest", None, 50)
    assert choose(10, None, 5, default=50, maximum=500) == Cursor("before", 10, 5)
    assert choose(None, -1, None, default=50, maximum=500) == Cursor("after", -1, 50)


@pytest.mark.parametrize(
    ("before", "after", "limit"),
    [(1, 2, None), (None, None, 0), (None, None, 501), (None, -2, None), (-1, None, None)],
)
def test_choose_refuses_what_names_no_page(
    before: int | None, after: int | None, limit: int | None
) -> None:
    with pytest.raises(CursorError):
        choose(before, after, limit, default=50, maximum=500)


def test_a_full_chained_after_page_is_whole() -> None:
    items = comments(12, 15, 16, first_prev=9)
    assert is_whole(Cursor("after", 10, 3), items, None)
    assert is_whole(Cursor("after", 9, 3), items, None)


def test_an_after_page_is_not_whole_when_short_or_open_at_its_start() -> None:
    assert not is_whole(Cursor("after", 10, 4), comments(12, 15, 16, first_prev=9), None)
    # A comment between 10 and 12 (at 11) is not in the page yet.
    assert not is_whole(Cursor("after", 10, 3), comments(12, 15, 16, first_prev=11), None)


def test_a_hole_inside_a_page_makes_it_not_whole() -> None:
    # 14 is still being written: 15 names it, the page jumps from 12 to 15.
    items = [*comments(12, first_prev=9), *comments(15, 16, first_prev=14)]
    assert not is_whole(Cursor("after", 10, 3), items, None)


def test_the_first_comments_of_an_event_make_a_whole_page() -> None:
    assert is_whole(Cursor("after", -1, 2), comments(3, 4), None)


def test_a_before_page_is_whole_only_when_its_successor_closes_it() -> None:
    items = comments(5, 6, 8, first_prev=4)
    cursor = Cursor("before", 10, 3)
    assert is_whole(cursor, items, {"position": 10, "previous_position": 8})
    assert is_whole(cursor, items, {"position": 12, "previous_position": 8})
    assert not is_whole(cursor, items, None)  # nothing after 8 yet: 9 may still come
    assert not is_whole(cursor, items, {"position": 12, "previous_position": 9})  # 9 missing
    assert not is_whole(cursor, items, {"position": 9, "previous_position": 8})  # 9 < 10: raced


def test_the_live_edge_is_never_whole() -> None:
    assert not is_whole(Cursor("latest", None, 2), comments(1, 2), None)


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=30),
    st.sets(st.integers(min_value=0, max_value=29)),
    st.integers(min_value=1, max_value=10),
)
def test_a_page_missing_any_comment_of_its_range_is_never_whole(
    steps: list[int], hidden: set[int], limit: int
) -> None:
    """Whatever the positions and whichever rows are not visible yet: a page called
    whole holds every comment of the event between its cursor and its last item."""
    positions = []
    p = 0
    for s in steps:
        p += s
        positions.append(p)
    log = comments(*positions)
    visible = [c for i, c in enumerate(log) if i not in hidden]
    after = 0
    page = [c for c in visible if c["position"] > after][:limit]
    if is_whole(Cursor("after", after, limit), page, None):
        last = page[-1]["position"]
        expected = [c["position"] for c in log if after < c["position"] <= last]
        assert [c["position"] for c in page] == expected


def test_links_lead_to_the_neighbouring_pages() -> None:
    page = Page(
        "final:2026", Cursor("after", 10, 3), tuple(comments(12, 15, 16, first_prev=9)), True
    )
    assert page.links() == {
        "older": "/v1/events/final:2026/comments?before=12&limit=3",
        "newer": "/v1/events/final:2026/comments?after=16&limit=3",
    }
    first = Page("e", Cursor("after", -1, 3), tuple(comments(0, 1)), False)
    assert first.links()["older"] is None
    empty = Page("e", Cursor("after", 16, 3), (), False)
    assert empty.links() == {"older": None, "newer": "/v1/events/e/comments?after=16&limit=3"}


def test_the_body_is_the_same_bytes_for_the_same_page() -> None:
    a = Page("e", Cursor("after", 10, 3), tuple(comments(12, 15, 16, first_prev=9)), True)
    b = Page("e", Cursor("after", 10, 3), tuple(comments(12, 15, 16, first_prev=9)), True)
    assert a.body() == b.body()
    assert pages.etag(a.body()) == pages.etag(b.body())
    doc = json.loads(a.body())
    assert doc["whole"] is True and [i["position"] for i in doc["items"]] == [12, 15, 16]


def test_a_removal_changes_the_etag() -> None:
    items = comments(12, 15, 16, first_prev=9)
    before = Page("e", Cursor("after", 10, 3), tuple(items), True).body()
    items[1] = {k: items[1][k] for k in ("comment_id", "position", "previous_position")}
    items[1]["removed"] = True
    after = Page("e", Cursor("after", 10, 3), tuple(items), True).body()
    assert pages.etag(before) != pages.etag(after)


def test_etags_are_strong_and_if_none_match_compares_weakly() -> None:
    tag = pages.etag(b"page")
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert pages.etag_matches(tag, tag)
    assert pages.etag_matches(f'"other", W/{tag}', tag)
    assert pages.etag_matches("*", tag)
    assert not pages.etag_matches('"other"', tag)
    assert not pages.etag_matches(None, tag)


def test_whole_pages_are_cached_for_long_and_the_live_edge_briefly() -> None:
    kw = {"whole_max_age_s": 86400, "live_max_age_s": 2}
    assert pages.cache_control(True, public=True, **kw) == "public, max-age=86400, immutable"
    assert pages.cache_control(False, public=True, **kw) == "public, max-age=2"
    assert pages.cache_control(True, public=False, **kw).startswith("private,")


def test_surrogate_keys_let_a_cdn_purge_the_pages_of_a_removal() -> None:
    items = comments(1000, 1030, 2100)
    keys = pages.surrogate_keys("e", items).split()
    assert keys == ["lc:e", "lc:e:0", "lc:e:1", "lc:e:2"]
    assert pages.purge_keys("e", [1030]) == ["lc:e:1"]
    assert set(pages.purge_keys("e", [1030])) <= set(keys)


@pytest.mark.parametrize(
    ("event_id", "ok"),
    [
        ("final-2026", True),
        ("a.b:c@d_e", True),
        ("", False),
        ("a/b", False),
        ("é", False),
        ("x" * 129, False),
    ],
)
def test_event_ids_follow_the_protocols_rule(event_id: str, ok: bool) -> None:
    assert pages.valid_event_id(event_id) is ok


def test_shadow_comments_are_never_on_a_page() -> None:
    from types import SimpleNamespace

    rows = [
        SimpleNamespace(position=1, visible_to=None),
        SimpleNamespace(position=2, visible_to="hidden-user"),
        SimpleNamespace(position=3, visible_to=None),
        SimpleNamespace(position=4),  # a row from before shadow comments existed
    ]
    assert [r.position for r in pages.public(rows)] == [1, 3, 4]
