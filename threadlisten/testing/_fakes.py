"""In-memory sockets and a selector, so that a run depends only on the choices made.

* ``FakeListenSocket``: the listening socket.  Its backlog is a FIFO the
  scenario fills (``connect_client()``, ``queue_error()``, both scheduling
  points); ``accept()`` pops it.  It *is* a ``socket.socket`` (it wraps a real,
  never-used, unbound socket for its descriptor) because
  ``Listener.from_socket`` accepts only ``socket.socket`` instances and reads
  ``family``/``type`` from the descriptor; everything the core calls on it
  (``listen``, ``setblocking``, ``getsockopt(SO_ACCEPTCONN)``, ``accept``,
  ``close``) is overridden, so the kernel never sees a connection.
* ``FakeConnection``: what ``accept()`` returns: no descriptor, just an id and
  a state (queued, accepted, reset, closed).  The core only calls
  ``setblocking`` and, on failure, ``close`` on it.
* ``FakeStreamSocket``: one end of the base's wake-up socket pair (a byte
  buffer and a peer).
* ``FakeSelector``: a ``selectors.BaseSelector`` over those endpoints:
  level-triggered readiness computed from their state; ``select()`` is a
  scheduling point that blocks (is not runnable) while nothing is ready and no
  timeout was given; with a timeout it is runnable at any time, and if
  nothing is ready when it runs the fake clock jumps to its deadline.  Time is
  therefore an input of the schedule like any other: a timer can fire at any
  moment the chooser picks.

Thread-safety: used only by the threads of a run, one at a time.
"""

from __future__ import annotations

import errno
import selectors
import socket
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast, overload

from threadlisten.testing._controller import ExplorerError, Op, Wait

if TYPE_CHECKING:
    from threadlisten.testing._controller import ManagedThread
    from threadlisten.testing._sched_runtime import SchedRuntime

__all__ = [
    "FakeConnection",
    "FakeListenSocket",
    "FakeSelector",
    "FakeStreamSocket",
]

#: First fake port number shown by ``FakeListenSocket.getsockname()``.
FAKE_PORT_BASE: Final = 40000

ConnState = Literal["queued", "accepted", "reset", "closed"]


class Endpoint(Protocol):
    """What the fake selector needs of a fake descriptor."""

    def readable(self) -> bool: ...

    def writable(self) -> bool: ...


def _fd_of(fileobj: object) -> int:
    if isinstance(fileobj, int):
        return fileobj
    fileno = getattr(fileobj, "fileno", None)
    if fileno is None:
        raise ValueError(f"invalid file object: {fileobj!r}")
    fd = fileno()
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(f"invalid file descriptor: {fd!r}")
    return fd


class FakeConnection:
    """A client connection in a fake backlog (what ``accept()`` returns).

    Attributes:
        id: its number in the run, from 1, in connection order.
        address: the fake peer address, ``("127.0.0.1", 50000 + id)``.
        state: ``"queued"`` (in the backlog), ``"accepted"``, ``"reset"``
            (the listening socket closed while it was queued) or
            ``"closed"`` (the server side closed it).
        blocking: the last ``setblocking`` value.
    """

    __slots__ = ("address", "blocking", "id", "state")

    def __init__(self, conn_id: int) -> None:
        """Make connection number *conn_id*, queued."""
        self.id = conn_id
        self.address = ("127.0.0.1", 50000 + conn_id)
        self.state: ConnState = "queued"
        self.blocking = True

    def setblocking(self, flag: bool) -> None:
        """Record the blocking mode (the core sets it on every accepted connection)."""
        self.blocking = flag

    def close(self) -> None:
        """Close the server side."""
        self.state = "closed"

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.id} {self.state}>"


def as_fake(sock: object) -> FakeConnection:
    """Return *sock*, an accepted socket of a scheduled run, as a ``FakeConnection``.

    Raises:
        TypeError: it is something else (a real socket reached the scenario).
    """
    if not isinstance(sock, FakeConnection):
        raise TypeError(f"expected a FakeConnection, got {type(sock).__name__}")
    return sock


