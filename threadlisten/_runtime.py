"""The runtime seam: where the event base and the listener get their locks,
clock, selector, wake-up sockets, threads and scheduling points.

This mirrors libevent's ``evthread_set_lock_callbacks``: the core never calls
``threading.RLock()`` or ``time.monotonic()`` itself, it asks its ``Runtime``.
Production uses ``Runtime()`` (plain ``threading``, the real clock, the
platform's ``selectors.DefaultSelector``, and a ``point()`` that does nothing).
Checkers replace it: the lock checker hands out checked locks, the schedule
explorer hands out locks and points that park the calling thread until a
controller lets it run, and regression tests use ``point()`` to hold a thread
inside a race window.

Scheduling points are named by a short string (``kind``) plus keyword details.
The core calls ``point()`` at the places where another thread's action makes
a difference; the kinds in use are listed in ``POINT_KINDS``.

Thread-safety: a ``Runtime`` is shared by every object built from it and its
methods may be called from any thread.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

__all__ = [
    "POINT_KINDS",
    "DelegatingLock",
    "DelegatingRuntime",
    "LockLike",
    "LockWrapper",
    "Runtime",
    "get_default_runtime",
    "set_default_runtime",
]

_T = TypeVar("_T")

#: Scheduling points the core announces, with where each one is.
POINT_KINDS: dict[str, str] = {
    "listener.dispatched": "the loop has dispatched a listener's read event and has not "
    "yet taken the listener lock (libevent's deadlock window)",
    "listener.refcount": "a listener's refcount changed (info: listener, refcount)",
    "listener.accepted": "accept() returned a connection (info: listener)",
    "listener.callback_enter": "a user callback is about to run (info: listener, which)",
    "listener.callback_exit": "a user callback returned (info: listener, which)",
    "listener.destroy": "a listener is being destroyed, its lock held (info: listener)",
    "listener.destroyed": "destroy finished and the listener lock was released for the "
    "last time (info: listener)",
    "listener.backoff_expired": "an error back-off timer fired, on the loop thread, before "
    "the listener lock is taken (info: listener)",
    "base.loop_enter": "this thread starts running the loop (info: base)",
    "base.loop_exit": "this thread stops running the loop (info: base)",
    "base.wait_loop": "this thread is about to wait for the loop thread to end (info: base)",
    "event.register": "an Event was added to the base (info: event)",
    "event.unregister": "an Event was deleted from the base (info: event)",
    "base.wakeup": "a thread woke the loop thread (info: base)",
    "base.handoff": "a callable was handed to the loop thread (info: base)",
}


class LockLike(Protocol):
    """What the core needs of a lock: ``threading.Lock``/``RLock`` fit."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> bool: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


class LockWrapper:
    """A base for lock classes built on another lock: ``with`` from ``acquire``/``release``.

    A subclass defines ``acquire(blocking=True, timeout=-1)`` (every argument
    with a default) and ``release()``; this base makes it a ``LockLike``:
    ``__enter__`` is the subclass's ``acquire`` itself (set when the subclass
    is made, unless it or a base between defines an ``__enter__`` of its own)
    and ``__exit__`` calls ``release()``.  It adds no state (``__slots__ = ()``).
    A lock whose ``release`` only releases the wrapped lock: ``DelegatingLock``.

    Thread-safety: as the subclass's ``acquire`` and ``release``.
    """

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        enter = cls.__enter__
        if enter is LockWrapper.__enter__ or getattr(enter, "__name__", "") == "acquire":
            # ``with lock:`` calls acquire() itself: no Python frame in between.
            setattr(cls, "__enter__", cls.acquire)  # noqa: B010 (mypy: no method assignment)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, as ``threading.RLock.acquire``; return whether it was taken."""
        raise NotImplementedError

    def release(self) -> None:
        """Release the lock (one level of a recursive one)."""
        raise NotImplementedError

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        self.release()


class DelegatingLock(LockWrapper):
    """A ``LockWrapper`` whose ``release`` releases the wrapped lock, ``_lock``, and nothing else.

    A subclass defines ``acquire`` only (and calls ``__init__`` with the lock
    to wrap).  ``release()`` and ``__exit__`` go straight to ``_lock``, so
    ``with`` runs two Python frames, ``acquire`` and ``__exit__``, fewer than
    hand-written ``__enter__``/``__exit__`` methods would (``listener._CallerLock``
    is on every public call of a THREADSAFE listener).

    Thread-safety: as the subclass's ``acquire`` and the wrapped lock.
    """

    __slots__ = ("_lock",)

    def __init__(self, lock: LockLike) -> None:
        self._lock = lock

    def release(self) -> None:
        """Release the wrapped lock."""
        self._lock.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        self._lock.release()


