"""Regressions for the loop bugs found while explaining the surface test's hang.

The hang itself (docs/stress.md, "The surface test's hang") was the test's
own guard being run by another thread's loop; its regression test is in
``test_bad_input.py``.  Looking for it turned up these, each fixed in
``threadlisten/base.py`` or ``threadlisten/event.py``:

* a ``loop()``/``dispatch()`` from another thread in the moment between
  ``start_thread()`` and its thread entering the loop took the loop; the
  acceptor thread then died on a logged RuntimeError;
* a BaseException from a callback (KeyboardInterrupt, SystemExit) lost the
  timers and callables the round had already taken;
* a descriptor closed under its events made the base's bookkeeping and the
  selector's disagree, so ``Event.delete()`` (documented as never raising) or
  the loop raised KeyError;
* a timeout beyond float range (``10**400``) raised OverflowError, which no
  docstring lists, instead of ValueError.

Every wait is bounded (``WAIT``); no sleep is used to synchronise.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from threadlisten import EV_PERSIST, EV_READ, EV_TIMEOUT, EV_WRITE, Event, EventBase
from threadlisten._runtime import Runtime

WAIT = 10.0


def noop(*args: Any) -> None:
    """A callback that does nothing."""


# -------------------------------------------- the loop belongs to start_thread's thread


class HeldThreads(Runtime):
    """Threads made by ``start_thread()`` wait for ``go`` before they run
    ``dispatch()``: the window between ``start_thread()`` and the loop, held open."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def held() -> None:
            self.go.wait(WAIT)
            target()

        return super().thread(held, name)


def test_loop_is_refused_while_the_start_thread_thread_is_starting() -> None:
    """start_thread(), then loop() from this thread before the new thread
    entered its loop: RuntimeError here (before the fix the call ran the loop,
    and the acceptor thread died on "already running" if it came in meanwhile);
    the acceptor thread then runs the loop as if nothing happened."""
    rt = HeldThreads()
    with EventBase(runtime=rt) as base:
        base.start_thread()
        with pytest.raises(RuntimeError, match="start_thread"):
            base.loop(nonblock=True)
        with pytest.raises(RuntimeError, match="start_thread"):
            base.loop(once=True)
        rt.go.set()
        ran = threading.Event()
        base.call_soon_threadsafe(ran.set)
        assert ran.wait(WAIT)


def test_loop_is_allowed_again_once_the_acceptor_thread_has_ended(base: EventBase) -> None:
    """The acceptor thread owns the loop until it ends (here by loopbreak()):
    after that any thread may run the loop again, as in libevent."""
    thread = base.start_thread()
    ran = threading.Event()
    base.call_soon_threadsafe(ran.set)
    assert ran.wait(WAIT)
    base.call_soon_threadsafe(base.loopbreak)
    thread.join(WAIT)
    assert not thread.is_alive()
    here: list[str] = []
    base.call_soon_threadsafe(here.append, "ran here")
    base.loop(nonblock=True)
    assert here == ["ran here"]


# ------------------------------------------- BaseException from a callback


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt/SystemExit (not caught by the loop)."""


def raise_interrupt(*args: Any) -> None:
    raise Interrupt


def test_a_base_exception_from_a_callable_loses_nothing(base: EventBase) -> None:
    """A callable raising a BaseException ends the loop with it; the callables
    and timers the round had taken after it run in the next loop, in order."""
    order: list[str] = []
    base.call_later(0.0, order.append, "timer")
    base.call_soon_threadsafe(raise_interrupt)
    base.call_soon_threadsafe(order.append, "first")
    base.call_soon_threadsafe(order.append, "second")
    with pytest.raises(Interrupt):
        base.loop(nonblock=True)
    # The timer was due first, so it ran before the raising callable.
    assert order == ["timer"]
    base.call_soon_threadsafe(order.append, "handed over later")
    base.loop(nonblock=True)
    assert order == ["timer", "first", "second", "handed over later"]


def test_a_base_exception_from_an_event_callback_keeps_later_timeouts(base: EventBase) -> None:
    """Two timeouts due in one round, the first callback raising a
    BaseException: the second event's timeout is not lost, nor a loopexit()."""
    hits: list[str] = []
    first = Event(base, None, EV_TIMEOUT, raise_interrupt)
    second = Event(base, None, EV_TIMEOUT, lambda *a: hits.append("second"))
    first.add(0.0)
    second.add(0.0)
    base.loopexit()
    with pytest.raises(Interrupt):
        base.loop(nonblock=True)
    assert hits == []
    assert second.pending(EV_TIMEOUT)
    # The kept loopexit() ends this loop once the second timeout has run.
    base.dispatch()
    assert hits == ["second"]


# --------------------------------------------- a descriptor closed under its events


def test_delete_after_the_descriptor_was_closed_under_two_events(base: EventBase) -> None:
    """READ and WRITE events on one descriptor, the descriptor closed, then one
    deleted: the selector refuses the change and forgets the descriptor; the
    delete must not raise (it raised KeyError), and the other event, which
    can no longer be watched, is no longer pending."""
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        reader = Event(base, fd, EV_READ, noop)
        writer = Event(base, fd, EV_WRITE, noop)
        reader.add()
        writer.add()
        a.close()
        reader.delete()
        assert not reader.pending()
        assert not writer.pending()
        writer.delete()


def test_add_refused_on_a_closed_descriptor_leaves_the_base_consistent(base: EventBase) -> None:
    """An event added on a descriptor that was closed under another pending
    event: OSError (documented), both non-pending, and a later delete()
    raises nothing (it raised KeyError)."""
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        reader = Event(base, fd, EV_READ | EV_PERSIST, noop)
        reader.add()
        a.close()
        writer = Event(base, fd, EV_WRITE, noop)
        with pytest.raises(OSError):
            writer.add()
        assert not writer.pending()
        assert not reader.pending()
        reader.delete()


def test_the_loop_survives_a_timeout_on_a_descriptor_closed_under_it(base: EventBase) -> None:
    """The same broken state met by the loop: the first event's timeout was
    due, the loop raised KeyError from unregister() and dropped the callables
    of its round.  Now the event is simply gone and the round runs."""
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        fired: list[int] = []
        reader = Event(base, fd, EV_READ, lambda f, what, arg: fired.append(what))
        reader.add(0.0)
        a.close()
        with pytest.raises(OSError):
            Event(base, fd, EV_WRITE, noop).add()
        ran: list[str] = []
        base.call_soon_threadsafe(ran.append, "handed over")
        base.loop(nonblock=True)
        assert ran == ["handed over"]
        assert fired == []


# ------------------------------------------------- timeouts beyond float range


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), 2**1024], ids=["1e400", "-1e400", "2**1024"]
)
def test_timeouts_beyond_float_range_are_value_errors(base: EventBase, value: int) -> None:
    """float(10**400) raises OverflowError, which escaped Event.add, call_later,
    loopexit and stop undocumented.  Now ValueError, raised before any state
    changes: a pending event keeps its timeout, the loop thread keeps running."""
    ev = Event(base, None, EV_TIMEOUT, noop)
    ev.add(WAIT)
    with pytest.raises(ValueError):
        ev.add(value)
    assert ev.pending(EV_TIMEOUT)
    with pytest.raises(ValueError):
        base.call_later(value, noop)
    with pytest.raises(ValueError):
        base.loopexit(value)
    base.start_thread()
    with pytest.raises(ValueError):
        base.stop(value)
    ran = threading.Event()
    base.call_soon_threadsafe(ran.set)
    assert ran.wait(WAIT)
    assert base.running
    ev.delete()
