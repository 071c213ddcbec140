"""socketserver: ``TCPServer.serve_forever`` with a handler that does nothing.

socketserver selects, then accepts one connection per wake-up, and its
``shutdown_request`` closes the connection after the handler returns.
"""

from __future__ import annotations

import socket
import socketserver
import sys

from tlbench.servers import proto


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Run ``serve_forever`` for ever on the calling thread."""
    if opts.stamp:
        stamp = counter.make_stamp()

        class Stamper(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                stamp(self.client_address[1])

        handler: type[socketserver.BaseRequestHandler] = Stamper
    else:
        tick = counter.make_tick()

        class Closer(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                tick()

        handler = Closer
    server = socketserver.TCPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock  # already bound and listening
    server.serve_forever()


if __name__ == "__main__":
    proto.run(serve, {"impl": "TCPServer.serve_forever"})
    sys.exit(3)