class _BacklogOp(Op):
    """A client action on a listening socket (a scheduling point that never blocks)."""

    __slots__ = ("_text",)

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(kind)
        self._text = text

    def describe(self) -> str:
        return self._text


class FakeListenSocket(socket.socket):
    """A listening socket whose backlog the scenario controls.

    Make it with ``SchedRuntime.listening_socket()`` and pass it to
    ``Listener.from_socket``.  Not for use outside a scheduled run.

    Attributes:
        port: the fake port ``getsockname()`` reports.
        accepted: every connection ``accept()`` returned, in order.
    """

    def __init__(self, rt: SchedRuntime, family: socket.AddressFamily, port: int) -> None:
        """Wrap a new real (unbound, never used) socket of *family*; see the class docstring."""
        super().__init__(family, socket.SOCK_STREAM)
        self._rt = rt
        self.port = port
        self._queue: deque[FakeConnection | OSError] = deque()
        self._listening = False
        self._fake_closed = False
        self._fake_blocking = True
        self._fd_number = super().fileno()
        self.accepted: list[FakeConnection] = []
        rt._add_endpoint(self._fd_number, self)

    # ------------------------------------------------ the scenario's side

    def connect_client(self) -> FakeConnection:
        """A client connects: append a new connection to the backlog (a scheduling point).

        Returns:
            The new connection (``state == "queued"``).

        Raises:
            ConnectionRefusedError: the socket is closed or not listening.

        Thread-safety: any thread of the run.
        """
        rt = self._rt
        rt._controller.park(_BacklogOp("connect", f"connect to {rt.name_of(self)}"))
        if self._fake_closed or not self._listening:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (fake socket)")
        conn = FakeConnection(rt._next_conn_id())
        self._queue.append(conn)
        return conn

    def queue_error(self, code: int) -> None:
        """Make a future ``accept()`` fail with ``OSError(code)``, in backlog order.

        Like ``connect_client`` it is a scheduling point and takes a place in
        the FIFO: the ``accept()`` that reaches it raises, once.  EMFILE
        exercises the back-off path, EBADF/EINVAL the fatal path,
        ECONNABORTED the per-connection skip.

        Raises:
            ValueError: *code* is not a known errno value.
            ConnectionRefusedError: the socket is closed or not listening.

        Thread-safety: any thread of the run.
        """
        name = errno.errorcode.get(code)
        if name is None:
            raise ValueError(f"unknown errno {code}")
        rt = self._rt
        rt._controller.park(_BacklogOp("queue_error", f"queue {name} on {rt.name_of(self)}"))
        if self._fake_closed or not self._listening:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (fake socket)")
        self._queue.append(OSError(code, f"{name} (injected)"))

    def queued(self) -> list[FakeConnection | OSError]:
        """Return what is in the backlog now, oldest first."""
        return list(self._queue)

    @property
    def fake_closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._fake_closed

    @property
    def listening(self) -> bool:
        """Whether ``listen()`` was called."""
        return self._listening

    # ---------------------------------------------------- the core's side

    def readable(self) -> bool:
        """Level-triggered readiness: something is queued (fake selector)."""
        return self._listening and not self._fake_closed and bool(self._queue)

    def writable(self) -> bool:
        """A listening socket is never writable."""
        return False

    def accept(self) -> tuple[socket.socket, Any]:
        """Pop the backlog: a connection, or the queued error raised.

        Returns:
            ``(connection, address)``; the connection is a ``FakeConnection``
            (typed as a socket because that is what the core passes on).

        Raises:
            BlockingIOError: EAGAIN, the backlog is empty.
            OSError: EBADF when closed, EINVAL when not listening, or a
                queued error.
            ExplorerError: a blocking accept on an empty backlog (it would
                block for ever).
        """
        if self._fake_closed:
            raise OSError(errno.EBADF, "bad file descriptor (fake socket closed)")
        if not self._listening:
            raise OSError(errno.EINVAL, "invalid argument (fake socket not listening)")
        if not self._queue:
            if self._fake_blocking:
                raise ExplorerError("blocking accept() on an empty fake backlog would hang")
            raise BlockingIOError(errno.EAGAIN, "resource temporarily unavailable")
        item = self._queue.popleft()
        if isinstance(item, OSError):
            raise item
        item.state = "accepted"
        self.accepted.append(item)
        # The core needs only setblocking() and close() of an accepted socket.
        return cast(socket.socket, item), item.address

    def listen(self, backlog: int = 128, /) -> None:
        """Start listening (nothing reaches the real socket)."""
        self._listening = True

    def setblocking(self, flag: bool, /) -> None:
        """Record the blocking mode (the real socket is untouched)."""
        self._fake_blocking = flag

    def getblocking(self) -> bool:
        """Return the recorded blocking mode."""
        return self._fake_blocking

    @overload
    def getsockopt(self, level: int, optname: int, /) -> int: ...

    @overload
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...

    def getsockopt(self, level: int, optname: int, buflen: int | None = None, /) -> int | bytes:
        """``SO_ACCEPTCONN`` reports the fake listening state; other options the real socket's."""
        acceptconn = getattr(socket, "SO_ACCEPTCONN", None)
        if level == socket.SOL_SOCKET and optname == acceptconn and buflen is None:
            return int(self._listening)
        if buflen is None:
            return super().getsockopt(level, optname)
        return super().getsockopt(level, optname, buflen)

    def getsockname(self) -> Any:
        """Return a loopback address with the fake port."""
        if self.family == socket.AF_INET6:
            return ("::1", self.port, 0, 0)
        return ("127.0.0.1", self.port)

    def close(self) -> None:
        """Close it: queued connections are reset, the real descriptor is closed."""
        if not self._fake_closed:
            self._fake_closed = True
            for item in self._queue:
                if isinstance(item, FakeConnection):
                    item.state = "reset"
            self._queue.clear()
            self._rt._remove_endpoint(self._fd_number, self)
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self._fake_closed else f"{len(self._queue)} queued"
        return f"<FakeListenSocket port={self.port} {state}>"


