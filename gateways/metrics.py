"""The gateway's Prometheus metrics (served on the gateway port at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

websocket_connections_by_server = Gauge(
    "websocket_connections_by_server", "open WebSocket connections", ["server"]
)
connections_total = Counter("gateway_connections_total", "connections accepted", ["server"])
auth_failures = Counter("gateway_auth_failures_total", "refused authentications", ["code"])
errors_sent = Counter("gateway_errors_total", "error frames sent", ["code"])
closes = Counter("gateway_closes_total", "connections closed by the gateway", ["code"])
frames_in = Counter("gateway_frames_in_total", "frames received from clients")
frames_out = Counter("gateway_frames_out_total", "frames sent to clients", ["type"])
bytes_out = Counter("gateway_bytes_out_total", "bytes of frames sent to clients")
deliveries = Counter(
    "gateway_comment_deliveries_total", "comments delivered to viewers (comment x viewer)"
)
queue_drops = Counter(
    "gateway_queue_drops_total", "frames dropped for viewers whose queue was full"
)
slow_disconnects = Counter("gateway_slow_disconnects_total", "viewers closed as slow consumers")
gaps_sent = Counter("gateway_gaps_total", "gap notices sent", ["reason"])
posts = Counter("gateway_posts_total", "posts by outcome", ["outcome"])
post_seconds = Histogram(
    "gateway_post_seconds",
    "post received → acked (Kafka acknowledged CommentSubmitted)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
delivery_seconds = Histogram(
    "gateway_delivery_seconds",
    "comment submitted → frame queued for its viewers on this gateway",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
events_followed = Gauge("gateway_events_followed", "events with local viewers (one reader each)")
tier_reads = Counter(
    "gateway_history_reads_total", "items read for joins and resumes, per tier", ["tier"]
)
cache_hit_ratio_by_tier = Gauge(
    "cache_hit_ratio_by_tier",
    "share of recovered items served by each tier since start (l1, redis, cassandra, kafka)",
    ["tier"],
)
resumes = Counter("gateway_resumes_total", "joins with since, by outcome", ["outcome"])


def count_tiers(tiers: dict[str, int]) -> None:
    for tier, n in tiers.items():
        if n:
            tier_reads.labels(tier).inc(n)
    totals = {t: tier_reads.labels(t)._value.get() for t in ("l1", "redis", "cassandra", "kafka")}
    everything = sum(totals.values())
    if everything:
        for tier, n in totals.items():
            cache_hit_ratio_by_tier.labels(tier).set(n / everything)


shadow_deliveries = Counter(
    "gateway_shadow_frames_total",
    "ticks in which a hidden user's shadow comments got frames of their own for their author",
)
moderations = Counter(
    "gateway_moderations_total", "moderate requests by action and outcome", ["action", "outcome"]
)
