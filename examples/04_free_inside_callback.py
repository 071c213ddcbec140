#!/usr/bin/env python3
"""``free()`` inside the accept callback: a listener that serves N connections,
then frees itself.

A listener may free itself from its own callback.  It is safe because of the
refcount:

* a listener starts with one reference, its owner's, which ``free()`` drops;
* while a batch of callbacks runs, the acceptor holds a second one, so the
  callback sees ``listener.refcount == 2``;
* ``free()`` inside the callback drops the owner's reference (2 -> 1): the
  listener is marked freed, its callbacks cleared, but it is *not* destroyed,
  because the batch still holds it, and the callback is still running;
* when the callback returns, the batch sees "freed", accepts nothing more,
  and drops the last reference (1 -> 0): destroy runs there, on the acceptor
  thread, exactly once.  With CLOSE_ON_FREE it closes the listening socket:
  later clients are refused, and clients already queued in the kernel's
  backlog are reset.

(``python -m threadlisten trace free-inside-callback`` draws this.)

Run it::

    python examples/04_free_inside_callback.py             # serves 3, then frees itself
    python examples/04_free_inside_callback.py --self-test

It always drives itself: one client at a time until the limit, then two more
that must be refused.  The self-test also checks the refcount the callback
saw before and after its ``free()`` (2, then 1), and the refcount afterwards
(0: destroyed, although the main thread never called ``free()``, so by the
acceptor thread), and that no connection past the limit was served.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

HOST = "127.0.0.1"
#: Connections served before the listener frees itself.
LIMIT = 3
#: Seconds any socket operation or wait may take.
TIMEOUT = 10.0


class OneShot:
    """What the callback records (it runs on the acceptor thread; the main
    thread reads it after ``done`` is set)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.served = 0
        self.refcount_in_callback: list[int] = []
        self.refcount_after_free: int | None = None
        self.done = threading.Event()


def on_accept(listener: Listener, sock: socket.socket, address: Any, state: OneShot) -> None:
    """Greet the client; free the listener at the limit."""
    state.served += 1
    state.refcount_in_callback.append(listener.refcount)  # 2: the owner's and the batch's
    with sock:
        sock.sendall(f"you are {state.served} of {state.limit}\n".encode())
    if state.served == state.limit:
        listener.free()  # the owner's reference: 2 -> 1; destroy waits for us to return
        state.refcount_after_free = listener.refcount  # 1: the batch's, still held
        state.done.set()


def read_line(address: tuple[str, int]) -> str:
    """Connect, read what the server sends until it closes, return it."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        data = bytearray()
        while chunk := sock.recv(1024):
            data += chunk
    return data.decode().strip()


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration (and its checks with --self-test); 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--self-test", action="store_true", help="check what happened too")
    args = parser.parse_args(argv)

    state = OneShot(LIMIT)
    base = EventBase()
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    listener = Listener.bind(base, (HOST, 0), on_accept, state, flags=flags)
    address = listener.socket.getsockname()
    base.start_thread()
    print(f"listening on {address[0]}:{address[1]}, for {LIMIT} connections")
    refused = 0
    try:
        for _ in range(LIMIT):
            print(f"client got: {read_line(address)}")
        check(state.done.wait(TIMEOUT), "the callback never freed the listener")
        # The callback has returned once the acceptor runs a callable we hand it.
        settled = threading.Event()
        base.call_soon_threadsafe(settled.set)
        check(settled.wait(TIMEOUT), "the acceptor thread is stuck")
        for _ in range(2):
            try:
                line = read_line(address)
            except (ConnectionRefusedError, ConnectionResetError) as exc:
                refused += 1
                print(f"a client after the limit: {type(exc).__name__}")
            else:
                print(f"a client after the limit got: {line!r}")
        refcount_after = listener.refcount
        print(
            f"refcount in the callbacks: {state.refcount_in_callback}, after free() in the "
            f"callback: {state.refcount_after_free}, after it returned: {refcount_after}"
        )
        if args.self_test:
            check(state.served == LIMIT, f"served {state.served}")
            check(state.refcount_in_callback == [2] * LIMIT, str(state.refcount_in_callback))
            check(state.refcount_after_free == 1, f"{state.refcount_after_free}")
            check(refcount_after == 0 and listener.freed, "the listener was not destroyed")
            check(refused == 2, f"only {refused} of 2 late clients were refused")
    finally:
        base.stop(TIMEOUT)
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
