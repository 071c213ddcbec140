"""gevent: ``gevent.server.StreamServer`` with a handler that closes.

gevent spawns a greenlet per connection (its default ``spawn``) and accepts
up to ``max_accept`` (100) connections per wake-up.  Nothing is
monkey-patched: the command thread of ``proto`` is a real thread.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import Any

from tlbench.servers import proto

# Imported before READY, so that set-up after GO is only the server's own.
gevent: Any = importlib.import_module("gevent")
server_mod: Any = importlib.import_module("gevent.server")


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run ``serve_forever`` for ever on the calling thread."""
    if opts.stamp:
        stamp = counter.make_stamp()

        def handle(conn: Any, address: Any) -> None:
            stamp(address[1])
            conn.close()

    else:
        tick = counter.make_tick()

        def handle(conn: Any, address: Any) -> None:
            tick()
            conn.close()

    # Non-blocking, as gevent's own listeners are (gevent.server makes its
    # sockets so): with a blocking one, an accept() when the queue is empty
    # blocks the whole hub.
    sock.setblocking(False)
    server = server_mod.StreamServer(sock, handle)
    server.serve_forever()


def _info() -> dict[str, str]:
    return {
        "impl": "StreamServer",
        "gevent": str(gevent.__version__),
        "loop": str(gevent.config.loop),
    }


if __name__ == "__main__":
    proto.run(serve, _info())
    sys.exit(3)
