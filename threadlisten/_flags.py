"""libevent's ``LEV_OPT_*`` listener flags, with libevent's values.

The values are those of ``include/event2/listener.h`` (libevent 2.2), so a
flag word copied from C code means the same thing here.
"""

from __future__ import annotations

import enum

__all__ = [
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
]


class LEV_OPT(enum.IntFlag):  # libevent's name, kept for porting
    """Listener options, OR-ed together (libevent's ``LEV_OPT_*``).

    Members:
        LEAVE_SOCKETS_BLOCKING: accepted sockets are left blocking.
        CLOSE_ON_FREE: destroy closes the listening socket.
        CLOSE_ON_EXEC: the listening and accepted sockets are non-inheritable
            (they always are in Python, PEP 446; the flag is kept for ports).
        REUSEABLE: ``SO_REUSEADDR`` on a socket made by ``Listener.bind``.
        THREADSAFE: the listener has a recursive lock, so any thread may call it.
        DISABLED: the listener starts disabled.
        DEFERRED_ACCEPT: ``TCP_DEFER_ACCEPT`` on Linux (bind only), no-op elsewhere.
        REUSEABLE_PORT: ``SO_REUSEPORT`` (load-balancing platforms only).
        BIND_IPV6ONLY: ``IPV6_V6ONLY = 1`` on an IPv6 socket made by ``bind``.
        BIND_IPV4_AND_IPV6: ``IPV6_V6ONLY = 0`` on an IPv6 socket made by ``bind``.
    """

    LEAVE_SOCKETS_BLOCKING = 1 << 0
    CLOSE_ON_FREE = 1 << 1
    CLOSE_ON_EXEC = 1 << 2
    REUSEABLE = 1 << 3
    THREADSAFE = 1 << 4
    DISABLED = 1 << 5
    DEFERRED_ACCEPT = 1 << 6
    REUSEABLE_PORT = 1 << 7
    BIND_IPV6ONLY = 1 << 8
    BIND_IPV4_AND_IPV6 = 1 << 9


#: Every bit libevent defines; anything else in a flag word is a ValueError.
ALL_FLAGS = LEV_OPT(sum(int(f) for f in LEV_OPT))

LEV_OPT_LEAVE_SOCKETS_BLOCKING = LEV_OPT.LEAVE_SOCKETS_BLOCKING
LEV_OPT_CLOSE_ON_FREE = LEV_OPT.CLOSE_ON_FREE
LEV_OPT_CLOSE_ON_EXEC = LEV_OPT.CLOSE_ON_EXEC
LEV_OPT_REUSEABLE = LEV_OPT.REUSEABLE
LEV_OPT_THREADSAFE = LEV_OPT.THREADSAFE
LEV_OPT_DISABLED = LEV_OPT.DISABLED
LEV_OPT_DEFERRED_ACCEPT = LEV_OPT.DEFERRED_ACCEPT
LEV_OPT_REUSEABLE_PORT = LEV_OPT.REUSEABLE_PORT
LEV_OPT_BIND_IPV6ONLY = LEV_OPT.BIND_IPV6ONLY
LEV_OPT_BIND_IPV4_AND_IPV6 = LEV_OPT.BIND_IPV4_AND_IPV6


def check_flags(flags: object) -> LEV_OPT:
    """Return *flags* as an ``LEV_OPT``.

    Raises:
        TypeError: *flags* is not an int (``bool`` is refused too).
        ValueError: *flags* has a bit that libevent does not define.
    """
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise TypeError(f"flags must be an LEV_OPT or int, not {type(flags).__name__}")
    if flags < 0 or flags & ~int(ALL_FLAGS):
        raise ValueError(f"unknown LEV_OPT bits in {flags:#x}")
    return LEV_OPT(flags)
