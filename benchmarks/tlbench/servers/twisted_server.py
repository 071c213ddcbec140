"""Twisted: a ``Factory`` of ``Protocol``s adopted with ``adoptStreamPort``.

``adoptStreamPort`` is ``listenTCP`` for a socket that is already listening;
the port accepts adaptively (its ``numberAccepts`` grows while the backlog
stays full).  ``connectionMade`` calls ``transport.loseConnection()``.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import Any

from tlbench.servers import proto

# Imported before READY, so that set-up after GO is only the server's own.
# Importing the reactor module installs the default reactor (epoll on Linux).
twisted: Any = importlib.import_module("twisted")
reactor: Any = importlib.import_module("twisted.internet.reactor")
protocol: Any = importlib.import_module("twisted.internet.protocol")


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run the reactor for ever on the calling thread."""
    if opts.stamp:
        stamp = counter.make_stamp()

        class Stamper(protocol.Protocol):  # type: ignore[misc]
            def connectionMade(self) -> None:
                stamp(self.transport.getPeer().port)
                self.transport.loseConnection()

        factory = protocol.Factory.forProtocol(Stamper)
    else:
        tick = counter.make_tick()

        class Closer(protocol.Protocol):  # type: ignore[misc]
            def connectionMade(self) -> None:
                tick()
                self.transport.loseConnection()

        factory = protocol.Factory.forProtocol(Closer)
    factory.noisy = False
    # adoptStreamPort wants the socket non-blocking (its documentation says
    # so; a blocking one hangs the reactor in accept() once the queue is
    # empty), and duplicates the descriptor: ours stays open, unused.
    sock.setblocking(False)
    reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
    reactor.run(installSignalHandlers=False)


def _info() -> dict[str, str]:
    return {
        "impl": "adoptStreamPort",
        "twisted": str(twisted.__version__),
        "reactor": type(reactor).__name__,
    }


if __name__ == "__main__":
    proto.run(serve, _info())
    sys.exit(3)
