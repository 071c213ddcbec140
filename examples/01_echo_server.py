#!/usr/bin/env python3
"""An echo server: the libevent book's example ("Example code: an echo server"), on threadlisten.

Run it and talk to it::

    python examples/01_echo_server.py         # listens on 127.0.0.1:9876
    printf hello | nc -q1 127.0.0.1 9876      # prints: hello

or check it on its own: ``python examples/01_echo_server.py --self-test``.

It reads top to bottom like the C original: ``echo_read_cb`` and
``echo_event_cb`` (here a ``Connection`` made of two ``Event`` objects stands
in for the bufferevent), ``accept_conn_cb``, ``accept_error_cb``, then ``main``.
The one difference: ``event_base_dispatch`` runs in an acceptor thread, and
the main thread frees the listener on Ctrl-C, which a THREADSAFE listener
allows from any thread.

This is example 1 of the ladder in examples/README.md; next,
``02_worker_pool_backpressure.py`` hands the connections to worker threads.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from typing import Any

from threadlisten import EV_PERSIST, EV_READ, EV_WRITE, LEV_OPT, Event, EventBase, Listener

connections: set[Connection] = set()  # touched only on the loop thread
stopped = threading.Event()  # set by accept_error_cb


class Connection:
    """What ``bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)`` gives the C code."""

    def __init__(self, base: EventBase, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()  # the bufferevent's output buffer
        self.read_ev = Event(base, sock, EV_READ | EV_PERSIST, self.echo_read_cb)
        self.write_ev = Event(base, sock, EV_WRITE | EV_PERSIST, self.write_cb)

    def echo_read_cb(self, sock: socket.socket, what: int, arg: Any) -> None:
        """Data to read: copy it all from the input to the output."""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:  # echo_event_cb with BEV_EVENT_ERROR
            print(f"Error from connection: {exc}", file=sys.stderr)
            self.free()
            return
        if not data:  # echo_event_cb with BEV_EVENT_EOF
            self.free()
            return
        self.out += data
        self.write_cb(sock, EV_WRITE, arg)

    def write_cb(self, sock: socket.socket, what: int, arg: Any) -> None:
        """Send what the output buffer holds; wait for EV_WRITE while some is left."""
        try:
            sent = sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.free()
            return
        del self.out[:sent]
        if self.out:  # a partial write: stop reading until the rest has gone out
            self.read_ev.delete()
            self.write_ev.add()
        else:
            self.write_ev.delete()
            self.read_ev.add()

    def free(self) -> None:
        """``bufferevent_free``: delete the events first, then close the socket."""
        self.read_ev.delete()
        self.write_ev.delete()
        self.sock.close()
        connections.discard(self)


def accept_conn_cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
    """We got a new connection!  Set up a Connection for it (on the loop thread)."""
    conn = Connection(listener.base, sock)  # evconnlistener_get_base(listener)
    conn.read_ev.add()  # bufferevent_enable(bev, EV_READ|EV_WRITE)
    connections.add(conn)


def accept_error_cb(listener: Listener, error: OSError, arg: Any) -> None:
    """accept() failed: say so and stop the loop."""
    print(
        f"Got an error {error.errno} ({error.strerror}) on the listener. Shutting down.",
        file=sys.stderr,
    )
    listener.base.loopexit()  # event_base_loopexit(base, NULL)
    stopped.set()


def self_test(port: int) -> None:
    """Connect a few clients, check that each gets its bytes back."""
    for i, size in enumerate((5, 1000, 300_000)):
        payload = bytes((i + n) % 251 for n in range(size))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            sender = threading.Thread(target=client.sendall, args=(payload,))
            sender.start()  # send and receive at once: the echo may not fit in the buffers
            echo = bytearray()
            while len(echo) < size:
                chunk = client.recv(65536)
                if not chunk:
                    break
                echo += chunk
            sender.join(10)
        assert bytes(echo) == payload, f"client {i}: the echo differs"
        print(f"client {i}: {size} bytes echoed")


def main() -> int:
    """Parse the options, serve until Ctrl-C (or run the self-test), shut down.

    Returns 0 after Ctrl-C or a passed self-test, 1 if the listener could not
    be made or failed.  Runs on the main thread.
    """
    parser = argparse.ArgumentParser(description="The libevent book's echo server.")
    parser.add_argument("--port", type=int, default=9876, help="default: %(default)s")
    parser.add_argument("--self-test", action="store_true", help="serve a few clients and exit")
    args = parser.parse_args()
    port = 0 if args.self_test else args.port  # port 0: the kernel picks a free one

    base = EventBase()  # event_base_new()
    # evconnlistener_new_bind(base, accept_conn_cb, NULL,
    #     LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE, -1, (struct sockaddr*)&sin, sizeof(sin));
    # plus LEV_OPT_THREADSAFE, so that the main thread may free it.  Loopback,
    # not the C code's 0.0.0.0.
    try:
        listener = Listener.bind(
            base,
            ("127.0.0.1", port),
            accept_conn_cb,
            flags=LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE,
            backlog=-1,
        )
    except OSError as exc:
        print(f"Couldn't create listener: {exc}", file=sys.stderr)
        base.close()
        return 1
    listener.set_error_cb(accept_error_cb)  # evconnlistener_set_error_cb()

    status = 0
    try:  # from here on, Ctrl-C lands in the `except` below
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        base.start_thread()  # event_base_dispatch(base), in an acceptor thread
        host, port = listener.socket.getsockname()
        print(f"listening on {host}:{port}", flush=True)
        if args.self_test:
            self_test(port)
        else:
            # Wait for Ctrl-C (or SIGTERM), or for accept_error_cb.  An Event
            # rather than thread.join(): see threadlisten.echo.EchoServer.wait.
            stopped.wait()
            status = 1
    except KeyboardInterrupt:
        print("shutting down")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        listener.free()  # from the main thread: no callback runs once it returns
        base.stop(timeout=5)  # break the loop and join the acceptor thread
        for conn in list(connections):  # the loop thread has ended: safe to touch them
            conn.free()
        base.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
