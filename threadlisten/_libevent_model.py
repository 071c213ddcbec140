"""A model of libevent's listener deadlock, small enough to read, traced step by step.

This is *not* libevent and not threadlisten: it is the part of libevent 2.2's
``listener.c`` and ``event.c`` that makes ``evconnlistener_free()`` from a
foreign thread deadlock (``../shared/reference/libevent.md`` §2.4, row 4),
re-enacted in Python so that the tracer can draw it:

* ``ModelBase`` is the ``event_base``: ``th_base_lock``, ``current_event``
  and ``current_event_cond``.  ``process_active`` is
  ``event_process_active_single_queue`` + ``event_persist_closure``: set
  ``current_event``, release ``th_base_lock``, call the callback, then clear
  ``current_event`` and broadcast.  ``event_del`` is ``event_del_nolock_``
  with ``EVENT_DEL_AUTOBLOCK``: from a thread other than the loop thread,
  while the event's callback is running, it *waits* on ``current_event_cond``
  (releasing only ``th_base_lock``).
* ``ModelListener`` is the ``evconnlistener``: ``free`` is
  ``evconnlistener_free`` + ``listener_decref_and_unlock`` +
  ``event_listener_destroy`` (``LOCK(lev)``, clear the callbacks, ``--refcnt``,
  destroy, which calls ``event_del``, all under the lock); ``read_cb`` is
  ``listener_read_cb``, which starts with ``LOCK(lev)``.

The listener lock is a ``TracingRLock``, so every step lands on the tracer.
A real deadlock never ends, so two things stop it: the loop thread's
``LOCK(lev)`` is bounded (``watchdog`` seconds), and when it gives up it sets
the watchdog flag, which wakes the freeing thread's wait too.  The trace then
shows the cycle, and the order of every step is fixed by the scenario's
synchronisation, not by timing.

Thread-safety: ``process_active`` on the loop thread, ``free`` on another,
as in libevent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from threadlisten.trace import Tracer, TracingRLock

__all__ = ["ModelBase", "ModelListener"]

#: What the freeing thread's ``event_del`` waits for, as the trace shows it.
WAIT_FOR_CALLBACK = "event_del: wait for listener_read_cb to return"

#: The freeing thread's wait is stopped by the watchdog's flag; this multiple
#: of the watchdog is only a backstop, so that the model can never hang.
_BACKSTOP = 10


class ModelBase:
    """libevent's ``event_base``, reduced to what the deadlock needs.

    Args:
        tracer: where to record.
        watchdog: seconds the loop thread's ``LOCK(lev)`` may wait before the
            model declares the deadlock and stops it.
    """

    def __init__(self, tracer: Tracer, watchdog: float) -> None:
        self.tracer = tracer
        self.watchdog = watchdog
        self.th_base_lock = threading.Lock()
        self.current_event_cond = threading.Condition(self.th_base_lock)
        self.current_event: object | None = None  # guarded by th_base_lock
        self.loop_thread: int | None = None
        self.deadlocked = threading.Event()  # set by the watchdog

    def process_active(self, event: object, callback: Callable[[], None]) -> None:
        """Run *event*'s callback as libevent's loop does (loop thread)."""
        self.loop_thread = threading.get_ident()
        with self.th_base_lock:
            self.current_event = event  # event.c:1731
        # event_persist_closure releases th_base_lock (1678) and calls the
        # callback (1681): from here to LOCK(lev) is the window.
        callback()
        with self.th_base_lock:
            self.current_event = None  # 1789
            self.current_event_cond.notify_all()  # 1791-1794

    def event_del(self, event: object, listener: str) -> bool:
        """``event_del`` (AUTOBLOCK).  Returns False if the watchdog stopped its wait."""
        with self.th_base_lock:
            # (The event is unregistered from the backend first, 2950-2977.)
            if self.current_event is not event or threading.get_ident() == self.loop_thread:
                return True
            # 2990-2999: wait for the running callback, releasing th_base_lock
            # only; the caller's listener lock stays held.
            with self.tracer.waiting(WAIT_FOR_CALLBACK, listener):
                self.current_event_cond.wait_for(
                    lambda: self.current_event is not event or self.deadlocked.is_set(),
                    timeout=self.watchdog * _BACKSTOP,
                )
            # Decided by the watchdog's flag, which stays set, not by
            # current_event, which the loop thread clears once it gives up.
            return not self.deadlocked.is_set()


class ModelListener:
    """libevent's THREADSAFE ``evconnlistener``, reduced to the deadlock.

    Args:
        base: its ``ModelBase``.
        label: its name in the trace (``"lev"``).
        in_window: called on the loop thread between dispatch and ``LOCK(lev)``;
            the scenario holds the thread there until the freeing thread waits.
    """

    def __init__(self, base: ModelBase, label: str, in_window: Callable[[], None]) -> None:
        self.base = base
        self.label = label
        self.lock = TracingRLock(base.tracer, "listener.lock", label)
        self.refcnt = 1
        self.cb: object | None = object()
        self.event = object()  # lev->listener, its read event
        self._in_window = in_window
        self.destroyed = False
        base.tracer.record("create", label, detail="THREADSAFE")

    def read_cb(self) -> None:
        """``listener_read_cb`` (listener.c:435): the first thing it does is ``LOCK(lev)``."""
        tracer = self.base.tracer
        tracer.record("dispatched", self.label)
        self._in_window()
        if not self.lock.acquire(timeout=self.base.watchdog):
            # A real libevent thread would wait here for ever.
            tracer.mark("deadlock! stopped by watchdog", self.label)
            self.base.deadlocked.set()
            with self.base.th_base_lock:
                self.base.current_event_cond.notify_all()
            return
        self.lock.release()  # (not reached while the cycle holds)

    def free(self) -> bool:
        """``evconnlistener_free`` from a foreign thread.  Returns False if its
        ``event_del`` was stopped by the watchdog (the deadlock)."""
        tracer = self.base.tracer
        tracer.record("free", self.label)
        self.lock.acquire()  # LOCK(lev), listener.c:313
        self.cb = None
        self.refcnt -= 1  # listener_decref_and_unlock, 137
        tracer.record("refcount", self.label, self.refcnt)
        finished = True
        if self.refcnt == 0:
            tracer.record("destroy", self.label)  # ops->destroy, lock still held
            finished = self.base.event_del(self.event, self.label)
            self.destroyed = finished
        if not finished:
            # In libevent this thread would still be inside event_del.
            tracer.mark("stopped: would wait for ever", self.label)
        self.lock.release()  # UNLOCK(listener), 141 (only after event_del returned)
        if finished:
            tracer.record("return", self.label, detail="free")
        return finished
