"""`livecomments events …` and `livecomments users …`: the state of events and users.

livecomments events create EVENT_ID --title "Final" [--status live] [--slow-mode 5] ...
livecomments events set EVENT_ID [--status ended] [--slow-mode 0] [--blocked-terms a,b] ...
livecomments events show EVENT_ID
livecomments users set USER_ID [--name N] [--role moderator] [--ban | --unban]
                               [--timeout-s 600] [--verified] [--hidden | --unhidden]
livecomments users show USER_ID
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from deploy.settings import Settings
from schemas.records import (
    EventStatus,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
    Strictness,
    UserProfile,
)


def add_parsers(sub: Any) -> None:
    events = sub.add_parser("events", help="create events and change their settings")
    esub = events.add_subparsers(dest="action", required=True)
    for name in ("create", "set"):
        p = esub.add_parser(name)
        p.add_argument("event_id")
        p.add_argument("--title", required=name == "create")
        p.add_argument(
            "--status",
            choices=[s.value.lower() for s in EventStatus],
            default="live" if name == "create" else None,
        )
        p.add_argument("--slow-mode", type=int, help="seconds between two posts of a user")
        p.add_argument("--members-only", action=argparse.BooleanOptionalAction)
        p.add_argument("--anonymous-read", action=argparse.BooleanOptionalAction)
        p.add_argument("--strictness", choices=[s.value.lower() for s in Strictness])
        p.add_argument("--blocked-terms", help="comma-separated")
        p.add_argument("--allowed-terms", help="comma-separated")
        p.add_argument("--link-policy", choices=[s.value.lower() for s in LinkPolicy])
        p.add_argument("--allowed-domains", help="comma-separated")
        p.add_argument("--hot-rate", type=int, help="comments/s above which 'top' mode starts")
        p.add_argument("--thresholds", help="toxicity_block,toxicity_review,spam_block,spam_review")
    show = esub.add_parser("show")
    show.add_argument("event_id")

    users = sub.add_parser("users", help="user profiles: names, roles, bans, timeouts")
    usub = users.add_subparsers(dest="action", required=True)
    p = usub.add_parser("set")
    p.add_argument("user_id")
    p.add_argument("--name")
    p.add_argument("--role", action="append", help="repeat for several; replaces the roles")
    p.add_argument("--badge", action="append", help="repeat for several; replaces the badges")
    p.add_argument("--ban", dest="banned", action="store_true", default=None)
    p.add_argument("--unban", dest="banned", action="store_false")
    p.add_argument("--timeout-s", type=int, help="no posting for this many seconds (0 lifts)")
    p.add_argument("--verified", action=argparse.BooleanOptionalAction)
    p.add_argument("--hidden", action=argparse.BooleanOptionalAction)
    show = usub.add_parser("show")
    show.add_argument("user_id")


def _csv(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def run(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.state_writer import StateWriter
    from schemas.clock import now_ms
    from schemas.codec import AvroCodec

    with AvroCodec(settings) as codec:
        codec.register_all()
        writer = StateWriter(settings, codec)
        if args.command == "events":
            current = writer.get_event(args.event_id)
            if args.action == "show":
                return _show(current, f"no event {args.event_id}")
            if args.action == "create" and current is not None and not current.deleted:
                sys.stderr.write(f"error: event {args.event_id} exists; use `events set`\n")
                return 1
            if args.action == "set" and current is None:
                sys.stderr.write(f"error: no event {args.event_id}; use `events create`\n")
                return 1
            event = current or LiveEvent(
                event_id=args.event_id,
                title=args.title,
                status=EventStatus.LIVE,
                created_at=now_ms(),
                updated_at=now_ms(),
            )
            changes: dict[str, Any] = {"updated_at": now_ms()}
            if args.title is not None:
                changes["title"] = args.title
            if args.status is not None:
                changes["status"] = EventStatus(args.status.upper())
            if args.slow_mode is not None:
                changes["slow_mode_s"] = args.slow_mode
            if args.members_only is not None:
                changes["members_only"] = args.members_only
            if args.anonymous_read is not None:
                changes["anonymous_read"] = args.anonymous_read
            if args.strictness is not None:
                changes["strictness"] = Strictness(args.strictness.upper())
            for field in ("blocked_terms", "allowed_terms", "allowed_domains"):
                value = _csv(getattr(args, field))
                if value is not None:
                    changes[field] = value
            if args.link_policy is not None:
                changes["link_policy"] = LinkPolicy(args.link_policy.upper())
            if args.hot_rate is not None:
                changes["hot_rate_per_s"] = args.hot_rate
            if args.thresholds is not None:
                tb, tr, sb, sr = (float(x) for x in args.thresholds.split(","))
                changes["thresholds"] = ModerationThresholds(
                    toxicity_block=tb, toxicity_review=tr, spam_block=sb, spam_review=sr
                )
            event = replace(event, **changes)
            writer.put_event(event)
            return _show(event, "")
        current_user = writer.get_user(args.user_id)
        if args.action == "show":
            return _show(current_user, f"no user {args.user_id}")
        user = current_user or UserProfile(
            user_id=args.user_id, display_name=args.name or args.user_id, updated_at=now_ms()
        )
        uchanges: dict[str, Any] = {"updated_at": now_ms()}
        if args.name is not None:
            uchanges["display_name"] = args.name
        if args.role is not None:
            uchanges["roles"] = tuple(args.role)
        if args.badge is not None:
            uchanges["badges"] = tuple(args.badge)
        if args.banned is not None:
            uchanges["banned"] = args.banned
        if args.timeout_s is not None:
            uchanges["timeout_until"] = now_ms() + args.timeout_s * 1000 if args.timeout_s else None
        if args.verified is not None:
            uchanges["verified"] = args.verified
        if args.hidden is not None:
            uchanges["hidden"] = args.hidden
        user = replace(user, **uchanges)
        writer.put_user(user)
        return _show(user, "")


def _show(record: LiveEvent | UserProfile | None, missing: str) -> int:
    if record is None:
        sys.stderr.write(f"error: {missing}\n")
        return 1
    print(json.dumps(record.to_avro(), indent=2, default=str, ensure_ascii=False))
    return 0
