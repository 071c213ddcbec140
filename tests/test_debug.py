"""Tests of the lock checker, ``threadlisten.debug``.

Every check of the table in ``threadlisten.debug`` is triggered here and its
error asserted, and each seeded bug of issue 3 is caught:

* release by a non-owner (``test_seeded_release_by_non_owner``);
* a missing unlock on an error path, libevent bug #341
  (``test_seeded_missing_unlock_on_accept_error_path_341``,
  ``test_seeded_missing_unlock_on_public_error_path``);
* an inverted lock order between two listeners
  (``test_seeded_inverted_order_between_two_listeners``) and between a
  listener and its base (``test_seeded_inverted_order_listener_and_base``);
* waiting for the loop thread while holding a listener lock, libevent #1224
  (``test_seeded_wait_for_loop_while_holding_listener_lock``).

Each test enables lock debugging through the ``checked`` fixture, which
restores the previous default runtime and empties the lock-order graph and
the error list afterwards.  Waits are bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from threadlisten import LEV_OPT, EventBase, Listener
from threadlisten import debug as tld
from threadlisten._runtime import Runtime, get_default_runtime
from threadlisten.debug import DebugLock, DebugRuntime, LockDebugError, LockOrderError

WAIT = 5.0  # seconds: every wait in these tests is bounded by this
LOOPBACK = ("127.0.0.1", 0)
SAFE = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
_T = TypeVar("_T")

AcceptCb = Callable[[Listener, socket.socket, Any, Any], None]


@pytest.fixture
def checked() -> Iterator[DebugRuntime]:
    """Lock debugging on for one test, with an empty graph and error list.

    Restores the default runtime found before (if lock debugging was already
    on for the whole session, it stays on) and empties graph and errors again.
    """
    was_on = tld.lock_debugging_enabled()
    runtime = tld.enable_lock_debugging()
    tld.reset_lockdep()
    tld.clear_errors()
    try:
        yield runtime
    finally:
        tld.reset_lockdep()
        tld.clear_errors()
        if not was_on:
            tld.disable_lock_debugging()


def dlock(lock: object) -> DebugLock:
    """*lock* as the ``DebugLock`` it is under lock debugging."""
    assert isinstance(lock, DebugLock)
    return lock


def checks() -> list[str]:
    """The ``check`` names of the errors recorded so far, in order."""
    return [err.check for err in tld.errors()]


def close_sock(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
    """An accept callback that just closes the connection."""
    sock.close()


def connect(lev: Listener) -> socket.socket:
    """Open a client connection to *lev* on loopback."""
    return socket.create_connection(lev.socket.getsockname(), timeout=WAIT)


def started_base(runtime: Runtime | None = None) -> EventBase:
    """A base whose loop runs in its acceptor thread."""
    base = EventBase(runtime=runtime)
    base.start_thread()
    return base


def finish(base: EventBase, *listeners: Listener) -> None:
    """Stop and close *base* and free whichever of *listeners* are still alive."""
    base.stop(timeout=WAIT)
    for lev in listeners:
        if not lev.freed:
            lev.free()
    base.close()


# ---------------------------------------------------------------- the locks


def test_checked_locks_come_from_the_runtime(checked: DebugRuntime) -> None:
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    plain = Listener.bind(base, LOOPBACK, close_sock, flags=LEV_OPT.CLOSE_ON_FREE)
    try:
        assert base.runtime is checked
        assert isinstance(base._lock, DebugLock) and not base._lock.recursive
        assert isinstance(lev._lock, DebugLock) and lev._lock.recursive
        assert lev._lock.name == "listener.lock" and base._lock.name == "base.lock"
        assert isinstance(lev, Listener) and type(lev).__name__ == "CheckedListener"
        assert type(lev) is type(plain) is checked.listener_type(Listener)
        assert "enabled" in repr(lev)  # repr reads raw state, never raises
    finally:
        lev.free()
        plain.free()
        base.close()


def test_recursive_lock_counts_its_owner(checked: DebugRuntime) -> None:
    lock = checked.rlock("test.r")
    assert isinstance(lock, DebugLock)
    with lock, lock:
        assert lock.count == 2 and lock.held_by_me()
        assert lock in tld.held_locks()
    assert lock.count == 0 and lock.owner is None
    assert tld.held_locks() == ()


def test_release_by_non_owner_raises(checked: DebugRuntime) -> None:
    lock = checked.lock("test.plain")  # a plain Lock would allow this silently
    taken, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            taken.set()
            assert done.wait(WAIT)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(WAIT)
        with pytest.raises(LockDebugError, match="does not own") as info:
            lock.release()
        assert info.value.check == "non-owner-release"
    finally:
        done.set()
        thread.join(WAIT)
    assert checks() == ["non-owner-release"]


def test_release_of_unheld_lock_would_go_negative(checked: DebugRuntime) -> None:
    lock = checked.rlock("test.r")
    with pytest.raises(LockDebugError, match="negative") as info:
        lock.release()
    assert info.value.check == "negative-count"
    with lock:
        pass
    with pytest.raises(LockDebugError):
        lock.release()


def test_reacquiring_a_non_recursive_lock_raises_instead_of_hanging(
    checked: DebugRuntime,
) -> None:
    base = EventBase()
    try:
        with base._lock:
            with pytest.raises(LockDebugError, match="hang") as info:
                base._lock.acquire()
            assert info.value.check == "self-deadlock"
            assert base._lock.acquire(blocking=False) is False  # as a real Lock would
            assert base._lock.acquire(timeout=0.01) is False
        assert dlock(base._lock).count == 0
    finally:
        base.close()


# ----------------------------------------------------------------- lockdep


def test_order_cycle_through_three_classes(checked: DebugRuntime) -> None:
    a, b, c = checked.lock("a"), checked.lock("b"), checked.lock("c")
    with a, b:
        pass
    with b, c:
        pass
    with c, pytest.raises(LockOrderError) as info:
        a.acquire()
    err = info.value
    assert (err.new_edge.src, err.new_edge.dst) == ("c", "a")
    assert [(e.src, e.dst) for e in err.cycle] == [("a", "b"), ("b", "c")]
    assert all("test_order_cycle_through_three_classes" in e.stack for e in err.cycle)
    assert dlock(a).count == 0  # it raised before taking the lock
    assert checks() == ["lock-order"]
    # The graph stays acyclic: the inverted edge was not recorded.
    assert ("c", "a") not in [(e.src, e.dst) for e in tld.lockdep_report().edges]


def test_trylock_adds_no_order(checked: DebugRuntime) -> None:
    a, b = checked.lock("a"), checked.lock("b")
    with a:
        assert b.acquire(blocking=False)
        b.release()
    assert tld.lockdep_report().edges == ()
    with b, a:  # the only real order: no cycle
        pass


def test_same_class_nesting_is_ordered_per_instance(checked: DebugRuntime) -> None:
    x, y, z = (checked.rlock("listener.lock") for _ in range(3))
    with x, y:  # x before y, twice: consistent, silent
        pass
    with x, y:
        pass
    with y, z:
        pass
    report = tld.lockdep_report()
    assert [e.kind for e in report.edges] == ["instance", "instance"]
    with z, pytest.raises(LockOrderError) as info:
        x.acquire()  # z -> x closes x -> y -> z
    assert info.value.new_edge.kind == "instance"
    assert len(info.value.cycle) == 2


def test_report_and_dot(checked: DebugRuntime, tmp_path: Path) -> None:
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)  # enable(): listener -> base
    lev.free()
    base.close()
    report = tld.lockdep_report()
    assert report.classes == ("base.lock", "listener.lock")
    (edge,) = report.edges
    assert (edge.src, edge.dst, edge.kind) == ("listener.lock", "base.lock", "class")
    assert edge.thread == threading.current_thread().name
    assert "test_report_and_dot" in edge.stack
    path = tmp_path / "lockdep.dot"
    report.write_dot(path)
    dot = path.read_text()
    assert dot.startswith("digraph lockdep {")
    assert '"listener.lock" -> "base.lock" [style=solid' in dot
    assert "listener.lock -> base.lock" in str(report)
    tld.reset_lockdep()
    assert tld.lockdep_report().edges == ()


# ------------------------------------------------------------- seeded bugs


def test_seeded_release_by_non_owner(checked: DebugRuntime) -> None:
    """Another thread releases a listener lock its callback holds on the loop thread."""
    inside, proceed = threading.Event(), threading.Event()

    def cb(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        inside.set()
        assert proceed.wait(WAIT)

    base = started_base()
    lev = Listener.bind(base, LOOPBACK, cb, flags=SAFE)
    client = connect(lev)
    try:
        assert inside.wait(WAIT)
        with pytest.raises(LockDebugError, match="does not own") as info:
            lev._lock.release()
        assert info.value.check == "non-owner-release"
        assert dlock(lev._lock).count == 1  # nothing was released
    finally:
        proceed.set()
        client.close()
        finish(base, lev)
    assert checks() == ["non-owner-release"]


class _ErrorPath341(Listener):
    """Seeded libevent #341: the read callback's accept-error path forgets to unlock."""

    def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
        self._point("listener.dispatched", listener=self)
        self._lock.acquire()
        if not self._can_accept():
            self._lock.release()
            return
        self._incref()
        self._accept_batch()
        if not self._enabled:  # a fatal accept() error disabled the listener
            self._refcount -= 1
            return  # BUG: returns with the listener lock still held
        self._decref_and_unlock()


