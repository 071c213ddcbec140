"""The lifecycle tracer (threadlisten.trace), its scenarios, its renderers and
``python -m threadlisten trace``.

* The recording lock records a wait only under contention, and a release
  always before the next holder's acquire.
* A traced listener records every step of its life: lock, refcount,
  callbacks, control calls, destroy; a listener without THREADSAFE records
  no lock step, because it has no lock.
* Off is the plain runtime: importing the tracer changes nothing.
* Every scenario runs, tells its story (its own checks raise otherwise), and
  records the same steps in the same order on every run.
* Both renderers draw every scenario; the CLI runs them and fails cleanly.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from threadlisten import LEV_OPT, EventBase, Listener, ListenerFreedError
from threadlisten._libevent_model import ModelBase, ModelListener
from threadlisten._runtime import Runtime, get_default_runtime
from threadlisten._trace_layout import lanes, refcount_steps, spans
from threadlisten._trace_scenarios import (
    SCENARIOS,
    Scenario,
    ScenarioError,
    ScenarioResult,
    run_scenario,
)
from threadlisten._trace_text import GLYPHS, render_text
from threadlisten.cli import main
from threadlisten.trace import (
    EVENT_KINDS,
    TraceEvent,
    Tracer,
    TraceRuntime,
    TracingRLock,
    tracing,
)

BOUND = 10.0
ROOT = Path(__file__).resolve().parent.parent

#: What the loop thread records for a batch that accepts one connection.
ONE_CONNECTION_BATCH = [
    ("dispatched", None),
    ("lock.acquire", 1),
    ("refcount", 2),
    ("accepted", None),
    ("callback_enter", None),
    ("callback_exit", None),
    ("refcount", 1),
    ("lock.release", 0),
]


def kinds(events: list[TraceEvent], thread: str | None = None) -> list[str]:
    return [e.kind for e in events if thread is None or e.thread == thread]


# ------------------------------------------------------------------ Tracer


def test_record_numbers_events_and_rejects_unknown_kinds() -> None:
    tracer = Tracer()
    a = tracer.record("mark", detail="one")
    b = tracer.mark("two", "L1")
    assert (a.seq, b.seq) == (0, 1)
    assert b.listener == "L1" and b.detail == "two" and b.kind == "mark"
    assert b.time >= a.time >= 0
    assert a.thread == threading.current_thread().name
    with pytest.raises(ValueError, match="unknown trace event kind"):
        tracer.record("nonsense")
    assert len(tracer.events) == 2


def test_wait_for_sees_past_and_future_events_and_is_bounded() -> None:
    tracer = Tracer()
    tracer.mark("early")
    assert tracer.wait_for(lambda e: e.detail == "early", BOUND).seq == 0
    with pytest.raises(TimeoutError):
        tracer.wait_for(lambda e: e.detail == "early", 0.05, start=1)

    def later() -> None:
        tracer.mark("late")

    t = threading.Thread(target=later)
    t.start()
    try:
        assert tracer.wait_for(lambda e: e.detail == "late", BOUND).seq == 1
    finally:
        t.join(BOUND)


def test_hooks_run_in_the_recording_thread_until_removed() -> None:
    tracer = Tracer()
    seen: list[tuple[str, str]] = []

    def hook(e: TraceEvent) -> None:
        seen.append((e.detail, threading.current_thread().name))

    tracer.add_hook(hook)
    t = threading.Thread(target=tracer.mark, args=("from t",), name="t")
    t.start()
    t.join(BOUND)
    tracer.remove_hook(hook)
    tracer.mark("unseen")
    assert seen == [("from t", "t")]
    with pytest.raises(ValueError):
        tracer.remove_hook(hook)


def test_event_kinds_are_all_documented() -> None:
    assert all(EVENT_KINDS.values())
    assert {"lock.acquire", "lock.release", "refcount", "callback_enter", "callback_exit"} <= set(
        EVENT_KINDS
    )
    assert {"enable", "disable", "set_cb", "free", "destroy"} <= set(EVENT_KINDS)


# ------------------------------------------------------------------ TracingRLock


def test_uncontended_recursive_acquire_records_depths() -> None:
    tracer = Tracer()
    lock = TracingRLock(tracer, "listener.lock", "L1")
    with lock, lock:
        assert lock.held_by_me()
    assert not lock.held_by_me()
    assert [(e.kind, e.value) for e in tracer.events] == [
        ("lock.acquire", 1),
        ("lock.acquire", 2),
        ("lock.release", 1),
        ("lock.release", 0),
    ]
    assert {e.listener for e in tracer.events} == {"L1"}


def test_contended_acquire_records_a_wait_and_orders_release_first() -> None:
    tracer = Tracer()
    lock = TracingRLock(tracer, "listener.lock", "L1")
    lock.acquire()

    def other() -> None:
        with lock:
            pass

    t = threading.Thread(target=other, name="other")
    t.start()
    try:
        tracer.wait_for(lambda e: e.kind == "lock.wait", BOUND)
        lock.release()
    finally:
        t.join(BOUND)
    assert [(e.thread, e.kind) for e in tracer.events[1:]] == [
        ("other", "lock.wait"),
        (threading.current_thread().name, "lock.release"),
        ("other", "lock.acquire"),
        ("other", "lock.release"),
    ]


def test_bounded_acquire_records_a_timeout_and_non_blocking_records_nothing() -> None:
    tracer = Tracer()
    lock = TracingRLock(tracer, "listener.lock", "L1")
    results: list[bool] = []

    def other() -> None:
        results.append(lock.acquire(blocking=False))
        results.append(lock.acquire(timeout=0.01))

    with lock:
        t = threading.Thread(target=other, name="other")
        t.start()
        t.join(BOUND)
    assert results == [False, False]
    assert kinds(tracer.events, "other") == ["lock.wait", "lock.timeout"]
    (timeout,) = [e for e in tracer.events if e.kind == "lock.timeout"]
    assert timeout.value is not None and timeout.value >= 0.005


def test_release_by_a_non_owner_raises_and_records_nothing() -> None:
    tracer = Tracer()
    lock = TracingRLock(tracer, "listener.lock")
    with pytest.raises(RuntimeError):
        lock.release()
    assert tracer.events == []


# ------------------------------------------------------------------ traced listeners


def test_scenarios_trace_over_the_default_runtime() -> None:
    """The scenarios wrap the default runtime, which in this suite is the
    lock checker (the conftest turns it on), so each scenario test is also
    a lock-checked run; the CLI, with the checker off, wraps the production
    runtime."""
    from threadlisten._trace_scenarios import _Stage

    stage = _Stage()
    try:
        runtime = stage.base.runtime
        assert isinstance(runtime, TraceRuntime)
        assert runtime.inner is get_default_runtime()
    finally:
        stage.close()


def test_a_trace_over_the_lock_checker_records_a_checked_run() -> None:
    """``TraceRuntime(inner=DebugRuntime())``: the listener class is the
    traced subclass of the checked one, each traced lock wraps a checked lock,
    the batch is recorded as without the checker, and the checker is live:
    it finds its own lock inside the traced one, so a read of guarded state
    without the lock is reported (before ``wrapped`` it was silently off)."""
    from threadlisten._debug_locks import DebugLock
    from threadlisten.debug import DebugRuntime, LockDebugError, clear_errors, errors

    rt = TraceRuntime(inner=DebugRuntime())
    got = threading.Event()

    def cb(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        sock.close()
        got.set()

    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    with EventBase(runtime=rt) as base:
        lev = Listener.bind(base, ("127.0.0.1", 0), cb, flags=flags)
        assert isinstance(lev._lock, TracingRLock)
        assert isinstance(lev._lock.wrapped, DebugLock)
        base.start_thread(name="loop")
        with socket.create_connection(lev.socket.getsockname(), timeout=BOUND):
            assert got.wait(BOUND)
        settled = threading.Event()
        base.call_soon_threadsafe(settled.set)
        assert settled.wait(BOUND)
        try:
            with pytest.raises(LockDebugError, match=r"without its listener\.lock held"):
                lev._cb  # noqa: B018 (the read is the test)
        finally:
            clear_errors()
        lev.free()
        base.stop(BOUND)
    batch = [
        (e.kind, e.value)
        for e in rt.tracer.events
        if e.thread == "loop" and e.kind not in ("loop_enter", "loop_exit")
    ]
    assert batch == ONE_CONNECTION_BATCH
    assert errors() == []


def test_traced_listener_records_its_whole_life() -> None:
    rt = TraceRuntime()
    tracer = rt.tracer
    got = threading.Event()

    def cb(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        sock.close()
        got.set()

    def errorcb(lev: Listener, error: OSError, arg: Any) -> None:
        pass

    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    with EventBase(runtime=rt) as base:
        lev = Listener.bind(base, ("127.0.0.1", 0), None, flags=flags)
        assert rt.label_of(lev) == "L1"
        assert isinstance(lev, Listener)
        lev.set_error_cb(errorcb)
        lev.set_cb(cb, "arg")
        address = lev.socket.getsockname()
        base.start_thread(name="loop")
        with socket.create_connection(address, timeout=BOUND):
            assert got.wait(BOUND)
        settled = threading.Event()
        base.call_soon_threadsafe(settled.set)
        assert settled.wait(BOUND)
        lev.disable()
        lev.free()
        with pytest.raises(ListenerFreedError):
            lev.enable()
    events = tracer.events
    me = threading.current_thread().name
    main_calls = [(e.kind, e.detail) for e in events if e.thread == me and e.kind != "mark"]
    assert main_calls[0] == ("create", "CLOSE_ON_FREE|THREADSAFE")
    calls = [(k, d) for k, d in main_calls if k in ("set_cb", "set_error_cb", "return")]
    assert ("set_error_cb", "errorcb") in calls and ("set_cb", "cb") in calls
    assert ("return", "enable raised ListenerFreedError") in calls
    # The batch on the loop thread, exactly:
    batch = [
        (e.kind, e.value)
        for e in events
        if e.thread == "loop" and e.kind not in ("loop_enter", "loop_exit")
    ]
    assert batch == ONE_CONNECTION_BATCH
    mine = [e.kind for e in events if e.thread == me]
    tail = mine[len(mine) - 1 - mine[::-1].index("disable") :]
    assert tail == [
        "disable",
        "lock.acquire",
        "lock.release",
        "return",
        "free",
        "lock.acquire",
        "destroy",
        "refcount",
        "lock.release",
        "destroyed",
        "return",
        "enable",  # on a freed listener: takes the lock, raises
        "lock.acquire",
        "lock.release",
        "return",
    ]
    assert [v for _, v in refcount_steps(events, "L1")] == [1, 2, 1, 0]
    assert all(e.listener in (None, "L1") for e in events)


def test_listener_without_threadsafe_records_no_lock_steps() -> None:
    rt = TraceRuntime()
    with EventBase(runtime=rt) as base:
        lev = Listener.bind(base, ("127.0.0.1", 0), None, flags=LEV_OPT.CLOSE_ON_FREE)
        lev.disable()
        lev.free()
    got = kinds(rt.tracer.events)
    assert not [k for k in got if k.startswith("lock.")]
    assert got == [
        "create",
        "enable",
        "return",
        "disable",
        "return",
        "free",
        "destroy",
        "refcount",
        "destroyed",
        "return",
    ]


def test_off_is_the_plain_runtime() -> None:
    """Importing the tracer changes nothing: the default runtime makes plain
    listeners with plain locks, and records nothing anywhere."""
    assert not isinstance(get_default_runtime(), TraceRuntime)
    with EventBase() as base:
        lev = Listener.bind(base, ("127.0.0.1", 0), None, flags=LEV_OPT.THREADSAFE)
        try:
            assert not type(lev).__name__.startswith("Traced")
            assert not isinstance(lev._lock, TracingRLock)
        finally:
            lev.socket.close()
            lev.free()


def test_tracing_makes_and_restores_the_default() -> None:
    before = get_default_runtime()
    with tracing() as tracer:
        assert isinstance(get_default_runtime(), TraceRuntime)
        with EventBase() as base:
            lev = Listener.bind(
                base, ("127.0.0.1", 0), None, flags=LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
            )
            lev.free()
    assert get_default_runtime() is before
    assert kinds(tracer.events)[0] == "create"
    assert "destroyed" in kinds(tracer.events)


def test_listener_type_leaves_other_classes_alone() -> None:
    rt = TraceRuntime()
    assert rt.listener_type(int) is int
    traced = rt.listener_type(Listener)
    assert issubclass(traced, Listener) and traced is rt.listener_type(Listener)
    assert Runtime().listener_type(Listener) is Listener
    assert rt.label_of(object()) is None


# ------------------------------------------------------------------ the libevent model


def test_model_free_outside_the_window_does_not_wait() -> None:
    """The model is not rigged: with no callback running, its free() finishes
    at once, as libevent's does (row 1 of libevent.md §2.4's table)."""
    tracer = Tracer()
    base = ModelBase(tracer, watchdog=BOUND)
    lev = ModelListener(base, "lev", in_window=lambda: None)
    base.process_active(lev.event, lev.read_cb)  # a complete read callback, then idle
    assert lev.free() is True
    assert lev.destroyed
    got = kinds(tracer.events)
    assert "wait.begin" not in got and "lock.wait" not in got
    assert got[-1] == "return"


# ------------------------------------------------------------------ scenarios


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_is_deterministic(name: str) -> None:
    first = run_scenario(name)
    second = run_scenario(name)
    assert first.name == name and first.story and first.parts
    for a, b in zip(first.parts, second.parts, strict=True):
        assert [e.signature() for e in a.events] == [e.signature() for e in b.events]
        assert [e.seq for e in a.events] == list(range(len(a.events)))


def test_deadlock_window_scenario_shows_the_cycle_and_its_absence() -> None:
    result = run_scenario("libevent-deadlock-window")
    libevent, ours = result.parts
    assert {(w.waiter, w.holder) for w in libevent.cycle} == {("freer", "loop"), ("loop", "freer")}
    found = spans(libevent.events, lambda e: float(e.seq))
    freer_lock = [s for s in found if s.lane == "freer" and s.kind == "lock"]
    freer_wait = [s for s in found if s.lane == "freer" and s.kind == "wait"]
    loop_wait = [s for s in found if s.lane == "loop" and s.kind == "lock.wait"]
    assert freer_lock and freer_wait and loop_wait
    # The freer holds the lock for the whole of both waits: that is the cycle.
    assert freer_lock[0].start < freer_wait[0].start < loop_wait[0].start
    assert loop_wait[0].end < freer_wait[0].end < freer_lock[0].end
    assert loop_wait[0].outcome == "lock.timeout"
    assert not ours.cycle
    assert not [e for e in ours.events if e.kind in ("lock.wait", "wait.begin", "accepted")]


# ------------------------------------------------------------------ renderers


@pytest.fixture(scope="module")
def results() -> dict[str, ScenarioResult]:
    return {name: run_scenario(name) for name in SCENARIOS}


def test_text_diagram(results: dict[str, ScenarioResult]) -> None:
    for name, result in results.items():
        text = render_text(result)
        assert text.startswith(f"{name}: ")
        for part in result.parts:
            assert part.title in text
            for lane in lanes(part.events):
                assert lane in text
        plain = render_text(result, ascii_only=True)
        assert plain.isascii()
        assert len(plain.splitlines()) == len(text.splitlines())
    deadlock = render_text(results["libevent-deadlock-window"])
    assert "wait-for: freer -> loop" in deadlock and "wait-for: loop -> freer" in deadlock
    assert "╏" in deadlock  # the freer holds the lock and waits
    assert set("┃┊") <= set(render_text(results["free-during-callback"]))
    assert not set(GLYPHS) & set(render_text(results["hot-swap"], ascii_only=True))


@pytest.fixture(scope="module")
def fonts_loaded(
    results: dict[str, ScenarioResult], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Draw once before the leak check starts counting: matplotlib keeps the
    font files it has used open for the life of the process (its font cache),
    which the per-test descriptor check would otherwise count as a leak."""
    pytest.importorskip("matplotlib")
    from threadlisten._trace_plot import render_figure

    where = tmp_path_factory.mktemp("fonts")
    render_figure(results["libevent-deadlock-window"], where / "warm.png")
    render_figure(results["libevent-deadlock-window"], where / "warm.svg")


