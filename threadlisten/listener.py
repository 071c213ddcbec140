"""``Listener``: libevent's ``evconnlistener``, with its concurrency model kept and checked.

A listener watches a listening socket with an ``Event`` on an ``EventBase``.
When the socket is readable, the loop thread accepts up to ``max_accepts``
connections and hands each one to the accept callback.

Thread-safety contract
----------------------
* **THREADSAFE listeners may be used from any thread, at any moment.**
  ``enable``, ``disable``, ``set_cb``, ``set_error_cb``, ``free`` and every
  property take the listener's recursive lock.  The accept loop holds that
  same lock for a whole batch, so the callbacks run with it held (libevent's
  contract since its fix for #1224).  A callback may therefore call any method
  of its own listener, ``free()`` included.
* **A call from another thread waits for the batch in progress, not for a
  stream of batches.**  The lock alone is not fair: the loop thread could
  take it again for the next batch before a waiting thread wakes up.  So a
  caller that finds the lock taken waits for it holding the listener's
  *gate* (``_CallerLock``), and the loop thread passes the gate (takes and
  releases it, holding nothing else) before each batch.  The caller thus
  waits for the rest of the batch in progress and, if that batch ends just
  as it arrives, for at most one more (one that passed the gate before the
  caller took it); with several callers at once, at most one batch runs
  between two of them.
* **A listener without THREADSAFE has no lock.**  Use it from one thread at a
  time; while its base's loop runs, that thread is the loop thread (from its
  callbacks, or via ``call_soon_threadsafe``).  Nothing checks this outside
  lock-debugging mode; breaking it is a data race.
* **Never wait for the loop thread while holding a listener lock**, i.e.
  inside a listener callback do not call ``EventBase.stop()``, join the loop
  thread, or wait for work that needs this listener's lock in another thread.
  threadlisten itself never does: ``disable()`` and ``free()`` unregister the
  listener's event without waiting for the loop.  That is how it avoids the
  deadlock libevent still has (docs/threading.md): libevent's ``free`` and
  ``disable`` hold the listener lock while ``event_del`` waits for a running
  read callback, and that callback may be stuck waiting for the very same lock.
* Lock order, for one listener: ``listener.gate -> listener.lock ->
  base.lock``.  The base never calls out while holding its lock; the gate is
  held only while waiting for its own listener's lock, whose holder never
  waits for that gate; the loop thread holds no listener lock when it passes
  a gate.  So no cycle is possible.  Between listeners the order is the
  user's: a callback of A calling B takes B's gate (if B's lock is taken)
  and B's lock under A's lock; a lock checker should see that as A's lock ->
  B's lock (docs/threading.md).

The refcount
------------
A listener starts with one reference, the owner's, which ``free()`` drops.
The accept loop holds a second reference for the length of a batch (so the
callbacks see ``refcount == 2``); the last ``decref`` destroys the listener
there and then, in whichever thread drops it: it unregisters the event, cancels
any back-off timer, and closes the socket if ``CLOSE_ON_FREE`` (else leaves it
open for the caller).  So a callback that frees its own listener is safe: the
batch's reference keeps it alive until the callback returns, and destroy runs
right after, on the loop thread.  A ``free()`` from another thread takes the
lock, so it runs between batches; once it returns no callback is running and,
because every batch first checks ``freed`` under the lock, none ever starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

from threadlisten._accept_errors import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    AcceptErrorClass,
    classify,
)
from threadlisten._flags import LEV_OPT, check_flags
from threadlisten._runtime import DelegatingLock, LockLike, Runtime
from threadlisten._sockets import (
    adopt_socket,
    check_backlog,
    check_bind_flags,
    make_bound_socket,
    resolve_address,
    start_listening,
)
from threadlisten.base import EventBase, TimerHandle
from threadlisten.errors import EventBaseClosedError, ListenerFreedError
from threadlisten.event import EV_PERSIST, EV_READ, Event

__all__ = ["DEFAULT_MAX_ACCEPTS", "AcceptCallback", "ErrorCallback", "Listener"]

logger = logging.getLogger("threadlisten")

#: ``cb(listener, sock, address, arg)``: the callback owns *sock*.
AcceptCallback = Callable[["Listener", socket.socket, Any, Any], None]
#: ``errorcb(listener, error, arg)``: *arg* is the accept callback's argument.
ErrorCallback = Callable[["Listener", OSError, Any], None]

#: Connections accepted per readiness event by default.  libevent drains the
#: backlog without limit; the Python peers stop at 100-128.  A bound keeps one
#: busy listener from starving the other events of its base, and the lock is
#: released between batches so control calls from other threads get in.
#: Measured in burst mode on a 2-core machine (benchmarks/max_accepts.py, see
#: docs/performance.md): throughput rises steeply up to about 16 and is flat
#: from 32 on, so 64 buys the full rate while a batch stays short.
DEFAULT_MAX_ACCEPTS = 64

_NO_FLAGS = LEV_OPT(0)
_SOCKET_ACCEPT = socket.socket.accept
_new_socket = socket.socket
_CREATE = object()  # the constructor is private: use from_socket() or bind()


class _NoLock:
    """The "lock" of a listener without THREADSAFE: it does nothing.

    libevent's LOCK/UNLOCK are no-ops when ``lev->lock`` is NULL; so is this.
    """

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> bool:
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        pass


_NO_LOCK = _NoLock()


class _CallerLock(DelegatingLock):
    """How a public call takes a THREADSAFE listener's lock: fairly against the loop.

    Why.  ``listener.lock`` (an ``RLock``) is not fair: when a batch ends, the
    loop thread may take it again for the next batch before a thread that was
    waiting for it wakes up, so under a stream of connections a ``free()``
    from another thread could wait for batch after batch (the stress tests
    saw 287 ms against a 64 ms batch; docs/stress.md, finding 1).

    How.  A caller that finds the lock taken waits for it *holding the gate*,
    and the loop thread passes the gate (acquire, release) before each batch
    (``Listener._on_readable``, ``Listener._backoff_expired``).  While a
    caller waits, the next batch therefore cannot start: the loop finishes
    the batch in progress and the caller gets the lock.  The only batch that
    can slip in is one that passed the gate between the caller's failed
    try-acquire and its taking the gate.

    The first step is a non-blocking ``acquire``: it succeeds when the lock
    is free or already this thread's (a callback calling its own listener,
    which must never wait for the gate: the loop thread is the holder).
    ``release`` and ``__exit__`` go straight to the lock; the gate is
    released as soon as the lock is taken.

    Lock order: ``listener.gate -> listener.lock`` (of the same listener).
    The gate is held only while waiting for that lock, and the loop thread
    holds nothing (no listener lock) when it passes the gate, so the gate
    adds no cycle.  For lock-order checking, a call through here is a
    blocking acquisition of the lock even when its try-acquire succeeds (it
    would have waited had the lock been taken), and the gate is ordered as
    the lock it guards.  A caller in libevent's window (the loop has dispatched
    the read event, not yet taken the lock) holds the gate only if another
    caller holds the lock; that caller never waits for the loop, so it
    releases the lock, this one takes it, releases the gate, and the loop
    goes on: the window stays harmless.
    """

    __slots__ = ("_gate",)

    def __init__(self, lock: LockLike, gate: LockLike) -> None:
        super().__init__(lock)
        self._gate = gate

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        # Free, or already ours (a callback calling its own listener): no gate.
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        # Contended: wait holding the gate, so the loop cannot start a new
        # batch meanwhile.  (A timeout bounds only the wait for the lock.)
        with self._gate:
            return self._lock.acquire(True, timeout)


def _check_callback(cb: object, what: str) -> None:
    if cb is not None and not callable(cb):
        raise TypeError(f"{what} must be callable or None, not {type(cb).__name__}")


def _check_max_accepts(max_accepts: object) -> int:
    if isinstance(max_accepts, bool) or not isinstance(max_accepts, int):
        raise TypeError(f"max_accepts must be an int, not {type(max_accepts).__name__}")
    if max_accepts < 1:
        raise ValueError(f"max_accepts must be >= 1, not {max_accepts}")
    return max_accepts


class Listener:
    """A connection listener (libevent's ``struct evconnlistener``).

    Make one with ``Listener.from_socket`` (``evconnlistener_new``) or
    ``Listener.bind`` (``evconnlistener_new_bind``).  See the module docstring
    for the thread-safety contract and the refcount.

    The accept callback ``cb(listener, sock, address, arg)`` runs on the loop
    thread, with the listener lock held and the refcount raised by one; it owns
    *sock* (non-blocking unless ``LEAVE_SOCKETS_BLOCKING``, never inheritable),
    even if it raises.  The error callback ``errorcb(listener, error, arg)``
    runs the same way with the ``OSError`` that ``accept()`` raised.  An
    exception from either is logged on the ``threadlisten`` logger and the
    batch goes on.

    Used as a context manager, it frees itself on exit unless already freed.
    """

    __slots__ = (
        "__weakref__",
        "_arg",
        "_armed",
        "_backoff",
        "_backoff_delay",
        "_base",
        "_caller_lock",
        "_cb",
        "_conn_point",
        "_destroyed",
        "_enabled",
        "_errorcb",
        "_event",
        "_fd",
        "_flags",
        "_freed",
        "_gate",
        "_lock",
        "_max_accepts",
        "_point",
        "_raw_accept",
        "_refcount",
        "_sock",
        "_sock_args",
        "_wrapped",
    )

    def __init__(
        self,
        token: object,
        base: EventBase,
        sock: socket.socket,
        wrapped: bool,
        cb: AcceptCallback | None,
        arg: Any,
        flags: LEV_OPT,
        max_accepts: int,
    ) -> None:
        if token is not _CREATE:
            raise TypeError("use Listener.from_socket() or Listener.bind() to make a listener")
        rt = base.runtime
        self._base = base
        self._sock = sock
        self._fd = sock.fileno()
        self._wrapped = wrapped
        self._flags = flags
        self._max_accepts = max_accepts
        self._point = rt.point
        # The accept loop's per-connection points: None when the runtime's
        # point() is the production no-op, so the loop skips the calls (three
        # per connection cost ~10% of a loopback accept; measured by
        # `python -m tests.explorer.bench seam`).  Checkers override point()
        # and so still see every one.
        self._conn_point = None if type(rt).point is Runtime.point else rt.point
        # socket.socket.accept() is _accept() plus a socket() built from the
        # listening socket's family and type, properties that convert to enums
        # on every call: ~1 us and 6 allocations per connection, a tenth of an
        # accept-and-close.  So the accept loop calls _accept() and builds the
        # socket from these ints itself, unless the socket's class has an
        # accept() of its own (ssl.SSLSocket, tests that inject errors), which
        # is then called as it is.
        self._raw_accept: Callable[[], tuple[int, Any]] | None = None
        self._sock_args = (0, 0, 0)
        if type(sock).accept is _SOCKET_ACCEPT:
            # _accept is the C method socket.py's accept() wraps (CPython and
            # PyPy alike); typeshed leaves it out.
            self._raw_accept = sock._accept  # type: ignore[attr-defined]
            self._sock_args = (int(sock.family), int(sock.type), sock.proto)
        # Public calls take the lock through _caller_lock, which waits holding
        # the gate so that the loop thread, which passes the gate before each
        # batch, cannot starve them (see _CallerLock).  The loop takes _lock
        # directly.  Order: listener.gate -> listener.lock -> base.lock.
        if flags & LEV_OPT.THREADSAFE:
            self._lock: LockLike = rt.rlock("listener.lock")
            self._gate: LockLike = rt.lock("listener.gate")
            self._caller_lock: LockLike = _CallerLock(self._lock, self._gate)
        else:
            self._lock = self._gate = self._caller_lock = _NO_LOCK
        # Guarded by self._lock:
        self._cb = cb
        self._arg = arg
        self._errorcb: ErrorCallback | None = None
        self._enabled = False  # the user's intent (libevent's lev->enabled)
        self._armed = False  # whether self._event is added to the base
        self._refcount = 1  # the owner's reference, dropped by free()
        self._freed = False
        self._destroyed = False
        self._backoff: TimerHandle | None = None  # pending back-off timer
        self._backoff_delay: float | None = None  # last back-off, reset by a success
        self._event = Event(base, self._fd, EV_READ | EV_PERSIST, self._on_readable)

    # ----------------------------------------------------------- constructors

    @classmethod
    def from_socket(
        cls,
        base: EventBase,
        sock: socket.socket | int,
        cb: AcceptCallback | None,
        arg: Any = None,
        *,
        flags: LEV_OPT | int = _NO_FLAGS,
        backlog: int = -1,
        max_accepts: int = DEFAULT_MAX_ACCEPTS,
    ) -> Listener:
        """Make a listener on an existing bound socket (libevent's ``evconnlistener_new``).

        Args:
            base: the ``EventBase`` whose loop accepts.
            sock: a bound ``socket.socket`` (SOCK_STREAM; AF_INET, AF_INET6 or
                AF_UNIX), or its int descriptor.  It is made non-blocking.
            cb: the accept callback, or ``None`` to start as if disabled.
            arg: passed to *cb* and to the error callback.
            flags: ``LEV_OPT`` bits.  ``CLOSE_ON_FREE``: destroy closes *sock*;
                without it *sock* is left open for the caller (an int
                descriptor is detached, never closed).  ``CLOSE_ON_EXEC``
                makes it non-inheritable.  ``REUSEABLE``, ``REUSEABLE_PORT``,
                ``DEFERRED_ACCEPT`` and the ``BIND_*`` flags only apply in
                ``bind``, as in libevent, and are ignored here.
            backlog: ``> 0``: ``listen(backlog)``; ``< 0``: ``listen(128)``;
                ``0``: *sock* is already listening.
            max_accepts: the most connections accepted per readiness event (>= 1).

        Returns:
            The listener, enabled unless ``DISABLED`` is in *flags*.

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: bad flags, backlog or max_accepts; *sock* closed, not a
                stream socket, or (backlog 0) not listening.
            OSError: ``listen()`` or another system call failed (with its errno).
            EventBaseClosedError: *base* is closed.
            On failure *sock* stays open and belongs to the caller.

        Thread-safety: any thread.
        """
        base, flags, backlog, max_accepts = cls._check_common(
            base, cb, flags, backlog, max_accepts, allow_zero=True
        )
        obj, wrapped = adopt_socket(sock)
        try:
            start_listening(obj, backlog)
            if flags & LEV_OPT.CLOSE_ON_EXEC:
                obj.set_inheritable(False)
            return cls._create(base, obj, wrapped, cb, arg, flags, max_accepts)
        except BaseException:
            if wrapped:
                obj.detach()  # the descriptor is the caller's: never close it here
            raise

    @classmethod
    def bind(
        cls,
        base: EventBase,
        address: tuple[Any, ...] | str | bytes,
        cb: AcceptCallback | None,
        arg: Any = None,
        *,
        flags: LEV_OPT | int = _NO_FLAGS,
        backlog: int = -1,
        max_accepts: int = DEFAULT_MAX_ACCEPTS,
    ) -> Listener:
        """Make a socket, bind it, and listen on it (libevent's ``evconnlistener_new_bind``).

        Args:
            base: the ``EventBase`` whose loop accepts.
            address: ``(host, port)`` (IPv4 or IPv6, chosen from the host),
                ``(host, port, flowinfo, scope_id)`` (IPv6), or a ``str``/``bytes``
                AF_UNIX path.  Port 0 picks a free port (read it from
                ``listener.socket.getsockname()``).
            cb, arg, max_accepts: as in ``from_socket``.
            flags: ``LEV_OPT`` bits.  The new socket is non-blocking with
                ``SO_KEEPALIVE`` on TCP (300 s idle, as libevent);
                ``REUSEABLE``: ``SO_REUSEADDR``; ``REUSEABLE_PORT``: ``SO_REUSEPORT``;
                ``DEFERRED_ACCEPT``: ``TCP_DEFER_ACCEPT`` (Linux, else no-op);
                ``BIND_IPV6ONLY``/``BIND_IPV4_AND_IPV6``: ``IPV6_V6ONLY`` 1/0.
                As in libevent, ``bind`` does not add ``CLOSE_ON_FREE``: without
                it the socket outlives the listener and is the caller's to close.
            backlog: ``> 0``: ``listen(backlog)``; ``< 0``: ``listen(128)``; 0 is refused.

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: backlog 0; a port out of range; an IPv6 flag with an
                IPv4 or Unix address; both IPv6 flags; REUSEABLE or
                REUSEABLE_PORT with a Unix path; bad flags or max_accepts.
            OSError: the host does not resolve (``socket.gaierror``),
                ``REUSEABLE_PORT`` is unsupported here (``ENOPROTOOPT``), or a
                system call failed (``EADDRINUSE`` ...), errno kept.
            EventBaseClosedError: *base* is closed.
            On any failure the new socket is closed.

        Thread-safety: any thread.
        """
        base, flags, backlog, max_accepts = cls._check_common(
            base, cb, flags, backlog, max_accepts, allow_zero=False
        )
        family, sockaddr = resolve_address(address)
        check_bind_flags(family, flags)
        sock = make_bound_socket(family, sockaddr, flags)
        try:
            start_listening(sock, backlog)
            return cls._create(base, sock, False, cb, arg, flags, max_accepts)
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _check_common(
        base: object,
        cb: object,
        flags: object,
        backlog: object,
        max_accepts: object,
        *,
        allow_zero: bool,
    ) -> tuple[EventBase, LEV_OPT, int, int]:
        if not isinstance(base, EventBase):
            raise TypeError(f"base must be an EventBase, not {type(base).__name__}")
        _check_callback(cb, "cb")
        checked_flags = check_flags(flags)
        checked_backlog = check_backlog(backlog, allow_zero=allow_zero)
        checked_max = _check_max_accepts(max_accepts)
        if base.closed:
            raise EventBaseClosedError("the event base is closed")
        return base, checked_flags, checked_backlog, checked_max

    @classmethod
    def _create(
        cls,
        base: EventBase,
        sock: socket.socket,
        wrapped: bool,
        cb: AcceptCallback | None,
        arg: Any,
        flags: LEV_OPT,
        max_accepts: int,
    ) -> Listener:
        listener_cls = base.runtime.listener_type(cls)
        listener = listener_cls(_CREATE, base, sock, wrapped, cb, arg, flags, max_accepts)
        if not flags & LEV_OPT.DISABLED:
            listener.enable()
        return listener

    # -------------------------------------------------------------- properties

    def _check_alive(self) -> None:
        # Called with the lock held.
        if self._freed:
            raise ListenerFreedError("the listener has been freed")

    @property
    def fd(self) -> int:
        """The listening descriptor (libevent's ``evconnlistener_get_fd``).

        Raises ``ListenerFreedError`` after ``free()``.  Any thread (THREADSAFE).
        """
        with self._caller_lock:
            self._check_alive()
            return self._fd

    @property
    def base(self) -> EventBase:
        """The ``EventBase`` (libevent's ``evconnlistener_get_base``).

        Raises ``ListenerFreedError`` after ``free()``.  Any thread (THREADSAFE).
        """
        with self._caller_lock:
            self._check_alive()
            return self._base

    @property
    def socket(self) -> socket.socket:
        """The listening ``socket.socket`` (for ``getsockname()``, socket options ...).

        Do not close it or accept on it while the listener lives.  Raises
        ``ListenerFreedError`` after ``free()``.  Any thread (THREADSAFE).
        """
        with self._caller_lock:
            self._check_alive()
            return self._sock

    @property
    def flags(self) -> LEV_OPT:
        """The ``LEV_OPT`` flags it was made with.  Raises ``ListenerFreedError`` after free."""
        with self._caller_lock:
            self._check_alive()
            return self._flags

    @property
    def max_accepts(self) -> int:
        """The most connections accepted per readiness event.  Raises after free."""
        with self._caller_lock:
            self._check_alive()
            return self._max_accepts

    @property
    def enabled(self) -> bool:
        """Whether the listener is enabled (the intent: it may still wait for a
        callback or for an error back-off to end).  Raises after free."""
        with self._caller_lock:
            self._check_alive()
            return self._enabled

    @property
    def backing_off(self) -> bool:
        """Whether accepting is paused after a resource error (EMFILE ...).  Raises after free."""
        with self._caller_lock:
            self._check_alive()
            return self._backoff is not None

    @property
    def freed(self) -> bool:
        """Whether ``free()`` has been called.  Never raises; any thread."""
        with self._caller_lock:
            return self._freed

    @property
    def refcount(self) -> int:
        """The reference count: 1 idle, 2 inside a callback, 0 once destroyed.

        It is 0 only after destroy has finished (the socket closed, with
        CLOSE_ON_FREE).  Never raises; any thread.
        """
        with self._caller_lock:
            return self._refcount

    # ------------------------------------------------------------- control

    def enable(self) -> None:
        """Start (or resume) accepting (libevent's ``evconnlistener_enable``).

        Without a callback it records the intent; ``set_cb`` then arms it.
        During an error back-off it takes effect when the back-off ends.
        Enabling an enabled listener does nothing.

        Raises:
            ListenerFreedError: after ``free()``.
            EventBaseClosedError: the base is closed.

        Thread-safety: any thread (THREADSAFE), including the callbacks.
        """
        with self._caller_lock:
            self._check_alive()
            was = self._enabled
            if not was and self._armed and self._base.closed:
                # A lazy disable() left the event added, so _update_armed()
                # would not touch the base: check it as add() would have.
                raise EventBaseClosedError("the event base is closed")
            self._enabled = True
            try:
                self._update_armed()
            except BaseException:
                self._enabled = was
                raise

    def disable(self) -> None:
        """Stop accepting (libevent's ``evconnlistener_disable``).

        Connections keep queuing in the kernel's backlog until ``enable()``.
        From inside a callback the batch stops right after that callback.
        From another thread it returns once the current batch (if any) has
        ended, and no callback starts after that.  It never waits for the loop.

        Unlike libevent, it leaves the read event added: the loop thread
        deletes it when its next dispatch finds the listener disabled (one
        wake-up that accepts nothing), so a quick ``disable(); enable()``
        touches neither the selector nor the loop (docs/threading.md).

        Raises:
            ListenerFreedError: after ``free()``.

        Thread-safety: any thread (THREADSAFE), including the callbacks.
        """
        with self._caller_lock:
            self._check_alive()
            self._enabled = False
            self._update_armed(lazy=True)

    def set_cb(self, cb: AcceptCallback | None, arg: Any = None) -> None:
        """Replace the accept callback and its argument together (``evconnlistener_set_cb``).

        ``None`` makes the listener act as disabled (connections stay queued;
        libevent instead accepts and closes one per wake-up).  Giving a callback
        to an enabled listener that had none arms it.  *arg* is also what the
        error callback receives.

        Raises:
            TypeError: *cb* is neither callable nor None.
            ListenerFreedError: after ``free()``.
            EventBaseClosedError: the base is closed and *cb* would arm an
                enabled listener whose read event is not added (the pair is
                set all the same).

        Thread-safety: any thread (THREADSAFE), including the callbacks; the
        next connection sees the new pair, never half of it.
        """
        _check_callback(cb, "cb")
        with self._caller_lock:
            self._check_alive()
            self._cb = cb
            self._arg = arg
            self._update_armed(lazy=True)

    def set_error_cb(self, errorcb: ErrorCallback | None) -> None:
        """Set the error callback, or ``None`` to log errors (``evconnlistener_set_error_cb``).

        Raises:
            TypeError: *errorcb* is neither callable nor None.
            ListenerFreedError: after ``free()``.

        Thread-safety: any thread (THREADSAFE), including the callbacks.
        """
        _check_callback(errorcb, "errorcb")
        with self._caller_lock:
            self._check_alive()
            self._errorcb = errorcb

    def free(self) -> None:
        """Drop the owner's reference (libevent's ``evconnlistener_free``).

        Clears both callbacks and stops accepting.  If no callback of this
        listener is running, the listener is destroyed now, in this thread:
        its event is unregistered and its socket closed if ``CLOSE_ON_FREE``
        (otherwise left open for the caller).  Called from inside its own
        callback, destroy happens on the loop thread as soon as that callback
        returns.  Called from another thread, it first waits for the running
        batch (it needs the lock; the exact bound is in the module docstring),
        never for the loop itself; when it returns, no callback is running and
        none will ever start.

        Raises:
            ListenerFreedError: already freed.

        Thread-safety: any thread (THREADSAFE), including the callbacks.
        """
        self._caller_lock.acquire()  # fair against the loop thread: see _CallerLock
        if self._freed:
            self._lock.release()
            raise ListenerFreedError("the listener has already been freed")
        try:
            self._freed = True
            self._cb = None
            self._arg = None
            self._errorcb = None
            self._cancel_backoff()
            self._update_armed()
        except BaseException:
            self._lock.release()
            raise
        self._decref_and_unlock()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        # free() decides "already freed" under the lock, so a free() racing
        # this one from another thread is not an error here.
        with contextlib.suppress(ListenerFreedError):
            self.free()

    def __repr__(self) -> str:
        if self._destroyed:
            state = "destroyed"
        elif self._freed:
            state = "freed"
        else:
            state = "enabled" if self._enabled else "disabled"
        return f"<Listener fd={self._fd} {state} flags={self._flags!r} refcount={self._refcount}>"

    # ------------------------------------------- lock-held internals

    def _update_armed(self, lazy: bool = False) -> None:
        """Add or delete the read event so that it is added when a connection
        may be accepted.  Lock held.  Never waits for the loop.

        *lazy* (``disable()``, ``set_cb(None)``): leave an added event added;
        the loop thread deletes it when it next finds the listener unable to
        accept (``_on_readable``).  Why: a thread that pauses and resumes a
        busy listener (``disable(); enable()``) otherwise removes and re-adds
        the descriptor on every call, two ``epoll_ctl`` calls and a wake-up of
        the loop each, and every removal drops the readiness ``select()`` has
        just reported (the event's generation moves on), so under a GIL the
        loop mostly went round again instead of accepting: 1 % of the accept
        rate against 20-30 % for a thread that merely keeps the GIL busy
        (docs/performance.md).  Lazily, a quick ``disable(); enable()``
        touches neither the selector nor the loop.  What it costs: one
        dispatch of a disabled listener that finds it disabled, deletes the
        event and accepts nothing; no callback can start, because
        ``_on_readable`` checks ``_can_accept()`` under this lock.
        """
        want = self._enabled and self._cb is not None and not self._freed and self._backoff is None
        if want and not self._armed:
            self._event.add()
            self._armed = True
        elif not want and self._armed and not lazy:
            self._event.delete()
            self._armed = False

    def _cancel_backoff(self) -> None:
        # Lock held.  Cancelling takes the base lock: listener.lock -> base.lock.
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None

    def _incref(self) -> None:
        # Lock held.
        self._refcount += 1
        self._point("listener.refcount", listener=self, refcount=self._refcount)

    def _decref_and_unlock(self) -> None:
        """Drop a reference and release the lock (libevent's
        ``listener_decref_and_unlock``); the last reference destroys.

        Lock held on entry (exactly once more than the caller will hold after),
        released on every exit path.
        """
        refcount = self._refcount - 1
        if refcount:
            self._refcount = refcount
            try:
                self._point("listener.refcount", listener=self, refcount=refcount)
            finally:
                # A checker's point() may raise: the lock is released anyway.
                self._lock.release()
            return
        try:
            self._destroy()
        finally:
            # 0 only once destroy has finished: readers take the lock, and
            # they get it only after this.
            self._refcount = 0
            try:
                self._point("listener.refcount", listener=self, refcount=0)
            finally:
                self._lock.release()
        # libevent frees the lock here and its debug locks assert that nobody
        # holds it any more (the check that caught bug #341).
        self._point("listener.destroyed", listener=self)

    def _destroy(self) -> None:
        # Lock held, refcount about to be 0, runs exactly once.  Nothing here
        # waits for the loop thread: Event.delete() never blocks.
        self._point("listener.destroy", listener=self)
        self._destroyed = True
        self._cancel_backoff()
        self._event.delete()
        self._armed = False
        if self._flags & LEV_OPT.CLOSE_ON_FREE:
            self._sock.close()
        elif self._wrapped:
            self._sock.detach()  # leave the caller's descriptor open

    # --------------------------------------------------------- the accept loop

    def _can_accept(self) -> bool:
        # Lock held.  Rule: accept only when a callback will receive the socket.
        return self._enabled and self._cb is not None and not self._freed and self._backoff is None

    def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
        """The read callback of the listening socket (libevent's ``listener_read_cb``).

        Loop thread only.  Takes the lock, holds a reference for the batch,
        accepts while allowed, and releases both on every path.
        """
        # The loop has dispatched this event but not taken the lock: the window
        # in which libevent deadlocks against free()/disable() from another
        # thread.  Here those calls never wait for the loop, so the window is
        # harmless; the point lets tests hold a thread inside it.
        self._point("listener.dispatched", listener=self)
        # Fairness: pass the gate before the batch.  A public call that found
        # the lock taken waits for it holding the gate, so this waits until
        # that caller has had the lock, instead of re-taking the lock before
        # the caller wakes (the RLock is not fair).  This thread holds no
        # listener lock here: gate -> lock is the only order the gate is in.
        # A caller holding the gate while this thread waits for it is waiting
        # for the listener lock, which this thread does not hold and whose
        # holder (another caller) never waits for the loop: the caller gets
        # it, releases the gate, and this thread goes on.
        self._gate.acquire()
        self._gate.release()
        self._lock.acquire()
        if not self._can_accept():
            # free()/disable()/set_cb(None) won the race for the lock, or a
            # lazy disable() left the event added: delete it now (this
            # thread owns the loop, so no wake-up is needed).
            try:
                self._update_armed()
            finally:
                self._lock.release()
            return
        try:
            self._incref()  # its point() may raise: the reference is taken first
            self._accept_batch()
        finally:
            try:
                if not self._freed and not self._can_accept():
                    self._update_armed()  # a callback disabled it: the lazy delete
            finally:
                self._decref_and_unlock()

    def _accept_batch(self) -> None:
        # Lock and a reference held.
        accept = self._sock.accept
        raw_accept = self._raw_accept
        family, stype, proto = self._sock_args
        leave_blocking = bool(self._flags & LEV_OPT.LEAVE_SOCKETS_BLOCKING)
        point = self._conn_point
        for _ in range(self._max_accepts):
            # Checked before every accept: a callback may have disabled or
            # freed the listener, or swapped in cb=None.
            if not self._can_accept():
                return
            try:
                if raw_accept is None:
                    conn, address = accept()
                else:
                    fd, address = raw_accept()
            except OSError as err:
                kind = classify(err)
                if kind is AcceptErrorClass.DRAINED:
                    return
                if kind is AcceptErrorClass.PER_CONNECTION:
                    continue  # counts toward max_accepts, so it cannot spin
                self._accept_failed(err, kind)
                return
            if raw_accept is not None:
                # socket.socket.accept(), with the enums looked up once; the
                # blocking mode is set just below either way.
                try:
                    conn = _new_socket(family, stype, proto, fileno=fd)
                except BaseException:
                    os.close(fd)
                    raise
            if point is not None:
                point("listener.accepted", listener=self)
            self._backoff_delay = None
            try:
                conn.setblocking(leave_blocking)
            except OSError:
                conn.close()  # cannot hand out a socket in the wrong mode
                continue
            cb, arg = self._cb, self._arg
            assert cb is not None  # _can_accept() said so, under the lock
            if point is not None:
                point("listener.callback_enter", listener=self, which="accept")
            try:
                cb(self, conn, address, arg)
            except Exception:
                logger.exception("exception in accept callback %r", cb)
            if point is not None:
                point("listener.callback_exit", listener=self, which="accept")

    def _accept_failed(self, err: OSError, kind: AcceptErrorClass) -> None:
        # Lock and a reference held.
        if kind is AcceptErrorClass.RESOURCE:
            # Pause instead of libevent's busy loop.  The connections stay
            # queued in the kernel; the timer re-arms the event.
            last = self._backoff_delay
            delay = BACKOFF_INITIAL if last is None else min(last * 2, BACKOFF_MAX)
            self._backoff_delay = delay
            self._backoff = self._base.call_later(delay, self._backoff_expired)
        else:
            self._enabled = False
        self._update_armed()
        errorcb, arg = self._errorcb, self._arg
        if errorcb is None:
            if kind is AcceptErrorClass.RESOURCE:
                logger.warning(
                    "accept() failed on fd %d: %s; retrying in %.3f s",
                    self._fd,
                    err,
                    self._backoff_delay,
                )
            else:
                logger.error("accept() failed on fd %d: %s; listener disabled", self._fd, err)
            return
        self._point("listener.callback_enter", listener=self, which="error")
        try:
            errorcb(self, err, arg)
        except Exception:
            logger.exception("exception in error callback %r", errorcb)
        self._point("listener.callback_exit", listener=self, which="error")

    def _backoff_expired(self) -> None:
        # Loop thread, from the back-off timer.  free() cancels the timer under
        # this lock, and a timer that had already started finds _backoff None.
        self._point("listener.backoff_expired", listener=self)
        # Pass the gate first, as _on_readable does (fairness; nothing held).
        self._gate.acquire()
        self._gate.release()
        with self._lock:
            if self._freed or self._backoff is None:
                return
            self._backoff = None
            self._update_armed()
