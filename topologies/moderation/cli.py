"""``livecomments moderate``: JSON lines in, one decision per line out.

    echo '{"text": "f u c k this"}' | livecomments moderate
    {"decision": "BLOCK", "scores": {...}, "language": "en", "reasons": ["profanity"], ...}

For operators trying rules and thresholds. A line may name an ``event_id``: that event's
settings (blocked and allowed terms, link policy, strictness, thresholds) are read from
``events.settings`` on the running stack; without it the platform defaults apply. A line
that is not a JSON object with a string ``text`` gets ``{"error": "invalid_input", ...}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, Any

from deploy.settings import Settings
from schemas.records import CommentSubmitted, EventStatus, LiveEvent
from topologies.moderation.engine import build
from topologies.stages.moderate import Context, ModerationInput, decide_in_context

DEFAULT_EVENT = LiveEvent(
    event_id="default", title="defaults", status=EventStatus.LIVE, created_at=0, updated_at=0
)


def _events(settings: Settings) -> Callable[[str], LiveEvent | None]:
    cache: dict[str, LiveEvent | None] = {}
    writer: Any = None

    def lookup(event_id: str) -> LiveEvent | None:
        nonlocal writer
        if event_id not in cache:
            if writer is None:
                from connectors.state_writer import StateWriter
                from schemas.codec import AvroCodec

                codec = AvroCodec(settings)
                writer = StateWriter(settings, codec)
            cache[event_id] = writer.get_event(event_id)
        return cache[event_id]

    return lookup


def _parse(line: str) -> tuple[str, str | None] | str:
    try:
        row = json.loads(line)
    except ValueError as e:
        return f"not JSON: {e}"
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        return 'expected an object with a string "text"'
    event_id = row.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        return '"event_id" must be a string'
    return row["text"], event_id


def run(settings: Settings, stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    engine = build(settings)
    events = _events(settings)
    # Interactive: answer each line at once. Piped: batches, as the worker does.
    size = 1 if stdin.isatty() else 256
    lines: Iterator[str] = (line for line in stdin if line.strip())
    n = 0
    while batch := list(islice(lines, size)):
        results: list[dict[str, Any] | None] = []
        todo: list[ModerationInput] = []
        for line in batch:
            n += 1
            parsed = _parse(line)
            if isinstance(parsed, str):
                results.append({"line": n, "error": "invalid_input", "detail": parsed})
                continue
            text, event_id = parsed
            event = events(event_id) if event_id else DEFAULT_EVENT
            if event is None:
                results.append({"line": n, "error": "event_not_found", "event_id": event_id})
                continue
            comment = CommentSubmitted(
                comment_id=f"cli-{n}",
                event_id=event.event_id,
                user_id="cli",
                text=text,
                submitted_at=0,
                gateway_id="cli",
            )
            todo.append(ModerationInput(comment, event, None))
            results.append(None)
        assessed = iter(engine.assess(todo))
        inputs = iter(todo)
        for result in results:
            if result is None:
                item, assessment = next(inputs), next(assessed)
                # A known regular: the event's strictness applies, no first-time penalty.
                decision, reasons = decide_in_context(assessment, item.event, Context())
                result = {
                    "decision": decision.value,
                    "scores": assessment.scores,
                    "language": assessment.language,
                    "reasons": list(reasons),
                    "engine": engine.version,
                }
                if item.event is not DEFAULT_EVENT:
                    result["event_id"] = item.event.event_id
            stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        stdout.flush()
    return 0
