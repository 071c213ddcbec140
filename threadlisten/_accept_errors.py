"""How the accept loop treats each errno that ``accept()`` can fail with.

libevent treats EAGAIN/EINTR/ECONNABORTED as "drained" and everything else as
an error for the error callback, with no back-off, so a persistent EMFILE
becomes a busy loop that calls the error callback on every pass (libevent
#71, #363, #1089).  threadlisten sorts errors into four classes instead,
following the Linux accept(2) manual and what the Python peers do
(asyncio pauses 1 s on resource errors; gevent backs off 10 ms -> 1 s):

``DRAINED``
    EAGAIN/EWOULDBLOCK: the backlog is empty; the batch ends quietly.
``PER_CONNECTION``
    The one pending connection failed (the peer reset it, a firewall refused
    it, or Linux passed a network error of the new connection up through
    accept).  Skip it and go on with the batch.  Each one counts toward
    ``max_accepts`` so that a stream of them cannot spin the loop.
``RESOURCE``
    The process or system is out of descriptors or memory.  Pause accepting
    with exponential back-off (``BACKOFF_INITIAL`` doubling to ``BACKOFF_MAX``),
    report every failed attempt to the error callback, and leave the queued
    connections in the kernel backlog for later.
``FATAL``
    Anything else (EBADF, EINVAL, ENOTSOCK ...): the listening socket itself is
    broken.  Disable the listener and report; the error callback may re-enable.
"""

from __future__ import annotations

import enum
import errno

__all__ = ["BACKOFF_INITIAL", "BACKOFF_MAX", "AcceptErrorClass", "classify"]

#: First pause after a resource error, in seconds.  Short enough that a
#: momentary shortage (a burst of short connections) costs little latency,
#: long enough that one pass of the loop does not retry at once.
BACKOFF_INITIAL = 0.010

#: Longest pause, in seconds.  Doubling from 10 ms reaches it after 7 failures;
#: at 1 s the error callback and the log see at most one attempt a second,
#: which is what asyncio settles on too.
BACKOFF_MAX = 1.0


class AcceptErrorClass(enum.Enum):
    """The four ways the accept loop reacts to an error (see the module docstring)."""

    DRAINED = "drained"
    PER_CONNECTION = "per-connection"
    RESOURCE = "resource"
    FATAL = "fatal"


def _codes(*names: str) -> frozenset[int]:
    # Not every platform defines every name (ENONET is Linux-only).
    return frozenset(getattr(errno, n) for n in names if hasattr(errno, n))


_DRAINED = _codes("EAGAIN", "EWOULDBLOCK")
_PER_CONNECTION = _codes(
    "ECONNABORTED",
    "EPERM",
    # Linux accept(2): "Linux accept() passes already-pending network errors
    # on the new socket as an error code from accept()".
    "ENETDOWN",
    "EPROTO",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
)
_RESOURCE = _codes("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")


def classify(err: OSError) -> AcceptErrorClass:
    """Return the class of an ``OSError`` raised by ``accept()``."""
    code = err.errno
    if code in _DRAINED:
        return AcceptErrorClass.DRAINED
    if code in _PER_CONNECTION:
        return AcceptErrorClass.PER_CONNECTION
    if code in _RESOURCE:
        return AcceptErrorClass.RESOURCE
    return AcceptErrorClass.FATAL
