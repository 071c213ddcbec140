"""tornado: ``netutil.add_accept_handler`` on the ``IOLoop``.

tornado's lowest-level accept API (``TCPServer`` builds on it); it accepts
up to 128 connections per wake-up and calls ``callback(connection, address)``.
On Python 3 the ``IOLoop`` runs on an asyncio loop.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import Any

from tlbench.servers import proto

# Imported before READY, so that set-up after GO is only the server's own.
tornado: Any = importlib.import_module("tornado")
netutil: Any = importlib.import_module("tornado.netutil")
ioloop: Any = importlib.import_module("tornado.ioloop")


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run the IOLoop for ever on the calling thread."""
    sock.setblocking(False)  # as tornado's bind_sockets leaves it
    if opts.stamp:
        stamp = counter.make_stamp()

        def on_connection(conn: socket.socket, address: Any) -> None:
            stamp(address[1])
            conn.close()

    else:
        tick = counter.make_tick()

        def on_connection(conn: socket.socket, address: Any) -> None:
            tick()
            conn.close()

    netutil.add_accept_handler(sock, on_connection)
    ioloop.IOLoop.current().start()


def _info() -> dict[str, str]:
    return {"impl": "add_accept_handler", "tornado": str(tornado.version)}


if __name__ == "__main__":
    proto.run(serve, _info())
    sys.exit(3)
