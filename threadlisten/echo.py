"""The echo server of the libevent book ("Example code: an echo server"), on threadlisten.

``python -m threadlisten echo [--host 127.0.0.1] [--port 9876]`` runs it; try
``printf hello | nc -q1 127.0.0.1 9876``.

How it maps to the C example:

=============================  ==============================================
libevent (R8_echo_server.c)    here
=============================  ==============================================
``event_base_new()``           ``EventBase()``
``evconnlistener_new_bind``    ``Listener.bind(..., CLOSE_ON_FREE | REUSEABLE)``
                               plus ``THREADSAFE``: the main thread frees it
``accept_conn_cb``             ``EchoServer._on_accept``: one ``_EchoConnection``
``bufferevent`` + read cb      two ``Event`` objects on the same base:
                               ``EV_READ | EV_PERSIST`` reads, ``EV_WRITE |
                               EV_PERSIST`` finishes partial writes
``echo_event_cb``              EOF or error: delete the events, close the socket
``accept_error_cb``            ``EchoServer._on_error``: print, ``loopexit()``
``event_base_dispatch(base)``  ``base.start_thread()``: the acceptor thread
=============================  ==============================================

Threads: the acceptor thread runs the loop, and with it every callback here
(accepting, reading, writing, closing connections).  The main thread only
starts the server, waits, and on Ctrl-C (SIGINT) or SIGTERM shuts it down:
it frees the listener (allowed from any thread because of THREADSAFE), stops
the loop thread, and only then closes the connections that are still open,
so no connection is ever touched by two threads at once.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, TextIO

from threadlisten import (
    EV_PERSIST,
    EV_READ,
    EV_WRITE,
    LEV_OPT,
    Event,
    EventBase,
    Listener,
)

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "EchoServer", "EchoStats", "run_echo"]

#: The book's port, on loopback only unless asked otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9876

#: Bytes read per readiness event.  While any of them is still unsent, the
#: connection stops reading (and the kernel's flow control slows the peer),
#: so each connection buffers at most this much.
READ_SIZE = 64 * 1024

#: How long ``close()`` waits for the loop thread, in seconds.
STOP_TIMEOUT = 5.0

_FLAGS = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE


@dataclasses.dataclass
class EchoStats:
    """What the server has done so far (written on the loop thread only).

    Attributes:
        connections: connections accepted.
        closed: connections closed (EOF, error, or shutdown).
        bytes_echoed: bytes written back.
        partial_writes: sends that could not write everything at once and
            left the rest to an ``EV_WRITE`` event.
        errors: connections that ended on a socket error rather than EOF.
    """

    connections: int = 0
    closed: int = 0
    bytes_echoed: int = 0
    partial_writes: int = 0
    errors: int = 0


class _EchoConnection:
    """One accepted connection: the seed's ``bufferevent``, made of two ``Event`` objects.

    It is either *reading* (the read event is added) or *writing* (a send was
    partial: the write event is added and reading waits until the buffer has
    gone out, so a peer that does not read cannot make the server buffer more
    than ``READ_SIZE`` bytes).

    Loop thread only (every method is called from an event callback, or by
    ``EchoServer.close`` after the loop thread has ended).
    """

    __slots__ = ("_out", "_read_ev", "_server", "_sock", "_write_ev", "_writing")

    def __init__(self, server: EchoServer, base: EventBase, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._out = bytearray()  # received but not yet written back
        self._writing = False
        # echo_read_cb: read what arrives, write it back.
        self._read_ev = Event(base, sock, EV_READ | EV_PERSIST, self._on_readable)
        # The output half of the bufferevent: added only while _out is not empty.
        self._write_ev = Event(base, sock, EV_WRITE | EV_PERSIST, self._on_writable)

    def start(self) -> None:
        """Start reading.  Raises OSError if the base refuses the descriptor."""
        self._read_ev.add()

    def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return  # spurious wake-up: nothing to read after all
        except OSError:
            self.close(error=True)  # echo_event_cb with BEV_EVENT_ERROR
            return
        if not data:
            self.close()  # echo_event_cb with BEV_EVENT_EOF
            return
        self._out += data
        self._flush()

    def _on_writable(self, fileobj: object, what: int, arg: object) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write as much of the buffer as the socket takes now, and switch
        between reading and writing accordingly."""
        stats = self._server.stats
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close(error=True)
            return
        del self._out[:sent]
        stats.bytes_echoed += sent
        if self._out and not self._writing:
            # A partial write: keep the rest, wait until the socket is writable.
            stats.partial_writes += 1
            self._writing = True
            self._read_ev.delete()
            self._write_ev.add()
        elif not self._out and self._writing:
            # All written: read again.
            self._writing = False
            self._write_ev.delete()
            self._read_ev.add()

    def close(self, error: bool = False) -> None:
        """Delete both events, then close the socket (never the other way round)."""
        self._read_ev.delete()
        self._write_ev.delete()
        self._sock.close()
        stats = self._server.stats
        stats.closed += 1
        if error:
            stats.errors += 1
        self._server._connections.discard(self)


