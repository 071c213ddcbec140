"""The lifecycle tracer: who held which listener's lock, when the refcount moved,
which callback ran, in which thread.

Switched on, it records one ``TraceEvent`` (time, thread, listener, event) for
every step of a listener's life that matters to its thread-safety:

* the listener lock: ``lock.acquire`` and ``lock.release`` (with the
  recursion depth after the step), and ``lock.wait`` when a thread finds the
  lock taken and is about to block on it;
* the refcount: ``refcount`` (the value after each step up or down);
* the callbacks: ``callback_enter`` and ``callback_exit`` (``detail`` says
  ``accept`` or ``error``), ``accepted`` for each accepted connection, and
  ``dispatched`` when the loop has dispatched the read event but not yet taken
  the lock (libevent's deadlock window);
* the control calls: ``enable``, ``disable``, ``set_cb``, ``set_error_cb`` and
  ``free`` when they are called (before they take the lock), and ``return``
  (``detail`` names the call) when they return;
* the end: ``destroy`` (destroy starts, the lock held) and ``destroyed`` (the
  lock released for the last time); and ``create``, ``loop_enter``,
  ``loop_exit``, ``backoff_expired``, and free-text ``mark`` annotations.

How.  It is built on the runtime seam (``threadlisten._runtime``), which is
the only way the core talks to it: a ``TraceRuntime`` is a ``Runtime`` whose
``rlock()`` returns a ``TracingRLock``, whose ``point()`` turns the core's
scheduling points into events, and whose ``listener_type()`` returns a
subclass of ``Listener`` that records the control calls.  Give it to a base
(``EventBase(runtime=TraceRuntime())``), or make it the default for a while
with ``tracing()``.  The base's own lock is not traced: it is held only for
bookkeeping, never across a callback or a wait, so it never shapes the story.

When off.  Off means the default ``Runtime``: plain ``threading.RLock`` locks,
the ``Listener`` class itself, and a ``point()`` that returns at once.
Importing this module changes none of that, so the tracer itself costs
nothing when off.  What is left on the accept path is the core's own no-op
``point()`` calls (the seam, there with or without this module): measured on
CPython 3.11 on a 2-core VM, about 80 ns per call and about three calls per
accepted connection (plus three per batch), i.e. ~0.25 us of the ~12 us a
connection takes in a burst that only accepts and closes: 2 %, less than the
spread between rounds of that benchmark.  Switched on, recording costs about
0.9 us per event (plus the label lookup at each scheduling point); the same
burst runs about 1.5 times slower.  Figures and method: docs/lifecycle.md,
"What tracing costs".

Thread-safety: a ``Tracer`` may be used from any thread; events are numbered
(``seq``) in the order they were recorded, and a lock release is recorded
before the lock is actually released, so in that order a release always
comes before the next thread's acquire.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

from threadlisten._runtime import (
    DelegatingRuntime,
    LockLike,
    LockWrapper,
    Runtime,
    set_default_runtime,
)
from threadlisten.listener import AcceptCallback, ErrorCallback, Listener

__all__ = [
    "EVENT_KINDS",
    "TraceEvent",
    "TraceRuntime",
    "Tracer",
    "TracingRLock",
    "tracing",
]

_T = TypeVar("_T")

#: Every ``TraceEvent.kind``, with what ``value`` and ``detail`` hold.
EVENT_KINDS: dict[str, str] = {
    "create": "a listener was made (detail: its flags)",
    "lock.wait": "the lock is held by another thread and this one is about to block on it",
    "lock.acquire": "this thread took the listener lock (value: recursion depth after)",
    "lock.release": "this thread released the listener lock (value: depth after; 0: free)",
    "lock.timeout": "a bounded acquire gave up (value: seconds waited); only the "
    "modelled libevent scenario uses one",
    "refcount": "the refcount changed (value: the refcount after)",
    "dispatched": "the loop dispatched the read event and has not taken the lock yet",
    "accepted": "accept() returned a connection",
    "callback_enter": "a user callback starts (detail: accept or error)",
    "callback_exit": "a user callback returned (detail: accept or error)",
    "enable": "enable() was called",
    "disable": "disable() was called",
    "set_cb": "set_cb() was called (detail: the new callback's name)",
    "set_error_cb": "set_error_cb() was called (detail: the new callback's name)",
    "free": "free() was called",
    "return": "a control call returned (detail: its name; ' raised X' if it raised)",
    "destroy": "destroy starts: the last reference is gone, the lock is held",
    "destroyed": "destroy finished and the lock was released for the last time",
    "backoff_expired": "an accept-error back-off timer fired",
    "loop_enter": "this thread starts running the base's loop",
    "loop_exit": "this thread stops running the base's loop",
    "wait.begin": "this thread starts waiting for another thread (detail: for what)",
    "wait.end": "the wait ended (detail: how)",
    "mark": "an annotation (detail: its text)",
}

#: The core's scheduling points (``_runtime.POINT_KINDS``) that become events,
#: and their event kinds.  The others (base wake-ups, hand-overs, event
#: (un)registration) depend on how fast the loop thread drains its wake-up
#: socket, which would make two runs of one scenario differ.
_POINT_EVENTS: dict[str, str] = {
    "listener.dispatched": "dispatched",
    "listener.refcount": "refcount",
    "listener.accepted": "accepted",
    "listener.callback_enter": "callback_enter",
    "listener.callback_exit": "callback_exit",
    "listener.destroy": "destroy",
    "listener.destroyed": "destroyed",
    "listener.backoff_expired": "backoff_expired",
    "base.loop_enter": "loop_enter",
    "base.loop_exit": "loop_exit",
}


class TraceEvent(NamedTuple):
    """One recorded step (a named tuple: cheap to make, immutable).

    Attributes:
        seq: its position in the trace, from 0, in recording order.
        time: seconds since the tracer was made (``time.perf_counter``).
        thread: the name of the thread that recorded it.
        listener: the listener's label (``"L1"``, ``"L2"`` ...), or None.
        kind: one of ``EVENT_KINDS``.
        value: the number the kind defines (refcount, lock depth), or None.
        detail: the text the kind defines, or ``""``.
    """

    seq: int
    time: float
    thread: str
    listener: str | None
    kind: str
    value: float | None = None
    detail: str = ""

    def signature(self) -> tuple[str, str | None, str, float | None, str]:
        """``(thread, listener, kind, value, detail)``: the event without its
        timing, for comparing two runs of a deterministic scenario."""
        value = None if self.kind == "lock.timeout" else self.value
        return (self.thread, self.listener, self.kind, value, self.detail)


class Tracer:
    """Collects ``TraceEvent``\\ s; any thread may record.

    Args:
        clock: seconds, monotonic (``time.perf_counter`` by default); the
            events' ``time`` counts from the tracer's creation.

    Scenarios synchronise on it: ``wait_for()`` blocks until some thread has
    recorded a matching event, and a hook added with ``add_hook()`` runs in
    the recording thread right after each event, so it can hold that thread
    at a chosen step.

    Thread-safety: every method, any thread.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        # A plain lock, a leaf: no other lock is taken while holding it, and
        # hooks run after it is released.  The Condition over it is notified
        # only while someone waits in wait_for(): notifying costs more than
        # recording.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiters = 0
        self._events: list[TraceEvent] = []
        # Replaced, never mutated, so record() reads it without a copy.
        self._hooks: tuple[Callable[[TraceEvent], None], ...] = ()
        self._labels = 0

    @property
    def events(self) -> list[TraceEvent]:
        """A copy of the events recorded so far, in recording order."""
        with self._lock:
            return list(self._events)

    def record(
        self,
        kind: str,
        listener: str | None = None,
        value: float | None = None,
        detail: str = "",
    ) -> TraceEvent:
        """Record one event in the calling thread and return it.

        The hooks run after it is recorded, in this thread, in the order added.

        Raises:
            ValueError: *kind* is not one of ``EVENT_KINDS``.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown trace event kind {kind!r}")
        name = threading.current_thread().name
        with self._lock:
            events = self._events
            event = TraceEvent(
                len(events), self._clock() - self._start, name, listener, kind, value, detail
            )
            events.append(event)
            hooks = self._hooks
            if self._waiters:
                self._cond.notify_all()
        for hook in hooks:
            hook(event)
        return event

    def mark(self, text: str, listener: str | None = None) -> TraceEvent:
        """Record an annotation (kind ``mark``) in the calling thread."""
        return self.record("mark", listener, detail=text)

    @contextlib.contextmanager
    def waiting(self, what: str, listener: str | None = None) -> Iterator[None]:
        """Record ``wait.begin`` (detail *what*) and, on exit, ``wait.end``."""
        self.record("wait.begin", listener, detail=what)
        try:
            yield
        finally:
            self.record("wait.end", listener, detail=what)

    def wait_for(
        self, predicate: Callable[[TraceEvent], bool], timeout: float, start: int = 0
    ) -> TraceEvent:
        """Block until an event with ``seq >= start`` satisfies *predicate*; return it.

        Events recorded before the call count too, so there is no lost wake-up.

        Args:
            predicate: called with the tracer's internal lock held: keep it a
                pure test of the event.
            timeout: seconds to wait at most.
            start: the first ``seq`` to look at.

        Raises:
            TimeoutError: no such event within *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        checked = start
        with self._cond:
            while True:
                for event in self._events[checked:]:
                    if predicate(event):
                        return event
                checked = max(checked, len(self._events))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching trace event within {timeout} s")
                self._waiters += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiters -= 1

    def add_hook(self, hook: Callable[[TraceEvent], None]) -> None:
        """Call ``hook(event)`` in the recording thread after each event from now on.

        A hook may block (that holds the recording thread at that step: keep
        the wait bounded) and may record events itself.
        """
        with self._lock:
            self._hooks = (*self._hooks, hook)

    def remove_hook(self, hook: Callable[[TraceEvent], None]) -> None:
        """Stop calling *hook*.  Raises ``ValueError`` if it was not added."""
        with self._lock:
            hooks = list(self._hooks)
            hooks.remove(hook)
            self._hooks = tuple(hooks)

    def new_label(self) -> str:
        """Return the next listener label: ``"L1"``, ``"L2"`` ..."""
        with self._lock:
            self._labels += 1
            return f"L{self._labels}"


