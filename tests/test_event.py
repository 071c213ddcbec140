"""Tests for ``threadlisten.event.Event``: readiness, timeouts, pending() and delete()."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from _support import round_trip

from threadlisten import EV_PERSIST, EV_READ, EV_TIMEOUT, EV_WRITE, Event, EventBase

#: Upper bound for every wait on another thread; never reached when things work.
WAIT = 5.0

Call = tuple[Any, int, Any]


# --------------------------------------------------------------------- helpers


class Recorder:
    """An event callback that records each call."""

    def __init__(self, then: Callable[[Any, int, Any], None] | None = None) -> None:
        self.calls: list[Call] = []
        self.then = then

    def __call__(self, fileobj: Any, what: int, arg: Any) -> None:
        self.calls.append((fileobj, what, arg))
        if self.then is not None:
            self.then(fileobj, what, arg)


def run_until(base: EventBase, done: Callable[[], bool]) -> None:
    """Run loop(once=True) rounds until *done()*; fail after WAIT seconds."""
    fired: list[bool] = []
    guard = base.call_later(WAIT, fired.append, True)
    try:
        while not done():
            assert not fired, "timed out waiting in the loop"
            base.loop(once=True)
    finally:
        guard.cancel()


def ignore(fileobj: Any, what: int, arg: Any) -> None:
    """An event callback that does nothing."""


# ----------------------------------------------------------------- readiness


def test_read_event_fires_with_fileobj_what_and_arg(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """EV_READ fires with what == EV_READ and the original fileobj and arg."""
    a, b = pair
    rec = Recorder()
    arg = object()
    ev = Event(base, a, EV_READ, rec, arg)
    ev.add()
    b.send(b"x")
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a, EV_READ, arg)]
    assert rec.calls[0][0] is a
    assert rec.calls[0][2] is arg


def test_read_event_with_int_descriptor(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """An int descriptor works as fileobj and is passed back unchanged."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a.fileno(), EV_READ, rec)
    assert ev.fd == a.fileno()
    ev.add()
    b.send(b"x")
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a.fileno(), EV_READ, None)]


