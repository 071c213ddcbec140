"""threadlisten's exception types.

Everything else a call can raise is a built-in: ``TypeError`` and
``ValueError`` for bad arguments, ``OSError`` (with its errno) for a failing
system call, ``TimeoutError`` for a bounded wait that ran out.
"""

from __future__ import annotations

__all__ = ["EventBaseClosedError", "ListenerFreedError"]


class ListenerFreedError(RuntimeError):
    """A call was made on a listener after ``free()``.

    Every method and property of a freed ``Listener`` raises it, except
    ``freed`` and ``refcount``, which stay readable so that a caller can
    watch the listener being destroyed.  libevent has no counterpart: using
    a freed ``struct evconnlistener`` there is a use-after-free.
    """


class EventBaseClosedError(RuntimeError):
    """A call needed an ``EventBase`` that ``close()`` has already closed.

    Raised by ``Event.add``, ``EventBase.loop``/``dispatch``, ``call_soon_threadsafe``,
    ``call_later``, ``start_thread`` and by listener calls that would register with
    the closed base (creating a listener, ``enable``).  libevent's counterpart is
    a use-after-free of a freed ``event_base``.
    """
