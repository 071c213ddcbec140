"""Tests for ``threadlisten.base.EventBase``: the loop, its controls and its threads."""

from __future__ import annotations

import contextlib
import logging
import math
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support import round_trip

import threadlisten
from threadlisten import EV_PERSIST, EV_READ, Event, EventBase, EventBaseClosedError
from threadlisten._runtime import Runtime

#: Upper bound for every wait on another thread; never reached when things work.
WAIT = 5.0


# --------------------------------------------------------------------- helpers


@contextlib.contextmanager
def new_base(runtime: Runtime | None = None) -> Iterator[EventBase]:
    """A fresh base, stopped (bounded, unlike its own __exit__) and closed at the end."""
    b = EventBase(runtime=runtime)
    try:
        yield b
    finally:
        b.stop(timeout=WAIT)
        b.close()


class Guard:
    """A timer that breaks the loop if the test's own way of ending it never comes."""

    def __init__(self, base: EventBase, timeout: float = WAIT) -> None:
        self.base = base
        self.fired = False
        self.handle = base.call_later(timeout, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self.base.loopbreak()

    def cancel(self) -> None:
        self.handle.cancel()
        assert not self.fired, "the guard timer had to end the loop"


def run_in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start *target* in a new thread; exceptions it raises are collected."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main, name="test-helper", daemon=True)
    thread.start()
    return thread, errors


def join(thread: threading.Thread, errors: list[BaseException] | None = None) -> None:
    """Join *thread* (bounded) and re-raise what it raised."""
    thread.join(WAIT)
    assert not thread.is_alive(), f"{thread.name} did not end within {WAIT} s"
    if errors:
        raise errors[0]


def noop() -> None:
    """Do nothing."""


# ------------------------------------------------------------- dispatch / loop


def test_dispatch_does_not_return_when_nothing_is_registered(base: EventBase) -> None:
    """dispatch() keeps running with no event, timer or callable registered."""
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
        round_trip(base)
        assert thread.is_alive()
        assert base.running
    finally:
        base.loopbreak()
        join(thread, errors)
    assert not base.running


def test_loop_once_returns_after_one_round(base: EventBase) -> None:
    """loop(once=True) runs the active callables and returns after that round."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        base.call_soon_threadsafe(log.append, "next-round")

    base.call_soon_threadsafe(first)
    base.call_soon_threadsafe(log.append, "second")
    base.loop(once=True)
    assert log == ["first", "second"]
    base.loop(nonblock=True)
    assert log == ["first", "second", "next-round"]


def test_loop_once_waits_for_something_to_run(base: EventBase) -> None:
    """loop(once=True) with only a timer waits for the timer, runs it and returns."""
    log: list[str] = []
    base.call_later(0.01, log.append, "timer")
    guard = Guard(base)
    base.loop(once=True)
    guard.cancel()
    assert log == ["timer"]


def test_loop_nonblock_returns_without_waiting(base: EventBase) -> None:
    """loop(nonblock=True) runs what is active now and returns without waiting."""
    log: list[str] = []
    later = base.call_later(WAIT, log.append, "later")
    base.call_soon_threadsafe(log.append, "soon")
    base.loop(nonblock=True)
    assert log == ["soon"]
    base.loop(nonblock=True)  # nothing active: returns at once
    assert log == ["soon"]
    later.cancel()


def test_loop_while_running_raises(base: EventBase) -> None:
    """A second loop() on a base whose loop runs in another thread raises RuntimeError."""
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
        with pytest.raises(RuntimeError):
            base.loop(nonblock=True)
        with pytest.raises(RuntimeError):
            base.dispatch()
    finally:
        base.loopbreak()
        join(thread, errors)


# ------------------------------------------------------------------ loopexit


def test_loopexit_from_another_thread(base: EventBase) -> None:
    """loopexit() from another thread ends a dispatch() blocked with nothing to do."""
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
        base.loopexit()
    finally:
        join(thread, errors)
    assert not base.running


def test_loopexit_with_delay_from_another_thread(base: EventBase) -> None:
    """loopexit(delay) ends the loop after earlier timers and before later ones."""
    log: list[str] = []
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
        base.call_later(0.0, log.append, "before")
        base.loopexit(0.05)
        late = base.call_later(WAIT, log.append, "after")
    finally:
        join(thread, errors)
    late.cancel()
    assert log == ["before"]


def test_loopexit_from_the_loop_thread(base: EventBase) -> None:
    """loopexit() from a callback ends the loop after that round's callbacks."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        base.loopexit()

    base.call_soon_threadsafe(first)
    base.call_soon_threadsafe(log.append, "second")
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["first", "second"]


def test_loopexit_with_delay_from_the_loop_thread(base: EventBase) -> None:
    """loopexit(delay) from a callback ends the loop after the delay, not before."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        base.loopexit(0.05)
        base.call_later(0.0, log.append, "timer")

    base.call_soon_threadsafe(first)
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["first", "timer"]


def test_loopexit_before_loop_ends_the_next_loop(base: EventBase) -> None:
    """loopexit() made while no loop runs ends the next loop, once only."""
    log: list[str] = []
    base.loopexit()
    base.call_soon_threadsafe(log.append, "a")
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["a"]

    # The request was consumed: the following loop runs more than one round.
    def end() -> None:
        log.append("c")
        base.loopbreak()

    base.call_soon_threadsafe(log.append, "b")
    base.call_later(0.02, end)
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["a", "b", "c"]


def test_loopexit_bad_delay_raises(base: EventBase) -> None:
    """loopexit() rejects a delay that is not a finite number >= 0."""
    with pytest.raises(ValueError):
        base.loopexit(-1)
    with pytest.raises(ValueError):
        base.loopexit(math.nan)
    with pytest.raises(TypeError):
        base.loopexit("1")  # type: ignore[arg-type]


# ----------------------------------------------------------------- loopbreak


def test_loopbreak_ends_after_the_running_callback(base: EventBase) -> None:
    """loopbreak() ends the loop after the running callback; the next one is kept."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        base.loopbreak()
        log.append("first-end")

    base.call_soon_threadsafe(first)
    base.call_soon_threadsafe(log.append, "second")
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["first", "first-end"]
    base.loop(nonblock=True)
    assert log == ["first", "first-end", "second"]


def test_loopbreak_keeps_later_timers(base: EventBase) -> None:
    """A due timer not run because of loopbreak() runs on the next loop."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        base.loopbreak()

    base.call_later(0.0, first)
    base.call_later(0.0, log.append, "second")
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["first"]
    guard = Guard(base)
    base.loop(once=True)
    guard.cancel()
    assert log == ["first", "second"]


def test_loopbreak_keeps_fifo_order_of_postponed_callables(base: EventBase) -> None:
    """Callables postponed by loopbreak() still run before ones handed over later."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        base.call_soon_threadsafe(log.append, "third")  # handed over after "second"
        base.loopbreak()

    base.call_soon_threadsafe(first)
    base.call_soon_threadsafe(log.append, "second")
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["first"]
    base.loop(nonblock=True)
    assert log == ["first", "second", "third"]


def test_loopbreak_from_another_thread(base: EventBase) -> None:
    """loopbreak() from another thread ends a dispatch() blocked in select()."""
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
    finally:
        base.loopbreak()
        join(thread, errors)


def test_loopbreak_while_not_running_has_no_effect(base: EventBase) -> None:
    """loopbreak() made while no loop runs is forgotten."""
    log: list[str] = []
    base.loopbreak()

    def end() -> None:
        log.append("end")
        base.loopbreak()

    base.call_soon_threadsafe(log.append, "a")
    base.call_later(0.02, end)
    guard = Guard(base)
    base.dispatch()
    guard.cancel()
    assert log == ["a", "end"]


# ---------------------------------------------------------- call_soon / call_later


def test_call_soon_threadsafe_runs_fifo_on_the_loop_thread(base: EventBase) -> None:
    """Callables handed over from another thread run in order, on the loop thread."""
    seen: list[tuple[int, bool]] = []
    done = threading.Event()
    thread = base.start_thread()
    for i in range(100):
        base.call_soon_threadsafe(lambda i=i: seen.append((i, base.in_loop_thread())))
    base.call_soon_threadsafe(done.set)
    assert done.wait(WAIT)
    base.stop(timeout=WAIT)
    assert not thread.is_alive()
    assert seen == [(i, True) for i in range(100)]


def test_call_soon_threadsafe_passes_args(base: EventBase) -> None:
    """call_soon_threadsafe(fn, *args) calls fn(*args)."""
    got: list[tuple[Any, ...]] = []
    base.call_soon_threadsafe(lambda *a: got.append(a), 1, "two", None)
    base.loop(nonblock=True)
    assert got == [(1, "two", None)]


def test_handle_cancel_prevents_run(base: EventBase) -> None:
    """Handle.cancel() before the callable runs keeps it from running."""
    log: list[str] = []
    handle = base.call_soon_threadsafe(log.append, "cancelled")
    base.call_soon_threadsafe(log.append, "kept")
    assert isinstance(handle, threadlisten.Handle)
    assert not handle.cancelled
    handle.cancel()
    assert handle.cancelled
    base.loop(nonblock=True)
    assert log == ["kept"]


def test_handle_cancelled_is_false_after_running(base: EventBase) -> None:
    """Handle.cancelled stays False for a callable that ran without cancel()."""
    log: list[str] = []
    handle = base.call_soon_threadsafe(log.append, "ran")
    timer = base.call_later(0.0, log.append, "timer")
    guard = Guard(base)
    while len(log) < 2:
        base.loop(once=True)
    guard.cancel()
    assert not handle.cancelled
    assert not timer.cancelled


def test_call_later_runs_after_the_delay(base: EventBase) -> None:
    """call_later callables run in due order (not scheduling order), on the base's clock."""
    log: list[str] = []
    clock: list[float] = []

    def slow_cb() -> None:
        log.append("slow")
        clock.append(base.runtime.monotonic())

    slow = base.call_later(0.04, slow_cb)
    base.call_later(0.02, log.append, "fast")
    base.call_soon_threadsafe(log.append, "soon")
    guard = Guard(base)
    while len(log) < 3:
        base.loop(once=True)
    guard.cancel()
    assert sorted(log) == ["fast", "slow", "soon"]
    assert [x for x in log if x != "soon"] == ["fast", "slow"]
    assert isinstance(slow, threadlisten.TimerHandle)
    assert clock[0] >= slow.when


def test_call_later_equal_delays_run_fifo(base: EventBase) -> None:
    """Timers with the same delay run in the order they were scheduled."""
    log: list[int] = []
    for i in range(20):
        base.call_later(0.0, log.append, i)
    guard = Guard(base)
    while len(log) < 20:
        base.loop(once=True)
    guard.cancel()
    assert log == list(range(20))


def test_timer_handle_cancel_from_another_thread(base: EventBase) -> None:
    """TimerHandle.cancel() from another thread keeps a pending timer from running."""
    log: list[str] = []
    done = threading.Event()
    base.start_thread()
    handle = base.call_later(0.02, log.append, "cancelled")
    handle.cancel()
    base.call_later(0.05, done.set)
    assert done.wait(WAIT)
    base.stop(timeout=WAIT)
    assert log == []
    assert handle.cancelled


@pytest.mark.parametrize("bad", [42, None, "noop"])
def test_call_soon_threadsafe_non_callable_raises(base: EventBase, bad: object) -> None:
    """call_soon_threadsafe() rejects a non-callable with TypeError."""
    with pytest.raises(TypeError):
        base.call_soon_threadsafe(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [42, None, "noop"])
def test_call_later_non_callable_raises(base: EventBase, bad: object) -> None:
    """call_later() rejects a non-callable with TypeError."""
    with pytest.raises(TypeError):
        base.call_later(0.0, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delay", "exc"),
    [
        (-0.1, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_call_later_bad_delay_raises(base: EventBase, delay: object, exc: type[Exception]) -> None:
    """call_later() rejects a delay that is not a finite number >= 0."""
    with pytest.raises(exc):
        base.call_later(delay, noop)  # type: ignore[arg-type]


# ------------------------------------------------------------- in_loop_thread


def test_in_loop_thread_true_inside_callbacks(base: EventBase) -> None:
    """in_loop_thread() is True inside a callable and an event callback."""
    seen: list[bool] = []
    a, b = socket.socketpair()
    with a, b:
        ev = Event(base, a, EV_READ, lambda f, w, arg: seen.append(base.in_loop_thread()))
        ev.add()
        b.send(b"x")
        base.call_soon_threadsafe(lambda: seen.append(base.in_loop_thread()))
        guard = Guard(base)
        while len(seen) < 2:
            base.loop(once=True)
        guard.cancel()
    assert seen == [True, True]


def test_in_loop_thread_false_elsewhere(base: EventBase) -> None:
    """in_loop_thread() is False with no loop, and outside the running loop thread."""
    assert not base.in_loop_thread()
    base.start_thread()
    round_trip(base)
    assert not base.in_loop_thread()
    base.stop(timeout=WAIT)
    assert not base.in_loop_thread()


# ------------------------------------------------------------ start_thread / stop


def test_start_thread_runs_dispatch_and_stop_joins(base: EventBase) -> None:
    """start_thread() runs the loop in a daemon thread; stop() ends and joins it."""
    thread = base.start_thread(name="my-acceptor")
    assert thread.name == "my-acceptor"
    assert thread.daemon
    round_trip(base)
    assert thread.is_alive()
    base.stop(timeout=WAIT)
    assert not thread.is_alive()
    assert not base.running


def test_stop_without_thread_returns(base: EventBase) -> None:
    """stop() with no thread (never started, or already stopped) returns at once."""
    base.stop()
    base.stop(timeout=0)
    base.start_thread()
    base.stop(timeout=WAIT)
    base.stop(timeout=0)


def test_stop_from_the_loop_thread_raises(base: EventBase) -> None:
    """stop() called on the loop thread raises RuntimeError instead of waiting for itself."""
    raised: list[BaseException] = []
    done = threading.Event()

    def try_stop() -> None:
        try:
            base.stop()
        except RuntimeError as exc:
            raised.append(exc)
        done.set()

    base.start_thread()
    base.call_soon_threadsafe(try_stop)
    assert done.wait(WAIT)
    base.stop(timeout=WAIT)
    assert len(raised) == 1


def test_stop_bad_timeout_raises(base: EventBase) -> None:
    """stop() rejects a timeout that is not a finite number >= 0."""
    with pytest.raises(ValueError):
        base.stop(timeout=-1)
    with pytest.raises(ValueError):
        base.stop(timeout=math.nan)
    with pytest.raises(TypeError):
        base.stop(timeout="1")  # type: ignore[arg-type]


def _start_elsewhere_then_stop() -> None:
    """One round of the race: a helper thread starts the loop thread, this one stops it."""
    with new_base() as b:
        started = threading.Event()
        holder: list[threading.Thread] = []

        def start() -> None:
            holder.append(b.start_thread())
            started.set()

        helper, errors = run_in_thread(start)
        try:
            assert started.wait(WAIT)
            b.stop(timeout=WAIT)  # TimeoutError here means the stop was lost
            assert not holder[0].is_alive()
        finally:
            join(helper, errors)


def test_stop_racing_start_thread_is_never_lost() -> None:
    """A stop() made just after another thread's start_thread() always ends that thread."""
    for _ in range(300):
        _start_elsewhere_then_stop()


def test_stop_right_after_start_thread_is_never_lost() -> None:
    """stop() right after start_thread() in the same thread always ends the loop thread."""
    for _ in range(300):
        with new_base() as b:
            thread = b.start_thread()
            b.stop(timeout=WAIT)
            assert not thread.is_alive()


def test_stop_timeout_raises_while_callback_blocks(base: EventBase) -> None:
    """stop(timeout) raises TimeoutError while a callback blocks; a later stop() succeeds."""
    entered = threading.Event()
    release = threading.Event()
    log: list[str] = []

    def block() -> None:
        entered.set()
        release.wait(WAIT)

    thread = base.start_thread()
    base.call_soon_threadsafe(block)
    base.call_soon_threadsafe(log.append, "after")
    try:
        assert entered.wait(WAIT)
        with pytest.raises(TimeoutError):
            base.stop(timeout=0.2)
        assert thread.is_alive()
    finally:
        release.set()
    base.stop(timeout=WAIT)
    assert not thread.is_alive()
    assert log == []  # stop() ends the loop after the running callback


def test_start_thread_twice_raises(base: EventBase) -> None:
    """start_thread() while its thread lives raises RuntimeError."""
    base.start_thread()
    with pytest.raises(RuntimeError):
        base.start_thread()
    base.stop(timeout=WAIT)


def test_start_thread_while_loop_runs_raises(base: EventBase) -> None:
    """start_thread() while another thread runs the loop raises RuntimeError."""
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
        with pytest.raises(RuntimeError):
            base.start_thread()
    finally:
        base.loopbreak()
        join(thread, errors)


def test_start_thread_again_after_stop(base: EventBase) -> None:
    """A stopped base can start a new loop thread."""
    base.start_thread()
    base.stop(timeout=WAIT)
    thread = base.start_thread()
    round_trip(base)
    base.stop(timeout=WAIT)
    assert not thread.is_alive()


# --------------------------------------------------------------------- close


def test_close_while_loop_runs_raises(base: EventBase) -> None:
    """close() while the loop runs (here, from one of its callbacks) raises RuntimeError."""
    raised: list[BaseException] = []

    def try_close() -> None:
        try:
            base.close()
        except RuntimeError as exc:
            raised.append(exc)

    base.call_soon_threadsafe(try_close)
    base.loop(nonblock=True)
    assert len(raised) == 1
    assert not base.closed


def test_close_while_loop_runs_in_another_thread_raises(base: EventBase) -> None:
    """close() while another thread runs dispatch() raises RuntimeError."""
    thread, errors = run_in_thread(base.dispatch)
    try:
        round_trip(base)
        with pytest.raises(RuntimeError):
            base.close()
    finally:
        base.loopbreak()
        join(thread, errors)
    assert not base.closed


def test_close_while_started_thread_lives_raises(base: EventBase) -> None:
    """close() while a start_thread() thread lives raises RuntimeError."""
    base.start_thread()
    with pytest.raises(RuntimeError):
        base.close()
    base.stop(timeout=WAIT)
    base.close()
    assert base.closed


def test_close_twice_is_fine(base: EventBase) -> None:
    """Closing a closed base does nothing."""
    base.close()
    base.close()
    assert base.closed


def test_close_makes_events_non_pending(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """close() makes pending events non-pending; delete() afterwards does nothing."""
    ev = Event(base, pair[0], EV_READ | EV_PERSIST, lambda f, w, a: None)
    timer = Event(base, None, threadlisten.EV_TIMEOUT, lambda f, w, a: None)
    ev.add()
    timer.add(WAIT)
    base.close()
    assert not ev.pending()
    assert not timer.pending()
    ev.delete()
    timer.delete()


def test_after_close_calls_raise_closed_error(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """After close(), add/call_soon/call_later/loop/dispatch/start_thread raise."""
    ev = Event(base, pair[0], EV_READ, lambda f, w, a: None)
    base.close()
    with pytest.raises(EventBaseClosedError):
        ev.add()
    with pytest.raises(EventBaseClosedError):
        base.call_soon_threadsafe(noop)
    with pytest.raises(EventBaseClosedError):
        base.call_later(0.0, noop)
    with pytest.raises(EventBaseClosedError):
        base.loopexit()
    with pytest.raises(EventBaseClosedError):
        base.loop(nonblock=True)
    with pytest.raises(EventBaseClosedError):
        base.dispatch()
    with pytest.raises(EventBaseClosedError):
        base.start_thread()
    base.loopbreak()  # no effect, no error
    base.stop()


def test_closed_error_is_a_runtime_error() -> None:
    """EventBaseClosedError is a RuntimeError, exported by the package."""
    assert issubclass(threadlisten.EventBaseClosedError, RuntimeError)


def test_context_manager_stops_thread_and_closes() -> None:
    """Leaving the with-block stops the loop thread and closes the base."""
    with EventBase() as b:
        thread = b.start_thread()
        round_trip(b)
    assert not thread.is_alive()
    assert b.closed


def test_context_manager_without_thread_closes() -> None:
    """Leaving the with-block closes a base that never started a thread."""
    with EventBase() as b:
        assert not b.closed
    assert b.closed


# ------------------------------------------------------------ callback errors


@pytest.mark.allow_error_logs
def test_call_soon_exception_is_logged_and_loop_continues(
    base: EventBase, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from a handed-over callable is logged with traceback; the loop goes on."""
    log: list[str] = []

    def boom() -> None:
        raise ZeroDivisionError("boom-from-call-soon")

    caplog.set_level(logging.ERROR, logger="threadlisten")
    thread = base.start_thread()
    base.call_soon_threadsafe(boom)
    base.call_soon_threadsafe(log.append, "same-round")
    round_trip(base)
    assert thread.is_alive()
    base.call_soon_threadsafe(log.append, "later")
    round_trip(base)
    base.stop(timeout=WAIT)
    assert log == ["same-round", "later"]
    records = [r for r in caplog.records if r.name == "threadlisten"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ZeroDivisionError
    assert "boom-from-call-soon" in caplog.text
    assert "Traceback" in caplog.text


@pytest.mark.allow_error_logs
def test_event_callback_exception_is_logged_and_loop_continues(
    base: EventBase, pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from an event callback is logged with traceback; the loop goes on."""
    log: list[str] = []

    def boom(fileobj: Any, what: int, arg: Any) -> None:
        raise KeyError("boom-from-event")

    caplog.set_level(logging.ERROR, logger="threadlisten")
    a, b = pair
    ev = Event(base, a, EV_READ, boom)
    ev.add()
    b.send(b"x")
    guard = Guard(base)
    base.loop(once=True)
    base.call_soon_threadsafe(log.append, "after")
    base.loop(once=True)
    guard.cancel()
    assert log == ["after"]
    records = [r for r in caplog.records if r.name == "threadlisten"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is KeyError
    assert "boom-from-event" in caplog.text
    assert "Traceback" in caplog.text


# ------------------------------------------------------------------- wake-up


class _SignallingSelector(selectors.DefaultSelector):
    """A selector that announces each wait made without a timeout."""

    def __init__(self, blocking: threading.Event) -> None:
        super().__init__()
        self._blocking = blocking

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            self._blocking.set()
        return super().select(timeout)


class _SignallingRuntime(Runtime):
    """The production runtime, with a selector that says when the loop blocks."""

    def __init__(self) -> None:
        self.blocking = threading.Event()

    def selector(self) -> selectors.BaseSelector:
        return _SignallingSelector(self.blocking)


def test_call_soon_threadsafe_wakes_a_blocked_loop() -> None:
    """A callable handed over while the loop blocks in select() with no timer runs promptly."""
    rt = _SignallingRuntime()
    with new_base(rt) as b:
        assert b.runtime is rt
        thread = b.start_thread()
        for _ in range(3):
            assert rt.blocking.wait(WAIT), "the loop never blocked in select()"
            rt.blocking.clear()
            done = threading.Event()
            b.call_soon_threadsafe(done.set)
            assert done.wait(WAIT), "the blocked loop was not woken"
        b.stop(timeout=WAIT)
        assert not thread.is_alive()


def test_call_later_wakes_a_blocked_loop() -> None:
    """A timer scheduled while the loop blocks in select() with no timer runs."""
    rt = _SignallingRuntime()
    with new_base(rt) as b:
        b.start_thread()
        assert rt.blocking.wait(WAIT)
        done = threading.Event()
        b.call_later(0.01, done.set)
        assert done.wait(WAIT), "the blocked loop did not pick up the new timer"
        b.stop(timeout=WAIT)


def test_bad_runtime_raises() -> None:
    """EventBase(runtime=...) rejects an object that is not a Runtime."""
    with pytest.raises(TypeError):
        EventBase(runtime=object())  # type: ignore[arg-type]
