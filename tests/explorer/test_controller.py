"""The explorer's own machinery, on toy scenarios with known answers.

* deadlocks are found and reported with their wait-for cycle, livelocks by the
  step budget, exceptions with their traceback;
* ``DFSChooser`` runs exactly the schedules with at most k preemptions: the
  count is checked against an independent enumeration of interleavings;
* replay strings reproduce a run step for step, and a schedule that no longer
  fits the code is refused;
* a scenario that is not deterministic, a thread blocked outside the explorer
  and a scheduling point in a foreign thread are reported as ``ExplorerError``;
* ``HypothesisChooser`` and ``PCTChooser`` find an ordering bug, and shrinking
  plus ``Explorer.minimize`` bring it to one preemption.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadlisten.testing import (
    DFSChooser,
    Explorer,
    ExplorerError,
    HypothesisChooser,
    Option,
    PCTChooser,
    ReplayChooser,
    SchedRuntime,
    ScheduleFailure,
    format_schedule,
    parse_schedule,
)

# --------------------------------------------------------------- toys


def abba(rt: SchedRuntime) -> None:
    """Two threads take two locks in opposite orders."""
    a = rt.lock("a")
    b = rt.lock("b")

    def other() -> None:
        with b, a:
            pass

    t = rt.spawn(other, "other")
    with a, b:
        pass
    t.join()


def lost_update(rt: SchedRuntime) -> None:
    """An unlocked read-modify-write with a point inside, from two threads."""
    box = [0]

    def inc() -> None:
        value = box[0]
        rt.point("between read and write")
        box[0] = value + 1

    t = rt.spawn(inc, "other")
    inc()
    t.join()
    assert box[0] == 2, f"lost update: {box[0]}"


def two_threads_k_points(k: int) -> Callable[[SchedRuntime], None]:
    """main and "other" each announce *k* points; main then joins other."""

    def scenario(rt: SchedRuntime) -> None:
        def other() -> None:
            for i in range(k):
                rt.point(f"q{i}")

        t = rt.spawn(other, "other")
        for i in range(k):
            rt.point(f"p{i}")
        t.join()

    return scenario


def count_schedules(k: int, bound: int) -> int:
    """Independently count interleavings of main's k points with other's
    start + k points having at most *bound* preemptions (CHESS's definition:
    switching away from a thread that could go on).  main's join comes last."""
    main_ops = k
    other_ops = k + 1  # "start", then its k points
    total = 0
    for positions in itertools.combinations(range(main_ops + other_ops), main_ops):
        order = ["m" if i in positions else "o" for i in range(main_ops + other_ops)]
        order.append("m")  # the join, runnable only once other finished
        left = {"m": main_ops + 1, "o": other_ops}
        previous, preemptions = "m", 0  # main ran last: it spawned other
        for who in order:
            if who != previous:
                prev_runnable = left[previous] > 0 and not (
                    previous == "m" and left["m"] == 1 and left["o"] > 0
                )
                preemptions += prev_runnable
            left[who] -= 1
            previous = who
        total += preemptions <= bound
    return total


# ------------------------------------------------------------- failures


def test_deadlock_is_reported_with_its_cycle() -> None:
    with pytest.raises(ScheduleFailure) as info:
        Explorer(DFSChooser(max_preemptions=2)).run(abba)
    failure = info.value
    assert failure.kind == "deadlock"
    assert failure.preemptions == 1  # the first deadlock DFS meets is a minimal one
    text = str(failure)
    assert "wait-for cycle" in text
    assert "'main' waits for b#1, held by 'other'" in text
    assert "'other' waits for a#1, held by 'main'" in text
    assert 'replay: ReplayChooser("s1:' in text


def test_self_deadlock_on_a_plain_lock() -> None:
    def scenario(rt: SchedRuntime) -> None:
        lock = rt.lock("plain")
        lock.acquire()
        lock.acquire()

    with pytest.raises(ScheduleFailure) as info:
        Explorer(ReplayChooser("s1:")).run(scenario)
    assert info.value.kind == "deadlock"
    assert "'main' waits for plain#1, which it holds (not recursive)" in str(info.value)


def test_recursive_lock_and_nonblocking_acquire() -> None:
    def scenario(rt: SchedRuntime) -> None:
        rlock = rt.rlock("r")
        with rlock, rlock:
            got: list[bool] = []
            t = rt.spawn(lambda: got.append(rlock.acquire(blocking=False)), "other")
            t.join()
            assert got == [False]
        assert rlock.acquire(blocking=False)
        rlock.release()

    Explorer(DFSChooser(2)).run(scenario)


def test_livelock_spends_the_step_budget() -> None:
    def scenario(rt: SchedRuntime) -> None:
        flag: list[bool] = []
        t = rt.spawn(lambda: flag.append(True), "setter")
        while not flag:  # with choice 0, "setter" never runs
            rt.point("spin")
        t.join()

    with pytest.raises(ScheduleFailure) as info:
        Explorer(ReplayChooser("s1:"), max_steps=200).run(scenario)
    assert info.value.kind == "livelock"
    assert len(info.value.trace) == 200


def test_exception_in_a_thread_is_the_failure() -> None:
    def scenario(rt: SchedRuntime) -> None:
        def boom() -> None:
            rt.point("before")
            raise ValueError("boom")

        rt.spawn(boom, "other").join()

    with pytest.raises(ScheduleFailure) as info:
        Explorer(ReplayChooser("s1:")).run(scenario)
    failure = info.value
    assert failure.kind == "exception"
    assert isinstance(failure.error, ValueError)
    assert "thread 'other' raised ValueError: boom" in str(failure)


