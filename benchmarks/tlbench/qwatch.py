"""Watch a listening socket's accept queue from outside the server (Linux).

Burst mode must know when a server *started accepting*.  A server's first
callback is not that moment: asyncio, gevent, trio and Twisted accept a batch
and only then run the callbacks (through tasks, greenlets or a second loop
pass), so timing from the first callback would leave their first batches off
the clock.  Nothing inside every framework marks "accepting now" alike, but
the kernel does: the accept queue shrinks.  This module asks the kernel for
the queue length of the listening socket with a ``sock_diag`` netlink query
(what ``ss -lnt`` shows as Recv-Q), from the harness's own core, without
touching the server.

One query takes a few hundred microseconds, so the start of the drain is
known to within one query: well under 1 % of a burst's drain time.
"""

from __future__ import annotations

import socket
import struct
import time

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10
_NLMSG_HEADER = struct.Struct("=IHHII")
_INET_DIAG_REQ_V2 = struct.Struct("=BBBxI")
# inet_diag_msg: family, state, timer, retrans (4 bytes), inet_diag_sockid
# (48 bytes), expires (4), then rqueue and wqueue: for a LISTEN socket, the
# accept queue's length and its limit.
_SOCKID_OFFSET = 4
_QUEUES_OFFSET = 4 + 48 + 4


class QueueWatcher:
    """Reads the accept-queue length of the TCP listener(s) on 127.0.0.1:*port*.

    With SO_REUSEPORT there are several listeners on one port: ``queued()``
    returns the sum.  Use as a context manager, or call ``close()``.

    Raises:
        OSError: netlink sock_diag is not available (non-Linux, or the
            ``inet_diag`` module is missing).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        sockid = struct.pack("!HH16s16sI", 0, 0, b"", b"", 0) + struct.pack(
            "=II", 0xFFFFFFFF, 0xFFFFFFFF
        )
        body = _INET_DIAG_REQ_V2.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
        body += sockid
        header = _NLMSG_HEADER.pack(
            _NLMSG_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
        )
        self._request = header + body
        try:
            self.queued()  # fail here, not in the middle of a measurement
        except BaseException:
            self._sock.close()
            raise

    def queued(self) -> int:
        """Return how many connections wait to be accepted on the port now."""
        self._sock.send(self._request)
        total = 0
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return total
                if kind == NLMSG_ERROR:
                    raise OSError("sock_diag query failed")
                payload = offset + _NLMSG_HEADER.size
                (sport,) = struct.unpack_from("!H", data, payload + _SOCKID_OFFSET)
                if sport == self.port:
                    (rqueue,) = struct.unpack_from("=I", data, payload + _QUEUES_OFFSET)
                    total += rqueue
                offset += (length + 3) & ~3
                if length == 0:
                    raise OSError("malformed netlink message")

    def wait_below(
        self, count: int, timeout: float, since_ns: int, interval: float = 0.0
    ) -> tuple[int, int]:
        """Poll until fewer than *count* connections are queued.

        Args:
            count: the queue length to wait to fall below.
            timeout: seconds to poll before giving up.
            since_ns: a time (``time.monotonic_ns``) before which the queue
                cannot have shrunk, e.g. just before the server was told GO.
            interval: seconds to sleep between queries (0: poll flat out,
                for the best resolution; more: leave the CPU alone).

        Returns ``(before_ns, after_ns)``: when the last query that still saw
        *count* or more was sent (or *since_ns*), and when the first that saw
        fewer was sent; the queue began to shrink in between.  Send times,
        not reply times: the kernel reads the listeners' queues at the start
        of a query, and a reply can be late when this process is preempted (a
        busy machine) without the reading being any later.

        Raises:
            TimeoutError: the queue did not shrink within *timeout* seconds.
        """
        before = since_ns
        deadline = time.monotonic_ns() + int(timeout * 1e9)
        while True:
            sent = time.monotonic_ns()
            n = self.queued()
            if n < count:
                return before, sent
            if sent > deadline:
                raise TimeoutError(f"the accept queue stayed at {n} for {timeout} s")
            before = sent
            if interval:
                time.sleep(interval)  # pacing the polls, not synchronising

    def close(self) -> None:
        """Close the netlink socket."""
        self._sock.close()

    def __enter__(self) -> QueueWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
