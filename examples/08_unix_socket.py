#!/usr/bin/env python3
"""A Unix-socket listener: the same listener on a path instead of a port.

``Listener.bind`` takes a ``str`` (or ``bytes``) path for AF_UNIX, as
``evconnlistener_new_bind`` takes a ``struct sockaddr_un``.  Everything else is
the same: the callback, the threads, ``free()``.  What differs is the address
family's own rules:

* the peer's address is usually ``''``: a connecting Unix socket has no name
  unless it binds one;
* ``REUSEABLE`` and ``REUSEABLE_PORT`` mean nothing for a path and are refused
  with ``ValueError`` (libevent refuses them too, since 2.2);
* no SO_KEEPALIVE is set (it is a TCP option);
* a path that exists already makes ``bind`` fail with ``EADDRINUSE``, and
  ``CLOSE_ON_FREE`` closes the socket but leaves the path: removing it is
  the owner's job, as in C;
* the socket file's permissions decide who may connect (here a private
  temporary directory).

The service: each client sends a line; a worker thread from a small pool
answers it in upper case (the accept callback only hands the socket over: it
runs on the acceptor thread with the listener lock held, so it must not block).

Run it::

    python examples/08_unix_socket.py                 # prints the path; Ctrl-C stops
    python examples/08_unix_socket.py --self-test

The self-test talks to it with five AF_UNIX clients at once, checks every
answer and every peer address, that REUSEABLE is refused, that the path
survives ``free()`` and that nobody can connect to it afterwards.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import socket
import sys
import tempfile
import threading
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

#: Seconds any socket operation or wait may take.
TIMEOUT = 10.0
WORKERS = 4


def serve(sock: socket.socket) -> None:
    """A worker: read one line, answer it in upper case, close."""
    with sock:
        sock.settimeout(TIMEOUT)  # accepted sockets are non-blocking; workers block
        line = bytearray()
        while not line.endswith(b"\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            line += chunk
        sock.sendall(bytes(line).upper())


class Server:
    """The listener and its worker pool; ``peers`` records every peer address."""

    def __init__(self, base: EventBase, path: str) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="worker")
        self.peers: list[Any] = []
        self.listener = Listener.bind(
            base, path, self.on_accept, flags=LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
        )

    def on_accept(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        """Hand the connection to the pool (acceptor thread, lock held: do not block)."""
        self.peers.append(address)
        self.pool.submit(serve, sock)

    def close(self) -> None:
        self.listener.free()  # no callback runs after this
        self.pool.shutdown(wait=True)  # the connections already handed over finish


def ask(path: str, text: str) -> str:
    """An AF_UNIX client: send a line, return the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        sock.sendall(text.encode() + b"\n")
        answer = bytearray()
        while chunk := sock.recv(1024):
            answer += chunk
    return answer.decode().rstrip("\n")


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def self_test(base: EventBase, server: Server, path: str) -> None:
    """Five clients at once, then the AF_UNIX rules."""
    with concurrent.futures.ThreadPoolExecutor(5, thread_name_prefix="client") as clients:
        answers = list(clients.map(lambda i: ask(path, f"hello {i}"), range(5)))
    print(f"answers: {answers}")
    check(answers == [f"HELLO {i}" for i in range(5)], f"{answers}")
    check(server.peers == [""] * 5, f"peer addresses {server.peers}")
    try:
        Listener.bind(base, path + ".2", None, flags=LEV_OPT.REUSEABLE)
    except ValueError as exc:
        print(f"REUSEABLE on a path: ValueError: {exc}")
    else:
        raise RuntimeError("self-test failed: REUSEABLE accepted on AF_UNIX")
    check(not os.path.exists(path + ".2"), "a refused bind left a path behind")


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C, or run the self-test; 0 on success.  Main thread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--self-test", action="store_true", help="drive it and check it")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="threadlisten-") as directory:  # mode 0700
        path = os.path.join(directory, "upper.sock")
        base = EventBase()
        server = Server(base, path)
        base.start_thread()
        print(f"listening on {path}", flush=True)
        try:
            if args.self_test:
                self_test(base, server, path)
            else:
                print(f"try: printf 'hello\\n' | nc -U -q1 {path}")
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                threading.Event().wait()  # until Ctrl-C
        except KeyboardInterrupt:
            print("shutting down")
        finally:
            server.close()
            base.stop(TIMEOUT)
            base.close()
        survived = os.path.exists(path)
        try:
            ask(path, "anyone?")
        except ConnectionRefusedError:
            refused = True
        else:
            refused = False
        print(
            f"after free(): the path is {'still there' if survived else 'gone'}, "
            f"connecting is {'refused' if refused else 'ACCEPTED'}"
        )
        if args.self_test:
            check(survived and refused, "the path after free()")
            os.unlink(path)  # the owner's job (TemporaryDirectory would do it too)
            print("self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
