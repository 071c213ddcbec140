"""Checked locks: the lock objects of lock-debugging mode (libevent's ``debug_lock_*``).

This module holds the part of ``threadlisten.debug`` that is about single
locks and the set of locks each thread holds:

* ``LockDebugError``, the error every check raises, and the process-wide list
  of every error raised (``errors()``, ``clear_errors()``), so an error raised
  on the loop thread and then merely logged by the core is still on record;
* ``TrackedLock``, what the checker knows about any lock: class name, owner
  thread, recursion count;
* ``DebugLock``, a checked lock wrapping a real one, as libevent's
  ``struct debug_lock`` wraps the lock its callbacks allocated;
* ``PseudoLock``, a lock that is never really taken: "this thread is running
  the loop of that base", which waiters for the loop thread order against;
* the calling thread's held set (``held_locks()``, ``held_snapshot()``) and
  the helpers that compare two snapshots and undo leaked acquisitions.

The lock-order graph lives in ``threadlisten._lockdep``; a ``DebugLock`` only
calls its ``OrderChecker`` before it blocks.  Checks, with libevent's names:

============================  =====================================================
``debug_lock_unlock``         release by a thread that does not own the lock, or
                              of a lock nobody holds (the count would go negative)
``debug_lock_lock``           a non-recursive lock re-acquired by its owner
                              (raises at once instead of hanging)
``EVLOCK_ASSERT_LOCKED``      ``DebugLock.assert_held()``
============================  =====================================================

Thread-safety: every function and method here may be called from any thread.
A ``DebugLock``'s owner and count are written only by the thread that holds
the real lock, so a reader on another thread sees either the old or the new
owner, never its own identity by mistake; that holds without the GIL too,
because the free-threaded build reads and writes an object's slots
atomically.  A ``PseudoLock`` has no real lock behind it and can change
hands between two threads (``hold(handover=True)``), so its owner is written
under a mutex of its own.  The held set is per thread (``threading.local``)
and the error list has its own mutex.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Iterable, Sequence
from typing import Final, NoReturn, Protocol

from threadlisten._runtime import LockLike

__all__ = [
    "DebugLock",
    "HeldSnapshot",
    "LockDebugError",
    "OrderChecker",
    "PseudoLock",
    "TrackedLock",
    "capture_stack",
    "clear_errors",
    "describe_held",
    "diff_held",
    "errors",
    "fail",
    "held_locks",
    "held_snapshot",
    "hide_from_stacks",
    "release_extra",
]

#: How many frames a captured stack keeps (the innermost ones).
STACK_LIMIT: Final = 14


class LockDebugError(Exception):
    """A lock-debugging check failed (libevent aborts on ``EVUTIL_ASSERT`` instead).

    Attributes:
        check: a short name of the failed check, e.g. ``"non-owner-release"``,
            ``"lock-order"``; the table in ``threadlisten.debug`` lists them.
        thread_name: the name of the thread the check failed in.
        stack: where it failed, formatted (checker frames left out).

    It derives from ``Exception`` on purpose: raised inside a callback on the
    loop thread it is caught and logged on the ``threadlisten`` logger like
    any callback error, so the loop survives; every instance is also kept in
    ``threadlisten.debug.errors()``.
    """

    def __init__(self, message: str, *, check: str) -> None:
        """Make the error.

        Args:
            message: what went wrong, for a human.
            check: the short name of the check (see the class docstring).
        """
        super().__init__(message)
        self.check = check
        self.thread_name = threading.current_thread().name
        self.stack = "".join(capture_stack().format())


_errors: list[LockDebugError] = []
_errors_mutex = threading.Lock()


def fail(error: LockDebugError) -> NoReturn:
    """Record *error* in ``errors()`` and raise it.

    Args:
        error: the failed check.

    Raises:
        LockDebugError: always, *error* itself.

    Thread-safety: any thread.
    """
    with _errors_mutex:
        _errors.append(error)
    raise error


def errors() -> list[LockDebugError]:
    """Return (a copy of) every ``LockDebugError`` raised since ``clear_errors()``.

    An error raised on the loop thread inside a callback is caught and logged
    by the core, and a callback may even catch it itself: this list is where
    it can never be lost.  Tests assert it is empty.

    Returns:
        The errors, oldest first (``LockOrderError`` included).

    Thread-safety: any thread.  libevent aborts at the first failed check
    instead of keeping a list.
    """
    with _errors_mutex:
        return list(_errors)


def clear_errors() -> None:
    """Forget the recorded errors (for tests).  Any thread."""
    with _errors_mutex:
        _errors.clear()


# ----------------------------------------------------------------- stacks

_hidden_files: set[str] = {__file__}
_STDLIB_THREADING: Final = threading.__file__


def hide_from_stacks(filename: str) -> None:
    """Leave frames of *filename* out of captured stacks (the checker's own modules).

    Thread-safety: call at import time.
    """
    _hidden_files.add(filename)


def capture_stack() -> traceback.StackSummary:
    """Return the calling thread's stack, innermost ``STACK_LIMIT`` frames, checker frames
    and ``threading`` bootstrap frames left out.

    Used for the first-seen stack of a lock-order edge and for each error.
    Costs tens of microseconds, so it is only called on rare events.
    """
    frames = [
        f
        for f in traceback.extract_stack()
        if f.filename not in _hidden_files and f.filename != _STDLIB_THREADING
    ]
    return traceback.StackSummary.from_list(frames[-STACK_LIMIT:])


# ------------------------------------------------------------ per-thread state


class _ThreadState(threading.local):
    """The locks this thread holds, in the order it first took them."""

    def __init__(self) -> None:
        self.held: list[TrackedLock] = []


_tls = _ThreadState()

#: A thread's held set at one moment: each held lock with its recursion count.
HeldSnapshot = tuple[tuple["TrackedLock", int], ...]


def held_locks() -> tuple[TrackedLock, ...]:
    """Return the locks (pseudo-locks included) the calling thread holds, oldest first."""
    return tuple(_tls.held)


def held_snapshot() -> HeldSnapshot:
    """Return the calling thread's held set with recursion counts.

    Two snapshots taken on entry to and on return from a call are equal
    exactly when the call left the thread's locks as it found them (libevent
    bug #341 is a call that returned with one acquisition more).
    """
    return tuple([(lock, lock._count) for lock in _tls.held])


def diff_held(
    before: HeldSnapshot, after: HeldSnapshot
) -> tuple[list[tuple[TrackedLock, int]], list[tuple[TrackedLock, int]]]:
    """Compare two snapshots of one thread's held set.

    Returns:
        ``(extra, missing)``: the locks held more times in *after* than in
        *before* (with how many more), and those held fewer times (how many fewer).
    """
    old = dict(before)
    new = dict(after)
    extra = [(lock, n - old.get(lock, 0)) for lock, n in after if n > old.get(lock, 0)]
    missing = [(lock, n - new.get(lock, 0)) for lock, n in before if n > new.get(lock, 0)]
    return extra, missing


def describe_held(items: Iterable[tuple[TrackedLock, int]]) -> str:
    """Format ``(lock, count)`` pairs as ``"listener.lock#3 (listener fd=7) x2, ..."``."""
    parts = [lock.describe() + (f" x{n}" if n != 1 else "") for lock, n in items]
    return ", ".join(parts) if parts else "nothing"


def release_extra(extra: Sequence[tuple[TrackedLock, int]]) -> None:
    """Release the acquisitions listed in *extra* (from ``diff_held``), newest lock first.

    The checker calls it after reporting a call or a callback that returned
    holding more than it was entered with, so that the rest of the process
    (other threads waiting for that lock) can go on instead of hanging.
    Pseudo-locks are left alone.  Calling thread: the one that holds them.
    """
    for lock, n in reversed(extra):
        if isinstance(lock, DebugLock):
            for _ in range(n):
                if lock.held_by_me():
                    lock.release()


# ------------------------------------------------------------------- locks


class OrderChecker(Protocol):
    """What a ``DebugLock`` asks before it blocks: the lock-order graph."""

    def check_acquire(self, lock: TrackedLock, held: Sequence[TrackedLock]) -> None:
        """Record "*lock* taken while *held* are held"; raise if that closes a cycle."""


_get_ident = threading.get_ident
_serials = iter(range(1, 1 << 62))
_serial_mutex = threading.Lock()


def _next_serial() -> int:
    with _serial_mutex:
        return next(_serials)


class TrackedLock:
    """What the checker knows of a lock: its class, owner and recursion count.

    Attributes:
        name: the lock class (``"listener.lock"``, ``"base.lock"``,
            ``"base.dispatch"``): lock order is checked per class.
        serial: a number unique in the process, never reused (unlike ``id``),
            which names the instance in same-class ordering and in reports.
        label: what the lock protects, for messages (e.g. ``"listener fd=7"``).
    """

    __slots__ = ("_count", "_owner", "label", "name", "serial")

    def __init__(self, name: str) -> None:
        """Make the bookkeeping for a lock of class *name*, not held by anyone."""
        self.name = name
        self.serial = _next_serial()
        self.label = ""
        self._owner: int | None = None
        self._count = 0

    @property
    def owner(self) -> int | None:
        """The ``threading.get_ident()`` of the holder, or None.  Racy outside the holder."""
        return self._owner

    @property
    def count(self) -> int:
        """The recursion count: 0 when free.  Exact only for the holder."""
        return self._count

    def held_by_me(self) -> bool:
        """Return True if the calling thread holds it (``evthread_is_debug_lock_held_``)."""
        return self._owner == threading.get_ident()

    def assert_held(self) -> None:
        """Raise ``LockDebugError`` unless the calling thread holds it.

        libevent: ``EVLOCK_ASSERT_LOCKED``.
        """
        if self._owner != threading.get_ident():
            fail(LockDebugError(f"{self.describe()} is not held by this thread", check="not-held"))

    def describe(self) -> str:
        """Return ``"name#serial"`` plus the label, for messages and reports."""
        base = f"{self.name}#{self.serial}"
        return f"{base} ({self.label})" if self.label else base

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} owner={self._owner} count={self._count}>"


class DebugLock(TrackedLock):
    """A checked lock (libevent's ``struct debug_lock``), recursive or not.

    It wraps a real, non-recursive lock (*inner*) and counts recursion itself,
    so it never relies on ``RLock``'s private methods, and checks:

    * acquire: a non-recursive lock re-acquired by its owner raises
      ``LockDebugError`` (``check="self-deadlock"``) instead of hanging;
      before blocking, the lock-order graph is asked (``LockOrderError``);
    * release: by a thread that does not hold it (``"non-owner-release"``),
      or when nobody holds it so the count would go negative
      (``"negative-count"``).  A plain ``threading.Lock`` allows both silently.

    A non-blocking or timed acquire never blocks for ever, so, as in lockdep,
    it adds no lock-order edge (the lock still joins the held set).

    Thread-safety: any thread; it is a lock.  libevent: ``debug_lock_lock``,
    ``debug_lock_unlock``, ``evthread_debug_lock_mark_locked/unlocked``.
    """

    __slots__ = ("_inner", "_order", "_wait_limit", "recursive")

    def __init__(
        self,
        name: str,
        inner: LockLike,
        *,
        recursive: bool,
        order: OrderChecker | None,
        wait_limit: float | None = None,
    ) -> None:
        """Wrap *inner*.

        Args:
            name: the lock class.
            inner: the real lock; must be non-recursive (recursion is counted
                here, so the same thread never takes *inner* twice).
            recursive: whether the owner may take it again (``rlock``) or not (``lock``).
            order: the lock-order graph to consult before blocking, or None.
            wait_limit: seconds an untimed blocking ``acquire()`` may wait
                before it raises ``LockDebugError`` (``"lock-wait-timeout"``)
                naming the holder and showing the holder's current stack,
                instead of hanging; None waits for ever.
        """
        super().__init__(name)
        self._inner = inner
        self._order = order
        self._wait_limit = wait_limit
        self.recursive = recursive

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, as ``threading.RLock.acquire``/``Lock.acquire``.

        Returns:
            True if taken; False if *blocking* is false or *timeout* ran out.

        Raises:
            LockDebugError: a non-recursive lock re-acquired by its owner
                with a blocking acquire (a timed or non-blocking one returns False).
            LockOrderError: taking it now would close a cycle in the lock order.
            LockDebugError: an untimed wait exceeded the lock's *wait_limit*
                (``"lock-wait-timeout"``); the lock is not taken.
        """
        me = _get_ident()
        if self._owner == me:
            if self.recursive:
                self._count += 1
                return True
            if blocking and timeout < 0:
                fail(
                    LockDebugError(
                        f"{self.describe()} is not recursive and this thread already holds "
                        "it: acquiring it again would hang for ever",
                        check="self-deadlock",
                    )
                )
            return False
        held = _tls.held
        if blocking and timeout < 0:
            if held and self._order is not None:
                self._order.check_acquire(self, held)
            limit = self._wait_limit
            if limit is not None and not self._inner.acquire(True, limit):
                self._wait_timed_out(limit)
            elif limit is None:
                self._inner.acquire()
        elif not self._inner.acquire(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        held.append(self)
        return True

    def _wait_timed_out(self, limit: float) -> NoReturn:
        owner = self._owner
        frame = sys._current_frames().get(owner) if owner is not None else None
        where = (
            "".join(traceback.format_stack(frame, limit=STACK_LIMIT))
            if frame is not None
            else "  (not running)\n"
        )
        fail(
            LockDebugError(
                f"waited {limit} s for {self.describe()}, held {self._count} time(s) by "
                f"{_thread_name(owner)}, which is now at:\n{where}"
                "a hang: a lock left held (libevent #341) or a lock-order deadlock",
                check="lock-wait-timeout",
            )
        )

    def release(self) -> None:
        """Release one level of the lock.

        Raises:
            LockDebugError: the calling thread does not hold it; nothing is released.
        """
        if self._owner != _get_ident():
            owner = self._owner
            if owner is None:
                fail(
                    LockDebugError(
                        f"release of {self.describe()}, which nobody holds: its count "
                        "would go negative",
                        check="negative-count",
                    )
                )
            fail(
                LockDebugError(
                    f"release of {self.describe()} by a thread that does not own it "
                    f"(owner: {_thread_name(owner)})",
                    check="non-owner-release",
                )
            )
        count = self._count - 1
        if count:
            self._count = count
            return
        self._count = 0
        self._owner = None
        _tls.held.remove(self)
        self._inner.release()

    #: ``with lock:`` is ``acquire()`` (an alias: one Python call less per use).
    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        """``release()``."""
        self.release()


class PseudoLock(TrackedLock):
    """A lock that is never really taken, for waits that are not lock acquisitions.

    ``"base.dispatch"``: the loop thread holds it from ``base.loop_enter`` to
    ``base.loop_exit``; a thread about to wait for the loop thread to end
    (``EventBase.stop()``) ``wait()``s on it, which the lock-order graph sees
    as acquiring and at once releasing it.  So "thread X holds the listener
    lock and waits for the loop" plus "the loop thread takes the listener
    lock" is a cycle (libevent #1224), found even when the two never overlap
    in time.  The kernel's lockdep models completions the same way.

    Thread-safety: any thread; ``hold``/``unhold`` by the loop thread.  The
    owner and count are written under an internal mutex, because with
    ``hold(handover=True)`` two threads may write them at nearly the same
    moment (see ``hold``); other threads read them racily, for messages.
    """

    __slots__ = ("_mutex", "_order")

    def __init__(self, name: str, order: OrderChecker | None) -> None:
        """Make a pseudo-lock of class *name* checked against *order*."""
        super().__init__(name)
        self._order = order
        self._mutex = threading.Lock()

    def hold(self, *, handover: bool = False) -> None:
        """Mark the calling thread as holding it (the loop starts).

        Args:
            handover: the caller is known (by another means) to be the
                rightful holder now, so a thread still marked as holding it
                is only late to ``unhold``: it is taken over instead of
                reported.  Its ``unhold`` then leaves the new holder alone.

        Raises:
            LockDebugError: someone holds it already (and not *handover*).
            LockOrderError: holding it now, under this thread's locks, closes a cycle.
        """
        with self._mutex:
            owner = self._owner
        if owner is not None and not handover:
            fail(
                LockDebugError(
                    f"{self.describe()} is already held by {_thread_name(owner)}",
                    check="pseudo-lock-held",
                )
            )
        held = _tls.held
        if held and self._order is not None:
            self._order.check_acquire(self, held)
        with self._mutex:
            self._owner = threading.get_ident()
            self._count = 1
        held.append(self)

    def unhold(self) -> None:
        """Mark it released (the loop ends).

        Raises:
            LockDebugError: the calling thread does not hold it.
        """
        held = _tls.held
        if self not in held:
            fail(
                LockDebugError(
                    f"{self.describe()} released by a thread that does not hold it",
                    check="non-owner-release",
                )
            )
        with self._mutex:
            # Check-then-act on the owner, under the mutex: if a new holder
            # took it over (``hold(handover=True)``) while this thread was on
            # its way here, the pseudo-lock is the new holder's now, and
            # clearing the owner would drop its hold.
            if self._owner == threading.get_ident():
                self._owner = None
                self._count = 0
        held.remove(self)

    def wait(self) -> None:
        """Record a wait for its holder: an acquire plus release, for lock order only.

        Raises:
            LockDebugError: the calling thread holds it (it would wait for itself).
            LockOrderError: waiting under this thread's locks closes a cycle.
        """
        if self._owner == threading.get_ident():
            fail(
                LockDebugError(
                    f"this thread holds {self.describe()} and waits for its holder",
                    check="self-deadlock",
                )
            )
        held = _tls.held
        if held and self._order is not None:
            self._order.check_acquire(self, held)


def _thread_name(ident: int | None) -> str:
    if ident is None:
        return "nobody"
    for thread in threading.enumerate():
        if thread.ident == ident:
            return f"thread {thread.name!r}"
    return f"thread id {ident} (ended)"
