"""The worker pool: accept callbacks hand each socket here; a worker reads the
client's request, checks it, answers it and closes.  A request of another run
(another process reached a reused port, see ``stress.protocol``) is closed
unanswered and counted as foreign.

Callbacks run on the loop thread with the listener lock held, so they must
not do I/O: ``submit`` only puts the socket on a queue.  The workers use
blocking sockets with a timeout, so a client that never sends cannot hold a
worker for ever.
"""

from __future__ import annotations

import array
import queue
import socket
import threading
import time
import zlib

from stress.invariants import Violations
from stress.protocol import HEADER, ProtocolError, parse_header, recv_exactly, response_for
from stress.stats import Stats

__all__ = ["WorkerPool"]


class WorkerPool:
    """*n* echo workers.

    Args:
        run: this run's nonce; requests with another are foreign.
        n: how many worker threads.
        io_timeout: seconds each socket operation of a worker may take.
        stats, violations: where results go.

    Thread-safety: ``submit`` from any thread (the loop thread, in practice);
    ``start``/``close`` from the thread that owns the run.
    """

    def __init__(
        self, run: int, n: int, io_timeout: float, stats: Stats, violations: Violations
    ) -> None:
        self.run = run
        self.io_timeout = io_timeout
        self.stats = stats
        self.violations = violations
        self._queue: queue.SimpleQueue[tuple[socket.socket, int] | None] = queue.SimpleQueue()
        self._ids: list[array.array[int]] = [array.array("Q") for _ in range(n)]
        self._threads = [
            threading.Thread(target=self._main, args=(i,), name=f"stress-worker-{i}", daemon=True)
            for i in range(n)
        ]

    def start(self) -> None:
        """Start the workers."""
        for t in self._threads:
            t.start()

    def submit(self, sock: socket.socket, gen: int) -> None:
        """Queue an accepted socket (now owned by the pool) from listener *gen*."""
        self._queue.put((sock, gen))

    def close(self, timeout: float) -> list[str]:
        """Let the workers finish what is queued, stop them, join them.

        Returns the names of workers still alive after *timeout* seconds.
        """
        for _ in self._threads:
            self._queue.put(None)  # after everything queued so far: FIFO
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def echoed_ids(self) -> list[int]:
        """Return the ids of every connection echoed (call after ``close``)."""
        out: list[int] = []
        for ids in self._ids:
            out.extend(ids)
        return out

    def _main(self, index: int) -> None:
        tally = self.stats.tally(f"worker-{index}")
        ids = self._ids[index]
        while True:
            item = self._queue.get()
            if item is None:
                return
            sock, gen = item
            try:
                conn_id = self._serve(sock)
            except (OSError, ProtocolError) as exc:
                tally.add("worker.failed")
                self.violations.record(
                    "delivered-echoed", f"worker failed on a connection of listener {gen}: {exc!r}"
                )
            else:
                if conn_id is None:
                    tally.add("worker.foreign")
                else:
                    ids.append(conn_id)
                    tally.add("worker.echoed")
            finally:
                sock.close()

    def _serve(self, sock: socket.socket) -> int | None:
        """Answer one request; return its connection id, or None if it is foreign."""
        sock.settimeout(self.io_timeout)
        header = recv_exactly(sock, HEADER.size)
        if len(header) != HEADER.size:
            raise ProtocolError(f"short header ({len(header)} bytes)")
        run, conn_id, length, crc = parse_header(header)
        body = recv_exactly(sock, length)
        if len(body) != length or zlib.crc32(body) != crc:
            raise ProtocolError(f"connection {conn_id}: torn body ({len(body)}/{length} bytes)")
        if run != self.run:
            return None  # another run's client on a reused port: not ours to answer
        sock.sendall(response_for(header + body))
        return conn_id
