"""Prometheus metrics of a worker (served on /metrics by each worker).

Names from the seed: ``comments_per_second_by_event`` (gauge, per event, set when a
1-second window closes) and ``moderation_latency_p99`` (the 99th percentile of the last
few thousand moderation latencies, in seconds). ``moderation_latency_seconds`` is the
histogram behind it, for ``histogram_quantile`` across workers.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import Counter, Gauge, Histogram

records_in = Counter("pipeline_records_in_total", "records taken by a stage", ["stage"])
records_out = Counter(
    "pipeline_records_out_total", "records a stage passed on, by outcome", ["stage", "outcome"]
)
stage_latency = Histogram(
    "pipeline_stage_seconds",
    "time a stage spent on one batch",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
batch_size = Histogram(
    "pipeline_batch_records",
    "records per batch taken from Kafka",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000),
)
record_age_seconds = Histogram(
    "pipeline_record_age_seconds",
    "how old a record is (Kafka timestamp) when its batch starts processing",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
offset_jumps = Counter(
    "pipeline_offset_jumps_total",
    "holes seen in a partition's offsets, each sought back and re-read (should stay 0)",
    ["partition"],
)
batch_retries = Counter(
    "pipeline_batch_retries_total", "batches that failed and were run again", ["agent"]
)
dead_letters = Counter(
    "pipeline_dead_letters_total", "records sent to comments.rejected", ["reason"]
)
consumer_lag = Gauge("pipeline_consumer_lag", "records not yet processed", ["topic", "partition"])
comments_per_second_by_event = Gauge(
    "comments_per_second_by_event",
    "published comments per second, last closed second",
    ["event_id"],
)
moderation_latency_seconds = Histogram(
    "moderation_latency_seconds",
    "submitted → moderated, per comment",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
moderation_latency_p99 = Gauge(
    "moderation_latency_p99", "99th percentile of recent moderation latencies (seconds)"
)
submit_to_live_seconds = Histogram(
    "submit_to_live_seconds",
    "submitted → in the event's Redis stream, per comment",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
redis_epoch_changes = Counter(
    "redis_epoch_changes_total", "times the live tier lost history and took a new epoch"
)

_recent_moderation: deque[float] = deque(maxlen=5000)


def observe_moderation_latency(seconds: float) -> None:
    moderation_latency_seconds.observe(seconds)
    _recent_moderation.append(seconds)


def refresh_moderation_p99() -> None:
    if _recent_moderation:
        ordered = sorted(_recent_moderation)
        moderation_latency_p99.set(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])


# Moderation fails closed: a model that did not load (or failed on a batch) holds the
# comments it would have judged. Alert on `moderation_model_available == 0` or on a rising
# `moderation_fail_closed_total`.
moderation_model_available = Gauge(
    "moderation_model_available", "1 if the moderation model loaded, 0 if not", ["model"]
)
moderation_fail_closed = Counter(
    "moderation_fail_closed_total",
    "comments held because a moderation model was unavailable or failed",
    ["model"],
)
