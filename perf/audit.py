"""The auditor: reads the tiers directly, independent of the pipeline's code paths.

For every acknowledged comment: exactly one row in Cassandra and one entry in its
event's Redis stream; per event, positions strictly increasing, the same order in both
tiers, and each comment's ``previous_position`` naming the comment before it.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from cassandra.cluster import Cluster
from redis import Redis

from connectors.redis_streams import stream_key
from deploy.settings import Settings
from perf.load import Acked


@dataclass
class AuditReport:
    acked: int = 0
    persisted: int = 0
    in_redis: int = 0
    lost: int = 0
    duplicated: int = 0
    missing_in_redis: int = 0
    order_violations: int = 0
    chain_breaks: int = 0
    tiers_disagree: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.missing_in_redis
            or self.order_violations
            or self.chain_breaks
            or self.tiers_disagree
        )

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "examples"} | {
            "examples": self.examples[:10]
        }


def redis_comments(r: Redis, event_id: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    last = "-"
    while True:
        batch: Any = r.xrange(stream_key(event_id), min=last, count=10_000)
        if last != "-" and batch:
            batch = batch[1:]
        if not batch:
            return out
        for _entry_id, fields in batch:
            if fields.get(b"type") == b"comment":
                out.append(json.loads(fields[b"data"]))
        last = batch[-1][0].decode()


def cassandra_comments(session: object, keyspace: str, event_id: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    buckets = session.execute(  # type: ignore[attr-defined]
        f"SELECT bucket FROM {keyspace}.comment_buckets_by_event WHERE event_id = %s", (event_id,)
    )
    for b in sorted(r.bucket for r in buckets):
        for r in session.execute(  # type: ignore[attr-defined]
            f"SELECT position, previous_position, comment_id FROM {keyspace}.comments_by_event "
            "WHERE event_id = %s AND bucket = %s ORDER BY position ASC",
            (event_id, b),
        ):
            rows.append(
                {
                    "position": r.position,
                    "previous_position": r.previous_position,
                    "comment_id": r.comment_id,
                }
            )
    return rows


def audit(settings: Settings, acked: Iterable[Acked]) -> AuditReport:
    report = AuditReport()
    by_event: dict[str, set[str]] = defaultdict(set)
    for a in acked:
        by_event[a.event_id].add(a.comment_id)
        report.acked += 1

    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
    session = cluster.connect()
    r = Redis.from_url(settings.redis_address)
    try:
        for event_id, wanted in by_event.items():
            stored = cassandra_comments(session, settings.cassandra_keyspace, event_id)
            live = redis_comments(r, event_id)
            _check(report, event_id, wanted, stored, live)
    finally:
        cluster.shutdown()
        r.close()
    return report


def _check(
    report: AuditReport,
    event_id: str,
    wanted: set[str],
    stored: list[dict[str, object]],
    live: list[dict[str, object]],
) -> None:
    stored_ids = Counter(str(x["comment_id"]) for x in stored)
    live_ids = Counter(str(x["comment_id"]) for x in live)
    for cid in wanted:
        n = stored_ids.get(cid, 0)
        if n == 0:
            report.lost += 1
            report.examples.append(f"lost {cid} of {event_id}")
        else:
            report.persisted += 1
            report.duplicated += n - 1
        m = live_ids.get(cid, 0)
        if m == 0:
            report.missing_in_redis += 1
        else:
            report.in_redis += 1
            report.duplicated += m - 1
    for tier in (stored, live):
        positions = [int(str(x["position"])) for x in tier]
        report.order_violations += sum(1 for a, b in itertools.pairwise(positions) if b <= a)
        for prev, cur in itertools.pairwise(tier):
            if cur["previous_position"] != prev["position"]:
                report.chain_breaks += 1
                if len(report.examples) < 10:
                    report.examples.append(
                        f"{event_id}: {cur['position']} says previous "
                        f"{cur['previous_position']}, but {prev['position']} came before"
                    )
    # Redis holds a suffix of the history (MAXLEN); where both have a comment, the order
    # must agree.
    stored_order = [str(x["comment_id"]) for x in stored]
    live_order = [str(x["comment_id"]) for x in live]
    if live_order and stored_order[-len(live_order) :] != live_order:
        report.tiers_disagree += 1
        report.examples.append(f"{event_id}: Redis and Cassandra disagree on order")


def wait_until_persisted(
    settings: Settings,
    acked: list[Acked],
    timeout_s: float,
    poll_s: float = 1.0,
    *,
    live_tier_complete: bool = True,
) -> AuditReport:
    """Audit repeatedly until nothing is lost or the deadline passes; the last report.

    ``live_tier_complete=False`` waits for Cassandra only (for drills where Redis lost
    history on purpose).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        report = audit(settings, acked)
        live_ok = report.missing_in_redis == 0 or not live_tier_complete
        if (report.lost == 0 and live_ok) or time.monotonic() > deadline:
            return report
        time.sleep(poll_s)
