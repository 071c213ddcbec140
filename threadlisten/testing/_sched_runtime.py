"""``SchedRuntime``: the runtime seam, wired to the explorer's controller.

Everything the core asks its ``Runtime`` for becomes controlled:

* ``rlock``/``lock`` return ``SchedLock``s: acquiring and releasing are
  scheduling points, and a thread whose pending acquisition names a lock held
  by another thread is not runnable (so it never blocks for real, and a cycle
  of such waits is reported as a deadlock);
* ``point(kind, **info)`` parks the calling thread (every kind in
  ``threadlisten._runtime.POINT_KINDS``);
* ``thread`` returns ``SchedThread``s, managed threads of the run;
* ``selector``/``socketpair`` return the fakes of ``_fakes``, ``monotonic``
  a fake clock that only moves when a ``select()`` timeout is let expire or
  the scenario calls ``advance``;
* ``listener_type`` returns the ``listener_class`` given to the explorer, which
  is how tests inject seeded bugs without any switch in production code.

On top of the seam, a scenario gets helpers: ``spawn``, ``new_base``,
``listening_socket``, ``completion`` (a "callback running" flag other threads
can wait for), ``advance``, and read access to the schedule so far (``step``,
``trace``, ``points``).

Thread-safety: one instance per run, used by the run's threads, one at a
time: everything here (lock owners, completion holders, the fake clock, the
endpoint table, names) is guarded by the controller's *turn*, which exactly
one thread holds and which is handed on under the controller's mutex, so each
hand-off orders the old holder's writes before the new holder's reads, with
or without the GIL (see ``_controller``).  The schedule so far (``step``,
``trace``, ``points``) is read under the controller's mutex.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from threadlisten._runtime import LockLike, LockWrapper, Runtime
from threadlisten.base import EventBase
from threadlisten.event import Event
from threadlisten.listener import Listener
from threadlisten.testing._controller import (
    JOIN_SECONDS,
    Controller,
    ExplorerError,
    ManagedThread,
    Op,
    StepRecord,
    Wait,
)
from threadlisten.testing._fakes import (
    FAKE_PORT_BASE,
    Endpoint,
    FakeListenSocket,
    FakeSelector,
    FakeStreamSocket,
)

if TYPE_CHECKING:
    import selectors

__all__ = ["Completion", "SchedLock", "SchedRuntime", "SchedThread"]

_T = TypeVar("_T")

_MISSING = object()

#: Fake descriptors (wake-up pairs) are numbered from here: far above any
#: real descriptor of the process, so they never collide with the real
#: descriptor a ``FakeListenSocket`` wraps.
FAKE_FD_BASE: Final = 1 << 30


# ------------------------------------------------------------------ locks


class _AcquireOp(Op):
    __slots__ = ("blocking", "lock")

    def __init__(self, lock: SchedLock, blocking: bool) -> None:
        super().__init__("acquire")
        self.lock = lock
        self.blocking = blocking

    def waits_for(self, thread: ManagedThread) -> Wait | None:
        if not self.blocking:
            return None
        owner = self.lock.owner
        if owner is None or (owner is thread and self.lock.recursive):
            return None
        if owner is thread:
            return Wait(f"{self.lock.label}, which it holds (not recursive)", thread)
        return Wait(f"{self.lock.label}, held by {owner.name!r}", owner)

    def describe(self) -> str:
        verb = "acquire" if self.blocking else "try-acquire"
        return f"{verb} {self.lock.label}"


class _ReleaseOp(Op):
    __slots__ = ("lock",)

    def __init__(self, lock: SchedLock) -> None:
        super().__init__("release")
        self.lock = lock

    def describe(self) -> str:
        return f"release {self.lock.label}"


class SchedLock(LockWrapper):
    """A lock whose acquire and release are scheduling points.

    Recursive or not (``Runtime.rlock``/``lock``).  A blocking ``acquire()``
    is performed only once the lock is free (or, recursive, the caller's), so
    it never blocks for real; a non-blocking or timed one returns False if
    another thread holds it when it runs (for a timed one: its time passed).

    Attributes:
        name: the lock class (``"listener.lock"``, ``"base.lock"``).
        label: ``name#serial``, unique in the run, as shown in tables.
        recursive: whether the owner may take it again.
        owner: the managed thread holding it, or None.
        count: the recursion depth.

    Thread-safety: threads of the run only.  ``owner`` and ``count`` are
    guarded by the turn: written by the holder of the turn right after its
    ``park`` returns, read by whoever holds the turn next (``waits_for``).
    They are never touched by two threads at once, so no lock of its own.
    """

    __slots__ = ("_ctl", "count", "label", "name", "owner", "recursive")

    def __init__(self, ctl: Controller, name: str, serial: int, recursive: bool) -> None:
        """Make a free lock of class *name*; *serial* numbers it within the run."""
        self._ctl = ctl
        self.name = name
        self.label = f"{name}#{serial}"
        self.recursive = recursive
        self.owner: ManagedThread | None = None
        self.count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (a scheduling point; see the class docstring).

        Returns:
            True if taken, False if a non-blocking or timed attempt found it held.
        """
        ctl = self._ctl
        me = ctl.me()
        ctl.park(_AcquireOp(self, blocking and timeout < 0))
        owner = self.owner
        if owner is None:
            self.owner = me
            self.count = 1
            return True
        if owner is me and self.recursive:
            self.count += 1
            return True
        return False

    def release(self) -> None:
        """Release one level (a scheduling point, taken before the release).

        Raises:
            RuntimeError: the calling thread does not hold it (as ``RLock``).
        """
        ctl = self._ctl
        if self.owner is not ctl.me():
            raise RuntimeError(f"cannot release {self.label}: not held by this thread")
        ctl.park(_ReleaseOp(self))
        self.count -= 1
        if not self.count:
            self.owner = None

    def locked(self) -> bool:
        """Whether some thread holds it."""
        return self.owner is not None

    def __repr__(self) -> str:
        owner = self.owner.name if self.owner is not None else None
        return f"<SchedLock {self.label} owner={owner!r} count={self.count}>"


# ---------------------------------------------------------- completions


class _CompletionWaitOp(Op):
    __slots__ = ("completion",)

    def __init__(self, completion: Completion) -> None:
        super().__init__("wait")
        self.completion = completion

    def waits_for(self, thread: ManagedThread) -> Wait | None:
        holder = self.completion.holder
        if holder is None or holder is thread:
            return None
        return Wait(f"completion {self.completion.name!r}, running in {holder.name!r}", holder)

    def describe(self) -> str:
        return f"wait until {self.completion.name!r} is over"


class Completion:
    """Something a thread is doing that other threads may wait for the end of.

    Models waits that are not lock acquisitions, such as libevent's
    ``event_del`` waiting for the running read callback: the loop thread
    ``begin()``s and ``end()``s it around the callback, another thread
    ``wait()``s.  A waiter is runnable only when the completion is not
    running (or is its own), and its wait is an edge of the wait-for graph,
    so a cycle through it is reported as a deadlock.

    Attributes:
        name: shown in tables and deadlock reports.
        holder: the thread running it, or None.

    Thread-safety: threads of the run only; ``holder`` is guarded by the
    turn, like ``SchedLock.owner``.
    """

    __slots__ = ("_ctl", "holder", "name")

    def __init__(self, ctl: Controller, name: str) -> None:
        """Make a completion that is not running."""
        self._ctl = ctl
        self.name = name
        self.holder: ManagedThread | None = None

    def begin(self) -> None:
        """Mark it running in the calling thread (not a scheduling point)."""
        self.holder = self._ctl.me()

    def end(self) -> None:
        """Mark it over (not a scheduling point)."""
        self.holder = None

    def wait(self) -> None:
        """Wait until it is not running in another thread (a blocking scheduling point)."""
        self._ctl.park(_CompletionWaitOp(self))


# --------------------------------------------------------------- threads


class _JoinOp(Op):
    __slots__ = ("target",)

    def __init__(self, target: ManagedThread) -> None:
        super().__init__("join")
        self.target = target

    def waits_for(self, thread: ManagedThread) -> Wait | None:
        if self.target.finished:
            return None
        return Wait(f"thread {self.target.name!r} to finish", self.target)

    def describe(self) -> str:
        return f"join {self.target.name!r}"


class SchedThread(threading.Thread):
    """A managed thread of a run (what ``SchedRuntime.thread`` and ``spawn`` make).

    ``start()`` adds it to the run, parked: it runs when the chooser picks it.
    ``join()`` from a thread of the run is a scheduling point, runnable once
    the thread finished; from any other thread it is ``Thread.join``.
    """

    def __init__(self, ctl: Controller, target: Callable[[], object], name: str) -> None:
        """Make an unstarted daemon thread that runs *target*."""
        super().__init__(name=name, daemon=True)
        self._ctl = ctl
        self._fn = target
        self._managed: ManagedThread | None = None

    def start(self) -> None:
        """Add the thread to the run and start its OS thread (parked until chosen)."""
        self._managed = self._ctl.register(self.name, self)
        super().start()

    def run(self) -> None:
        """The OS thread's body (see ``Controller.thread_main``)."""
        assert self._managed is not None
        self._ctl.thread_main(self._managed, self._fn)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to finish (a scheduling point inside the run).

        Inside the run *timeout* is ignored: the join is runnable once the
        thread finished, and a thread that never finishes shows up as a
        deadlock (with the join in the wait-for graph) instead of a timeout.

        Raises:
            ExplorerError: inside the run, the OS thread did not end within
                ``JOIN_SECONDS`` after its target finished.
        """
        ctl = self._ctl
        if self._managed is None or not ctl.manages_caller():
            super().join(timeout)
            return
        ctl.park(_JoinOp(self._managed))
        super().join(JOIN_SECONDS)
        if self.is_alive():
            raise ExplorerError(f"thread {self.name!r} finished its target but did not end")


# --------------------------------------------------------------- points


class _PointOp(Op):
    __slots__ = ("info", "rt")

    def __init__(self, rt: SchedRuntime, kind: str, info: dict[str, Any]) -> None:
        super().__init__(kind)
        self.rt = rt
        self.info = info

    def describe(self) -> str:
        parts = [self.kind]
        for key, value in self.info.items():
            if key in ("listener", "base", "event"):
                parts.append(self.rt.name_of(value))
            else:
                parts.append(f"{key}={value}")
        return " ".join(parts)


# --------------------------------------------------------------- runtime


class SchedRuntime(Runtime):
    """The explorer's runtime: controlled locks, points, threads, selector, clock.

    Made by ``Explorer`` for each run and passed to the scenario; see the
    module docstring.  Build event bases with ``new_base()`` (or
    ``EventBase(runtime=rt.base_runtime)``) and listening sockets with
    ``listening_socket()``.

    Args:
        controller: the run's controller.
        listener_class: what ``listener_type`` returns for ``Listener``
            (a subclass, e.g. with a seeded bug); None: ``Listener`` itself.
        lock_checking: build bases on a ``threadlisten.debug.DebugRuntime``
            wrapping this runtime, so the lock checker's checks run in every
            explored schedule.

    Thread-safety: threads of its run only (one at a time).
    """

    def __init__(
        self,
        controller: Controller,
        *,
        listener_class: type[Listener] | None = None,
        lock_checking: bool = False,
    ) -> None:
        super().__init__()
        self._controller = controller
        self._listener_class = listener_class
        self._clock = 0.0
        self._endpoints: dict[int, Endpoint] = {}
        self._next_fd = FAKE_FD_BASE
        self._conn_ids = 0
        self._serials: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._keep: list[object] = []  # named objects stay alive: ids stay unique
        self._counters: dict[str, int] = {}
        self._sockets: list[FakeListenSocket] = []
        self._selectors: list[FakeSelector] = []
        self.base_runtime: Runtime = self
        if lock_checking:
            from threadlisten.debug import DebugRuntime

            # No wait limit: a wait the explorer schedules never times out.
            self.base_runtime = DebugRuntime(self, lock_wait_timeout=None)

    # -------------------------------------------------------- the seam

    def rlock(self, name: str) -> LockLike:
        """Return a recursive ``SchedLock`` of lock class *name*."""
        return SchedLock(self._controller, name, self._serial(name), recursive=True)

    def lock(self, name: str) -> LockLike:
        """Return a non-recursive ``SchedLock`` of lock class *name*."""
        return SchedLock(self._controller, name, self._serial(name), recursive=False)

    def point(self, kind: str, **info: Any) -> None:
        """Park the calling thread at scheduling point *kind* until the chooser picks it."""
        self._controller.park(_PointOp(self, kind, info))

    def monotonic(self) -> float:
        """Return the fake clock, in seconds (starts at 0)."""
        return self._clock

    def selector(self) -> selectors.BaseSelector:
        """Return a new ``FakeSelector``."""
        selector = FakeSelector(self)
        self._selectors.append(selector)
        return selector

    def socketpair(self) -> tuple[socket.socket, socket.socket]:
        """Return a connected pair of ``FakeStreamSocket``s (typed as sockets:
        the base only calls ``setblocking``, ``fileno``, ``send``, ``recv``, ``close``)."""
        a = FakeStreamSocket(self, self._new_fd())
        b = FakeStreamSocket(self, self._new_fd())
        a.peer, b.peer = b, a
        return cast(socket.socket, a), cast(socket.socket, b)

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Return a new, unstarted ``SchedThread`` running *target*."""
        return SchedThread(self._controller, target, name)

    def listener_type(self, cls: type[_T]) -> type[_T]:
        """Return the explorer's ``listener_class`` for ``Listener``, else *cls*.

        Raises:
            TypeError: ``listener_class`` is not a subclass of *cls*.
        """
        replacement = self._listener_class
        if replacement is None or not issubclass(cls, Listener):
            return cls
        if not issubclass(replacement, cls):
            raise TypeError(f"{replacement.__name__} is not a subclass of {cls.__name__}")
        return cast(type[_T], replacement)

    # ------------------------------------------------ scenario helpers

    def spawn(self, target: Callable[[], object], name: str) -> SchedThread:
        """Start a managed thread running *target* and return it (join it before the end).

        Thread-safety: threads of the run.
        """
        thread = SchedThread(self._controller, target, name)
        thread.start()
        return thread

    def new_base(self) -> EventBase:
        """Return a new ``EventBase`` on this runtime (or its lock-checking wrapper)."""
        return EventBase(runtime=self.base_runtime)

    def listening_socket(self, family: socket.AddressFamily = socket.AF_INET) -> FakeListenSocket:
        """Return a new ``FakeListenSocket`` (closed at the end of the run if still open).

        Args:
            family: ``AF_INET`` or ``AF_INET6``.
        """
        sock = FakeListenSocket(self, family, FAKE_PORT_BASE + len(self._sockets))
        self._sockets.append(sock)
        return sock

    def completion(self, name: str) -> Completion:
        """Return a new ``Completion`` called *name*."""
        return Completion(self._controller, name)

    def advance(self, seconds: float) -> None:
        """Move the fake clock forward by *seconds* (>= 0).  Not a scheduling point.

        Raises:
            ValueError: *seconds* is negative.
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._clock += seconds

    @property
    def step(self) -> int:
        """The number of steps taken so far: a logical clock for histories."""
        return self._controller.steps_taken()

    @property
    def trace(self) -> list[StepRecord]:
        """The steps taken so far (a copy)."""
        return self._controller.trace_copy()

    def points(self, kind: str, **match: object) -> list[StepRecord]:
        """The steps so far whose operation is of *kind* (e.g. ``"listener.destroy"``).

        Keyword arguments select scheduling points by their details, compared
        by identity: ``rt.points("listener.callback_enter", listener=lev)``.
        """
        out = []
        for record in self._controller.trace_copy():
            if record.kind != kind:
                continue
            op = record.op
            if match:
                info = op.info if isinstance(op, _PointOp) else {}
                if any(info.get(key, _MISSING) is not value for key, value in match.items()):
                    continue
            out.append(record)
        return out

    def selectors(self) -> list[FakeSelector]:
        """Every ``FakeSelector`` made in this run (one per event base), in order."""
        return list(self._selectors)

    def current_thread_name(self) -> str:
        """The name of the managed thread calling."""
        return self._controller.me().name

    def name_of(self, obj: object) -> str:
        """A short stable name for *obj* in this run's tables.

        A listener is ``L<n>`` where ``listener.lock#<n>`` is its lock; a
        base ``B<n>``; a listener's read event ``L<n>.event``; a fake
        listening socket ``S<n>``.
        """
        key = id(obj)
        name = self._names.get(key)
        if name is not None:
            return name
        if isinstance(obj, Listener):
            lock = getattr(obj._lock, "_inner", obj._lock)  # a DebugLock wraps a SchedLock
            if isinstance(lock, SchedLock):
                name = "L" + lock.label.rpartition("#")[2]
            else:
                name = self._numbered("L-")
        elif isinstance(obj, EventBase):
            name = self._numbered("B")
        elif isinstance(obj, Event):
            owner = getattr(obj.callback, "__self__", None)
            name = f"{self.name_of(owner)}.event" if owner is not None else self._numbered("E")
        elif isinstance(obj, FakeListenSocket):
            name = self._numbered("S")
        else:
            name = self._numbered(type(obj).__name__)
        self._names[key] = name
        self._keep.append(obj)
        return name

    # ------------------------------------------------------- internals

    def _numbered(self, prefix: str) -> str:
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}{n}"

    def _serial(self, name: str) -> int:
        n = self._serials.get(name, 0) + 1
        self._serials[name] = n
        return n

    def _new_fd(self) -> int:
        fd = self._next_fd
        self._next_fd += 1
        return fd

    def _next_conn_id(self) -> int:
        self._conn_ids += 1
        return self._conn_ids

    def _add_endpoint(self, fd: int, endpoint: Endpoint) -> None:
        self._endpoints[fd] = endpoint

    def _remove_endpoint(self, fd: int, endpoint: Endpoint) -> None:
        if self._endpoints.get(fd) is endpoint:
            del self._endpoints[fd]

    def _has_endpoint(self, fd: int) -> bool:
        return fd in self._endpoints

    def _endpoint(self, fd: int) -> Endpoint | None:
        return self._endpoints.get(fd)

    def _advance_to(self, when: float) -> None:
        self._clock = max(self._clock, when)

    def close(self) -> None:
        """Close every fake listening socket still open (their real descriptors).

        Called by the explorer after the run; any thread.
        """
        for sock in self._sockets:
            if sock.fileno() >= 0:
                socket.socket.close(sock)
        self._sockets.clear()