class _LeakOnErrorPath(Listener):
    """Seeded: ``set_error_cb``'s argument-error path forgets to unlock."""

    def set_error_cb(self, errorcb: Any) -> None:
        self._lock.acquire()
        if errorcb is not None and not callable(errorcb):
            raise TypeError("errorcb must be callable")  # BUG: the lock stays held
        self._check_alive()
        self._errorcb = errorcb
        self._lock.release()


class _SeededRuntime(Runtime):
    """A test runtime whose listeners are of a seeded-bug class; DebugRuntime wraps it."""

    def __init__(self, buggy: type[Listener]) -> None:
        self._buggy = buggy

    def listener_type(self, cls: type[_T]) -> type[_T]:
        assert issubclass(self._buggy, cls)
        return cast(type[_T], self._buggy)


@pytest.mark.allow_error_logs
@pytest.mark.skipif(sys.platform != "linux", reason="shutdown() of a listening socket is Linux's")
def test_seeded_missing_unlock_on_accept_error_path_341(checked: DebugRuntime) -> None:
    """libevent #341: freed with its lock still held; the destroy check catches it."""
    runtime = DebugRuntime(_SeededRuntime(_ErrorPath341))
    failed, handled = threading.Event(), threading.Event()

    def on_error(lev: Listener, err: OSError, arg: Any) -> None:
        failed.set()

    base = started_base(runtime)
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    assert isinstance(lev, _ErrorPath341)
    lev.set_error_cb(on_error)
    # A listening socket shut down is readable and its accept() fails with
    # EINVAL: the FATAL accept-error path, for real.
    lev.socket.shutdown(socket.SHUT_RDWR)
    try:
        assert failed.wait(WAIT)
        # Without the checker the next free() from another thread hangs for
        # ever; on the loop thread (the lock is recursive) it "works".
        base.call_soon_threadsafe(lev.free)
        base.call_soon_threadsafe(handled.set)
        assert handled.wait(WAIT)
        assert checks() == ["destroyed-held"]
        assert "#341" in str(tld.errors()[0])
    finally:
        base.stop(timeout=WAIT)  # the loop thread ends still holding it: reported too
        base.close()
    assert checks() == ["destroyed-held", "unbalanced-call"]
    assert lev.freed and lev.refcount == 0  # the checker released the leaked lock