def test_figures(results: dict[str, ScenarioResult], fonts_loaded: None, tmp_path: Path) -> None:
    from threadlisten._trace_plot import render_figure

    for name, result in results.items():
        png = tmp_path / f"{name}.png"
        render_figure(result, png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "a.svg"
    again = tmp_path / "b.svg"
    result = results["free-inside-callback"]
    render_figure(result, svg)
    render_figure(run_scenario("free-inside-callback"), again)
    assert b"<svg" in svg.read_bytes()
    # A deterministic scenario on the step axis draws the same picture every run.
    assert svg.read_bytes() == again.read_bytes()
    render_figure(result, tmp_path / "t.png", axis="time")
    with pytest.raises(ValueError, match="axis"):
        render_figure(result, tmp_path / "x.png", axis="bogus")


# ------------------------------------------------------------------ the CLI


def test_cli_trace_prints_and_draws(
    fonts_loaded: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "hot.png"
    assert main(["trace", "hot-swap", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hot-swap: " in printed and "What it shows:" in printed
    assert f"wrote {out}" in printed
    assert out.stat().st_size > 0


def test_cli_trace_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "no-such-scenario"]) == 2
    assert main(["trace", "hot-swap", "--out", "x.jpg"]) == 2
    assert main(["trace", "hot-swap", "--axis", "sideways"]) == 2
    capsys.readouterr()


def test_cli_trace_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["trace", "hot-swap", "--out", str(tmp_path / "x.png")]) == 1
    assert "threadlisten[trace]" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_trace_reports_a_scenario_that_went_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> ScenarioResult:
        raise ScenarioError("the barrier did not hold")

    monkeypatch.setitem(SCENARIOS, "hot-swap", Scenario("hot-swap", "broken", broken))
    assert main(["trace", "hot-swap"]) == 1
    assert "the barrier did not hold" in capsys.readouterr().err


def test_cli_trace_subprocess_ascii() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "threadlisten", "trace", "free-inside-callback", "--ascii"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii()
    assert "L1 destroyed" in result.stdout
