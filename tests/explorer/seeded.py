"""Seeded bugs: ``Listener`` subclasses that each reintroduce one known bug.

They reach the core only through ``Runtime.listener_type`` (the explorer's
``listener_class``), so production code has no switch for them.  Each one
models a real bug of libevent's listener or of its family:

* ``WaitingDeleteListener``: libevent's deadlock (docs/threading.md).  libevent's
  ``event_del`` waits for the event's callback when it is running in another
  thread; ``evconnlistener_free``/``_disable`` call it while holding the
  listener lock, and ``listener_read_cb`` begins by taking that lock.  Here
  the loop marks the read callback running (libevent's ``current_event``)
  before the ``listener.dispatched`` point, and deleting the event from
  another thread waits for it with the lock held.
* ``IncrefBeforeLockListener``: an unlocked refcount update.  The batch's
  reference is taken before the listener lock, as a read, a scheduling point
  (where a free-threaded build, or a GIL switch inside a call, can interleave)
  and a write, so a ``free()`` in between is lost: the listener is destroyed
  and then resurrected with refcount 1.
* ``TornSetCbListener``: a torn ``set_cb``.  The callback is written outside
  the lock and the argument inside it, with a point between, so the accept
  loop can hand a connection to the new callback with the old argument.
"""

from __future__ import annotations

from typing import Any

from threadlisten import Listener
from threadlisten._runtime import Runtime
from threadlisten.listener import AcceptCallback, _check_callback
from threadlisten.testing import Completion, SchedRuntime

__all__ = ["IncrefBeforeLockListener", "TornSetCbListener", "WaitingDeleteListener"]


def _sched_runtime(runtime: Runtime) -> SchedRuntime:
    # A lock-checking run wraps the SchedRuntime in a DebugRuntime.
    inner = getattr(runtime, "inner", runtime)
    if not isinstance(inner, SchedRuntime):
        raise TypeError("seeded-bug listeners only run under the schedule explorer")
    return inner


class WaitingDeleteListener(Listener):
    """libevent's deadlock: deleting the event waits for the running read
    callback while the listener lock is held (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rt = _sched_runtime(self._base.runtime)
        self._running: Completion = rt.completion(f"read callback of {rt.name_of(self)}")

    def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
        # libevent's loop sets base->current_event before it calls the callback.
        self._running.begin()
        try:
            super()._on_readable(fileobj, what, arg)
        finally:
            self._running.end()

    def _update_armed(self, lazy: bool = False) -> None:
        # libevent's evconnlistener_disable() deletes the event at once: no
        # lazy delete here (threadlisten's disable() leaves that to the loop).
        want = self._enabled and self._cb is not None and not self._freed and self._backoff is None
        if not want and self._armed and not self._base.in_loop_thread():
            # event_del(): wait until the running read callback has returned,
            # with the listener lock held by our caller (free/disable).
            self._running.wait()
        super()._update_armed()


class IncrefBeforeLockListener(Listener):
    """The batch's reference taken without the lock (see the module docstring)."""

    def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
        self._point("listener.dispatched", listener=self)
        refcount = self._refcount  # BUG: read without the lock ...
        self._point("listener.refcount", listener=self, refcount=refcount + 1)
        self._refcount = refcount + 1  # ... and written back later
        self._gate.acquire()  # the rest as Listener._on_readable: pass the gate ...
        self._gate.release()
        self._lock.acquire()  # ... and take the lock
        if not self._can_accept():
            self._decref_and_unlock()
            return
        try:
            self._accept_batch()
        finally:
            self._decref_and_unlock()


class TornSetCbListener(Listener):
    """``set_cb`` writing the callback and its argument in two steps (see the module docstring)."""

    def set_cb(self, cb: AcceptCallback | None, arg: Any = None) -> None:
        _check_callback(cb, "cb")
        with self._caller_lock:  # as the public calls take it
            self._check_alive()
        self._cb = cb  # BUG: written outside the lock ...
        self._point("seeded.torn_set_cb", listener=self)
        with self._caller_lock:
            self._arg = arg  # ... and the argument only now
            self._update_armed()
