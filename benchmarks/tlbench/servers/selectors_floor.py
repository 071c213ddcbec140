"""The Python floor: a plain ``selectors`` loop that accepts until EAGAIN.

The least a Python event loop can do per connection: one ``select()`` per
wake-up, ``sock.accept()`` until ``BlockingIOError``, and a function call
that closes the connection.  No batch bound, no lock, no bookkeeping.

Diagnostic variants (rows of their own, not peers):

``--setblocking``
    adds ``conn.setblocking(False)`` per connection, the one system call
    threadlisten (and asyncio) make that this floor does not: it splits
    threadlisten's gap into "the contract" and "the rest".
``--raw-accept``
    calls ``sock._accept()`` and builds the socket from the listening
    socket's family, type and proto looked up once, instead of
    ``sock.accept()``, which converts ``family`` and ``type`` to enums on
    every call: the same short cut threadlisten's accept loop can take, so
    the floor can be compared with it on equal terms.
"""

from __future__ import annotations

import selectors
import socket
import sys
from collections.abc import Callable
from typing import Any

from tlbench.servers import proto


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run the selectors loop for ever on the calling thread."""
    sock.setblocking(False)
    setblocking = "--setblocking" in opts.extra
    if opts.stamp:
        stamp = counter.make_stamp()

        def handler(conn: socket.socket, addr: Any) -> None:
            stamp(addr[1])
            conn.close()

    elif setblocking:
        tick = counter.make_tick()

        def handler(conn: socket.socket, addr: Any) -> None:
            tick()
            conn.setblocking(False)
            conn.close()

    else:
        tick = counter.make_tick()

        def handler(conn: socket.socket, addr: Any) -> None:
            tick()
            conn.close()

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    if "--raw-accept" in opts.extra:
        _raw_loop(sock, sel, handler)
    accept = sock.accept
    while True:
        for _key, _mask in sel.select():
            while True:
                try:
                    conn, addr = accept()
                except BlockingIOError:
                    break
                handler(conn, addr)


def _raw_loop(
    sock: socket.socket,
    sel: selectors.BaseSelector,
    handler: Callable[[socket.socket, Any], None],
) -> None:
    # The same loop, with socket.accept() written out and its enum lookups
    # (family, type) done once.  _accept is the C method socket.accept() wraps;
    # typeshed leaves it out.
    raw_accept: Callable[[], tuple[int, Any]] = sock._accept  # type: ignore[attr-defined]
    family, stype, proto = int(sock.family), int(sock.type), sock.proto
    new_socket = socket.socket
    while True:
        for _key, _mask in sel.select():
            while True:
                try:
                    fd, addr = raw_accept()
                except BlockingIOError:
                    break
                handler(new_socket(family, stype, proto, fileno=fd), addr)


if __name__ == "__main__":
    proto.run(serve, {"impl": type(selectors.DefaultSelector()).__name__})
    sys.exit(3)