class FakeStreamSocket:
    """One end of a fake connected stream pair (the base's wake-up channel).

    Methods are the subset of ``socket.socket`` the event base uses.
    """

    __slots__ = ("_buffer", "_closed", "_fd", "_rt", "blocking", "peer")

    def __init__(self, rt: SchedRuntime, fd: int) -> None:
        """Make an end with fake descriptor *fd*; link it with ``peer``."""
        self._rt = rt
        self._fd = fd
        self._buffer = bytearray()
        self._closed = False
        self.peer: FakeStreamSocket | None = None
        self.blocking = True
        rt._add_endpoint(fd, self)

    def fileno(self) -> int:
        """The fake descriptor, or -1 once closed."""
        return -1 if self._closed else self._fd

    def setblocking(self, flag: bool) -> None:
        """Record the blocking mode."""
        self.blocking = flag

    def send(self, data: bytes) -> int:
        """Append *data* to the peer's buffer.

        Raises:
            OSError: EBADF if this end is closed; BrokenPipeError if the peer is.
        """
        if self._closed:
            raise OSError(errno.EBADF, "bad file descriptor")
        peer = self.peer
        if peer is None or peer._closed:
            raise BrokenPipeError(errno.EPIPE, "broken pipe")
        peer._buffer += data
        return len(data)

    def recv(self, bufsize: int) -> bytes:
        """Return up to *bufsize* buffered bytes; b"" at end of stream.

        Raises:
            BlockingIOError: nothing buffered and the peer is open.
            OSError: EBADF if closed.
        """
        if self._closed:
            raise OSError(errno.EBADF, "bad file descriptor")
        if self._buffer:
            chunk = bytes(self._buffer[:bufsize])
            del self._buffer[:bufsize]
            return chunk
        if self.peer is None or self.peer._closed:
            return b""
        if self.blocking:
            raise ExplorerError("blocking recv() on an empty fake socket would hang")
        raise BlockingIOError(errno.EAGAIN, "resource temporarily unavailable")

    def readable(self) -> bool:
        """Readable when bytes are buffered or the peer closed (end of stream)."""
        if self._closed:
            return False
        return bool(self._buffer) or self.peer is None or self.peer._closed

    def writable(self) -> bool:
        """Writable while open (the buffer is unbounded)."""
        return not self._closed

    def close(self) -> None:
        """Close this end."""
        if not self._closed:
            self._closed = True
            self._rt._remove_endpoint(self._fd, self)

    def __repr__(self) -> str:
        return f"<FakeStreamSocket fd={self._fd}{' closed' if self._closed else ''}>"