class EchoServer:
    """The book's echo server: a THREADSAFE listener and an acceptor thread.

    Args:
        host: the address to bind; loopback by default.
        port: the TCP port; 0 picks a free one (see ``address`` after ``start``).

    Use ``start()``, then ``wait()`` until the loop ends or you decide to stop,
    then ``close()``; or use it as a context manager (``close`` on exit).

    Thread-safety: ``start``, ``wait`` and ``close`` are for the thread that
    owns the server (usually the main thread), never for the loop thread.
    Everything else runs on the loop thread.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self._host = host
        self._port = port
        self._base: EventBase | None = None
        self._listener: Listener | None = None
        self._connections: set[_EchoConnection] = set()  # loop thread only
        self._closed = False
        self._ended = threading.Event()  # set by the error callback
        self.stats = EchoStats()
        #: The ``OSError`` that made the error callback stop the loop, if any.
        self.error: OSError | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``, with the real port when 0 was asked.

        Raises:
            RuntimeError: the server is not started.
        """
        if self._listener is None:
            raise RuntimeError("the echo server is not started")
        host, port = self._listener.socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Bind, listen, and start the acceptor thread.

        Returns:
            The bound ``(host, port)``.

        Raises:
            OSError: the address cannot be bound (``EADDRINUSE`` ...); nothing
                is left open.
            RuntimeError: already started.

        Thread-safety: the owning thread.
        """
        if self._base is not None or self._closed:
            raise RuntimeError("the echo server was already started")
        base = EventBase()  # event_base_new()
        try:
            # evconnlistener_new_bind(base, accept_conn_cb, NULL,
            #     LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE, -1, &sin, sizeof(sin))
            listener = Listener.bind(
                base, (self._host, self._port), self._on_accept, flags=_FLAGS, backlog=-1
            )
        except BaseException:
            base.close()
            raise
        listener.set_error_cb(self._on_error)  # evconnlistener_set_error_cb()
        self._base, self._listener = base, listener
        address = self.address
        base.start_thread()  # event_base_dispatch(), in the acceptor thread
        return address

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the error callback has stopped the loop.

        Args:
            timeout: seconds to wait; ``None`` waits for ever.  A signal
                handler that raises (Ctrl-C) interrupts the wait safely.

        Returns:
            True if the loop was stopped by a listener error, False on timeout.

        Thread-safety: the owning thread.
        """
        # An Event, not Thread.join(): on CPython before 3.13, an exception
        # raised by a signal handler while join() waits for a live thread
        # marks that thread as stopped although it still runs
        # (python/cpython#90882), and base.stop() would then not wait for it.
        return self._ended.wait(timeout)

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut down: free the listener, stop the loop thread, close what is left.

        Closing twice does nothing.

        Args:
            timeout: seconds to wait for the loop thread.  Do not let a signal
                handler raise during this wait (see ``wait``); ``run_echo``
                ignores SIGINT/SIGTERM while it closes.

        Raises:
            TimeoutError: the loop thread did not end in time; the base and the
                open connections are then left alone (closing them would race
                the loop thread).

        Thread-safety: the owning thread, never the loop thread.
        """
        if self._closed:
            return
        self._closed = True
        listener, base = self._listener, self._base
        if listener is not None and not listener.freed:
            # evconnlistener_free(): any thread, because of THREADSAFE.  When it
            # returns no accept callback is running and none will start.
            listener.free()
        if base is None:
            return
        base.stop(timeout)  # loopbreak, then join the acceptor thread
        # The loop thread has ended: the connections are ours now.
        for conn in list(self._connections):
            conn.close()
        base.close()

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------ loop-thread callbacks

    def _on_accept(
        self, listener: Listener, sock: socket.socket, address: Any, arg: object
    ) -> None:
        """accept_conn_cb: a new connection gets its events on the same base."""
        conn = _EchoConnection(self, listener.base, sock)
        try:
            conn.start()
        except OSError:
            sock.close()  # the callback owns the socket
            return
        self._connections.add(conn)
        self.stats.connections += 1

    def _on_error(self, listener: Listener, error: OSError, arg: object) -> None:
        """accept_error_cb: report the error and end the loop."""
        self.error = error
        print(
            f"Got an error {error.errno} ({error.strerror}) on the listener. Shutting down.",
            file=sys.stderr,
            flush=True,
        )
        listener.base.loopexit()
        self._ended.set()


class _Shutdown(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown(signum)


def run_echo(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the echo server until SIGINT/SIGTERM or a listener error.

    Prints ``listening on HOST:PORT`` (flushed) once connections are served,
    and a one-line report on stderr when it ends.

    Args:
        host, port: where to listen (port 0 picks one and prints it).
        stdout, stderr: where to print (``sys.stdout``/``sys.stderr`` by default).

    Returns:
        0 after a clean shutdown on SIGINT/SIGTERM; 1 if the address cannot be
        bound, the listener failed (its error callback stopped the loop), or
        the shutdown timed out.

    Thread-safety: the main thread (it installs signal handlers there; from
    another thread it runs without them and only a listener error ends it).
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    server = EchoServer(host, port)
    signame: str | None = None
    try:
        if in_main:
            # Installed explicitly: a process started in the background may
            # have inherited SIGINT ignored, and SIGTERM would otherwise end it
            # without a clean shutdown.
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, _raise_shutdown)
        try:
            bound_host, bound_port = server.start()
        except OSError as exc:
            print(f"Couldn't create listener on {host}:{port}: {exc}", file=err, flush=True)
            return 1
        print(f"listening on {bound_host}:{bound_port}", file=out, flush=True)
        while not server.wait(1.0):  # Ctrl-C interrupts the wait
            pass
    except _Shutdown as exc:
        signame = str(exc)
    except KeyboardInterrupt:
        signame = "SIGINT"
    finally:
        if in_main:
            # A second Ctrl-C must not cut the shutdown short.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        try:
            server.close()  # a no-op if it never started
        except TimeoutError as exc:
            print(f"shutdown failed: {exc}", file=err, flush=True)
            signame = None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    stats = server.stats
    why = f"{signame}: shut down" if signame else "stopped"
    print(
        f"{why}; {stats.connections} connections served, "
        f"{stats.bytes_echoed} bytes echoed, {stats.partial_writes} partial writes",
        file=err,
        flush=True,
    )
    return 0 if signame is not None and server.error is None else 1
