"""libevent's names for threadlisten's calls, so that C code and the libevent
book can be read and ported line by line.

Each function here is a thin alias: it calls one method of ``Listener`` or
``EventBase`` and does nothing else, so the semantics, the thread-safety and
the exceptions are those of the Python call named in its docstring.  The
``LEV_OPT_*`` and ``EV_*`` constants are re-exported too, and so are the two
types, ``EventBase`` (``struct event_base``) and ``Listener`` (``struct
evconnlistener``), so one ``from threadlisten.compat import *`` is enough for
a port.

How the C arguments map (decided once, the same everywhere)
-----------------------------------------------------------
``(cb, ptr)``
    The callback and its ``void *`` are passed through as they are: *ptr* may
    be any Python object (``NULL`` is ``None``) and the callback receives it
    as its last argument.  The callbacks keep threadlisten's signatures:

    ============================================  ==========================================
    C                                             Python
    ============================================  ==========================================
    ``cb(lev, fd, sa, socklen, ptr)``             ``cb(lev, sock, address, ptr)``
    ``errorcb(lev, ptr)`` + ``EVUTIL_SOCKET_      ``errorcb(lev, error, ptr)``, *error* the
    ERROR()``                                     ``OSError`` (``error.errno``)
    ============================================  ==========================================

    *sock* is a ``socket.socket`` that the callback owns, as it owns *fd* in
    C (``sock.fileno()`` is the descriptor); *address* is the peer's address
    decoded the way the ``socket`` module decodes it (``(host, port)`` for
    IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6, a path for AF_UNIX),
    so ``socklen`` has nothing left to say.  The error arrives as an argument
    instead of through a thread-local ``errno``.

``sockaddr`` / ``socklen``
    ``evconnlistener_new_bind`` takes the address as Python writes it:
    ``("0.0.0.0", 9876)`` for a ``struct sockaddr_in``, ``("::1", 9876)`` for
    a ``sockaddr_in6``, ``"/path"`` for a ``sockaddr_un``.  There is no
    ``socklen`` argument (a Python address knows its length); passing one is
    a ``TypeError``, not silently ignored.

``evutil_socket_t fd``
    ``evconnlistener_new`` takes a bound ``socket.socket`` or an int
    descriptor, made non-blocking for you.

Return codes
    None.  Where C returns ``-1`` (``evconnlistener_enable``, ...) or ``NULL``
    (``evconnlistener_new_bind``), these raise: ``OSError`` with the errno,
    ``ValueError``/``TypeError`` for bad arguments, ``ListenerFreedError`` for
    a freed listener.  ``event_base_dispatch`` returns None, not 0/1.

``struct timeval *``
    Seconds as a ``float`` (``None`` for ``NULL``).

The deliberate differences in behaviour are those of threadlisten itself
(docs/porting-from-libevent.md lists them): for instance
``evconnlistener_free`` from another thread never deadlocks, and
``event_base_dispatch`` does not return merely because no event is pending.
"""

from __future__ import annotations

import socket
from typing import Any

from threadlisten._flags import (
    LEV_OPT,
    LEV_OPT_BIND_IPV4_AND_IPV6,
    LEV_OPT_BIND_IPV6ONLY,
    LEV_OPT_CLOSE_ON_EXEC,
    LEV_OPT_CLOSE_ON_FREE,
    LEV_OPT_DEFERRED_ACCEPT,
    LEV_OPT_DISABLED,
    LEV_OPT_LEAVE_SOCKETS_BLOCKING,
    LEV_OPT_REUSEABLE,
    LEV_OPT_REUSEABLE_PORT,
    LEV_OPT_THREADSAFE,
)
from threadlisten.base import EventBase
from threadlisten.event import EV_PERSIST, EV_READ, EV_TIMEOUT, EV_WRITE
from threadlisten.listener import AcceptCallback, ErrorCallback, Listener