class SelectOp(Op):
    """A pending ``select()``: runnable when something is ready or a timeout was given."""

    __slots__ = ("deadline", "selector", "timeout")

    def __init__(self, selector: FakeSelector, timeout: float | None, deadline: float) -> None:
        super().__init__("select")
        self.selector = selector
        self.timeout = timeout
        self.deadline = deadline

    def waits_for(self, thread: ManagedThread) -> Wait | None:
        if self.timeout is not None or self.selector.ready():
            return None
        fds = sorted(self.selector.get_map())
        return Wait(f"I/O: select() without timeout, none of fds {fds} ready", None)

    def describe(self) -> str:
        if self.timeout is None:
            return "select()"
        return f"select(timeout={self.timeout:g})"


class FakeSelector(selectors.BaseSelector):
    """A selector over the run's fake descriptors (see the module docstring).

    ``select()`` is a scheduling point; everything else is bookkeeping.
    """

    def __init__(self, rt: SchedRuntime) -> None:
        """Make an empty selector for the run of *rt*."""
        self._rt = rt
        self._keys: dict[int, selectors.SelectorKey] = {}
        self._closed = False

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """Watch *fileobj* for *events* (``EVENT_READ``/``EVENT_WRITE``).

        Raises:
            ValueError: bad *events* or file object.
            KeyError: already registered.
            OSError: EBADF, the descriptor is not an open fake endpoint (as
                epoll refuses a closed descriptor).
        """
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"invalid events: {events!r}")
        fd = _fd_of(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        if not self._rt._has_endpoint(fd):
            raise OSError(errno.EBADF, f"fd {fd} is not an open fake descriptor")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        """Stop watching *fileobj*.  Raises KeyError if it is not registered."""
        fd = _fd_of(fileobj)
        try:
            return self._keys.pop(fd)
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """Change what *fileobj* is watched for.  Raises KeyError if not registered."""
        fd = _fd_of(fileobj)
        if fd not in self._keys:
            raise KeyError(f"{fileobj!r} is not registered")
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"invalid events: {events!r}")
        key = selectors.SelectorKey(self._keys[fd].fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def ready(self) -> list[tuple[selectors.SelectorKey, int]]:
        """Return the registered keys that are ready now, with their ready events."""
        out = []
        for fd, key in self._keys.items():
            endpoint = self._rt._endpoint(fd)
            if endpoint is None:
                continue  # closed under the selector: epoll forgets it
            mask = 0
            if key.events & selectors.EVENT_READ and endpoint.readable():
                mask |= selectors.EVENT_READ
            if key.events & selectors.EVENT_WRITE and endpoint.writable():
                mask |= selectors.EVENT_WRITE
            if mask:
                out.append((key, mask))
        return out

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait (as a scheduling point) until something is ready or the timeout passes.

        Args:
            timeout: seconds on the fake clock, ``None`` for no limit; <= 0 polls.

        Returns:
            ``(key, events)`` pairs, as ``selectors`` does.
        """
        rt = self._rt
        if timeout is not None:
            timeout = max(0.0, timeout)
        start = rt.monotonic()
        deadline = start + (timeout or 0.0)
        rt._controller.park(SelectOp(self, timeout, deadline))
        ready = self.ready()
        if not ready and timeout:
            rt._advance_to(deadline)  # the chooser let the timeout expire
        return ready

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        """Return the registered keys by descriptor."""
        return MappingProxyType(self._keys)

    def close(self) -> None:
        """Forget every registration."""
        self._keys.clear()
        self._closed = True
