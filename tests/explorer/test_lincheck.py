"""Linearizability: the Wing & Gong checker, the listener's sequential model,
and Lincheck-style scenarios of the real listener under the explorer.

* the checker accepts what is linearizable and rejects what is not, on a
  register whose answers are known; memoisation keeps a history of 16
  concurrent operations (16! orders) instant;
* ``ListenerModel`` encodes the contract (deliveries only while enabled, FIFO,
  whole ``(cb, arg)`` pairs, back-off, free, quiescence at the end);
* Hypothesis draws scenarios (prefix, 2-3 threads, suffix over enable,
  disable, set_cb, set_error_cb, free, connect, connect_error) and schedules
  together; every history of the real listener is linearizable;
* a fixed scenario is explored exhaustively within one preemption.

The torn ``set_cb`` that linearizability catches is in ``test_seeded_bugs.py``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadlisten.testing import DFSChooser, Explorer, HypothesisChooser
from threadlisten.testing.lincheck import (
    Call,
    LinScenario,
    ListenerModel,
    ListenerState,
    Observation,
    lincheck,
)
from threadlisten.testing.linearizability import (
    History,
    NotLinearizable,
    Operation,
    check_linearizable,
    linearize,
)
from threadlisten.testing.strategies import lin_scenarios

#: Hypothesis examples of the lincheck property in CI (about 20 ms each).
LINCHECK_EXAMPLES = 100


class Register:
    """A register holding an int: ``write(v) -> None``, ``read() -> v``."""

    def init(self) -> int:
        return 0

    def step(self, state: int, op: Operation) -> Iterable[int]:
        if op.name == "write":
            return [op.args[0]]
        return [state] if op.result == state else []


class Counter:
    """``inc() -> new value``."""

    def init(self) -> int:
        return 0

    def step(self, state: int, op: Operation) -> Iterable[int]:
        return [state + 1] if op.result == state + 1 else []


def ops(*items: tuple[str, str, tuple[int, ...], object, int, int]) -> list[Operation]:
    return [Operation(i, *item) for i, item in enumerate(items)]


# ---------------------------------------------------------------- checker


def test_overlapping_read_may_see_either_value() -> None:
    for seen in (0, 1):
        history = ops(
            ("a", "write", (1,), None, 1, 4),
            ("b", "read", (), seen, 2, 3),
        )
        assert linearize(history, Register()) is not None


def test_read_after_a_completed_write_must_see_it() -> None:
    history = ops(
        ("a", "write", (1,), None, 1, 2),
        ("b", "read", (), 0, 3, 4),
    )
    assert linearize(history, Register()) is None
    with pytest.raises(NotLinearizable) as info:
        check_linearizable(history, Register())
    assert "longest linearizable prefix (1 of 2 operations)" in str(info.value)


def test_real_time_order_constrains_the_linearization() -> None:
    # b reads 2 then c reads 1, one after the other: writes 1 and 2 must be
    # ordered 2 then 1 although both overlap both reads.
    history = ops(
        ("w1", "write", (1,), None, 1, 10),
        ("w2", "write", (2,), None, 2, 9),
        ("b", "read", (), 2, 3, 4),
        ("c", "read", (), 1, 5, 6),
    )
    order = linearize(history, Register())
    assert order is not None
    assert [op.thread for op in order] == ["w2", "b", "w1", "c"]


def test_memoisation_makes_many_concurrent_operations_cheap() -> None:
    n = 16  # 16! orders; 2**16 (set, state) pairs with memoisation
    concurrent = ops(*((f"t{i}", "inc", (), n - i, i, 100 + i) for i in range(n)))
    assert linearize(concurrent, Counter()) is not None
    wrong = ops(*((f"t{i}", "inc", (), 1, i, 100 + i) for i in range(n)))
    assert linearize(wrong, Counter()) is None


def test_history_records_invocation_order_and_times() -> None:
    history = History()
    a = history.invoke("t1", "write", 1)
    b = history.invoke("t2", "read")
    history.respond(b, 0)
    history.respond(a, None)
    history.instant("t3", "read", (), 1)
    recorded = history.operations()
    assert [(op.thread, op.invoke, op.response) for op in recorded] == [
        ("t1", 1, 4),
        ("t2", 2, 3),
        ("t3", 5, 6),
    ]
    assert history.pending == 0
    assert check_linearizable(recorded, Register())


# ------------------------------------------------------------------ model


def op(name: str, args: tuple[object, ...] = (), result: object = "ok") -> Operation:
    return Operation(0, "t", name, args, result, 1, 2)


def run_model(model: ListenerModel, *steps: Operation) -> list[ListenerState]:
    states = [model.init()]
    for step in steps:
        states = [after for s in states for after in model.step(s, step)]
    return states


def observation(state: ListenerState, refcount: int = 1) -> Observation:
    return Observation(
        state.freed, refcount, state.enabled, state.backoff, state.queue, state.closed
    )


def test_model_delivers_only_whole_pairs_in_order_while_enabled() -> None:
    model = ListenerModel()
    connected = (op("connect", (), ("ok", 1)), op("connect", (), ("ok", 2)))
    assert run_model(model, *connected, op("deliver", (1,), (1, 1)))
    assert not run_model(model, *connected, op("deliver", (2,), (1, 1)))  # not FIFO
    assert not run_model(model, *connected, op("set_cb", (2,)), op("deliver", (1,), (2, 1)))
    assert not run_model(model, *connected, op("disable"), op("deliver", (1,), (1, 1)))
    assert not run_model(model, *connected, op("set_cb", (None,)), op("deliver", (1,), (1, 1)))


def test_model_error_paths() -> None:
    model = ListenerModel()
    emfile = (op("connect_error", (errno.EMFILE,)), op("error", (errno.EMFILE,), (0, 1)))
    [backing_off] = run_model(model, *emfile)
    assert backing_off.backoff
    # The timer may end the back-off before any later operation.
    assert run_model(model, *emfile, op("connect", (), ("ok", 1)), op("deliver", (1,), (1, 1)))
    ebadf = (op("connect_error", (errno.EBADF,)), op("error", (errno.EBADF,), (0, 1)))
    [disabled] = run_model(model, *ebadf)
    assert not disabled.enabled
    assert not run_model(model, op("error", (errno.EBADF,), (0, 1)))  # nothing queued


def test_model_free_and_observe() -> None:
    for close in (True, False):
        model = ListenerModel(close_on_free=close)
        steps = (op("connect", (), ("ok", 1)), op("disable"), op("free"))
        [freed] = run_model(model, *steps)
        assert freed.freed and freed.closed is close
        assert freed.queue == (() if close else (1,))
        assert run_model(model, *steps, op("enable", (), "freed"))
        assert not run_model(model, *steps, op("enable"))
        refused = "refused" if close else ("ok", 2)
        assert run_model(model, *steps, op("connect", (), refused))
        assert run_model(model, *steps, op("observe", (), observation(freed, 0)))
    # Quiescence: a deliverable connection left queued is a lost wake-up.
    model = ListenerModel()
    [queued] = run_model(model, op("connect", (), ("ok", 1)))
    assert not run_model(
        model, op("connect", (), ("ok", 1)), op("observe", (), observation(queued))
    )


# ---------------------------------------------- the listener, explored


@settings(
    max_examples=LINCHECK_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=lin_scenarios(), data=st.data())
def test_listener_histories_are_linearizable(scenario: LinScenario, data: st.DataObject) -> None:
    Explorer(HypothesisChooser(data)).run(lincheck(scenario))


def test_a_fixed_scenario_exhaustively() -> None:
    """``[connect] ; [set_cb(2)] || [disable, enable] ; [free]``: four threads
    (with the loop and the scenario's own), 1,322 schedules within one
    preemption (two would be about 30,000: too many for CI)."""
    scenario = LinScenario(
        prefix=(Call("connect"),),
        parallel=((Call("set_cb", 2),), (Call("disable"), Call("enable"))),
        suffix=(Call("free"),),
        close_on_free=False,
    )
    report = Explorer(DFSChooser(max_preemptions=1)).run(lincheck(scenario))
    print(report.summary())
    assert report.complete
