"""``Event``: one readiness or timeout watch on an ``EventBase`` (libevent's ``struct event``).

An ``Event`` watches a descriptor for ``EV_READ`` and/or ``EV_WRITE``, with an
optional timeout (``EV_TIMEOUT``); ``EV_PERSIST`` keeps it pending after it
fires.  Its callback runs on the loop thread as ``callback(fileobj, what, arg)``
where *what* says which conditions fired.

Thread-safety: ``add``, ``delete`` and ``pending`` may be called from any
thread.  They take the base lock briefly and never wait for the loop thread or
for a running callback.  That is deliberate, and it is where threadlisten parts
from libevent: libevent's ``event_del`` waits for a callback that is running in
another thread, and that wait, made while the caller holds a listener lock, is
the deadlock described in docs/threading.md.  Here ``delete()`` guarantees only
that the callback will not *start* again; an object that needs "no callback is
running" (the listener) gets it from its own lock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadlisten.base import EventBase

__all__ = ["EV_PERSIST", "EV_READ", "EV_TIMEOUT", "EV_WRITE", "Event", "EventCallback"]

EV_TIMEOUT = 0x01
EV_READ = 0x02
EV_WRITE = 0x04
EV_PERSIST = 0x10

_KNOWN = EV_TIMEOUT | EV_READ | EV_WRITE | EV_PERSIST

#: Descriptors are C ints; a larger int would make the selector raise
#: OverflowError (or be truncated to another descriptor).
_INT_MAX = 2**31 - 1

#: ``callback(fileobj, what, arg)``
EventCallback = Callable[[Any, int, Any], None]


def fd_of(fileobj: object) -> int:
    """Return the descriptor of *fileobj* (an int or an object with ``fileno()``).

    Raises:
        TypeError: *fileobj* is neither.
        ValueError: the descriptor is negative (a closed socket, for example).
    """
    if isinstance(fileobj, bool):
        raise TypeError("a file descriptor must be an int or have fileno(), not bool")
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        fileno = getattr(fileobj, "fileno", None)
        if fileno is None:
            raise TypeError(
                f"a file descriptor must be an int or have fileno(), not {type(fileobj).__name__}"
            )
        fd = fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() did not return an int")
    if fd < 0 or fd > _INT_MAX:
        raise ValueError(f"invalid file descriptor {fd} (is the socket closed?)")
    return fd


def check_timeout(timeout: object, what: str = "timeout") -> float:
    """Return *timeout* (seconds) as a float.

    Raises:
        TypeError: not a real number.
        ValueError: negative, NaN, infinite, or an int too large for a float
            (beyond about 1.8e308).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(timeout).__name__}")
    try:
        value = float(timeout)
    except OverflowError:
        # float(10**400) raises OverflowError, which no caller documents; it
        # is a bad value like inf, so it is refused the same way (and before
        # any state changes: every caller checks first).  Its repr is not
        # shown: a huge int's str() can itself raise ValueError.
        raise ValueError(
            f"{what} must be a finite number of seconds >= 0, not a huge int"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {timeout!r}")
    return value


class Event:
    """A watch on a descriptor and/or a timeout (libevent's ``event_new``/``event_assign``).

    Args:
        base: the ``EventBase`` whose loop runs the callback.
        fileobj: a socket, an object with ``fileno()``, or an int descriptor;
            ``None`` (or -1) for a pure timer (``what`` without EV_READ/EV_WRITE).
        what: ``EV_READ``, ``EV_WRITE``, ``EV_TIMEOUT``, OR-ed, plus ``EV_PERSIST``
            to stay pending after firing.
        callback: ``callback(fileobj, what, arg)``, run on the loop thread.
        arg: passed to *callback* unchanged.

    Raises:
        TypeError: *base* is not an ``EventBase``, *callback* is not callable,
            *what* is not an int, or *fileobj* has no descriptor.
        ValueError: *what* has unknown bits, or *fileobj* is closed/negative
            while EV_READ/EV_WRITE is asked for.

    Thread-safety: create it in any thread; see the module docstring for
    ``add``/``delete``.  The descriptor must stay open while the event is
    added: delete the event before closing it, as in libevent.
    """

    __slots__ = (
        "__weakref__",
        "_added",
        "_arg",
        "_base",
        "_callback",
        "_fd",
        "_fileobj",
        "_gen",
        "_timeout",
        "_timeout_seq",
        "_what",
    )

    def __init__(
        self,
        base: EventBase,
        fileobj: object,
        what: int,
        callback: EventCallback,
        arg: Any = None,
    ) -> None:
        from threadlisten.base import EventBase

        if not isinstance(base, EventBase):
            raise TypeError(f"base must be an EventBase, not {type(base).__name__}")
        if isinstance(what, bool) or not isinstance(what, int):
            raise TypeError(f"what must be an int of EV_* bits, not {type(what).__name__}")
        if what & ~_KNOWN or what < 0:
            raise ValueError(f"unknown EV_* bits in {what:#x} (EV_SIGNAL is not supported)")
        if not callable(callback):
            raise TypeError("callback must be callable")
        if what & (EV_READ | EV_WRITE):
            self._fd = fd_of(fileobj)
        elif fileobj is None or fileobj == -1:
            self._fd = -1
        else:
            self._fd = fd_of(fileobj)
        self._base = base
        self._fileobj = fileobj
        self._what = what
        self._callback = callback
        self._arg = arg
        # Guarded by the base lock:
        self._added = False  # registered for EV_READ/EV_WRITE and/or a timeout
        self._gen = 0  # bumped by every delete, so a stale activation is dropped
        self._timeout: float | None = None
        self._timeout_seq: int | None = None  # the heap entry that is current

    @property
    def base(self) -> EventBase:
        """The ``EventBase`` this event belongs to (libevent's ``event_get_base``)."""
        return self._base

    @property
    def fileobj(self) -> object:
        """The object given as *fileobj* (``event_get_fd`` returns ``fd``)."""
        return self._fileobj

    @property
    def fd(self) -> int:
        """The watched descriptor, or -1 for a pure timer (``event_get_fd``)."""
        return self._fd

    @property
    def what(self) -> int:
        """The EV_* bits this event was created with (``event_get_events``)."""
        return self._what

    @property
    def callback(self) -> EventCallback:
        """The callback (``event_get_callback``)."""
        return self._callback

    @property
    def arg(self) -> Any:
        """The argument passed to the callback (``event_get_callback_arg``)."""
        return self._arg

    def add(self, timeout: float | None = None) -> None:
        """Make the event pending (libevent's ``event_add``).

        Args:
            timeout: seconds after which the callback runs with ``EV_TIMEOUT``
                if nothing else fired first; ``None`` for no timeout.  Adding an
                event that is already pending replaces its timeout.

        Raises:
            EventBaseClosedError: the base is closed.
            TypeError: *timeout* is not a number (``bool`` included).
            ValueError: *timeout* is negative, NaN, infinite, or an int too
                large for a float.
            OSError: the selector refused the descriptor (``EBADF`` for a
                closed one); the other events added for that descriptor become
                non-pending too, as a closed descriptor cannot be watched.

        Thread-safety: any thread; takes the base lock briefly, wakes the loop.
        """
        self._base._add_event(self, None if timeout is None else check_timeout(timeout))

    def delete(self) -> None:
        """Make the event non-pending (libevent's ``event_del``, but never blocking).

        Once it returns, the callback will not *start* again until ``add()``;
        an invocation already running on the loop thread is not waited for.
        Deleting an event that is not pending, or whose base is closed, does
        nothing.

        Thread-safety: any thread, including from inside the callback.
        """
        self._base._del_event(self)

    def pending(self, what: int = EV_READ | EV_WRITE | EV_TIMEOUT) -> bool:
        """Return whether the event is pending for any of *what* (``event_pending``).

        ``EV_TIMEOUT`` counts only while a timeout is scheduled.

        Thread-safety: any thread; the answer may be stale by the time it is used.
        """
        return self._base._event_pending(self, what)

    def __repr__(self) -> str:
        return (
            f"<Event fd={self._fd} what={self._what:#x} "
            f"{'pending' if self._added else 'not pending'}>"
        )
