"""History pages by cursor, and when a page may be cached forever. Pure.

``GET /v1/events/{event_id}/comments?after=P&limit=N`` is the ``N`` comments after
position ``P`` (``before=P``: the ``N`` before it; neither: the newest ``N``, the live
edge). Items are always in the event's order, oldest first, in the protocol's comment
form (a removed comment keeps its place as ``{"removed": true}`` without text).

A page is **whole** when no comment can ever join it: it has ``N`` items, each item's
``previous_position`` is the item before it (so nothing is missing in between, even
while the newest batch is still being written to Cassandra), and its ends are closed:

- ``after=P``: the first item's ``previous_position`` is at or below ``P`` (or null,
  the event's first comment), so nothing lies between ``P`` and the page;
- ``before=P``: the comment that follows the page's last item was read too, names that
  item as its ``previous_position`` and is at or past ``P``.

Positions are offsets in the event's Kafka partition and only grow, so a whole page's
comments are fixed: it is served ``public, max-age=<long>, immutable`` with a strong
ETag, for a CDN. The one thing that still changes a whole page is a removal by a
moderator; the body changes (so does the ETag), and each page carries
``Surrogate-Key`` tags by position block so a CDN can purge the pages of a retraction
(``purge_keys``). Other pages (the live edge, a page with a hole) get a short max-age.

Shadow comments (a hidden user's, ``visible_to`` set) are never on a page (``public``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

from gateways.protocol import MAX_EVENT_ID

BLOCK_BITS: Final = 10  # Surrogate-Key granularity: 1,024 positions of the partition
FIRST: Final = -1  # `after=-1` starts at the event's first comment

Direction = Literal["before", "after", "latest"]


@dataclass(frozen=True, slots=True)
class Cursor:
    direction: Direction
    position: int | None  # None for latest
    limit: int

    def query(self) -> str:
        if self.direction == "latest":
            return f"limit={self.limit}"
        return f"{self.direction}={self.position}&limit={self.limit}"


class CursorError(ValueError):
    """The query names no valid page; the message says why."""


def choose(
    before: int | None, after: int | None, limit: int | None, *, default: int, maximum: int
) -> Cursor:
    """The page a query asks for (``CursorError`` for both cursors or a bad limit)."""
    if before is not None and after is not None:
        raise CursorError("give `before` or `after`, not both")
    n = default if limit is None else limit
    if not 1 <= n <= maximum:
        raise CursorError(f"`limit` must be between 1 and {maximum}")
    if after is not None:
        if after < FIRST:
            raise CursorError("`after` is a position (-1 for the event's start)")
        return Cursor("after", after, n)
    if before is not None:
        if before < 0:
            raise CursorError("`before` is a position")
        return Cursor("before", before, n)
    return Cursor("latest", None, n)


def valid_event_id(value: str) -> bool:
    """The protocol's rule for event ids (``gateways.protocol``): ASCII letters, digits
    and ``._:@-``, at most 128 characters."""
    return (
        0 < len(value) <= MAX_EVENT_ID
        and value.isascii()
        and all(c.isalnum() or c in "._:@-" for c in value)
    )


def public(rows: Iterable[Any]) -> list[Any]:
    """The rows anyone may see: a shadow comment (``visible_to`` set, a hidden user's)
    is shown to its author alone, so it is never on a page — pages are public and a CDN
    keeps them. Public comments' ``previous_position`` skips shadow comments, so
    leaving them out keeps a page's chain whole."""
    return [r for r in rows if getattr(r, "visible_to", None) is None]


def chained(items: Sequence[Mapping[str, Any]]) -> bool:
    """Each item's ``previous_position`` is the position of the item before it."""
    return all(
        items[i].get("previous_position") == items[i - 1].get("position")
        for i in range(1, len(items))
    )


def is_whole(
    cursor: Cursor, items: Sequence[Mapping[str, Any]], successor: Mapping[str, Any] | None
) -> bool:
    """Whether the page can never change but by a removal (see the module doc).

    ``successor`` is the comment right after the page's last item (read for ``before``
    pages only; None if there is none yet)."""
    if cursor.direction == "latest" or len(items) < cursor.limit or not chained(items):
        return False
    if cursor.direction == "after":
        assert cursor.position is not None
        first_prev = items[0].get("previous_position")
        return first_prev is None or first_prev <= cursor.position
    assert cursor.position is not None
    return (
        successor is not None
        and successor.get("previous_position") == items[-1].get("position")
        and int(successor.get("position", -1)) >= cursor.position
    )


@dataclass(frozen=True, slots=True)
class Page:
    event_id: str
    cursor: Cursor
    items: tuple[Mapping[str, Any], ...]
    whole: bool

    def links(self) -> dict[str, str | None]:
        """``older`` and ``newer``: the pages on either side (null where none can be)."""
        base = f"/v1/events/{quote(self.event_id, safe=':@')}/comments?"
        n = self.cursor.limit
        older: str | None = None
        newer: str | None = None
        if self.items:
            if self.items[0].get("previous_position") is not None:
                older = f"{base}before={self.items[0]['position']}&limit={n}"
            newer = f"{base}after={self.items[-1]['position']}&limit={n}"
        elif self.cursor.direction == "after":
            newer = f"{base}{self.cursor.query()}"  # nothing yet: ask again later
        elif self.cursor.direction == "latest":
            newer = f"{base}after={FIRST}&limit={n}"
        return {"older": older, "newer": newer}

    def body(self) -> bytes:
        """The response, byte for byte the same for the same page (the ETag hashes it)."""
        doc = {
            "event_id": self.event_id,
            "items": list(self.items),
            "whole": self.whole,
            **self.links(),
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def etag(body: bytes) -> str:
    """A strong ETag: the same bytes, the same tag."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110's weak comparison, as ``If-None-Match`` uses: ``*`` or any listed tag,
    with or without ``W/``."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = tag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in if_none_match.split(","))


def cache_control(whole: bool, *, public: bool, whole_max_age_s: int, live_max_age_s: int) -> str:
    """A whole page is cached for long and never revalidated; the live edge briefly.
    Events closed to anonymous viewers are read with a token: ``private`` (no CDN)."""
    scope = "public" if public else "private"
    if whole:
        return f"{scope}, max-age={whole_max_age_s}, immutable"
    return f"{scope}, max-age={live_max_age_s}"


def block_key(event_id: str, position: int) -> str:
    return f"lc:{event_id}:{position >> BLOCK_BITS}"


def surrogate_keys(event_id: str, items: Iterable[Mapping[str, Any]]) -> str:
    """``Surrogate-Key`` of a page: the event, and each position block it covers."""
    blocks = sorted({int(i["position"]) >> BLOCK_BITS for i in items if "position" in i})
    return " ".join([f"lc:{event_id}", *(f"lc:{event_id}:{b}" for b in blocks)])


def purge_keys(event_id: str, positions: Iterable[int]) -> list[str]:
    """The keys to purge from a CDN when comments at ``positions`` are removed."""
    return sorted({block_key(event_id, p) for p in positions})
