#!/usr/bin/env python3
"""The libevent names: a C program ported line by line with ``threadlisten.compat``.

``threadlisten.compat`` gives each libevent call its C name and argument
order (``evconnlistener_new_bind(base, cb, ptr, flags, backlog, sa)``), so C
code and the libevent book can be read side by side with Python.  Each C line
is kept here as a comment above its port.  The mapping, decided once
(docs/porting-from-libevent.md has all of it):

* ``(cb, ptr)``: passed through.  The callback keeps threadlisten's
  signature, ``cb(listener, sock, address, ptr)``: C's ``(fd, sa, socklen)``
  triple becomes a ``socket.socket`` the callback owns and the address as
  the ``socket`` module writes it.  The error callback gets the ``OSError``:
  ``errorcb(listener, error, ptr)`` instead of reading ``errno``.
* ``struct sockaddr *sa, int socklen``: a Python address, ``(host, port)``
  or a path; no ``socklen``.
* return codes: none; failures raise (``NULL`` and ``-1`` become exceptions).
* ``event_base_dispatch`` runs in a thread here, so that the main thread can
  drive the self-test (or wait for Ctrl-C); ``event_base_loopexit`` ends it.

The service is the book's echo server; a bufferevent does the echo in C, a
worker thread does it here (the accept callback hands the socket over and
returns: it runs with the listener lock held).

Run it::

    python examples/09_libevent_names.py              # 127.0.0.1:9879, Ctrl-C stops
    python examples/09_libevent_names.py --self-test

The self-test echoes with three clients; disables the listener with
``evconnlistener_disable`` and checks that a new client is *not* served
while disabled, then served after ``evconnlistener_enable``; swaps the
callback with ``evconnlistener_set_cb``; checks ``evconnlistener_get_fd`` and
``evconnlistener_get_base``; ports ``evconnlistener_new`` on a socket it bound
itself; and ends with ``event_base_loopexit`` and ``evconnlistener_free``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import select
import signal
import socket
import sys
import threading
from typing import Any

from threadlisten.compat import (
    LEV_OPT_CLOSE_ON_FREE,
    LEV_OPT_REUSEABLE,
    LEV_OPT_THREADSAFE,
    EventBase,
    Listener,
    evconnlistener_disable,
    evconnlistener_enable,
    evconnlistener_free,
    evconnlistener_get_base,
    evconnlistener_get_fd,
    evconnlistener_new,
    evconnlistener_new_bind,
    evconnlistener_set_cb,
    evconnlistener_set_error_cb,
    event_base_dispatch,
    event_base_loopexit,
    event_base_new,
)

PORT = 9879
#: Seconds any socket operation or wait may take.
TIMEOUT = 10.0

workers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="echo")


def echo(sock: socket.socket, banner: bytes) -> None:
    """What the book's echo_read_cb does: send back everything, until EOF."""
    with sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(banner)
        while data := sock.recv(65536):
            sock.sendall(data)


# static void
# accept_conn_cb(struct evconnlistener *listener,
#     evutil_socket_t fd, struct sockaddr *address, int socklen, void *ctx)
def accept_conn_cb(listener: Listener, fd: socket.socket, address: Any, ctx: Any) -> None:
    """We got a new connection!  Hand it to a worker (a bufferevent in C)."""
    # struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    # bufferevent_setcb(bev, echo_read_cb, NULL, echo_event_cb, NULL); ...
    workers.submit(echo, fd, ctx)


def other_conn_cb(listener: Listener, fd: socket.socket, address: Any, ctx: Any) -> None:
    """The callback swapped in by evconnlistener_set_cb."""
    workers.submit(echo, fd, b"[other] " + ctx)


# static void
# accept_error_cb(struct evconnlistener *listener, void *ctx)
def accept_error_cb(listener: Listener, error: OSError, ctx: Any) -> None:
    """accept() failed: report it and stop the loop."""
    # struct event_base *base = evconnlistener_get_base(listener);
    base = evconnlistener_get_base(listener)
    # int err = EVUTIL_SOCKET_ERROR();
    # fprintf(stderr, "Got an error %d (%s) on the listener. Shutting down.\n", err, ...);
    print(f"Got an error {error.errno} ({error.strerror}) on the listener. Shutting down.")
    # event_base_loopexit(base, NULL);
    event_base_loopexit(base, None)