def test_read_event_does_not_fire_when_idle(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """EV_READ on a socket with nothing to read does not fire."""
    rec = Recorder()
    ev = Event(base, pair[0], EV_READ, rec)
    ev.add()
    base.loop(nonblock=True)
    base.loop(nonblock=True)
    assert rec.calls == []
    assert ev.pending()


def test_non_persistent_event_fires_once(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A non-persistent event fires once and becomes non-pending."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ, rec)
    ev.add()
    b.send(b"x")  # stays unread: the socket stays readable
    run_until(base, lambda: bool(rec.calls))
    assert not ev.pending()
    base.call_later(0.01, lambda: None)
    base.loop(once=True)
    base.loop(nonblock=True)
    assert len(rec.calls) == 1


def test_non_persistent_event_can_be_added_again(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A non-persistent event re-added from its own callback fires again."""
    a, b = pair
    rec = Recorder(lambda f, w, arg: ev.add() if len(rec.calls) < 3 else None)
    ev = Event(base, a, EV_READ, rec)
    ev.add()
    b.send(b"x")
    run_until(base, lambda: len(rec.calls) >= 3)
    assert not ev.pending()
    base.loop(nonblock=True)
    assert len(rec.calls) == 3


def test_persistent_event_keeps_firing(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """EV_PERSIST keeps the event pending and firing while the socket is readable."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ | EV_PERSIST, rec)
    ev.add()
    b.send(b"x")
    run_until(base, lambda: len(rec.calls) >= 3)
    assert ev.pending()
    assert all(what == EV_READ for _, what, _ in rec.calls)
    ev.delete()
    n = len(rec.calls)
    base.loop(nonblock=True)
    assert len(rec.calls) == n


def test_persistent_event_fires_for_each_message(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A persistent EV_READ whose callback drains the socket fires again for new data."""
    a, b = pair
    got: list[bytes] = []
    ev = Event(base, a, EV_READ | EV_PERSIST, lambda f, w, arg: got.append(f.recv(100)))
    ev.add()
    for n, msg in enumerate((b"one", b"two", b"three"), start=1):
        b.send(msg)
        run_until(base, lambda: len(got) >= n)  # noqa: B023 (called within this iteration)
    assert got == [b"one", b"two", b"three"]
    assert ev.pending()


def test_write_event_fires(base: EventBase, pair: tuple[socket.socket, socket.socket]) -> None:
    """EV_WRITE on a writable socket fires with what == EV_WRITE."""
    a, _ = pair
    rec = Recorder()
    ev = Event(base, a, EV_WRITE, rec, "w")
    ev.add()
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a, EV_WRITE, "w")]
    assert not ev.pending()


def test_read_write_event_reports_both(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """An EV_READ|EV_WRITE event on a readable, writable socket reports both."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ | EV_WRITE, rec)
    ev.add()
    b.send(b"x")
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a, EV_READ | EV_WRITE, None)]


# ------------------------------------------------------------------ timeouts


def test_timeout_only_event_fires_after_add_timeout(base: EventBase) -> None:
    """An EV_TIMEOUT event with fileobj None fires with EV_TIMEOUT after add(timeout)."""
    rec = Recorder()
    ev = Event(base, None, EV_TIMEOUT, rec, 7)
    assert ev.fd == -1
    log: list[str] = []
    ev.add(0.02)
    base.call_soon_threadsafe(log.append, "soon")
    run_until(base, lambda: bool(rec.calls))
    assert log == ["soon"]
    assert rec.calls == [(None, EV_TIMEOUT, 7)]
    assert not ev.pending()


def test_timeout_events_fire_in_due_order(base: EventBase) -> None:
    """Timer events fire in the order their timeouts fall due."""
    order: list[str] = []
    slow = Event(base, None, EV_TIMEOUT, lambda f, w, arg: order.append("slow"))
    fast = Event(base, None, EV_TIMEOUT, lambda f, w, arg: order.append("fast"))
    slow.add(0.04)
    fast.add(0.01)
    run_until(base, lambda: len(order) == 2)
    assert order == ["fast", "slow"]


def test_add_replaces_timeout(base: EventBase) -> None:
    """add() on a pending event replaces its timeout."""
    rec = Recorder()
    ev = Event(base, None, EV_TIMEOUT, rec)
    ev.add(WAIT * 10)
    ev.add(0.01)
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(None, EV_TIMEOUT, None)]


def test_add_without_timeout_removes_timeout(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """add() with no timeout on an event that had one leaves it without a timeout."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ, rec)
    ev.add(0.01)
    ev.add()
    assert not ev.pending(EV_TIMEOUT)
    base.call_later(0.03, b.send, b"x")
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a, EV_READ, None)]


def test_fd_event_with_timeout_fires_timeout_when_idle(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """An EV_READ event with a timeout on an idle socket fires with EV_TIMEOUT."""
    a, _ = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ, rec, "arg")
    ev.add(0.02)
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a, EV_TIMEOUT, "arg")]
    assert not ev.pending()


def test_fd_event_with_timeout_fires_read_when_ready(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """An EV_READ event with a timeout fires with EV_READ when data comes first."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ, rec)
    ev.add(WAIT * 10)
    b.send(b"x")
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(a, EV_READ, None)]
    assert not ev.pending(EV_TIMEOUT)


def test_persistent_timeout_event_rearms(base: EventBase) -> None:
    """A persistent timer event fires again and again, with its timeout re-armed."""
    pending_in_cb: list[bool] = []
    rec = Recorder(lambda f, w, arg: pending_in_cb.append(ev.pending(EV_TIMEOUT)))
    ev = Event(base, None, EV_TIMEOUT | EV_PERSIST, rec)
    ev.add(0.01)
    run_until(base, lambda: len(rec.calls) >= 3)
    assert all(what == EV_TIMEOUT for _, what, _ in rec.calls)
    assert all(pending_in_cb)
    assert ev.pending(EV_TIMEOUT)
    ev.delete()
    assert not ev.pending()


def test_persistent_fd_event_timeout_rearms(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A persistent EV_READ event with a timeout fires EV_TIMEOUT repeatedly, then EV_READ."""
    a, b = pair
    rec = Recorder()
    ev = Event(base, a, EV_READ | EV_PERSIST, rec)
    ev.add(0.01)
    run_until(base, lambda: len(rec.calls) >= 2)
    assert [what for _, what, _ in rec.calls] == [EV_TIMEOUT, EV_TIMEOUT]
    assert ev.pending(EV_READ)
    assert ev.pending(EV_TIMEOUT)
    b.send(b"x")
    run_until(base, lambda: any(what & EV_READ for _, what, _ in rec.calls))
    assert ev.pending(EV_TIMEOUT)


# ------------------------------------------------------------------- pending


def test_pending_reflects_add_and_delete(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """pending() is False before add(), True after it for the watched bits, False after delete()."""
    ev = Event(base, pair[0], EV_READ, ignore)
    assert not ev.pending()
    ev.add()
    assert ev.pending()
    assert ev.pending(EV_READ)
    assert not ev.pending(EV_WRITE)
    assert not ev.pending(EV_TIMEOUT)
    ev.delete()
    assert not ev.pending()
    assert not ev.pending(EV_READ)


def test_pending_timeout_only_while_scheduled(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """pending(EV_TIMEOUT) is True only while a timeout is scheduled."""
    ev = Event(base, pair[0], EV_READ, ignore)
    ev.add()
    assert not ev.pending(EV_TIMEOUT)
    ev.add(WAIT)
    assert ev.pending(EV_TIMEOUT)
    assert ev.pending(EV_READ)
    ev.delete()
    assert not ev.pending(EV_TIMEOUT)


def test_pending_timer_event_after_firing(base: EventBase) -> None:
    """A non-persistent timer event is not pending, not even for EV_TIMEOUT, once fired."""
    rec = Recorder()
    ev = Event(base, None, EV_TIMEOUT, rec)
    ev.add(0.01)
    assert ev.pending(EV_TIMEOUT)
    run_until(base, lambda: bool(rec.calls))
    assert not ev.pending(EV_TIMEOUT)
    assert not ev.pending()


def test_delete_twice_and_before_add_is_fine(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """delete() on an event that is not pending does nothing."""
    ev = Event(base, pair[0], EV_READ, ignore)
    ev.delete()
    ev.add()
    ev.delete()
    ev.delete()
    assert not ev.pending()


def test_deleted_timer_event_does_not_fire(base: EventBase) -> None:
    """A timer event deleted before it is due does not fire."""
    rec = Recorder()
    ev = Event(base, None, EV_TIMEOUT, rec)
    ev.add(0.01)
    ev.delete()
    done: list[bool] = []
    base.call_later(0.03, done.append, True)
    run_until(base, lambda: bool(done))
    assert rec.calls == []


# -------------------------------------------------------------------- delete


def test_delete_from_another_thread_does_not_wait_for_running_callback(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """delete() returns while the callback blocks, and the callback never starts again."""
    a, b = pair
    entered = threading.Event()
    release = threading.Event()
    exited = threading.Event()

    def block(fileobj: Any, what: int, arg: Any) -> None:
        entered.set()
        release.wait(WAIT)
        exited.set()

    rec = Recorder(block)
    ev = Event(base, a, EV_READ | EV_PERSIST, rec)
    ev.add()
    b.send(b"x")  # never read: the socket stays readable
    # If delete() waited for the callback, this timer would free it after WAIT s
    # and the assertions below would see that it had exited.
    safety = threading.Timer(WAIT, release.set)
    safety.start()
    base.start_thread()
    try:
        assert entered.wait(WAIT)
        ev.delete()
        assert not exited.is_set(), "delete() waited for the running callback"
        assert not ev.pending()
    finally:
        release.set()
        safety.cancel()
        safety.join(WAIT)
    assert exited.wait(WAIT)
    round_trip(base)
    round_trip(base)
    base.stop(timeout=WAIT)
    assert len(rec.calls) == 1


def test_delete_from_own_callback(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A persistent event deleted from its own callback does not fire again."""
    a, b = pair
    rec = Recorder(lambda f, w, arg: ev.delete())
    ev = Event(base, a, EV_READ | EV_PERSIST, rec)
    ev.add()
    b.send(b"x")
    run_until(base, lambda: bool(rec.calls))
    base.loop(nonblock=True)
    base.loop(nonblock=True)
    assert len(rec.calls) == 1
    assert not ev.pending()


def test_delete_drops_readiness_already_reported(base: EventBase) -> None:
    """An event deleted by a callback of the same round does not start, though it was ready."""
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    with a1, b1, a2, b2:
        events: dict[str, Event] = {}
        ran: list[str] = []

        def cb(fileobj: Any, what: int, arg: str) -> None:
            ran.append(arg)
            events["two" if arg == "one" else "one"].delete()

        events["one"] = Event(base, a1, EV_READ | EV_PERSIST, cb, "one")
        events["two"] = Event(base, a2, EV_READ | EV_PERSIST, cb, "two")
        events["one"].add()
        events["two"].add()
        b1.send(b"x")
        b2.send(b"x")
        # Both are readable before the loop starts: one select() reports both.
        run_until(base, lambda: bool(ran))
        assert len(ran) == 1
        base.loop(nonblock=True)
        base.loop(nonblock=True)
        assert ran == [ran[0]] * 3  # the survivor keeps firing, the other never
        for ev in events.values():
            ev.delete()


def test_delete_from_another_thread_drops_readiness_already_reported(base: EventBase) -> None:
    """An event deleted by another thread while a callback of its round blocks never starts."""
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    with a1, b1, a2, b2:
        entered = threading.Event()
        release = threading.Event()
        ran: list[str] = []

        def cb(fileobj: Any, what: int, arg: str) -> None:
            ran.append(arg)
            if len(ran) == 1:
                entered.set()
                release.wait(WAIT)

        events = {
            "one": Event(base, a1, EV_READ, cb, "one"),
            "two": Event(base, a2, EV_READ, cb, "two"),
        }
        events["one"].add()
        events["two"].add()
        b1.send(b"x")
        b2.send(b"x")
        done: list[bool] = []

        def run_one_round() -> None:
            base.loop(once=True)
            done.append(True)

        thread = threading.Thread(target=run_one_round, name="test-loop")
        thread.start()
        try:
            assert entered.wait(WAIT)
            other = "two" if ran[0] == "one" else "one"
            events[other].delete()
        finally:
            release.set()
            thread.join(WAIT)
        assert not thread.is_alive()
        assert done == [True]
        assert ran == [ran[0]]
        assert not events[other].pending()


def test_add_from_another_thread_wakes_the_loop(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """add() from another thread takes effect while the loop blocks with nothing to do."""
    a, b = pair
    fired = threading.Event()
    ev = Event(base, a, EV_READ, lambda f, w, arg: fired.set())
    b.send(b"x")
    base.start_thread()
    round_trip(base)
    ev.add()
    assert fired.wait(WAIT), "the loop did not pick up an event added from another thread"
    base.stop(timeout=WAIT)


def test_timer_added_from_another_thread_wakes_the_loop(base: EventBase) -> None:
    """A timer event added from another thread fires although the loop was blocked."""
    fired = threading.Event()
    ev = Event(base, None, EV_TIMEOUT, lambda f, w, arg: fired.set())
    base.start_thread()
    round_trip(base)
    ev.add(0.01)
    assert fired.wait(WAIT), "the loop did not pick up a timer added from another thread"
    base.stop(timeout=WAIT)


# ------------------------------------------------------------ loopbreak


def test_timeout_not_run_because_of_loopbreak_is_not_lost(base: EventBase) -> None:
    """A due timer event skipped because an earlier callback broke the loop fires next loop."""
    order: list[str] = []

    def first(fileobj: Any, what: int, arg: Any) -> None:
        order.append("first")
        base.loopbreak()

    rec = Recorder()
    ev1 = Event(base, None, EV_TIMEOUT, first)
    ev2 = Event(base, None, EV_TIMEOUT, rec)
    ev1.add(0.0)
    ev2.add(0.0)  # both due in the first round, ev1 first
    guard = base.call_later(WAIT, base.loopbreak)
    base.dispatch()
    guard.cancel()
    assert order == ["first"]
    assert rec.calls == []
    assert ev2.pending(EV_TIMEOUT)
    run_until(base, lambda: bool(rec.calls))
    assert rec.calls == [(None, EV_TIMEOUT, None)]


def test_readiness_not_run_because_of_loopbreak_is_not_lost(base: EventBase) -> None:
    """A ready event skipped because another callback broke the loop fires next loop."""
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    with a1, b1, a2, b2:
        ran: list[str] = []

        def cb(fileobj: Any, what: int, arg: str) -> None:
            ran.append(arg)
            base.loopbreak()

        ev1 = Event(base, a1, EV_READ, cb, "one")
        ev2 = Event(base, a2, EV_READ, cb, "two")
        ev1.add()
        ev2.add()
        b1.send(b"x")
        b2.send(b"x")
        guard = base.call_later(WAIT, base.loopbreak)
        base.dispatch()
        assert len(ran) == 1
        base.dispatch()
        guard.cancel()
        assert sorted(ran) == ["one", "two"]


# ---------------------------------------------------------- descriptor reuse


def test_descriptor_reuse_after_delete_and_close(base: EventBase) -> None:
    """A new socket on a deleted-and-closed socket's descriptor number works, alone."""
    old_a, old_b = socket.socketpair()
    old_rec = Recorder()
    try:
        old_ev = Event(base, old_a, EV_READ | EV_PERSIST, old_rec)
        old_ev.add()
        old_b.send(b"x")
        run_until(base, lambda: bool(old_rec.calls))
        old_ev.delete()
        fd = old_a.fileno()
    finally:
        old_a.close()
        old_b.close()
    n_old = len(old_rec.calls)

    new_a, new_b = socket.socketpair()
    with contextlib.ExitStack() as stack:
        stack.enter_context(new_a)
        stack.enter_context(new_b)
        if new_b.fileno() == fd:
            new_a, new_b = new_b, new_a
        if new_a.fileno() == fd:
            reused = new_a
        else:
            # As CPython's test_selectors does: force the reuse with dup2().
            try:
                os.fstat(fd)
            except OSError:
                pass
            else:
                pytest.skip(f"descriptor {fd} was taken by something else")
            os.dup2(new_a.fileno(), fd)
            reused = stack.enter_context(socket.socket(fileno=fd))
        assert reused.fileno() == fd
        rec = Recorder()
        ev = Event(base, reused, EV_READ | EV_PERSIST, rec)
        ev.add()
        base.loop(nonblock=True)
        assert rec.calls == []  # the new socket is not readable yet
        new_b.send(b"y")
        run_until(base, lambda: bool(rec.calls))
        assert rec.calls[0] == (reused, EV_READ, None)
        assert len(old_rec.calls) == n_old
        ev.delete()


# ------------------------------------------------------------ two events, one fd


def test_read_and_write_events_on_same_fd(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A READ event and a WRITE event on one descriptor both fire."""
    a, b = pair
    r = Recorder()
    w = Recorder()
    rev = Event(base, a, EV_READ | EV_PERSIST, r)
    wev = Event(base, a, EV_WRITE | EV_PERSIST, w)
    rev.add()
    wev.add()
    b.send(b"x")
    run_until(base, lambda: bool(r.calls) and bool(w.calls))
    assert r.calls[0] == (a, EV_READ, None)
    assert w.calls[0] == (a, EV_WRITE, None)
    rev.delete()
    wev.delete()


def test_deleting_write_event_keeps_read_event(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Deleting the WRITE event of a descriptor keeps its READ event working."""
    a, b = pair
    r = Recorder()
    w = Recorder()
    rev = Event(base, a, EV_READ | EV_PERSIST, r)
    wev = Event(base, a, EV_WRITE | EV_PERSIST, w)
    rev.add()
    wev.add()
    run_until(base, lambda: bool(w.calls))
    wev.delete()
    assert rev.pending(EV_READ)
    n_w = len(w.calls)
    b.send(b"x")
    run_until(base, lambda: bool(r.calls))
    base.loop(nonblock=True)
    assert len(w.calls) == n_w
    assert all(what == EV_READ for _, what, _ in r.calls)
    rev.delete()


def test_deleting_read_event_keeps_write_event(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Deleting the READ event of a descriptor keeps its WRITE event working."""
    a, b = pair
    r = Recorder()
    w = Recorder()
    rev = Event(base, a, EV_READ | EV_PERSIST, r)
    wev = Event(base, a, EV_WRITE | EV_PERSIST, w)
    rev.add()
    wev.add()
    b.send(b"x")
    run_until(base, lambda: bool(r.calls) and bool(w.calls))
    rev.delete()
    assert wev.pending(EV_WRITE)
    n_r, n_w = len(r.calls), len(w.calls)
    run_until(base, lambda: len(w.calls) >= n_w + 2)
    assert len(r.calls) == n_r
    wev.delete()


def test_two_read_events_on_same_fd(
    base: EventBase, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Two READ events on one descriptor both fire; deleting one keeps the other."""
    a, b = pair
    r1 = Recorder()
    r2 = Recorder()
    ev1 = Event(base, a, EV_READ | EV_PERSIST, r1)
    ev2 = Event(base, a, EV_READ | EV_PERSIST, r2)
    ev1.add()
    ev2.add()
    b.send(b"x")
    run_until(base, lambda: bool(r1.calls) and bool(r2.calls))
    ev1.delete()
    n1, n2 = len(r1.calls), len(r2.calls)
    run_until(base, lambda: len(r2.calls) >= n2 + 2)
    assert len(r1.calls) == n1
    ev2.delete()


# ----------------------------------------------------------------- accessors


def test_accessors(base: EventBase, pair: tuple[socket.socket, socket.socket]) -> None:
    """base, fileobj, fd, what, callback and arg return what the event was made with."""
    a, _ = pair
    arg = object()
    ev = Event(base, a, EV_READ | EV_PERSIST, ignore, arg)
    assert ev.base is base
    assert ev.fileobj is a
    assert ev.fd == a.fileno()
    assert ev.what == EV_READ | EV_PERSIST
    assert ev.callback is ignore
    assert ev.arg is arg
    assert "not pending" in repr(ev)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [None, object(), "base"])
def test_non_event_base_raises(bad: object, pair: tuple[socket.socket, socket.socket]) -> None:
    """A base that is not an EventBase raises TypeError."""
    with pytest.raises(TypeError):
        Event(bad, pair[0], EV_READ, ignore)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 42, "cb"])
def test_non_callable_callback_raises(
    base: EventBase, pair: tuple[socket.socket, socket.socket], bad: object
) -> None:
    """A callback that is not callable raises TypeError."""
    with pytest.raises(TypeError):
        Event(base, pair[0], EV_READ, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("what", [0x08, 0x20, 0x100, EV_READ | 0x40, -1])
def test_unknown_what_bits_raise(
    base: EventBase, pair: tuple[socket.socket, socket.socket], what: int
) -> None:
    """Unknown EV_* bits (EV_SIGNAL included) raise ValueError."""
    with pytest.raises(ValueError):
        Event(base, pair[0], what, ignore)


@pytest.mark.parametrize("what", [True, False, "2", 2.0, None])
def test_what_not_an_int_raises(
    base: EventBase, pair: tuple[socket.socket, socket.socket], what: object
) -> None:
    """A what that is a bool, str, float or None raises TypeError."""
    with pytest.raises(TypeError):
        Event(base, pair[0], what, ignore)  # type: ignore[arg-type]


def test_closed_socket_raises_value_error(base: EventBase) -> None:
    """A closed socket for EV_READ or EV_WRITE raises ValueError."""
    a, b = socket.socketpair()
    a.close()
    b.close()
    with pytest.raises(ValueError):
        Event(base, a, EV_READ, ignore)
    with pytest.raises(ValueError):
        Event(base, b, EV_WRITE, ignore)


def test_negative_descriptor_raises_value_error(base: EventBase) -> None:
    """A negative int descriptor for EV_READ raises ValueError."""
    with pytest.raises(ValueError):
        Event(base, -1, EV_READ, ignore)


@pytest.mark.parametrize("bad", [object(), "3", None, 3.0, True])
def test_object_without_fileno_raises_type_error(base: EventBase, bad: object) -> None:
    """A fileobj that is neither an int nor has fileno() raises TypeError."""
    with pytest.raises(TypeError):
        Event(base, bad, EV_READ, ignore)


@pytest.mark.parametrize(
    ("timeout", "exc"),
    [
        (-0.001, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("1", TypeError),
        (True, TypeError),
        ([1], TypeError),
    ],
)
def test_bad_timeout_raises(
    base: EventBase,
    pair: tuple[socket.socket, socket.socket],
    timeout: object,
    exc: type[Exception],
) -> None:
    """add() rejects a timeout that is not a finite number >= 0, leaving the event non-pending."""
    ev = Event(base, pair[0], EV_READ, ignore)
    with pytest.raises(exc):
        ev.add(timeout)  # type: ignore[arg-type]
    assert not ev.pending()
