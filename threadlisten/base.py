"""``EventBase``: the event loop one acceptor thread runs (libevent's ``event_base``).

Design
------
The base owns a selector, a heap of timers, a queue of callables handed over
from other threads, and a wake-up socket pair.  One thread at a time runs
``dispatch()``/``loop()``; it is "the loop thread" for as long as it does.

Every other method may be called from any thread.  The base is always
thread-safe, like a libevent base made notifiable with
``evthread_make_base_notifiable``: its state is guarded by one non-recursive
lock (lock class ``base.lock``), and a call from another thread that changes
what the loop should wait for writes a byte to the wake-up socket, so the loop
thread's ``select()`` returns and the change takes effect at once.

Lock rules (stated again in docs/threading.md):

* The base lock is held only for short bookkeeping, never while a callback
  runs, never while waiting for anything.  So the loop thread calls every
  callback with *no* base lock held, and a callback may call any method here.
* Nothing here takes another lock while holding the base lock.  Listeners take
  their own lock first and then the base lock (``listener.lock -> base.lock``),
  never the reverse.
* Nothing here waits for a running callback.  ``Event.delete()`` only stops the
  callback from *starting* again.  ``stop()`` waits for the loop thread to end,
  so it must not be called while holding a listener lock (from inside a
  listener callback, for instance); it refuses to run on the loop thread itself.

Selector changes (``Event.add``/``delete``) are made directly, under the base
lock, from whichever thread asks; epoll, kqueue and poll accept changes while
another thread waits.  Readiness that ``select()`` reported for an event
deleted in the meantime is dropped, because each event is checked again under
the lock just before its callback starts.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import selectors
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from threadlisten._runtime import Runtime, get_default_runtime
from threadlisten.errors import EventBaseClosedError
from threadlisten.event import EV_PERSIST, EV_READ, EV_TIMEOUT, EV_WRITE, Event, check_timeout

__all__ = ["EventBase", "Handle", "TimerHandle"]

logger = logging.getLogger("threadlisten")

#: The longest the loop waits in select(), in seconds.  A timer further away
#: is simply waited for in steps: epoll/poll take the timeout as an int of
#: milliseconds (about 24.8 days at most) and raise OverflowError beyond it,
#: which would end the loop thread.  asyncio caps it the same way
#: (base_events.MAXIMUM_SELECT_TIMEOUT, 24 hours).
MAX_SELECT_TIMEOUT = 24 * 3600.0


def _selector_mask(what: int) -> int:
    mask = 0
    if what & EV_READ:
        mask |= selectors.EVENT_READ
    if what & EV_WRITE:
        mask |= selectors.EVENT_WRITE
    return mask


def _ev_mask(selector_mask: int) -> int:
    what = 0
    if selector_mask & selectors.EVENT_READ:
        what |= EV_READ
    if selector_mask & selectors.EVENT_WRITE:
        what |= EV_WRITE
    return what


class Handle:
    """A callable scheduled on the loop thread (``call_soon_threadsafe``).

    Thread-safety: ``cancel()`` may be called from any thread.
    """

    __slots__ = ("_args", "_base", "_cancelled", "_fn")

    def __init__(self, base: EventBase, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._base = base
        self._fn = fn
        self._args = args
        self._cancelled = False  # guarded by the base lock

    def cancel(self) -> None:
        """Keep the callable from starting; no effect once it has started."""
        with self._base._lock:
            self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""
        return self._cancelled

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__} {self._fn!r}{state}>"


class TimerHandle(Handle):
    """A callable scheduled after a delay (``call_later``, libevent's ``event_base_once``).

    Thread-safety: ``cancel()`` may be called from any thread.
    """

    __slots__ = ("_when",)

    def __init__(
        self, base: EventBase, when: float, fn: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        super().__init__(base, fn, args)
        self._when = when

    @property
    def when(self) -> float:
        """When it is due, on the base's clock (``time.monotonic`` seconds)."""
        return self._when


class EventBase:
    """The event loop (libevent's ``event_base``), always thread-safe.

    Args:
        runtime: where locks, clock, selector and threads come from (see
            ``threadlisten._runtime``); the default runtime when omitted.

    Raises:
        OSError: the selector or the wake-up socket pair could not be made
            (whatever was made is closed first).

    Thread-safety: one thread runs the loop (``dispatch``/``loop``); every other
    method may be called from any thread, at any moment, including from
    callbacks on the loop thread.  Use it as a context manager to stop its
    thread (if ``start_thread`` made one) and close it on exit.

    Mirrors ``event_base_new``.
    """

    def __init__(self, *, runtime: Runtime | None = None) -> None:
        rt = get_default_runtime() if runtime is None else runtime
        if not isinstance(rt, Runtime):
            raise TypeError(f"runtime must be a Runtime, not {type(rt).__name__}")
        self._rt = rt
        self._lock = rt.lock("base.lock")
        self._selector = rt.selector()
        try:
            self._wake_r, self._wake_w = rt.socketpair()
        except BaseException:
            self._selector.close()
            raise
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector.register(self._wake_r.fileno(), selectors.EVENT_READ)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            self._selector.close()
            raise
        self._wake_fd = self._wake_r.fileno()
        self._seq = itertools.count()
        # Everything below is guarded by self._lock.
        self._closed = False
        self._running = False
        self._owner: int | None = None  # thread ident of the loop thread while running
        self._thread: threading.Thread | None = None  # made by start_thread()
        self._thread_done: threading.Event | None = None  # set when its loop has ended
        self._stop_thread: threading.Thread | None = None  # the thread stop() is ending
        self._break = False
        self._gotterm = False
        self._wake_pending = False
        self._fd_events: dict[int, list[Event]] = {}
        self._timers: list[tuple[float, int, Event | TimerHandle]] = []
        self._ready: deque[Handle] = deque()

    # ------------------------------------------------------------------ queries

    @property
    def runtime(self) -> Runtime:
        """The runtime this base was built with."""
        return self._rt

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return self._closed

    @property
    def running(self) -> bool:
        """Whether some thread is inside ``loop()``/``dispatch()`` right now."""
        return self._running

    def in_loop_thread(self) -> bool:
        """Return True if the calling thread is running this base's loop right now.

        libevent's ``EVBASE_IN_THREAD``.  Any thread may call it.
        """
        return self._owner == threading.get_ident()

    # ------------------------------------------------------------- the loop

    def dispatch(self) -> None:
        """Run the loop in the calling thread until ``loopexit``, ``loopbreak`` or ``stop``.

        Unlike libevent's default, it does not return just because no event is
        pending: an acceptor thread must survive a disabled listener.

        Raises:
            EventBaseClosedError: the base is closed.
            RuntimeError: a loop is already running on this base (in any
                thread), or a thread made by ``start_thread()`` is alive and
                the caller is not that thread.

        Mirrors ``event_base_dispatch``.
        """
        self.loop()

    def loop(self, once: bool = False, nonblock: bool = False) -> None:
        """Run the loop in the calling thread (libevent's ``event_base_loop``).

        Args:
            once: ``EVLOOP_ONCE``: wait until something is active, run it, return.
            nonblock: ``EVLOOP_NONBLOCK``: run whatever is active now, without
                waiting, and return.

        The loop ends early on ``loopbreak()`` (after the running callback),
        ``loopexit()`` (after the current round of callbacks) or ``stop()``.
        Exceptions raised by callbacks are logged on the ``threadlisten``
        logger and do not end the loop.

        Raises:
            EventBaseClosedError: the base is closed.
            RuntimeError: a loop is already running on this base, or a thread
                made by ``start_thread()`` is alive and the caller is not that
                thread (it owns the loop from ``start_thread()`` until it ends).
        """
        me = threading.current_thread()
        with self._lock:
            if self._closed:
                raise EventBaseClosedError("the event base is closed")
            if self._running:
                raise RuntimeError("the event base's loop is already running")
            # Why: between start_thread() and the moment its thread enters
            # this method, _running is still False.  Without this check a
            # loop()/dispatch() from another thread in that window took the
            # loop, and the acceptor thread then died on the RuntimeError
            # above (logged, not raised to anyone): the caller that made the
            # mistake got no error, and the base lost its acceptor thread.
            # Now the mistaken call fails, whichever thread gets here first.
            if self._has_live_thread() and self._thread is not me:
                raise RuntimeError(
                    "the event base's loop belongs to the thread start_thread() made"
                )
            self._running = True
            self._owner = threading.get_ident()
            # As libevent does at loop start: a loopbreak() made while no loop
            # ran is forgotten; a loopexit() is a timer, so it is kept.
            self._break = False
            self._gotterm = False
        try:
            # Inside the try: a checker's point() may raise, and the base
            # must not be left marked as running.
            self._rt.point("base.loop_enter", base=self)
            while self._stop_thread is not me:
                ran = self._run_once(not nonblock, me)
                if self._break or self._gotterm or self._stop_thread is me:
                    break
                if nonblock or (once and ran):
                    break
        finally:
            with self._lock:
                self._running = False
                self._owner = None
                self._break = False
                self._gotterm = False
                # Wake-ups sent to the loop that just ended are stale.
                self._wake_pending = False
            self._rt.point("base.loop_exit", base=self)

    def _run_once(self, block: bool, me: threading.Thread) -> int:
        """One iteration: wait, collect what is active, run it; return callbacks run."""
        rt = self._rt
        with self._lock:
            if self._ready or self._break or not block:
                timeout: float | None = 0.0
            elif self._timers:
                timeout = min(max(0.0, self._timers[0][0] - rt.monotonic()), MAX_SELECT_TIMEOUT)
            else:
                timeout = None
        ready = self._selector.select(timeout)
        now = rt.monotonic()
        fired: dict[Event, int] = {}
        handles: list[Handle] = []
        with self._lock:
            for key, mask in ready:
                fd = key.fd
                if fd == self._wake_fd:
                    self._drain_wakeup_locked()
                    continue
                what = _ev_mask(mask)
                for ev in self._fd_events.get(fd, ()):
                    hit = ev._what & what
                    if hit:
                        fired[ev] = fired.get(ev, 0) | hit
            timers = self._timers
            while timers and timers[0][0] <= now:
                _, seq, item = heapq.heappop(timers)
                if isinstance(item, Event):
                    if item._timeout_seq == seq:
                        item._timeout_seq = None
                        fired[item] = fired.get(item, 0) | EV_TIMEOUT
                elif not item._cancelled:
                    handles.append(item)
            while self._ready:
                handles.append(self._ready.popleft())
            gens = {ev: ev._gen for ev in fired}
        # Run what was collected.  ``ev_done``/``h_done`` count the events and
        # callables taken off the lists (started, or dropped as deleted or
        # cancelled); whatever is left when the round ends early is put back.
        ran = ev_done = h_done = 0
        try:
            for ev, what in fired.items():
                if self._break or self._stop_thread is me:
                    break
                ev_done += 1
                if self._start_event(ev, gens[ev]):
                    ran += 1
                    try:
                        ev._callback(ev._fileobj, what, ev._arg)
                    except Exception:
                        logger.exception("exception in event callback %r", ev._callback)
            if ev_done == len(fired):
                for handle in handles:
                    if self._break or self._stop_thread is me:
                        break
                    h_done += 1
                    with self._lock:
                        if handle._cancelled:
                            continue
                    ran += 1
                    try:
                        handle._fn(*handle._args)
                    except Exception:
                        logger.exception("exception in callback %r", handle._fn)
        finally:
            # Why a finally, not only the break above: a BaseException from a
            # callback (KeyboardInterrupt, SystemExit) leaves dispatch() too,
            # and the timers and callables already taken off the heap and the
            # queue for this round would be lost with it: a loopexit(), a
            # listener's back-off timer, a call_soon_threadsafe() hand-off
            # never to run.  asyncio keeps them the same way (its _ready queue
            # is popped one handle at a time).
            if ev_done < len(fired) or h_done < len(handles):
                self._requeue_round(list(fired.items())[ev_done:], gens, handles[h_done:])
        return ran

    def _requeue_round(
        self,
        events: list[tuple[Event, int]],
        gens: dict[Event, int],
        handles: list[Handle],
    ) -> None:
        """Put back what a round took but did not start: the timeouts among
        *events* (readiness needs no care: it is level-triggered and reported
        again) and *handles*, the callables ahead of any handed over since
        (FIFO order)."""
        with self._lock:
            for ev, what in events:
                if (
                    what & EV_TIMEOUT
                    and ev._added
                    and ev._gen == gens[ev]
                    and ev._timeout_seq is None
                ):
                    self._schedule_timeout_locked(ev, 0.0)
            for h in handles:
                if isinstance(h, TimerHandle):
                    heapq.heappush(self._timers, (h._when, next(self._seq), h))
            self._ready.extendleft(h for h in reversed(handles) if not isinstance(h, TimerHandle))

    def _start_event(self, ev: Event, gen: int) -> bool:
        """Under the lock, decide whether *ev*'s callback may start now."""
        with self._lock:
            if ev._gen != gen or not ev._added:
                return False  # deleted since select() returned
            if not ev._what & EV_PERSIST:
                self._del_event_locked(ev)
            elif ev._timeout is not None:
                self._schedule_timeout_locked(ev, ev._timeout)
            return True

    def _drain_wakeup_locked(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._wake_pending = False

    def _wake_locked(self) -> None:
        """Make the loop thread's select() return, if another thread runs it."""
        if not self._running or self._wake_pending or self._owner == threading.get_ident():
            return
        self._wake_pending = True
        self._rt.point("base.wakeup", base=self)
        # A full socket buffer means wake-ups are pending already.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------- loop control

    def loopexit(self, delay: float | None = None) -> None:
        """End the loop after *delay* seconds, once that round's callbacks ran.

        With ``delay=None`` the loop ends after the callbacks that are active
        now.  Like libevent's, the request is a timer: made while no loop runs,
        it ends the next loop.

        Raises:
            EventBaseClosedError: the base is closed.
            TypeError: *delay* is not a number (``bool`` included).
            ValueError: *delay* is negative, NaN, infinite, or an int too large
                for a float.

        Thread-safety: any thread.  Mirrors ``event_base_loopexit``.
        """
        self.call_later(0.0 if delay is None else delay, self._set_gotterm)

    def _set_gotterm(self) -> None:
        with self._lock:
            self._gotterm = True

    def loopbreak(self) -> None:
        """End the running loop as soon as the running callback returns.

        Made while no loop runs, it has no effect (libevent forgets it too).

        Thread-safety: any thread.  Mirrors ``event_base_loopbreak``.
        """
        with self._lock:
            if self._running:
                self._break = True
                self._wake_locked()

    def call_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> Handle:
        """Run ``fn(*args)`` on the loop thread, soon, and return a cancellable ``Handle``.

        Callables run in the order they were handed over.  An exception from
        *fn* is logged and does not stop the loop.

        Raises:
            TypeError: *fn* is not callable.
            EventBaseClosedError: the base is closed.

        Thread-safety: any thread.  libevent's nearest call is ``event_base_once``
        with a zero timeout.
        """
        if not callable(fn):
            raise TypeError("fn must be callable")
        handle = Handle(self, fn, args)
        with self._lock:
            if self._closed:
                raise EventBaseClosedError("the event base is closed")
            self._ready.append(handle)
            self._rt.point("base.handoff", base=self)
            self._wake_locked()
        return handle

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` on the loop thread after *delay* seconds.

        Returns a ``TimerHandle`` whose ``cancel()`` keeps it from starting.

        Raises:
            TypeError: *fn* is not callable, or *delay* is not a number
                (``bool`` included).
            ValueError: *delay* is negative, NaN, infinite, or an int too large
                for a float.
            EventBaseClosedError: the base is closed.

        Thread-safety: any thread.  Mirrors ``event_base_once(EV_TIMEOUT)``.
        """
        if not callable(fn):
            raise TypeError("fn must be callable")
        seconds = check_timeout(delay, "delay")
        with self._lock:
            if self._closed:
                raise EventBaseClosedError("the event base is closed")
            handle = TimerHandle(self, self._rt.monotonic() + seconds, fn, args)
            heapq.heappush(self._timers, (handle._when, next(self._seq), handle))
            self._wake_locked()
        return handle

    # -------------------------------------------------------- the acceptor thread

    def start_thread(self, name: str = "threadlisten-acceptor") -> threading.Thread:
        """Start a thread that runs ``dispatch()`` and return it.

        The thread is a daemon thread; end it with ``stop()``.  An exception
        that escapes ``dispatch()`` there is logged.

        Raises:
            EventBaseClosedError: the base is closed.
            RuntimeError: a thread started here is still alive, or a loop runs.

        Thread-safety: any thread.
        """
        with self._lock:
            if self._closed:
                raise EventBaseClosedError("the event base is closed")
            if self._running or self._has_live_thread():
                raise RuntimeError("the event base already has a loop thread")
            done = threading.Event()
            thread = self._rt.thread(functools.partial(self._thread_main, done), name)
            self._thread = thread
            self._thread_done = done
            self._stop_thread = None
            # Started under the lock so that a racing stop() either sees no
            # thread at all or a started one it can join.
            thread.start()
        return thread

    def _has_live_thread(self) -> bool:
        # Lock held.  Judged by the thread's own "loop ended" event, not by
        # Thread.is_alive(), which CPython < 3.13 can get wrong (see stop()).
        done = self._thread_done
        return self._thread is not None and done is not None and not done.is_set()

    def _thread_main(self, done: threading.Event) -> None:
        try:
            self.dispatch()
        except Exception:
            logger.exception("the event base's loop thread failed")
        finally:
            done.set()

    def stop(self, timeout: float | None = None) -> None:
        """Break the loop of the thread made by ``start_thread()`` and join it.

        A ``stop()`` that races ``start_thread()`` is not lost: if the thread
        has not entered its loop yet, its loop returns at once.  With no such
        thread (never started, or already stopped) it returns at once.

        Args:
            timeout: seconds to wait for the thread to end; ``None`` waits for ever.

        Raises:
            TimeoutError: the thread did not end within *timeout*.
            RuntimeError: called on the loop thread itself (it would wait for itself).
            TypeError: *timeout* is not a number (``bool`` included).
            ValueError: *timeout* is negative, NaN, infinite, or an int too
                large for a float.  A finite timeout beyond what ``threading``
                can wait (``threading.TIMEOUT_MAX``) waits for ever.

        Thread-safety: any thread but the loop thread.  It waits for the loop
        thread, so never call it while holding a listener lock (from a
        listener callback): the loop thread may need that lock to finish.
        """
        seconds = None if timeout is None else check_timeout(timeout)
        with self._lock:
            thread = self._thread
            done = self._thread_done
            if thread is None or done is None:
                return
            if thread is threading.current_thread():
                raise RuntimeError("stop() called on the loop thread; use loopbreak()")
            self._stop_thread = thread
            if self._running:
                self._break = True
                self._wake_locked()
        # Waiting for the loop thread: a thread holding a listener lock must
        # never get here (docs/threading.md); the lock checker watches this point.
        self._rt.point("base.wait_loop", base=self)
        # Not join() alone: on CPython < 3.13 a signal handler's exception
        # (Ctrl-C) raised during join() marks a live thread as stopped
        # (python/cpython#90882), and a later stop() would then return while
        # the loop still runs.  Event.wait() is safe to interrupt.
        if seconds is not None and seconds > threading.TIMEOUT_MAX:
            seconds = None  # beyond what threading can wait (~292 years): for ever
        if not done.wait(seconds):
            raise TimeoutError(f"the loop thread did not end within {seconds} s")
        thread.join()  # returns at once: the thread has left its loop
        with self._lock:
            if self._thread is thread:
                self._thread = None
                self._thread_done = None
            if self._stop_thread is thread:
                self._stop_thread = None

    # ------------------------------------------------------------- closing

    def close(self) -> None:
        """Release the selector and the wake-up sockets (libevent's ``event_base_free``).

        Pending events become non-pending and pending callables are dropped.
        Closing twice does nothing.  Listeners on this base are not freed:
        free them first (their ``free()`` still works after the base closed).

        Raises:
            RuntimeError: a loop is running, or a thread made by ``start_thread``
                is still alive (``stop()`` it first).

        Thread-safety: any thread.
        """
        with self._lock:
            if self._closed:
                return
            if self._running or self._has_live_thread():
                raise RuntimeError("cannot close an event base while its loop runs")
            self._closed = True
            for events in self._fd_events.values():
                for ev in events:
                    ev._added = False
                    ev._gen += 1
            for _, _, item in self._timers:
                if isinstance(item, Event):
                    item._added = False
                    item._timeout_seq = None
                    item._gen += 1
            self._fd_events.clear()
            self._timers.clear()
            self._ready.clear()
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def __enter__(self) -> EventBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return f"<EventBase {state}>"

    # ------------------------------------------------- Event bookkeeping

    def _add_event(self, ev: Event, timeout: float | None) -> None:
        with self._lock:
            if self._closed:
                raise EventBaseClosedError("the event base is closed")
            if not ev._added and ev._what & (EV_READ | EV_WRITE):
                self._register_fd_locked(ev)
            ev._added = True
            ev._timeout = timeout
            if timeout is None:
                ev._timeout_seq = None
            else:
                self._schedule_timeout_locked(ev, timeout)
            self._rt.point("event.register", event=ev)
            self._wake_locked()

    def _schedule_timeout_locked(self, ev: Event, timeout: float) -> None:
        seq = next(self._seq)
        ev._timeout_seq = seq
        heapq.heappush(self._timers, (self._rt.monotonic() + timeout, seq, ev))

    def _register_fd_locked(self, ev: Event) -> None:
        fd = ev._fd
        events = self._fd_events.get(fd)
        old = 0
        if events:
            for other in events:
                old |= _selector_mask(other._what)
        new = old | _selector_mask(ev._what)
        # The selector is changed first: if it refuses the descriptor (EBADF
        # for a closed one), the base's own bookkeeping is left untouched.
        if not old:
            self._selector.register(fd, new)
        elif new != old:
            try:
                self._selector.modify(fd, new)
            except OSError:
                # Why: the descriptor was closed (EBADF) or closed and reused
                # (ENOENT) under the events already added for it, and the
                # selectors module has just dropped it from its map (its
                # modify() unregisters on failure).  Leaving those events in
                # _fd_events made a later delete() of one of them, or the loop
                # starting one on its timeout, raise KeyError from
                # unregister(); raised in the loop, it lost the timers the
                # round had taken.  A closed descriptor cannot be watched, so
                # its events are forgotten, and the OSError is raised.
                self._forget_fd_locked(fd)
                raise
        if events is None:
            self._fd_events[fd] = [ev]
        else:
            events.append(ev)

    def _del_event(self, ev: Event) -> None:
        with self._lock:
            if self._closed or not ev._added:
                return
            self._del_event_locked(ev)
            self._rt.point("event.unregister", event=ev)

    def _del_event_locked(self, ev: Event) -> None:
        ev._added = False
        ev._gen += 1
        ev._timeout_seq = None  # its heap entry, if any, is now stale
        if not ev._what & (EV_READ | EV_WRITE):
            return
        fd = ev._fd
        events = self._fd_events.get(fd)
        if not events or ev not in events:
            return
        events.remove(ev)
        new = 0
        for other in events:
            new |= _selector_mask(other._what)
        if not events:
            del self._fd_events[fd]
            self._selector.unregister(fd)  # epoll: a closed fd's EBADF is ignored
        elif new != new | _selector_mask(ev._what):  # the remaining events watch less
            try:
                self._selector.modify(fd, new)
            except OSError:
                # The descriptor was closed under the remaining events; a
                # closed descriptor cannot be polled, so forget it entirely.
                self._forget_fd_locked(fd)

    def _forget_fd_locked(self, fd: int) -> None:
        """Make every event on *fd* non-pending and drop *fd* from the selector.

        For a descriptor closed under its events, after the selector refused a
        change.  Why KeyError is ignored: the selectors module's ``modify()``
        unregisters the descriptor itself when the system call fails, so a
        second ``unregister()`` raised KeyError (out of ``Event.delete()``,
        which raises nothing, or out of the loop).
        """
        for other in self._fd_events.pop(fd, ()):
            other._added = False
            other._gen += 1
            other._timeout_seq = None  # its heap entry, if any, is now stale
        with contextlib.suppress(KeyError):
            self._selector.unregister(fd)

    def _event_pending(self, ev: Event, what: int) -> bool:
        with self._lock:
            if not ev._added:
                return False
            if what & ev._what & (EV_READ | EV_WRITE):
                return True
            return bool(what & EV_TIMEOUT and ev._timeout_seq is not None)