# ------------------------------------------------------------------ DFS


@pytest.mark.parametrize(("k", "bound"), [(2, 0), (3, 1), (3, 2), (4, 2), (4, 3), (4, 9)])
def test_dfs_runs_exactly_the_bounded_schedules(k: int, bound: int) -> None:
    """(4, 9) has no effective bound: all C(9, 4) = 126 interleavings."""
    chooser = DFSChooser(max_preemptions=bound)
    report = Explorer(chooser).run(two_threads_k_points(k))
    assert report.complete
    assert report.schedules == chooser.explored == count_schedules(k, bound)
    assert sum(report.by_preemptions.values()) == report.schedules
    assert max(report.by_preemptions) <= bound


def test_dfs_finds_the_lost_update_with_one_preemption() -> None:
    with pytest.raises(ScheduleFailure) as info:
        Explorer(DFSChooser(2)).run(lost_update)
    assert info.value.preemptions == 1
    assert "lost update: 1" in str(info.value)


def test_dfs_with_bound_zero_misses_what_needs_a_preemption() -> None:
    report = Explorer(DFSChooser(0)).run(lost_update)
    assert report.complete and report.by_preemptions == {0: report.schedules}


def test_dfs_cap_makes_the_exploration_incomplete() -> None:
    report = Explorer(DFSChooser(2, max_schedules=3)).run(two_threads_k_points(4))
    assert report.schedules == 3
    assert not report.complete


# --------------------------------------------------------------- replay


def test_replay_reproduces_a_run_step_for_step() -> None:
    report = Explorer(PCTChooser(seed=7, depth=3, runs=5)).run(two_threads_k_points(5))
    trace = report.last_trace
    again = Explorer(ReplayChooser(format_schedule(trace))).run(two_threads_k_points(5))
    assert [(s.thread, s.text) for s in again.last_trace] == [(s.thread, s.text) for s in trace]


def test_replay_of_a_failure_fails_the_same_way() -> None:
    with pytest.raises(ScheduleFailure) as first:
        Explorer(DFSChooser(2)).run(abba)
    with pytest.raises(ScheduleFailure) as again:
        Explorer(ReplayChooser(first.value.schedule)).run(abba)
    assert again.value.kind == "deadlock"
    assert again.value.schedule == first.value.schedule


def test_a_schedule_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ExplorerError, match="does not fit"):
        Explorer(ReplayChooser("s1:999=1")).run(lost_update)
    with pytest.raises(ExplorerError, match="does not fit"):
        Explorer(ReplayChooser({3: 5})).run(lost_update)
    # Lenient replay ignores what does not fit.
    Explorer(ReplayChooser("s1:999=1", strict=False)).run(lost_update)


def test_schedule_strings_round_trip() -> None:
    assert parse_schedule("s1:") == {}
    assert parse_schedule("s1:3=1,17=2") == {3: 1, 17: 2}
    for bad in ("", "s2:1=1", "s1:1=", "s1:a=1", "3=1"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


# ----------------------------------------------------- misuse, detected


def test_nondeterministic_scenario_is_reported() -> None:
    rng = random.Random(1)

    def scenario(rt: SchedRuntime) -> None:
        threads = [rt.spawn(lambda: rt.point("x"), f"t{i}") for i in range(rng.randint(1, 3))]
        rt.point("y")
        for t in threads:
            t.join()

    with pytest.raises(ExplorerError, match="not deterministic"):
        Explorer(DFSChooser(2)).run(scenario)


def test_thread_blocked_outside_the_explorer_is_reported() -> None:
    gate = threading.Event()

    def scenario(rt: SchedRuntime) -> None:
        gate.wait(2.0)  # a real wait the explorer cannot see (bounded; >> the watchdog)
        rt.point("after")

    with pytest.raises(ExplorerError, match="blocked outside the explorer"):
        Explorer(ReplayChooser("s1:"), watchdog=0.3).run(scenario)


def test_point_from_a_foreign_thread_is_refused() -> None:
    leaked: list[SchedRuntime] = []
    Explorer(ReplayChooser("s1:")).run(leaked.append)
    with pytest.raises(ExplorerError, match="not one of its threads"):
        leaked[0].point("outside")


def test_chooser_exception_unwinds_the_run() -> None:
    class Broken(ReplayChooser):
        def choose(self, step: int, options: Sequence[Option], current_runnable: bool) -> int:
            raise KeyError("chooser broke")

    with pytest.raises(KeyError, match="chooser broke"):
        Explorer(Broken("s1:")).run(lost_update)


# --------------------------------------------- probabilistic choosers


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(st.data())
def _hypothesis_lost_update(data: st.DataObject) -> None:
    Explorer(HypothesisChooser(data)).run(lost_update)


def test_hypothesis_finds_and_shrinks_the_lost_update() -> None:
    with pytest.raises(ScheduleFailure) as info:
        _hypothesis_lost_update()
    assert info.value.preemptions == 1
    minimal = Explorer(DFSChooser(2)).minimize(lost_update, info.value)
    assert minimal.preemptions == 1


def test_pct_finds_the_lost_update() -> None:
    with pytest.raises(ScheduleFailure) as info:
        Explorer(PCTChooser(seed=3, depth=2, runs=200)).run(lost_update)
    assert info.value.kind == "exception"
    minimal = Explorer(DFSChooser(2)).minimize(lost_update, info.value)
    assert minimal.preemptions == 1
