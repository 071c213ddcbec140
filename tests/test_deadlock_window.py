"""Semantics 8: the regression test for libevent's deadlock window.

libevent deadlocks here (``../shared/reference/libevent.md`` §2.4, row 4 of
the table): the loop thread has dispatched the listener's read event (it set
``base->current_event`` and released the base lock) but has not yet executed
``LOCK(lev)`` in ``listener_read_cb``.  If another thread now calls
``evconnlistener_free()`` or ``evconnlistener_disable()`` on a THREADSAFE
listener, that thread takes ``lev->lock`` and calls ``event_del``, which waits
for the running callback to finish *while still holding* ``lev->lock``; the
loop thread waits for ``lev->lock`` to enter that callback.  Neither moves.
libevent's own tests never reach this window (they only cover row 3, a
callback that already holds the lock); a stress run of free-at-a-random-moment
deadlocked 7 of 7 times (§2.5).

threadlisten cannot deadlock there because ``free()`` and ``disable()`` never
wait for the loop thread: ``Event.delete()`` only guarantees that the callback
will not *start* again, and the guarantee "no callback is running" comes from
the listener's own lock, which the loop thread takes before it checks (under
that lock) whether it may accept.  So in the window, ``free()``/``disable()``
return at once, and the loop thread then takes the lock, sees the listener
freed or disabled, and delivers nothing.

The window is forced with the runtime seam: ``Runtime.point("listener.dispatched")``
is announced on the loop thread after dispatch and before the lock is taken;
``WindowRuntime`` holds the loop thread there (bounded) until the test's main
thread has finished its call.
"""

from __future__ import annotations

import collections
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _support import still_queued

from threadlisten import LEV_OPT, EventBase, Listener
from threadlisten._runtime import DelegatingLock, LockLike, Runtime

BOUND = 10.0
LOOPBACK = ("127.0.0.1", 0)


class _RecordingRLock(DelegatingLock):
    """A recursive lock that records, as a point, every acquisition."""

    def __init__(self, points: list[tuple[str, int]]) -> None:
        super().__init__(threading.RLock())
        self._points = points

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._points.append(("lock.acquired", threading.get_ident()))
        return got


class WindowRuntime(Runtime):
    """Holds the loop thread in the window between dispatch and the listener
    lock, the first time it gets there, until ``leave`` is set (at most
    ``BOUND`` seconds)."""

    def __init__(self) -> None:
        self.in_window = threading.Event()
        self.leave = threading.Event()
        self.left_window = threading.Event()
        self.timed_out = False
        self._armed = True
        self.points: list[tuple[str, int]] = []

    def point(self, kind: str, **info: Any) -> None:
        self.points.append((kind, threading.get_ident()))
        if kind == "listener.dispatched" and self._armed:
            self._armed = False
            self.in_window.set()
            if not self.leave.wait(BOUND):
                self.timed_out = True
            self.left_window.set()

    def rlock(self, name: str) -> LockLike:
        return _RecordingRLock(self.points)

    def loop_kinds_after_window(self) -> list[str]:
        """The points the loop thread announced after leaving the window."""
        kinds = [kind for kind, _ in self.points]
        start = kinds.index("listener.dispatched")
        loop_thread = self.points[start][1]
        return [kind for kind, t in self.points[start + 1 :] if t == loop_thread]


