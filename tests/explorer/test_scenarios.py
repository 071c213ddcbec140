"""The must-have races, explored bounded-exhaustively and with Hypothesis.

For each scenario of ``scenarios.py``:

* ``DFSChooser(max_preemptions=2)`` runs every schedule with at most two
  preemptions at the core's scheduling points, and every one satisfies the
  scenario's assertions (the counts are printed; see docs/explorer.md);
* Hypothesis draws schedules (``HIPOTHESIS_EXAMPLES`` each), which reach
  beyond two preemptions.

Then two checks that the exploration means something: DFS really drives
``free()`` into libevent's deadlock window (between ``listener.dispatched``
and the loop thread's acquisition of the listener lock), and the scenarios
also pass with the lock checker (``threadlisten.debug``) between the core and
the explorer's locks.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadlisten.testing import (
    DFSChooser,
    Explorer,
    HypothesisChooser,
    SchedRuntime,
    ScheduleFailure,
)

from .scenarios import SCENARIOS, free_vs_dispatch

#: Hypothesis examples per scenario in CI: about 0.5 s each scenario.
HYPOTHESIS_EXAMPLES = 60

#: The preemption bound of the exhaustive runs (loom: "2 or 3 is enough to
#: catch most bugs"; every seeded bug here needs 1 or 2).
PREEMPTION_BOUND = 2


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_exhaustive_within_two_preemptions(name: str) -> None:
    report = Explorer(DFSChooser(max_preemptions=PREEMPTION_BOUND)).run(SCENARIOS[name])
    print(report.summary())
    assert report.complete
    # The bound was reached: schedules with exactly two preemptions ran.
    assert report.by_preemptions.get(PREEMPTION_BOUND, 0) > 0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hypothesis_schedules(name: str) -> None:
    scenario = SCENARIOS[name]

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.data())
    def explore(data: st.DataObject) -> None:
        Explorer(HypothesisChooser(data)).run(scenario)

    explore()


def test_dfs_drives_free_into_the_deadlock_window() -> None:
    """Some explored schedule destroys the listener (main's free()) after the
    loop announced ``listener.dispatched`` and before the loop's next step,
    its acquisition of the listener lock: the window in which libevent
    deadlocks.  Here the loop then finds the listener freed."""
    windows: list[int] = []

    def scenario(rt: SchedRuntime) -> None:
        free_vs_dispatch(rt)
        trace = rt.trace
        dispatched = [s.number for s in trace if s.kind == "listener.dispatched"]
        if not dispatched:
            return
        loop_next = next(s for s in trace if s.number > dispatched[0] and s.thread == "loop")
        assert loop_next.kind == "acquire"
        destroy = [s for s in trace if s.kind == "listener.destroy" and s.thread == "main"]
        if destroy and dispatched[0] < destroy[0].number < loop_next.number:
            windows.append(dispatched[0])

    report = Explorer(DFSChooser(max_preemptions=PREEMPTION_BOUND)).run(scenario)
    assert report.complete
    assert windows, "no schedule freed the listener inside the window"


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "two_listeners"])
def test_scenarios_under_the_lock_checker(name: str, lock_checker: None) -> None:
    report = Explorer(DFSChooser(max_preemptions=1), lock_checking=True).run(SCENARIOS[name])
    assert report.complete


@pytest.mark.allow_error_logs  # the checker's error, raised on the loop thread, is logged
def test_lockdep_flags_what_the_explorer_shows_cannot_deadlock(lock_checker: None) -> None:
    """``two_listeners``: A's callback calls B and B's callback calls A, so
    lockdep sees listener lock A before B and B before A and reports an
    inversion.  Both orders are only ever taken on the loop thread, so no
    deadlock is possible, which the exhaustive run above confirms within its
    bound.  Lockdep is conservative by design; the two tools answer
    different questions."""
    with pytest.raises(ScheduleFailure) as info:
        Explorer(DFSChooser(max_preemptions=1), lock_checking=True).run(SCENARIOS["two_listeners"])
    assert info.value.kind == "lock-check"
    assert "lock-order" in info.value.detail