__all__ = [
    "EV_PERSIST",
    "EV_READ",
    "EV_TIMEOUT",
    "EV_WRITE",
    "LEV_OPT",
    "LEV_OPT_BIND_IPV4_AND_IPV6",
    "LEV_OPT_BIND_IPV6ONLY",
    "LEV_OPT_CLOSE_ON_EXEC",
    "LEV_OPT_CLOSE_ON_FREE",
    "LEV_OPT_DEFERRED_ACCEPT",
    "LEV_OPT_DISABLED",
    "LEV_OPT_LEAVE_SOCKETS_BLOCKING",
    "LEV_OPT_REUSEABLE",
    "LEV_OPT_REUSEABLE_PORT",
    "LEV_OPT_THREADSAFE",
    "EventBase",
    "Listener",
    "evconnlistener_disable",
    "evconnlistener_enable",
    "evconnlistener_free",
    "evconnlistener_get_base",
    "evconnlistener_get_fd",
    "evconnlistener_new",
    "evconnlistener_new_bind",
    "evconnlistener_set_cb",
    "evconnlistener_set_error_cb",
    "event_base_dispatch",
    "event_base_loopbreak",
    "event_base_loopexit",
    "event_base_new",
]


# ------------------------------------------------------------------ event_base


def event_base_new() -> EventBase:
    """``struct event_base *event_base_new(void);``

    Python: ``EventBase()``.  Always thread-safe (libevent needs
    ``evthread_use_pthreads()`` first for that).

    Raises:
        OSError: the selector or the wake-up sockets could not be made
            (where C returns NULL).

    Thread-safety: any thread.
    """
    return EventBase()


def event_base_dispatch(base: EventBase) -> None:
    """``int event_base_dispatch(struct event_base *base);``

    Python: ``base.dispatch()``.  Runs the loop in the calling thread until
    ``event_base_loopexit``/``event_base_loopbreak``.  Unlike libevent it does
    not return when no event is pending (an acceptor thread must survive a
    disabled listener), and it returns None instead of 0/1.

    Raises:
        EventBaseClosedError: the base is closed.
        RuntimeError: a loop already runs on this base (C returns -1).

    Thread-safety: the thread that is to be the loop thread.
    """
    base.dispatch()


def event_base_loopexit(base: EventBase, tv: float | None = None) -> None:
    """``int event_base_loopexit(struct event_base *base, const struct timeval *tv);``

    Python: ``base.loopexit(tv)``, *tv* in seconds (``None`` for ``NULL``):
    end the loop after the callbacks that are active now (or after *tv*
    seconds).  Returns None instead of 0.

    Raises:
        EventBaseClosedError: the base is closed.
        TypeError, ValueError: *tv* is not a finite number of seconds >= 0.

    Thread-safety: any thread.
    """
    base.loopexit(tv)


def event_base_loopbreak(base: EventBase) -> None:
    """``int event_base_loopbreak(struct event_base *base);``

    Python: ``base.loopbreak()``: end the loop as soon as the running
    callback returns.  Returns None instead of 0.

    Thread-safety: any thread.
    """
    base.loopbreak()


# ------------------------------------------------------------------ evconnlistener


def evconnlistener_new(
    base: EventBase,
    cb: AcceptCallback | None,
    ptr: Any,
    flags: LEV_OPT | int,
    backlog: int,
    fd: socket.socket | int,
) -> Listener:
    """``struct evconnlistener *evconnlistener_new(struct event_base *base,
    evconnlistener_cb cb, void *ptr, unsigned flags, int backlog, evutil_socket_t fd);``

    Python: ``Listener.from_socket(base, fd, cb, ptr, flags=flags, backlog=backlog)``.
    *fd* is a bound ``socket.socket`` or its int descriptor; *cb* is called
    as ``cb(listener, sock, address, ptr)`` (see the module docstring).

    Raises (where C returns NULL):
        TypeError, ValueError: bad arguments (flags, backlog, a closed or
            non-stream socket).
        OSError: ``listen()`` failed, with its errno.
        EventBaseClosedError: *base* is closed.

    Thread-safety: any thread.
    """
    return Listener.from_socket(base, fd, cb, ptr, flags=flags, backlog=backlog)


