"""A deterministic schedule explorer for threadlisten (and code built on it).

With the GIL, short races hide: a real-thread test hits them rarely and cannot
replay them.  ``threadlisten.testing`` makes the interleaving a controlled
input, as loom, shuttle, CHESS and Lincheck do: real threads run, but exactly
one at a time, and at every scheduling point the core announces (lock
acquire/release, callback entry/exit, refcount changes, event
(un)registration, accept, hand-offs, wake-ups, and the window between a
dispatched read event and the listener lock) a *chooser* decides who goes on.

Quick start::

    from hypothesis import given, strategies as st
    from threadlisten import LEV_OPT, Listener
    from threadlisten.testing import Explorer, HypothesisChooser, DFSChooser

    def scenario(rt):
        base = rt.new_base()
        lsock = rt.listening_socket()
        lev = Listener.from_socket(base, lsock, lambda *a: None,
                                   flags=LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE)
        lsock.connect_client()
        loop = rt.spawn(lambda: base.loop(once=True), "loop")
        freer = rt.spawn(lev.free, "freer")
        freer.join()
        base.loopexit()
        loop.join()
        assert lev.refcount == 0

    Explorer(DFSChooser(max_preemptions=2)).run(scenario)     # bounded-exhaustive

    @given(st.data())
    def test_free_races_dispatch(data):
        Explorer(HypothesisChooser(data)).run(scenario)       # shrinks to few preemptions

A failure raises ``ScheduleFailure`` whose message is the schedule as a table
and a replay string; ``Explorer(ReplayChooser("s1:...")).run(scenario)``
replays it.  ``threadlisten.testing.lincheck`` checks listener operations for
linearizability against a sequential model.  See docs/explorer.md.

Hypothesis is needed only for ``HypothesisChooser`` and
``threadlisten.testing.strategies``.
"""

from threadlisten.testing._choosers import (
    Chooser,
    DFSChooser,
    HypothesisChooser,
    PCTChooser,
    ReplayChooser,
    format_schedule,
    parse_schedule,
)
from threadlisten.testing._controller import ExplorerError, Option, StepRecord
from threadlisten.testing._explorer import (
    Explorer,
    Report,
    Scenario,
    ScheduleFailure,
    format_table,
)
from threadlisten.testing._fakes import (
    FakeConnection,
    FakeListenSocket,
    FakeSelector,
    FakeStreamSocket,
    as_fake,
)
from threadlisten.testing._sched_runtime import (
    Completion,
    SchedLock,
    SchedRuntime,
    SchedThread,
)

__all__ = [
    "Chooser",
    "Completion",
    "DFSChooser",
    "Explorer",
    "ExplorerError",
    "FakeConnection",
    "FakeListenSocket",
    "FakeSelector",
    "FakeStreamSocket",
    "HypothesisChooser",
    "Option",
    "PCTChooser",
    "ReplayChooser",
    "Report",
    "Scenario",
    "SchedLock",
    "SchedRuntime",
    "SchedThread",
    "ScheduleFailure",
    "StepRecord",
    "as_fake",
    "format_schedule",
    "format_table",
    "parse_schedule",
]
