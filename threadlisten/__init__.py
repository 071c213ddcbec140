"""threadlisten: libevent's connection listener (``evconnlistener``) for Python,
with its concurrency model intact and checked.

An acceptor thread runs an ``EventBase``'s loop and hands each accepted TCP
(or Unix) connection to a ``Listener``'s callback, while any other thread may
``enable()``, ``disable()``, ``set_cb()``, ``set_error_cb()`` or ``free()`` the
same listener at the same moment.

Modules, in the order a newcomer should read them:

* ``threadlisten.event``    -- ``Event`` and the ``EV_*`` constants;
* ``threadlisten.base``     -- ``EventBase``, the loop;
* ``threadlisten.listener`` -- ``Listener``, its lock and its refcount;
* ``threadlisten._accept_errors`` -- how each accept() errno is handled;
* ``threadlisten._sockets`` -- making and checking listening sockets;
* ``threadlisten._runtime`` -- the seam for locks, clock and scheduling points;
* ``threadlisten.errors``   -- the exception types;
* ``threadlisten.debug``    -- the lock checker (``THREADLISTEN_LOCK_DEBUG=1``);
* ``threadlisten.trace``    -- the lifecycle tracer (``python -m threadlisten trace``);
* ``threadlisten.compat``   -- libevent's names, for porting C code line by line.
"""

from __future__ import annotations

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
from threadlisten.base import EventBase, Handle, TimerHandle
from threadlisten.errors import EventBaseClosedError, ListenerFreedError
from threadlisten.event import EV_PERSIST, EV_READ, EV_TIMEOUT, EV_WRITE, Event
from threadlisten.listener import DEFAULT_MAX_ACCEPTS, Listener

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_ACCEPTS",
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
    "Event",
    "EventBase",
    "EventBaseClosedError",
    "Handle",
    "Listener",
    "ListenerFreedError",
    "TimerHandle",
]

import os as _os

if _os.environ.get("THREADLISTEN_LOCK_DEBUG"):  # parsed by threadlisten.debug: 1/true/yes/on
    import threadlisten.debug  # noqa: F401  (installs the lock checker as the default runtime)
