"""trio: ``trio.serve_listeners`` on a ``SocketListener``, a handler that closes.

``serve_tcp`` is ``open_tcp_listeners`` + ``serve_listeners``; with a socket
that is already listening, the idiomatic form is a ``SocketListener`` around
it.  trio accepts one connection per ``accept()`` (a checkpoint each) and runs
every handler in a task of its own.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import Any

from tlbench.servers import proto

# Imported before READY, so that set-up after GO is only the server's own.
trio: Any = importlib.import_module("trio")


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run trio for ever on the calling thread."""
    if opts.stamp:
        stamp = counter.make_stamp()

        async def handler(stream: Any) -> None:
            stamp(stream.socket.getpeername()[1])
            await stream.aclose()

    else:
        tick = counter.make_tick()

        async def handler(stream: Any) -> None:
            tick()
            await stream.aclose()

    async def main() -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        await trio.serve_listeners(handler, [listener])

    trio.run(main)


def _info() -> dict[str, str]:
    return {"impl": "serve_listeners", "trio": str(trio.__version__)}


if __name__ == "__main__":
    proto.run(serve, _info())
    sys.exit(3)