@pytest.mark.allow_error_logs
def test_seeded_missing_unlock_on_public_error_path(checked: DebugRuntime) -> None:
    """A public call returns holding the lock; the balance check reports and undoes it."""
    base = started_base(DebugRuntime(_SeededRuntime(_LeakOnErrorPath)))
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    try:
        with pytest.raises(LockDebugError, match=r"set_error_cb\(\).*still holding") as info:
            lev.set_error_cb(42)  # type: ignore[arg-type]
        assert info.value.check == "unbalanced-call"
        assert isinstance(info.value.__context__, TypeError)  # the original error is kept
        assert not dlock(lev._lock).held_by_me()  # released by the checker
        # So another thread can still free it (without the checker: a hang).
        freer = threading.Thread(target=lev.free)
        freer.start()
        freer.join(WAIT)
        assert not freer.is_alive() and lev.freed
    finally:
        finish(base, lev)
    assert checks() == ["unbalanced-call"]


#: Whether the lock checker models a listener's gate (``listener.gate``, the
#: fairness gate of its public calls): ordered as the listener lock it guards,
#: and a public call's try-acquire of that lock recorded as the blocking
#: acquisition it is.  Without that model, lockdep sees a nested call (A's
#: callback calling B) only when B's lock happens to be taken, and then
#: reports a false cycle ``listener.lock -> listener.gate -> listener.lock``.
#: The model lives in ``threadlisten.debug`` (not this suite's to change); until
#: it is in, the two tests below must fail (strict xfail).
GATE_MODELLED = hasattr(tld, "GATE_CLASSES")
needs_gate_model = pytest.mark.xfail(
    not GATE_MODELLED,
    strict=True,
    reason="threadlisten.debug does not model listener.gate yet (see GATE_MODELLED)",
)