class Scenario:
    """A THREADSAFE listener on a ``WindowRuntime`` base run by a loop thread,
    with one queued client connection."""

    def __init__(self, close_on_free: bool = True) -> None:
        self.rt = WindowRuntime()
        self.base = EventBase(runtime=self.rt)
        self.delivered: list[socket.socket] = []
        self.got_one = threading.Event()
        flags = LEV_OPT.THREADSAFE | LEV_OPT.REUSEABLE
        if close_on_free:
            flags |= LEV_OPT.CLOSE_ON_FREE
        self.listener = Listener.bind(self.base, LOOPBACK, self.cb, flags=flags)
        self.lsock = self.listener.socket
        self.client = socket.create_connection(self.lsock.getsockname(), timeout=BOUND)
        self.base.start_thread()

    def cb(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        self.delivered.append(sock)
        self.got_one.set()

    def hold_in_window(self) -> None:
        assert self.rt.in_window.wait(BOUND), "the loop thread never reached the window"

    def release_and_settle(self) -> None:
        """Let the loop thread out of the window and wait until it has finished
        that read callback (a callable handed over afterwards has run)."""
        assert not self.rt.left_window.is_set()
        self.rt.leave.set()
        assert self.rt.left_window.wait(BOUND)
        settled = threading.Event()
        self.base.call_soon_threadsafe(settled.set)
        assert settled.wait(BOUND), "the loop thread is stuck"
        assert not self.rt.timed_out

    def close(self) -> None:
        self.rt.leave.set()
        self.base.stop(BOUND)
        if not self.listener.freed:
            self.listener.free()
        self.lsock.close()
        self.client.close()
        for sock in self.delivered:
            sock.close()
        self.base.close()


def run_in_window(scenario: Scenario, action: Callable[[], None]) -> None:
    """Hold the loop thread in the window and run *action* on this (the main)
    thread; it must complete while the loop thread is still held there."""
    scenario.hold_in_window()
    action()
    assert not scenario.rt.left_window.is_set(), "the call waited for the loop thread"
    assert not scenario.rt.timed_out


@pytest.mark.parametrize("close_on_free", [True, False], ids=["CLOSE_ON_FREE", "no-close"])
def test_free_in_the_window_does_not_deadlock(close_on_free: bool) -> None:
    """``free()`` from the main thread while the loop thread sits between
    dispatch and the listener lock: it returns without waiting for the loop
    thread, destroys the listener on the main thread (refcount 0; the socket
    closed exactly when CLOSE_ON_FREE); the loop thread then takes the lock,
    sees the listener freed and delivers nothing; the queued connection is
    never accepted by the listener."""
    s = Scenario(close_on_free)
    try:
        run_in_window(s, s.listener.free)
        assert s.listener.freed
        assert s.listener.refcount == 0
        destroyers = [t for kind, t in s.rt.points if kind == "listener.destroy"]
        assert destroyers == [threading.get_ident()]
        assert (s.lsock.fileno() == -1) is close_on_free
        s.release_and_settle()
        after = s.rt.loop_kinds_after_window()
        assert "lock.acquired" in after  # the loop thread did take the lock, then
        assert "listener.accepted" not in after
        assert "listener.callback_enter" not in after
        assert "listener.refcount" not in after  # the loop never took a reference
        assert s.delivered == []
        assert s.listener.refcount == 0
        if close_on_free:
            # Closed with the connection still queued: the client is reset.
            assert not still_queued(s.client)
        else:
            # The socket is the caller's again and the connection is still in
            # its backlog: the listener did not accept it.
            assert still_queued(s.client)
            s.lsock.settimeout(BOUND)
            conn, _ = s.lsock.accept()
            conn.close()
    finally:
        s.close()


def test_disable_in_the_window_does_not_deadlock() -> None:
    """``disable()`` from the main thread in the window returns without
    waiting for the loop thread; the loop thread then sees the listener
    disabled and delivers nothing; the connection stays queued and is
    delivered after ``enable()``."""
    s = Scenario()
    try:
        run_in_window(s, s.listener.disable)
        assert not s.listener.enabled
        assert s.listener.refcount == 1
        s.release_and_settle()
        after = s.rt.loop_kinds_after_window()
        assert "lock.acquired" in after  # the loop thread did take the lock, then
        assert "listener.accepted" not in after
        assert "listener.callback_enter" not in after
        assert s.delivered == []
        assert s.listener.refcount == 1
        assert still_queued(s.client)
        s.listener.enable()
        assert s.got_one.wait(BOUND)
        assert len(s.delivered) == 1
    finally:
        s.close()


def test_set_cb_none_in_the_window_does_not_deadlock() -> None:
    """``set_cb(None)`` from the main thread in the window returns without
    waiting; the loop thread delivers nothing (semantics 5: no callback, no
    accept); a new callback then receives the queued connection."""
    s = Scenario()
    try:
        run_in_window(s, lambda: s.listener.set_cb(None))
        s.release_and_settle()
        after = s.rt.loop_kinds_after_window()
        assert "lock.acquired" in after  # the loop thread did take the lock, then
        assert "listener.accepted" not in after
        assert s.delivered == []
        assert still_queued(s.client)
        s.listener.set_cb(s.cb)
        assert s.got_one.wait(BOUND)
        assert len(s.delivered) == 1
    finally:
        s.close()


class CountingRuntime(Runtime):
    """Counts how often the loop thread dispatched a listener's read event."""

    def __init__(self) -> None:
        self.dispatched = 0

    def point(self, kind: str, **info: Any) -> None:
        if kind == "listener.dispatched":
            self.dispatched += 1


def _free_at_a_random_moment(base: EventBase, rt: CountingRuntime, delay: float) -> str:
    """One iteration of the stress test.  Returns how the race went:
    ``"delivered"`` (the callback ran before free), ``"window"`` (the loop
    dispatched, then found the listener freed), ``"before"`` (freed before
    dispatch), or ``"hung: ..."``, or ``"late"`` (a callback after free)."""
    free_returned = threading.Event()
    late: list[int] = []
    delivered: list[int] = []

    def cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        sock.close()
        delivered.append(1)
        if free_returned.is_set():
            late.append(1)

    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
    listener = Listener.bind(base, LOOPBACK, cb, flags=flags)
    lsock = listener.socket
    client = socket.create_connection(lsock.getsockname(), timeout=BOUND)
    start = threading.Barrier(2, timeout=BOUND)
    dispatched_before = rt.dispatched

    def freer() -> None:
        start.wait()
        end = time.perf_counter() + delay
        while time.perf_counter() < end:  # a busy spin, as libevent's probe
            pass
        listener.free()
        free_returned.set()
        # Wake loop(once=True) in case free() won and nothing else would run.
        base.call_soon_threadsafe(lambda: None)

    def looper() -> None:
        start.wait()
        base.loop(once=True)

    loop_thread = threading.Thread(target=looper, name="loop")
    free_thread = threading.Thread(target=freer, name="freer")
    loop_thread.start()
    free_thread.start()
    free_thread.join(BOUND)
    loop_thread.join(BOUND)
    hung = [t.name for t in (free_thread, loop_thread) if t.is_alive()]
    if hung:
        base.loopbreak()  # let the test fail instead of hanging the session
        return f"hung: {hung}"
    base.loop(nonblock=True)  # run a leftover wake-up callable, if any
    client.close()
    assert listener.refcount == 0
    assert lsock.fileno() == -1
    if late:
        return "late"
    if delivered:
        return "delivered"
    return "window" if rt.dispatched > dispatched_before else "before"


def test_free_at_a_random_moment_stress() -> None:
    """The natural race, no injected pause (libevent.md §2.5 item 2, which
    deadlocked libevent in 7 of 7 runs): 300 times, a new THREADSAFE listener,
    one client, a loop thread running ``loop(once=True)`` and a thread that
    busy-spins for a random time and then calls ``free()``.  Every iteration
    ends (bounded joins), the listener is destroyed with its socket closed,
    and no callback starts after ``free()`` returned.

    libevent's probe spun 0-20 000 loop iterations in C.  In CPython a spin
    holds the GIL, so the two threads are started together (a barrier), the
    spin lasts 0-300 us, and the switch interval is cut to 10 us for the test
    so that the threads really interleave; the outcomes (delivered first,
    freed first, freed inside the window) are counted and printed.
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    outcomes: collections.Counter[str] = collections.Counter()
    rt = CountingRuntime()
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with EventBase(runtime=rt) as base:
            for iteration in range(300):
                outcome = _free_at_a_random_moment(base, rt, rng.uniform(0, 300e-6))
                assert outcome in ("delivered", "window", "before"), (
                    f"iteration {iteration} (seed {seed}): {outcome}"
                )
                outcomes[outcome] += 1
    finally:
        sys.setswitchinterval(old_interval)
    print(f"stress seed {seed}: {dict(outcomes)}")