def evconnlistener_new_bind(
    base: EventBase,
    cb: AcceptCallback | None,
    ptr: Any,
    flags: LEV_OPT | int,
    backlog: int,
    sa: tuple[Any, ...] | str | bytes,
) -> Listener:
    """``struct evconnlistener *evconnlistener_new_bind(struct event_base *base,
    evconnlistener_cb cb, void *ptr, unsigned flags, int backlog,
    const struct sockaddr *sa, int socklen);``

    Python: ``Listener.bind(base, sa, cb, ptr, flags=flags, backlog=backlog)``.
    *sa* is a Python address: ``(host, port)``, ``(host, port, flowinfo,
    scope_id)`` or an AF_UNIX path; there is no *socklen*.

    Raises (where C returns NULL):
        TypeError, ValueError: bad arguments, backlog 0, flags that do not fit
            the address family.
        OSError: a system call failed (``EADDRINUSE`` ...), with its errno;
            the new socket is closed.
        EventBaseClosedError: *base* is closed.

    Thread-safety: any thread.
    """
    return Listener.bind(base, sa, cb, ptr, flags=flags, backlog=backlog)


def evconnlistener_free(lev: Listener) -> None:
    """``void evconnlistener_free(struct evconnlistener *lev);``

    Python: ``lev.free()``.  From another thread it waits for a running
    batch of callbacks, never for the loop thread, so it cannot deadlock the
    way libevent's can; when it returns no callback runs or will start.

    Raises:
        ListenerFreedError: already freed (C: undefined behaviour).

    Thread-safety: any thread for a THREADSAFE listener, including its callbacks.
    """
    lev.free()


def evconnlistener_enable(lev: Listener) -> None:
    """``int evconnlistener_enable(struct evconnlistener *lev);``

    Python: ``lev.enable()``; returns None instead of 0.

    Raises (where C returns -1):
        ListenerFreedError: the listener was freed.
        EventBaseClosedError: the base is closed.

    Thread-safety: any thread for a THREADSAFE listener.
    """
    lev.enable()


def evconnlistener_disable(lev: Listener) -> None:
    """``int evconnlistener_disable(struct evconnlistener *lev);``

    Python: ``lev.disable()``; returns None instead of 0.  Never waits for
    the loop thread.

    Raises (where C returns -1):
        ListenerFreedError: the listener was freed.

    Thread-safety: any thread for a THREADSAFE listener.
    """
    lev.disable()


def evconnlistener_set_cb(lev: Listener, cb: AcceptCallback | None, arg: Any) -> None:
    """``void evconnlistener_set_cb(struct evconnlistener *lev, evconnlistener_cb cb, void *arg);``

    Python: ``lev.set_cb(cb, arg)``.  The pair changes together; ``None``
    makes the listener act as disabled (connections stay queued).

    Raises:
        TypeError: *cb* is neither callable nor None.
        ListenerFreedError: the listener was freed.

    Thread-safety: any thread for a THREADSAFE listener.
    """
    lev.set_cb(cb, arg)


def evconnlistener_set_error_cb(lev: Listener, errorcb: ErrorCallback | None) -> None:
    """``void evconnlistener_set_error_cb(struct evconnlistener *lev,
    evconnlistener_errorcb errorcb);``

    Python: ``lev.set_error_cb(errorcb)``; *errorcb* is called as
    ``errorcb(listener, error, ptr)`` with the ``OSError``.

    Raises:
        TypeError: *errorcb* is neither callable nor None.
        ListenerFreedError: the listener was freed.

    Thread-safety: any thread for a THREADSAFE listener.
    """
    lev.set_error_cb(errorcb)


def evconnlistener_get_fd(lev: Listener) -> int:
    """``evutil_socket_t evconnlistener_get_fd(struct evconnlistener *lev);``

    Python: ``lev.fd``.  (``lev.socket`` gives the ``socket.socket`` itself.)

    Raises:
        ListenerFreedError: the listener was freed.

    Thread-safety: any thread for a THREADSAFE listener.
    """
    return lev.fd


def evconnlistener_get_base(lev: Listener) -> EventBase:
    """``struct event_base *evconnlistener_get_base(struct evconnlistener *lev);``

    Python: ``lev.base``.

    Raises:
        ListenerFreedError: the listener was freed.

    Thread-safety: any thread for a THREADSAFE listener.
    """
    return lev.base
