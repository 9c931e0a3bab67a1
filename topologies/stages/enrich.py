"""enrich: who wrote it, as viewers see them (from the users.profiles global state)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import CommentSubmitted, UserProfile


@dataclass(frozen=True, slots=True)
class Author:
    display_name: str
    roles: tuple[str, ...] = ()
    badges: tuple[str, ...] = ()


def enrich(comment: CommentSubmitted, user: UserProfile | None) -> Author:
    if user is None:
        # A user without a profile yet (a first comment races their profile record).
        return Author(display_name=comment.user_id)
    badges = user.badges
    if user.verified and "verified" not in badges:
        badges = (*badges, "verified")
    return Author(display_name=user.display_name or user.user_id, roles=user.roles, badges=badges)