class TracingRLock(LockWrapper):
    """A recursive lock that records ``lock.wait``, ``lock.acquire``,
    ``lock.release`` and ``lock.timeout`` on a ``Tracer``.

    ``lock.wait`` is recorded only when the lock is held by another thread,
    so an uncontended acquire is a single event.  ``lock.release`` is recorded
    while the lock is still held, so the next holder's ``lock.acquire``
    always comes after it in the trace.

    Args:
        tracer: where to record.
        name: the lock class (``"listener.lock"``).
        listener: the listener's label, if already known.
        lock: the recursive lock to trace, such as an inner runtime's
            ``rlock()`` (a ``DebugLock`` under the lock checker); a new
            ``threading.RLock`` if None.  ``wrapped`` returns it.

    Attributes:
        name: the lock class (``"listener.lock"``).
        listener: the label of the listener it guards (set by the traced
            listener once it has one; None before).

    Thread-safety: as ``threading.RLock``.  No libevent counterpart
    (libevent's lock debugging, ``threadlisten.debug``, checks; this records).
    """

    __slots__ = ("_depth", "_lock", "_owner", "_tracer", "listener", "name")

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        listener: str | None = None,
        lock: LockLike | None = None,
    ) -> None:
        self._lock: LockLike = threading.RLock() if lock is None else lock
        self._tracer = tracer
        self.name = name
        self.listener = listener
        # Written only by the thread holding self._lock.
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, as ``threading.RLock.acquire``; return whether it was taken."""
        if not self._lock.acquire(False):
            if not blocking:
                return False
            self._tracer.record("lock.wait", self.listener, detail=self.name)
            began = time.monotonic()
            if not self._lock.acquire(True, timeout):
                waited = time.monotonic() - began
                self._tracer.record("lock.timeout", self.listener, waited, self.name)
                return False
        self._owner = threading.get_ident()
        self._depth += 1
        self._tracer.record("lock.acquire", self.listener, self._depth, self.name)
        return True

    def release(self) -> None:
        """Release one level, as ``threading.RLock.release``.

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        if self._owner != threading.get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        depth = self._depth - 1
        self._tracer.record("lock.release", self.listener, depth, self.name)
        self._depth = depth
        if not depth:
            self._owner = None
        self._lock.release()

    def held_by_me(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    @property
    def wrapped(self) -> LockLike:
        """The lock this one traces (so that a lock checker inside can find
        its own lock: ``threadlisten.debug`` looks through ``wrapped``)."""
        return self._lock


def _callable_name(cb: object) -> str:
    if cb is None:
        return "None"
    return str(getattr(cb, "__name__", None) or repr(cb))


class _TracedListener(Listener):
    """What ``TraceRuntime.listener_type`` mixes in: records the control calls.

    It adds no state (``__slots__ = ()``, so it mixes with any listener
    class): its runtime keeps its label.
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        runtime = self._trace_runtime()
        label = runtime.register(self)
        if isinstance(self._lock, TracingRLock):
            self._lock.listener = label
        runtime.tracer.record("create", label, detail=self._flags.name or "0")

    def _trace_runtime(self) -> TraceRuntime:
        runtime = self._base.runtime
        if not isinstance(runtime, TraceRuntime):  # only TraceRuntime makes this class
            raise TypeError("a traced listener needs a base built on a TraceRuntime")
        return runtime

    def _traced(self, name: str, detail: str, call: Callable[[], None]) -> None:
        runtime = self._trace_runtime()
        tracer, label = runtime.tracer, runtime.label_of(self)
        tracer.record(name, label, detail=detail)
        try:
            call()
        except BaseException as exc:
            tracer.record("return", label, detail=f"{name} raised {type(exc).__name__}")
            raise
        tracer.record("return", label, detail=name)

    def enable(self) -> None:
        """``Listener.enable``, recorded."""
        self._traced("enable", "", super().enable)

    def disable(self) -> None:
        """``Listener.disable``, recorded."""
        self._traced("disable", "", super().disable)

    def set_cb(self, cb: AcceptCallback | None, arg: Any = None) -> None:
        """``Listener.set_cb``, recorded (detail: the callback's name)."""
        self._traced(
            "set_cb", _callable_name(cb), lambda: super(_TracedListener, self).set_cb(cb, arg)
        )

    def set_error_cb(self, errorcb: ErrorCallback | None) -> None:
        """``Listener.set_error_cb``, recorded (detail: the callback's name)."""
        self._traced(
            "set_error_cb",
            _callable_name(errorcb),
            lambda: super(_TracedListener, self).set_error_cb(errorcb),
        )

    def free(self) -> None:
        """``Listener.free``, recorded."""
        self._traced("free", "", super().free)


_traced_types: dict[type[Any], type[Any]] = {}
_traced_types_lock = threading.Lock()


def _traced_type(cls: type[_T]) -> type[_T]:
    """The traced subclass of the listener class *cls* (made once, then cached)."""
    with _traced_types_lock:
        traced = _traced_types.get(cls)
        if traced is None:
            # _TracedListener first in the MRO, so its methods wrap those of
            # *cls* (which may itself be a subclass, e.g. a checked one).
            traced = type(
                f"Traced{cls.__name__}",
                (_TracedListener, cls),
                {"__slots__": (), "__module__": __name__},
            )
            _traced_types[cls] = traced
        return cast("type[_T]", traced)


class TraceRuntime(DelegatingRuntime):
    """A ``Runtime`` that records a listener's lifecycle on a ``Tracer``.

    Args:
        tracer: where to record; a new ``Tracer`` if None.
        inner: the runtime it wraps (default: a production ``Runtime``).  Its
            recursive locks are the real locks inside its ``TracingRLock``
            objects, its ``point()`` runs after the recording, its listener class
            is the one the traced class derives from, and its plain locks,
            clock, selector, socket pairs and threads are used as they are.
            So ``TraceRuntime(inner=threadlisten.debug.DebugRuntime())``
            records a lock-checked run.

    Give it to ``EventBase(runtime=...)``, or make it the default with
    ``tracing()``.

    Thread-safety: any thread.  No libevent counterpart (libevent has no
    tracer; its ``evthread_enable_lock_debugging`` is ``DebugRuntime``).
    """

    def __init__(self, tracer: Tracer | None = None, inner: Runtime | None = None) -> None:
        super().__init__(inner)
        self.tracer = Tracer() if tracer is None else tracer
        # Listener -> its label.  Weak, so tracing keeps no listener alive;
        # a leaf lock, since listeners are made and traced from any thread.
        self._labels: weakref.WeakKeyDictionary[Listener, str] = weakref.WeakKeyDictionary()
        self._labels_lock = threading.Lock()

    def register(self, listener: Listener) -> str:
        """Give *listener* the tracer's next label (``"L1"`` ...) and return it."""
        label = self.tracer.new_label()
        with self._labels_lock:
            self._labels[listener] = label
        return label

    def label_of(self, listener: object) -> str | None:
        """The label of *listener*, or None if it was not made on this runtime."""
        if not isinstance(listener, Listener):
            return None
        with self._labels_lock:
            return self._labels.get(listener)

    def rlock(self, name: str) -> LockLike:
        """Return a ``TracingRLock`` of lock class *name* around the inner runtime's."""
        return TracingRLock(self.tracer, name, lock=self._inner.rlock(name))

    def point(self, kind: str, **info: Any) -> None:
        """Record the scheduling points that tell the lifecycle (see
        ``_POINT_EVENTS``), then run the inner runtime's point."""
        event_kind = _POINT_EVENTS.get(kind)
        if event_kind is not None:
            label = self.label_of(info.get("listener"))
            value = info.get("refcount")
            detail = str(info.get("which", ""))
            self.tracer.record(event_kind, label, value, detail)
        if self._inner_point is not None:
            self._inner_point(kind, **info)

    def listener_type(self, cls: type[_T]) -> type[_T]:
        """Return the traced subclass of the inner runtime's class for *cls*
        (a ``Listener`` class)."""
        inner_cls = self._inner.listener_type(cls)
        if not isinstance(inner_cls, type) or not issubclass(inner_cls, Listener):
            return inner_cls
        return _traced_type(inner_cls)


@contextlib.contextmanager
def tracing(tracer: Tracer | None = None, inner: Runtime | None = None) -> Iterator[Tracer]:
    """Make a ``TraceRuntime`` the default runtime for the ``with`` block; yield its tracer.

    *inner* is the runtime it wraps (``TraceRuntime``'s argument): a
    ``threadlisten.debug.DebugRuntime()`` to record a lock-checked run.

    Bases made inside the block (without an explicit ``runtime=``) are traced,
    and so are their listeners, for as long as they live.  The previous
    default is restored on exit.

    Thread-safety: the default runtime is process-wide; do not nest this in
    several threads at once.
    """
    runtime = TraceRuntime(tracer, inner)
    previous = set_default_runtime(runtime)
    try:
        yield runtime.tracer
    finally:
        set_default_runtime(previous)
