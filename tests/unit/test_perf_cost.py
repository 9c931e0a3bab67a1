"""perf/cost.py and perf/profile.py's parsers: CPU readings → µs per comment, percentiles,
profiles → top functions. Pure arithmetic: no /proc, no servers."""

from __future__ import annotations

import pytest

from perf.cost import PhaseCost, busy_share, deltas, is_pipeline, percentile, tree_totals
from perf.profile import tally_collapsed, tally_jfr, thread_groups


def test_deltas_are_the_cpu_spent_between_two_readings() -> None:
    got = deltas({"kafka": 10.0, "worker-0": 2.5}, {"kafka": 10.4, "worker-0": 3.0})
    assert got == pytest.approx({"kafka": 0.4, "worker-0": 0.5})


def test_a_process_started_during_the_phase_counts_from_zero() -> None:
    assert deltas({}, {"gateway": 0.3}) == {"gateway": 0.3}


def test_a_restarted_process_counts_only_its_new_reading() -> None:
    # A new pid under the same name starts again near zero: not a negative cost.
    assert deltas({"worker-0": 50.0}, {"worker-0": 1.5}) == {"worker-0": 1.5}


def test_a_process_is_charged_with_its_unnamed_descendants_only() -> None:
    # The bench (1) started a worker (2, named) and a helper (3, not named); the worker
    # has a child (4) of its own; a JVM (5) runs under a wrapper shell (6).
    children = {1: [2, 3], 2: [4], 6: [5]}
    cpu = {1: 1.0, 2: 10.0, 3: 0.5, 4: 2.0, 5: 30.0, 6: 0.0}
    got = tree_totals({"load": 1, "worker-0": 2, "kafka": 6}, children, cpu.__getitem__)
    assert got == {"load": 1.5, "worker-0": 12.0, "kafka": 30.0}


def test_load_generator_viewers_and_gateway_are_not_the_pipelines_cost() -> None:
    assert is_pipeline("worker-1") and is_pipeline("cassandra") and is_pipeline("registry")
    assert not is_pipeline("load")
    assert not is_pipeline("gateway")
    assert not is_pipeline("viewers-0")


def test_cpu_per_comment_sums_workers_and_stack_only() -> None:
    cost = PhaseCost(
        comments=1000,
        seconds=2.0,
        cpu_s={
            "worker-0": 0.5,
            "worker-1": 0.5,
            "kafka": 0.2,
            "cassandra": 0.3,
            "redis": 0.05,
            "registry": 0.0,
            "gateway": 0.1,
            "load": 0.9,
            "viewers-0": 0.2,
        },
    )
    # (0.5 + 0.5 + 0.2 + 0.3 + 0.05) s / 1000 comments = 1,550 µs
    assert cost.us_per_comment() == pytest.approx(1550.0)
    by = cost.us_per_comment_by_process()
    assert by["worker-0"] == pytest.approx(500.0)
    assert by["load"] == pytest.approx(900.0)  # listed, though not in the sum
    out = cost.as_dict()
    assert out["gateway_cpu_us_per_comment"] == pytest.approx(100.0)
    assert out["cpu_cores_by_process"]["load"] == pytest.approx(0.45)  # type: ignore[index]


def test_a_phase_without_comments_has_no_cost_per_comment() -> None:
    cost = PhaseCost(comments=0, seconds=5.0, cpu_s={"kafka": 1.0})
    assert cost.us_per_comment() is None
    assert cost.cores_by_process() == {"kafka": 0.2}


def test_a_process_above_the_threshold_is_reported_saturated() -> None:
    cost = PhaseCost(comments=10, seconds=10.0, cpu_s={"load": 9.5, "worker-0": 4.0})
    assert cost.saturated() == ["load"]


def test_machine_busy_share_is_busy_jiffies_over_all_jiffies() -> None:
    assert busy_share((100.0, 1000.0), (250.0, 1200.0)) == pytest.approx(0.75)
    assert busy_share((1.0, 1.0), (1.0, 1.0)) is None


def test_percentile_is_a_value_some_sample_really_had() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_percentile_refuses_a_rank_outside_0_to_100() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_collapsed_stacks_count_self_at_the_top_and_inclusive_anywhere() -> None:
    lines = [
        "main (w.py:1);batch (p.py:10);encode (c.py:5) 30\n",
        "main (w.py:1);batch (p.py:12);encode (c.py:7) 10\n",
        "main (w.py:1);batch (p.py:20);persist (s.py:3) 60\n",
        "garbage line\n",
    ]
    t = tally_collapsed(lines)
    assert t.samples == 100
    # Line numbers are dropped: one entry per function.
    assert t.top(2) == [("persist (s.py)", 60, 0.6), ("encode (c.py)", 40, 0.4)]
    inclusive = dict((f, c) for f, c, _ in t.top(5, inclusive=True))
    assert inclusive["batch (p.py)"] == 100 and inclusive["main (w.py)"] == 100


def test_inclusive_can_be_limited_to_the_projects_own_code() -> None:
    t = tally_collapsed(["main (mode/worker.py:1);plan (topologies/pipeline.py:5) 3"])
    assert [f for f, _, _ in t.top(5, inclusive=True, within=("topologies/",))] == [
        "plan (topologies/pipeline.py)"
    ]


def test_a_recursive_function_counts_once_per_stack_inclusive() -> None:
    t = tally_collapsed(["f (a.py:1);f (a.py:2);g (a.py:3) 5"])
    assert dict((f, c) for f, c, _ in t.top(5, inclusive=True))["f (a.py)"] == 5


def test_jfr_samples_count_the_innermost_frame_as_self() -> None:
    printed = """
jdk.ExecutionSample {
  startTime = 00:10:01.123
  sampledThread = "MutationStage-1" (javaThreadId = 40)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.apache.cassandra.db.Memtable.put(PartitionUpdate) line: 120
    org.apache.cassandra.db.Keyspace.apply(Mutation, boolean) line: 600
    ...
  ]
}
jdk.ExecutionSample {
  stackTrace = [
    org.apache.cassandra.db.Keyspace.apply(Mutation, boolean) line: 610
  ]
}
"""
    t = tally_jfr(printed.splitlines())
    assert t.samples == 2
    assert dict(t.self_counts) == {
        "org.apache.cassandra.db.Memtable.put": 1,
        "org.apache.cassandra.db.Keyspace.apply": 1,
    }
    inclusive = dict((f, c) for f, c, _ in t.top(5, inclusive=True))
    assert inclusive["org.apache.cassandra.db.Keyspace.apply"] == 2


def test_threads_of_one_pool_are_summed_under_one_name() -> None:
    before = {1: ("MutationStage-1", 1.0), 2: ("MutationStage-2", 2.0), 3: ("GC Thread#0", 5.0)}
    after = {
        1: ("MutationStage-1", 1.5),
        2: ("MutationStage-2", 2.5),
        3: ("GC Thread#0", 5.25),
        4: ("GC Thread#1", 0.25),  # started during the window
        5: ("rdk:broker1", 0.0),
    }
    assert thread_groups(before, after) == {"MutationStage": 1.0, "GC Thread": 0.5}


def test_a_renamed_thread_is_charged_its_own_difference_under_its_new_name() -> None:
    # Cassandra's shared pool renames a thread after the stage it runs: its lifetime CPU
    # must not count again under the new name.
    before = {7: ("Native-Transport-Requests-1", 100.0)}
    after = {7: ("MutationStage-1", 100.5)}
    assert thread_groups(before, after) == {"MutationStage": 0.5}
