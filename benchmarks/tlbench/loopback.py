"""Loopback clients for the in-process drains (``ab``, ``accept_profile``,
``benchmarks/_burst.py``).

A drain connects its clients first and times only the server; the clients
close with ``SO_LINGER`` 0, so each close sends RST and leaves no TIME_WAIT
behind: thousands of rounds never run out of ephemeral ports.
"""

from __future__ import annotations

import socket
import struct

#: ``SO_LINGER`` on, 0 seconds: close() resets the connection.
LINGER_0 = struct.pack("ii", 1, 0)


def rst_clients(port: int, n: int) -> list[socket.socket]:
    """Connect *n* clients to 127.0.0.1:*port* and return them (each closes with RST).

    The caller closes them.  On a failure the ones already connected are
    closed and the ``OSError`` is raised.
    """
    clients: list[socket.socket] = []
    try:
        for _ in range(n):
            c = socket.socket()
            clients.append(c)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            c.connect(("127.0.0.1", port))
    except BaseException:
        for c in clients:
            c.close()
        raise
    return clients