class Runtime:
    """The production runtime: real threads, real clock, real sockets.

    Subclass it to check or to control the core (see ``threadlisten.debug``
    and ``threadlisten.testing``).  Every method may be called from any thread.
    """

    def rlock(self, name: str) -> LockLike:
        """Return a new recursive lock of lock class *name* (e.g. ``"listener.lock"``)."""
        return threading.RLock()

    def lock(self, name: str) -> LockLike:
        """Return a new non-recursive lock of lock class *name* (e.g. ``"base.lock"``)."""
        return threading.Lock()

    def point(self, kind: str, **info: Any) -> None:
        """A scheduling point: a no-op here; see ``POINT_KINDS`` for the kinds."""

    def monotonic(self) -> float:
        """Return the loop clock in seconds (``time.monotonic``)."""
        return time.monotonic()

    def selector(self) -> selectors.BaseSelector:
        """Return a new selector for an event base (``selectors.DefaultSelector``)."""
        return selectors.DefaultSelector()

    def socketpair(self) -> tuple[socket.socket, socket.socket]:
        """Return a connected pair of sockets for an event base's wake-up channel."""
        return socket.socketpair()

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Return a new, unstarted daemon thread that runs *target*."""
        return threading.Thread(target=target, name=name, daemon=True)

    def listener_type(self, cls: type[_T]) -> type[_T]:
        """Return the class to instantiate for a new listener of class *cls*.

        Production returns *cls*.  The lock checker returns a subclass whose
        guarded state checks that the lock is held; tests return subclasses
        with seeded bugs.  Nothing in production pays for either.
        """
        return cls


class DelegatingRuntime(Runtime):
    """A runtime built on another: every service is the inner runtime's until
    a subclass overrides it (the lock checker, the tracer).

    Args:
        inner: the runtime it wraps (default: a production ``Runtime``), the
            way libevent's debug locks wrap whatever lock callbacks were
            installed before; wrappers stack (``TraceRuntime(inner=
            DebugRuntime())``).

    A subclass that overrides ``point`` calls ``self._inner_point`` (None
    when the inner point is the production no-op, so it costs nothing).

    Thread-safety: every method may be called from any thread.
    """

    def __init__(self, inner: Runtime | None = None) -> None:
        self._inner = Runtime() if inner is None else inner
        self._inner_point: Callable[..., None] | None = (
            None if type(self._inner).point is Runtime.point else self._inner.point
        )

    @property
    def inner(self) -> Runtime:
        """The wrapped runtime (libevent's ``original_lock_fns_``).  Any thread."""
        return self._inner

    def rlock(self, name: str) -> LockLike:
        """Return the inner runtime's recursive lock of class *name*."""
        return self._inner.rlock(name)

    def lock(self, name: str) -> LockLike:
        """Return the inner runtime's non-recursive lock of class *name*."""
        return self._inner.lock(name)

    def point(self, kind: str, **info: Any) -> None:
        """Run the inner runtime's scheduling point."""
        if self._inner_point is not None:
            self._inner_point(kind, **info)

    def monotonic(self) -> float:
        """Return the inner runtime's clock."""
        return self._inner.monotonic()

    def selector(self) -> selectors.BaseSelector:
        """Return a new selector from the inner runtime."""
        return self._inner.selector()

    def socketpair(self) -> tuple[socket.socket, socket.socket]:
        """Return a wake-up socket pair from the inner runtime."""
        return self._inner.socketpair()

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Return a new, unstarted thread from the inner runtime."""
        return self._inner.thread(target, name)

    def listener_type(self, cls: type[_T]) -> type[_T]:
        """Return the inner runtime's listener class for *cls*."""
        return self._inner.listener_type(cls)


_default_runtime: Runtime = Runtime()


def get_default_runtime() -> Runtime:
    """Return the runtime that new event bases use when given none."""
    return _default_runtime


def set_default_runtime(runtime: Runtime) -> Runtime:
    """Make *runtime* the default for event bases created from now on.

    Returns the previous default.  Objects that already exist keep theirs, which
    is why lock debugging must be switched on before anything is created.
    """
    global _default_runtime
    if not isinstance(runtime, Runtime):
        raise TypeError(f"runtime must be a Runtime, not {type(runtime).__name__}")
    previous, _default_runtime = _default_runtime, runtime
    return previous