def talk(address: tuple[str, int], text: bytes) -> bytes:
    """A client: connect, send, shut down writing, return everything received."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(text)
        sock.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    return bytes(answer)


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def self_test(base: EventBase, listener: Listener, address: tuple[str, int]) -> None:
    """Each libevent call, checked on real connections."""
    for i in range(3):
        check(talk(address, b"hello %d" % i) == b"> hello %d" % i, f"echo {i}")
    check(evconnlistener_get_fd(listener) == listener.socket.fileno(), "get_fd")
    check(evconnlistener_get_base(listener) is base, "get_base")

    # evconnlistener_disable(listener): the next client waits in the backlog.
    evconnlistener_disable(listener)
    with socket.create_connection(address, timeout=TIMEOUT) as waiting:
        waiting.sendall(b"queued")
        waiting.shutdown(socket.SHUT_WR)
        # Nothing may arrive while disabled: a callable handed to the loop
        # thread runs after anything it had to do, so once it has run and
        # still nothing arrived, the connection was not accepted.
        settled = threading.Event()
        base.call_soon_threadsafe(settled.set)
        check(settled.wait(TIMEOUT), "the loop thread is stuck")
        check(not select.select([waiting], [], [], 0)[0], "served while disabled")
        # evconnlistener_set_cb(listener, other_conn_cb, "..."); then enable.
        evconnlistener_set_cb(listener, other_conn_cb, b"> ")
        evconnlistener_enable(listener)
        answer = bytearray()
        while chunk := waiting.recv(1024):
            answer += chunk
    check(answer == b"[other] > queued", f"after enable: {bytes(answer)!r}")

    # evconnlistener_new(base, cb, ptr, flags, -1, fd) on a socket bound here.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    second = evconnlistener_new(
        base, accept_conn_cb, b"2> ", LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE, -1, sock
    )
    try:
        check(talk(sock.getsockname(), b"x") == b"2> x", "evconnlistener_new")
    finally:
        evconnlistener_free(second)
    check(sock.fileno() == -1, "CLOSE_ON_FREE did not close the socket")
    print("every libevent name checked")


def main(argv: list[str] | None = None) -> int:
    """The C ``main``, ported.  Serve until Ctrl-C, or run the self-test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=PORT, help="default: %(default)s")
    parser.add_argument("--self-test", action="store_true", help="drive it and check it")
    args = parser.parse_args(argv)

    # base = event_base_new();
    base = event_base_new()
    # sin.sin_family = AF_INET; sin.sin_addr.s_addr = htonl(0x7f000001); sin.sin_port = htons(port);
    sin = ("127.0.0.1", 0 if args.self_test else args.port)
    # listener = evconnlistener_new_bind(base, accept_conn_cb, NULL,
    #     LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE, -1, (struct sockaddr*)&sin, sizeof(sin));
    # (plus LEV_OPT_THREADSAFE: this program calls the listener from two threads)
    try:
        listener = evconnlistener_new_bind(
            base,
            accept_conn_cb,
            b"> ",
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_THREADSAFE,
            -1,
            sin,
        )
    except OSError as exc:  # if (!listener) { perror("Couldn't create listener"); return 1; }
        print(f"Couldn't create listener: {exc}", file=sys.stderr)
        return 1
    # evconnlistener_set_error_cb(listener, accept_error_cb);
    evconnlistener_set_error_cb(listener, accept_error_cb)
    # event_base_dispatch(base);  (in a thread: see the module docstring)
    loop_done = threading.Event()

    def run_loop() -> None:
        try:
            event_base_dispatch(base)
        finally:
            loop_done.set()

    loop = threading.Thread(target=run_loop, name="loop")
    loop.start()
    address = listener.socket.getsockname()
    print(f"listening on {address[0]}:{address[1]}", flush=True)
    try:
        if args.self_test:
            self_test(base, listener, address)
        else:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            loop_done.wait()  # until accept_error_cb ends the loop, or Ctrl-C
    except KeyboardInterrupt:
        print("shutting down")
    finally:
        evconnlistener_free(listener)
        event_base_loopexit(base, None)
        loop_done.wait(TIMEOUT)
        loop.join(TIMEOUT)
        workers.shutdown(wait=True)
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
