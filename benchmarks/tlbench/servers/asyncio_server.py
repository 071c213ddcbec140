"""asyncio (and uvloop): ``loop.create_server`` with a ``Protocol`` that closes.

``--uvloop`` runs the same code on uvloop's loop (libuv underneath).
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
from typing import Any

from tlbench.servers import proto

# Imported before READY, so that set-up after GO is only the server's own.
uvloop: Any = importlib.import_module("uvloop") if "--uvloop" in sys.argv else None


def _protocol_factory(counter: proto.Counter, opts: proto.Options) -> type[asyncio.Protocol]:
    if opts.stamp:
        stamp = counter.make_stamp()

        class Stamper(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                stamp(transport.get_extra_info("peername")[1])
                transport.close()

        return Stamper
    tick = counter.make_tick()

    class Closer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            tick()
            transport.close()

    return Closer


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run the asyncio (or uvloop) server for ever on the calling thread."""
    factory = _protocol_factory(counter, opts)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The default backlog (100), as an application would have it: asyncio
        # also uses it as the most connections accepted per wake-up.  Its
        # listen(100) leaves the connections already queued where they are.
        server = await loop.create_server(factory, sock=sock)
        await server.serve_forever()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


def _info() -> dict[str, str]:
    if uvloop is not None:
        return {"impl": "uvloop", "uvloop": str(uvloop.__version__)}
    return {"impl": "asyncio selector loop"}


if __name__ == "__main__":
    proto.run(serve, _info())
    sys.exit(3)
