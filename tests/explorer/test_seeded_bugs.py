"""The explorer finds seeded bugs, shrinks them to minimal schedules, and replays them.

The bugs (``seeded.py``) reach the core through ``Runtime.listener_type``
only.  For each one:

* ``DFSChooser(max_preemptions=2)`` finds it, and since DFS runs schedules in
  order of increasing preemptions, with the fewest preemptions possible;
* Hypothesis finds it too, and its shrinking followed by
  ``Explorer.minimize`` reaches the same number of preemptions;
* the minimal schedule is pinned here as a replay string: replayed, it
  reproduces the failure; replayed leniently against the real ``Listener``,
  the same scenario passes.

A pinned schedule names steps, so it stops fitting when the core gains or
loses a scheduling point.  Then ``test_found_by_dfs`` prints the new minimal
schedule (``-s``): update ``PINNED`` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadlisten import Listener
from threadlisten.testing import (
    DFSChooser,
    Explorer,
    HypothesisChooser,
    ReplayChooser,
    SchedRuntime,
    ScheduleFailure,
)
from threadlisten.testing.lincheck import Call, LinScenario, lincheck

from .scenarios import SCENARIOS
from .seeded import IncrefBeforeLockListener, TornSetCbListener, WaitingDeleteListener

#: Hypothesis examples allowed to find a bug.  The slowest, the unlocked
#: refcount, took 12-961 runs to find over 8 seeds (tests/explorer/bench.py
#: bugs); derandomized, this test finds and shrinks it in 1,052 runs (shrinking
#: runs do not count against max_examples).
HYPOTHESIS_BUDGET = 1500

#: The smallest lincheck scenario that shows a torn set_cb: a queued
#: connection, set_cb(2) in one thread, a connection in another.
TORN_LINCHECK = LinScenario(
    prefix=(Call("connect"),), parallel=((Call("set_cb", 2),), (Call("connect"),))
)


@dataclass(frozen=True)
class Case:
    """A seeded bug, the scenario that exposes it, and what the failure looks like."""

    id: str
    listener_class: type[Listener]
    scenario: Callable[[SchedRuntime], None]
    kind: str
    preemptions: int
    pinned: str
    message: str
    hypothesis: bool = True


CASES = [
    Case(
        "libevent-deadlock-free",
        WaitingDeleteListener,
        SCENARIOS["free_vs_dispatch"],
        "deadlock",
        1,
        "s1:9=1",
        "'loop' waits for listener.lock#1, held by 'main'",
    ),
    Case(
        "libevent-deadlock-disable",
        WaitingDeleteListener,
        SCENARIOS["disable_during_callback"],
        "deadlock",
        1,
        "s1:10=1",
        "'main' waits for completion 'read callback of L1', running in 'loop'",
    ),
    Case(
        "unlocked-refcount",
        IncrefBeforeLockListener,
        SCENARIOS["free_vs_dispatch"],
        "exception",
        2,
        "s1:8=1,19=1",
        "destroy ran 2 times",
    ),
    Case(
        "torn-set-cb",
        TornSetCbListener,
        SCENARIOS["callback_frees_while_set_cb"],
        "exception",
        1,
        "s1:15=1",
        "torn callback pair",
    ),
    Case(
        "torn-set-cb-lincheck",
        TornSetCbListener,
        lincheck(TORN_LINCHECK),
        "exception",
        1,
        "s1:36=1",
        "deliver(2) -> (2, 1)",
        hypothesis=False,  # found, but slowly (60-250 runs): DFS covers it in CI
    ),
]


def by_id(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.id) for case in cases]


@pytest.mark.parametrize("case", by_id(CASES))
def test_found_by_dfs(case: Case) -> None:
    explorer = Explorer(DFSChooser(max_preemptions=2), listener_class=case.listener_class)
    with pytest.raises(ScheduleFailure) as info:
        explorer.run(case.scenario)
    failure = info.value
    print(f"{case.id}: found after {failure.schedules_run} schedules: {failure.schedule}")
    assert failure.kind == case.kind
    assert case.message in str(failure)
    assert failure.preemptions == case.preemptions


@pytest.mark.parametrize("case", by_id([c for c in CASES if c.hypothesis]))
def test_found_and_shrunk_by_hypothesis(case: Case) -> None:
    @settings(
        max_examples=HYPOTHESIS_BUDGET,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def explore(data: st.DataObject) -> None:
        runs[0] += 1
        Explorer(HypothesisChooser(data), listener_class=case.listener_class).run(case.scenario)

    runs = [0]
    with pytest.raises(ScheduleFailure) as info:
        explore()
    shrunk = info.value
    assert shrunk.kind == case.kind
    explorer = Explorer(DFSChooser(), listener_class=case.listener_class)
    minimal = explorer.minimize(case.scenario, shrunk)
    print(
        f"{case.id}: {runs[0]} runs (finding and shrinking); shrunk to {shrunk.preemptions} "
        f"preemptions, minimized to {minimal.preemptions}"
    )
    assert minimal.kind == case.kind
    assert minimal.preemptions == case.preemptions <= shrunk.preemptions


@pytest.mark.parametrize("case", by_id(CASES))
def test_pinned_schedule_reproduces_the_bug(case: Case) -> None:
    explorer = Explorer(ReplayChooser(case.pinned), listener_class=case.listener_class)
    with pytest.raises(ScheduleFailure) as info:
        explorer.run(case.scenario)
    assert info.value.kind == case.kind
    assert case.message in str(info.value)
    assert info.value.schedule == case.pinned


@pytest.mark.parametrize("case", by_id(CASES))
def test_pinned_schedule_passes_on_the_real_listener(case: Case) -> None:
    Explorer(ReplayChooser(case.pinned, strict=False)).run(case.scenario)


@pytest.mark.allow_error_logs  # the checker's error, raised on the loop thread, is logged
def test_lock_checker_catches_the_unlocked_refcount_without_a_race(lock_checker: None) -> None:
    """The lock checker sees the unguarded read in the first schedule that
    dispatches the read event at all, no interleaving needed: the two tools
    complement each other (the explorer shows what the race does)."""
    explorer = Explorer(
        DFSChooser(max_preemptions=1),
        listener_class=IncrefBeforeLockListener,
        lock_checking=True,
    )
    with pytest.raises(ScheduleFailure) as info:
        explorer.run(SCENARIOS["free_vs_dispatch"])
    assert info.value.kind == "lock-check"
    assert "unguarded-access" in info.value.detail
    assert info.value.preemptions <= 1