@needs_gate_model
@pytest.mark.allow_error_logs
def test_seeded_inverted_order_between_two_listeners(checked: DebugRuntime) -> None:
    """A's callback disables B, later B's callback disables A: reported, from the callback.

    Neither lock is contended when the other callback calls in: the public
    calls take the lock with a try-acquire, and the order is recorded all the same.
    """
    a_done, b_done = threading.Event(), threading.Event()
    caught: list[LockOrderError] = []
    lev_a: Listener | None = None
    lev_b: Listener | None = None

    def cb_a(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        assert lev_b is not None
        lev_b.disable()  # takes B's lock under A's: A -> B
        a_done.set()

    def cb_b(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        try:
            assert lev_a is not None
            lev_a.disable()  # B -> A: the inversion
        except LockOrderError as err:
            caught.append(err)
            raise  # the core logs it on the "threadlisten" logger
        finally:
            b_done.set()

    base = started_base()
    lev_a = Listener.bind(base, LOOPBACK, cb_a, flags=SAFE)
    lev_b = Listener.bind(base, LOOPBACK, cb_b, flags=SAFE)
    clients = [connect(lev_a)]
    try:
        assert a_done.wait(WAIT)
        lev_b.enable()
        clients.append(connect(lev_b))
        assert b_done.wait(WAIT)
    finally:
        for client in clients:
            client.close()
        finish(base, lev_a, lev_b)
    (err,) = caught
    assert checks() == ["lock-order"]
    assert err.new_edge.kind == "instance"
    assert err.new_edge.src.startswith("listener.lock#") and "cb_b" in err.new_edge.stack
    (first,) = err.cycle
    assert "cb_a" in first.stack and first.thread == "threadlisten-acceptor"
    assert f"fd={lev_a._fd}" in first.src and f"fd={lev_b._fd}" in first.dst


class _WaitWatchingLock:
    """A real lock that sets *waiting* when a blocking acquire finds it taken."""

    def __init__(self, real: Any, waiting: threading.Event) -> None:
        self._real = real
        self._waiting = waiting

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._real.acquire(False):
            return True
        if not blocking:
            return False
        self._waiting.set()
        return bool(self._real.acquire(True, timeout))

    def release(self) -> None:
        self._real.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _WaitWatchingRuntime(Runtime):
    """Real locks; ``listener.lock``s report when a thread has to wait for one."""

    def __init__(self, waiting: threading.Event) -> None:
        self.waiting = waiting

    def lock(self, name: str) -> Any:
        real = super().lock(name)
        return _WaitWatchingLock(real, self.waiting) if name == "listener.lock" else real


@needs_gate_model
def test_nested_call_waiting_at_the_gate_keeps_the_order(checked: DebugRuntime) -> None:
    """A's callback calls B while B's lock is taken: it waits for B's lock
    holding B's gate, in the consistent order A -> B.  No lock-order error
    (the gate is ordered as B's lock), and the order A -> B is recorded."""
    stage, done = threading.Event(), threading.Event()
    outcome: list[object] = []
    rt = DebugRuntime(_WaitWatchingRuntime(stage))
    base = started_base(rt)
    lev_b = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)

    def cb_a(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        try:
            lev_b.set_error_cb(None)  # B's lock is taken: waits at B's gate
            outcome.append("ok")
        except Exception as err:  # a LockOrderError: recorded, not logged
            outcome.append(err)
        finally:
            stage.set()
            done.set()

    lev_a = Listener.bind(base, LOOPBACK, cb_a, flags=SAFE)
    address = lev_a.socket.getsockname()  # not under B's lock: that would be B -> A
    lock_b = dlock(lev_b._lock)
    lock_b.acquire()  # this thread holds B's lock (and nothing else)
    stage.clear()
    client = socket.create_connection(address, timeout=WAIT)
    try:
        assert stage.wait(WAIT)  # cb_a waits for B's lock (or has failed)
        lock_b.release()
        assert done.wait(WAIT)
    finally:
        if lock_b.held_by_me():
            lock_b.release()
        client.close()
        finish(base, lev_a, lev_b)
    assert outcome == ["ok"]
    assert tld.errors() == []
    edges = tld.lockdep_report().edges
    assert not [e for e in edges if e.dst == "listener.gate"]
    assert [
        e
        for e in edges
        if e.kind == "instance" and f"fd={lev_a._fd}" in e.src and f"fd={lev_b._fd}" in e.dst
    ]


def test_seeded_inverted_order_listener_and_base(checked: DebugRuntime) -> None:
    """``base.lock`` then a listener lock, against the documented listener -> base order."""
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)  # enable(): listener -> base
    try:
        with base._lock, pytest.raises(LockOrderError) as info:
            lev._lock.acquire()
        err = info.value
        assert (err.new_edge.src, err.new_edge.dst) == ("base.lock", "listener.lock")
        assert [(e.src, e.dst) for e in err.cycle] == [("listener.lock", "base.lock")]
        assert "enable" in err.cycle[0].stack
        assert "lock order inversion" in str(err) and "first seen" in str(err)
        assert not dlock(lev._lock).held_by_me()
    finally:
        lev.free()
        base.close()
    assert checks() == ["lock-order"]


def test_seeded_wait_for_loop_while_holding_listener_lock(checked: DebugRuntime) -> None:
    """libevent #1224's shape, from one sequential run: no deadlock needed."""
    accepted = threading.Event()

    def cb(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        accepted.set()

    base = started_base()
    lev = Listener.bind(base, LOOPBACK, cb, flags=SAFE)
    try:
        with connect(lev):
            assert accepted.wait(WAIT)  # the loop took the lock under base.dispatch
        with lev._lock, pytest.raises(LockOrderError) as info:
            base.stop(timeout=WAIT)
        err = info.value
        assert (err.new_edge.src, err.new_edge.dst) == ("listener.lock", "base.dispatch")
        assert [(e.src, e.dst) for e in err.cycle] == [("base.dispatch", "listener.lock")]
        assert "_on_readable" in err.cycle[0].stack
        assert "test_seeded_wait_for_loop" in err.new_edge.stack
    finally:
        finish(base, lev)  # stop() again, without the lock: fine
    assert checks() == ["lock-order"]


# --------------------------------------------------------- the other checks


def test_destroyed_while_lock_held(checked: DebugRuntime) -> None:
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    sock = lev.socket
    try:
        with lev._lock, pytest.raises(LockDebugError, match="destroyed") as info:
            lev.free()
        assert info.value.check == "destroyed-held"
        assert sock.fileno() == -1 and lev.refcount == 0  # destroy itself completed
    finally:
        base.close()


@pytest.mark.allow_error_logs
def test_callback_returning_with_a_lock_leaked(checked: DebugRuntime) -> None:
    """The callback boundary check, raised on the loop thread and logged by the core."""
    returned = threading.Event()

    def cb(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        lev._lock.acquire()  # one more than it was entered with
        returned.set()

    base = started_base()
    lev = Listener.bind(base, LOOPBACK, cb, flags=SAFE)
    try:
        with connect(lev):
            assert returned.wait(WAIT)
        base.stop(timeout=WAIT)  # a barrier: the loop thread is done
        assert checks() == ["unbalanced-callback"]
        assert "accept callback" in str(tld.errors()[0])
        assert tld.errors()[0].thread_name == "threadlisten-acceptor"
        lev.free()  # from another thread: no hang, the leak was undone
    finally:
        finish(base, lev)


def test_errors_are_recorded_even_when_a_callback_swallows_them(
    checked: DebugRuntime,
) -> None:
    done = threading.Event()
    other: list[Listener] = []

    def cb(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        try:
            _ = other[0]._cb  # another listener's state, its lock not held
        except LockDebugError:
            pass  # swallowed: errors() still has it
        finally:
            done.set()

    base = started_base()
    lev = Listener.bind(base, LOOPBACK, cb, flags=SAFE)
    other.append(Listener.bind(base, LOOPBACK, close_sock, flags=SAFE))
    try:
        with connect(lev):
            assert done.wait(WAIT)
    finally:
        finish(base, lev, other[0])
    assert checks() == ["unguarded-access"]


def test_guarded_state_needs_the_lock(checked: DebugRuntime) -> None:
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    plain = Listener.bind(base, LOOPBACK, close_sock, flags=LEV_OPT.CLOSE_ON_FREE)
    try:
        for name in tld.GUARDED_ATTRIBUTES:
            with pytest.raises(LockDebugError, match=f"read of {name} ") as info:
                getattr(lev, name)
            assert info.value.check == "unguarded-access"
        with pytest.raises(LockDebugError, match="write of _enabled"):
            lev._enabled = False
        with lev._lock:
            assert lev._enabled is True and lev._refcount == 1
            lev._arg = "set under the lock"
        assert plain._cb is close_sock  # no lock, nothing to check
        assert len(checks()) == len(tld.GUARDED_ATTRIBUTES) + 1
    finally:
        lev.free()
        plain.free()
        base.close()


def test_point_checks_lock_held(checked: DebugRuntime) -> None:
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    try:
        for kind in ("listener.accepted", "listener.refcount", "listener.destroy"):
            with pytest.raises(LockDebugError, match="not held") as info:
                checked.point(kind, listener=lev)
            assert info.value.check == "not-held"
        with pytest.raises(LockDebugError, match="not held"):
            checked.point("listener.callback_enter", listener=lev, which="accept")
        with pytest.raises(LockDebugError, match="not held"):
            checked.point("base.wakeup", base=base)
        with pytest.raises(LockDebugError, match="not held"):
            checked.point("event.register", event=lev._event)
    finally:
        lev.free()
        base.close()


def test_loop_thread_only_code_elsewhere(checked: DebugRuntime) -> None:
    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    try:
        with pytest.raises(LockDebugError, match="loop-thread-only") as info:
            lev._on_readable(lev.socket, 0, None)
        assert info.value.check == "wrong-thread"
        with pytest.raises(LockDebugError, match="loop-thread-only"):
            lev._backoff_expired()
    finally:
        lev.free()
        base.close()
    assert checks() == ["wrong-thread", "wrong-thread"]


def test_non_threadsafe_listener_from_a_foreign_thread(checked: DebugRuntime) -> None:
    in_cb = threading.Event()

    def cb(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        lev.set_cb(cb, "from the loop thread: allowed")
        in_cb.set()

    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, cb, flags=LEV_OPT.CLOSE_ON_FREE)
    lev.disable()  # the base is not running: any thread
    lev.enable()
    # The address is read now, before the loop runs: once it does, even
    # ``lev.socket`` from this thread is the misuse this test expects to see
    # reported below.  (Read after start_thread(), it raced the loop thread
    # setting ``running``: with the GIL the new thread rarely got that far
    # first, on the free-threaded build it often did, and the read failed.)
    address = lev.socket.getsockname()
    base.start_thread()
    try:
        with socket.create_connection(address, timeout=WAIT):
            assert in_cb.wait(WAIT)
        with pytest.raises(LockDebugError, match="not THREADSAFE") as info:
            lev.disable()
        assert info.value.check == "wrong-thread"
        with pytest.raises(LockDebugError, match="not THREADSAFE"):
            _ = lev.enabled
        base.stop(timeout=WAIT)
        assert lev.enabled  # stopped: the calling thread is the only user again
    finally:
        finish(base, lev)
    assert checks() == ["wrong-thread", "wrong-thread"]


@pytest.mark.allow_error_logs
def test_loop_returning_with_a_lock_leaked(checked: DebugRuntime) -> None:
    leaked = checked.lock("test.leaked")
    ran = threading.Event()
    base = started_base()
    base.call_soon_threadsafe(leaked.acquire)  # never released by the loop thread
    base.call_soon_threadsafe(ran.set)
    assert ran.wait(WAIT)
    base.stop(timeout=WAIT)
    base.close()
    assert checks() == ["unbalanced-call"]
    assert "EventBase.loop()" in str(tld.errors()[0])
    assert dlock(leaked).count == 0  # undone by the checker


def test_waiting_for_your_own_loop(checked: DebugRuntime) -> None:
    base = EventBase()
    try:
        pseudo = checked.dispatch_lock(base)
        pseudo.hold()
        try:
            with pytest.raises(LockDebugError, match="waits for its holder"):
                checked.point("base.wait_loop", base=base)
        finally:
            pseudo.unhold()
    finally:
        base.close()


class _HoldOpenLock:
    """``base.lock``, whose release by the first loop thread, once the base has
    marked that loop over, waits (bounded) until a second loop has entered."""

    def __init__(self, real: Any, rt: _LoopHandoverRuntime) -> None:
        self._real = real
        self._rt = rt

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._real.acquire(blocking, timeout))

    def release(self) -> None:
        self._real.release()
        rt = self._rt
        base = rt.base
        if (
            rt.first == threading.get_ident()
            and base is not None
            and not base.running
            and not rt.paused.is_set()
        ):
            rt.paused.set()  # the loop is over for the base, not yet for the checker
            rt.second_entered.wait(WAIT)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _LoopHandoverRuntime(Runtime):
    """Holds the first loop open between the end of its loop (for the base)
    and its ``base.loop_exit`` point until a second loop has entered."""

    def __init__(self) -> None:
        self.base: EventBase | None = None
        self.first: int | None = None
        self.paused = threading.Event()
        self.second_entered = threading.Event()

    def lock(self, name: str) -> Any:
        real = super().lock(name)
        return _HoldOpenLock(real, self) if name == "base.lock" else real

    def point(self, kind: str, **info: Any) -> None:
        # Called by the DebugRuntime after its own check has passed.
        if kind != "base.loop_enter":
            return
        if self.first is None:
            self.first = threading.get_ident()
        else:
            self.second_entered.set()


def test_loop_started_in_the_previous_loops_exit_window_is_clean(checked: DebugRuntime) -> None:
    """The base marks a loop over before its thread reaches ``base.loop_exit``;
    another thread's loop may enter in between.  The checker's ``base.dispatch``
    pseudo-lock is handed over, not reported as held twice (a false
    "pseudo-lock-held", which the free-threaded build hit)."""
    inner = _LoopHandoverRuntime()
    runtime = DebugRuntime(inner)
    base = EventBase(runtime=runtime)
    inner.base = base
    outcome: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            base.loop(nonblock=True)
            outcome[name] = "ok"
        except Exception as err:
            outcome[name] = err

    first = threading.Thread(target=run, args=("first",))
    first.start()
    try:
        assert inner.paused.wait(WAIT)  # first: in the window
        second = threading.Thread(target=run, args=("second",))
        second.start()
        second.join(WAIT)
        assert not second.is_alive()
        first.join(WAIT)
        assert not first.is_alive()
    finally:
        inner.second_entered.set()  # never leave the first thread waiting
        first.join(WAIT)
        base.close()
    assert outcome == {"first": "ok", "second": "ok"}
    assert tld.errors() == []
    assert runtime.dispatch_lock(base).owner is None


def test_unhold_by_a_thread_that_never_held_the_pseudo_lock(checked: DebugRuntime) -> None:
    base = EventBase()
    try:
        pseudo = checked.dispatch_lock(base)
        with pytest.raises(LockDebugError, match="does not hold it") as info:
            pseudo.unhold()
        assert info.value.check == "non-owner-release"
        pseudo.hold()
        with pytest.raises(LockDebugError, match="already held") as held:
            pseudo.hold()
        assert held.value.check == "pseudo-lock-held"
        pseudo.unhold()
        assert pseudo.owner is None
    finally:
        base.close()
    assert checks() == ["non-owner-release", "pseudo-lock-held"]


# ------------------------------------------------------------ clean runs


def test_normal_lifecycle_is_clean(checked: DebugRuntime) -> None:
    """Bind, connect, callbacks calling disable/enable/set_cb/free, free from other threads."""
    events = {name: threading.Event() for name in ("toggled", "swapped", "self_freed", "err")}

    def swapped(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        assert arg == "swapped"
        lev.free()  # from its own callback: destroyed when the batch ends
        events["self_freed"].set()

    def first(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        sock.close()
        if not events["toggled"].is_set():
            lev.disable()
            lev.enable()
            assert lev.enabled and lev.refcount == 2
            events["toggled"].set()
        else:
            lev.set_cb(swapped, "swapped")
            events["swapped"].set()

    def on_error(lev: Listener, err: OSError, arg: Any) -> None:
        events["err"].set()

    with EventBase() as base:
        base.start_thread()
        lev = Listener.bind(base, LOOPBACK, first, flags=SAFE)
        lev.set_error_cb(on_error)
        other = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
        third = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
        for name in ("toggled", "swapped", "self_freed"):
            with connect(lev):
                assert events[name].wait(WAIT), name
        with connect(other), connect(third):
            freer = threading.Thread(target=other.free)  # while the loop runs
            freer.start()
            freer.join(WAIT)
            assert not freer.is_alive()
            third.set_cb(None)
            third.free()
        assert lev.freed and other.freed and third.freed
    assert not events["err"].is_set()
    assert tld.errors() == []
    edges = {(e.src, e.dst) for e in tld.lockdep_report().edges}
    always = {
        ("listener.lock", "base.lock"),
        ("base.dispatch", "base.lock"),
        ("base.dispatch", "listener.lock"),
    }
    # The fairness gate: the loop thread passes it before each batch (an edge
    # only if lockdep orders the gate as a class of its own), and a public
    # call that found the lock taken waits for it holding the gate (an edge
    # only if some call had to wait: timing).  Never listener.lock -> gate.
    gate = {("base.dispatch", "listener.gate"), ("listener.gate", "listener.lock")}
    assert always <= edges <= always | gate


def test_plain_listener_on_the_loop_thread_is_clean(checked: DebugRuntime) -> None:
    count = 0

    def cb(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        nonlocal count
        sock.close()
        count += 1
        if count == 3:
            lev.free()
            base.loopbreak()

    base = EventBase()
    lev = Listener.bind(base, LOOPBACK, cb, flags=LEV_OPT.CLOSE_ON_FREE)
    clients = [connect(lev) for _ in range(3)]
    timer = base.call_later(WAIT, base.loopbreak)  # bounds the loop
    try:
        base.loop()
    finally:
        timer.cancel()
        for client in clients:
            client.close()
        base.close()
    assert count == 3 and lev.freed
    assert tld.errors() == []


# ------------------------------------------------------- switching it on/off


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != tld.ENV_VAR}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_enable_is_refused_once_a_base_exists() -> None:
    result = _run_python(
        """
        import gc
        import threadlisten
        from threadlisten import debug
        base = threadlisten.EventBase()
        try:
            debug.enable_lock_debugging()
        except debug.LockDebugError as err:
            assert err.check == "enable-too-late", err.check
            print("refused")
        base.close()
        rt = debug.enable_lock_debugging()   # a closed base cannot run: allowed
        assert threadlisten.EventBase().runtime is rt
        assert debug.errors() == []          # a usage error is not a finding
        print("enabled")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused", "enabled"]


def test_environment_variable_is_honoured_on_import() -> None:
    code = """
        from threadlisten import _runtime
        import threadlisten.debug as debug
        print(type(_runtime.get_default_runtime()).__name__)
        """
    on = _run_python(code, THREADLISTEN_LOCK_DEBUG="1")
    off = _run_python(code, THREADLISTEN_LOCK_DEBUG="0")
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert on.stdout.strip() == "DebugRuntime"
    assert off.stdout.strip() == "Runtime"


def test_disable_restores_the_previous_runtime() -> None:
    before = get_default_runtime()
    was_on = tld.lock_debugging_enabled()
    runtime = tld.enable_lock_debugging()
    assert get_default_runtime() is runtime
    assert tld.enable_lock_debugging() is runtime  # idempotent
    if not was_on:
        assert runtime.inner is before
        tld.disable_lock_debugging()
        assert get_default_runtime() is before
        tld.disable_lock_debugging()  # already off: nothing happens
    assert get_default_runtime() is before


def test_checked_type_is_cached_and_composes(checked: DebugRuntime) -> None:
    t1 = checked.listener_type(Listener)
    assert checked.listener_type(Listener) is t1
    assert tld.checked_listener_type(t1) is t1
    seeded = DebugRuntime(_SeededRuntime(_LeakOnErrorPath)).listener_type(Listener)
    assert issubclass(seeded, _LeakOnErrorPath) and seeded is not t1
    assert tld.checked_listener_type(int) is int


@pytest.mark.allow_error_logs
@pytest.mark.skipif(sys.platform != "linux", reason="shutdown() of a listening socket is Linux's")
def test_seeded_341_free_from_another_thread_reports_instead_of_hanging(
    checked: DebugRuntime,
) -> None:
    """#341's symptom: free() from another thread hangs; the checker names the holder."""
    runtime = DebugRuntime(_SeededRuntime(_ErrorPath341), lock_wait_timeout=0.5)
    failed, handled = threading.Event(), threading.Event()

    def on_error(lev: Listener, err: OSError, arg: Any) -> None:
        failed.set()

    base = started_base(runtime)
    lev = Listener.bind(base, LOOPBACK, close_sock, flags=SAFE)
    lev.set_error_cb(on_error)
    lev.socket.shutdown(socket.SHUT_RDWR)
    try:
        assert failed.wait(WAIT)
        with pytest.raises(LockDebugError, match="threadlisten-acceptor") as info:
            lev.free()  # without the checker: blocked for ever
        assert info.value.check == "lock-wait-timeout"
        assert "_run_once" in str(info.value)  # the holder is idle in its loop
        base.call_soon_threadsafe(lev.free)
        base.call_soon_threadsafe(handled.set)
        assert handled.wait(WAIT)
    finally:
        base.stop(timeout=WAIT)
        base.close()
    assert checks() == ["lock-wait-timeout", "destroyed-held", "unbalanced-call"]
