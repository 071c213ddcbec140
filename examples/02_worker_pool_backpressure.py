#!/usr/bin/env python3
"""One listener shared with a pool of worker threads: backpressure by
``disable()`` in the callback and ``enable()`` from a worker.

The acceptor thread runs the loop.  The accept callback does no I/O: it puts
each new socket on a bounded queue and returns.  Worker threads take sockets
off the queue and serve them (read until the client shuts down its side,
echo it all back, close).

When a put fills the queue, the callback calls ``listener.disable()`` on its
own listener.  That is allowed inside the callback (the listener lock is
recursive) and takes effect at once: the batch stops, and new connections
wait in the kernel's backlog instead of piling up in memory.  When a worker
has drained the queue down to ``LOW_WATER``, it calls ``listener.enable()``
from its own thread, and accepting resumes.

Two rules make this safe, and they are the point of the example:

* The callback never blocks.  A blocking ``queue.put`` would wait for a
  worker while holding the listener lock, and a worker calling ``enable()``
  needs that lock: a deadlock.
* The pool's own lock is a leaf: nobody calls the listener while holding it.
  The callback takes it inside the listener lock (listener.lock -> pool.lock),
  and a worker releases it before calling ``enable()``.

Run it::

    python examples/02_worker_pool_backpressure.py    # 127.0.0.1:9877, Ctrl-C stops
    python examples/02_worker_pool_backpressure.py --self-test

The self-test makes three waves of ten connections.  In each wave it opens
all ten before sending anything, so the two workers sit waiting for data and
the queue fills: the listener must pause.  Once it has, every client sends its
payload and checks the echo; the workers drain the queue and resume the
listener, which accepts the rest of the wave.  It checks that all 30
connections were echoed, that the listener paused and resumed in every wave,
and that the queue never held more than its size.
"""

from __future__ import annotations

import argparse
import queue
import signal
import socket
import sys
import threading
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

HOST = "127.0.0.1"
PORT = 9877
#: Sockets waiting for a worker; a full queue pauses the listener.
QUEUE_SIZE = 4
#: A worker resumes the listener once the queue holds this many or fewer.
LOW_WATER = 1
WORKERS = 2
#: Seconds any socket operation or wait may take (all of them are bounded).
TIMEOUT = 10.0


class Pool:
    """The bounded queue, the workers, and the pause state.

    ``paused``, ``pauses``, ``resumes`` and ``most_queued`` are guarded by
    ``lock``, a leaf lock: no listener method is called while holding it.
    """

    def __init__(self, workers: int) -> None:
        self.queue: queue.Queue[socket.socket | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self.lock = threading.Lock()
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.most_queued = 0
        self.served = 0
        self.paused_event = threading.Event()  # set at each pause (self-test waits on it)
        self.listener: Listener | None = None
        self.threads = [
            threading.Thread(target=self.work, name=f"worker-{i}") for i in range(workers)
        ]

    def start(self, listener: Listener) -> None:
        self.listener = listener
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """Tell every worker to finish (after the sockets already queued) and join them."""
        for _ in self.threads:
            self.queue.put(None, timeout=TIMEOUT)
        for t in self.threads:
            t.join(TIMEOUT)

    def work(self) -> None:
        """A worker: serve queued sockets; resume the listener when the queue drains."""
        while True:
            sock = self.queue.get(timeout=None)  # the stop() sentinel always comes
            if sock is None:
                return
            with self.lock:
                resume = self.paused and self.queue.qsize() <= LOW_WATER
                if resume:
                    self.paused = False
                    self.resumes += 1
            if resume and self.listener is not None:
                # Outside self.lock: enable() takes the listener lock.
                self.listener.enable()
                print(f"{threading.current_thread().name}: queue drained, listener enabled")
            serve(sock)
            with self.lock:
                self.served += 1


def serve(sock: socket.socket) -> None:
    """Read until the client shuts down its side, send it all back, close."""
    with sock:
        sock.settimeout(TIMEOUT)  # accepted sockets are non-blocking; workers block
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
        sock.sendall(data)


def on_accept(listener: Listener, sock: socket.socket, address: Any, pool: Pool) -> None:
    """The accept callback: queue the socket; pause the listener when the queue is full.

    Runs on the acceptor thread with the listener lock held, so it must not block.
    """
    with pool.lock:
        pool.queue.put_nowait(sock)  # never full here: we disable before it can be
        queued = pool.queue.qsize()
        pool.most_queued = max(pool.most_queued, queued)
        pause = queued >= QUEUE_SIZE
        if pause:
            pool.paused = True
            pool.pauses += 1
    if pause:
        listener.disable()  # our own listener, lock already held: the batch stops here
        print(f"acceptor: queue full ({queued}), listener disabled")
        pool.paused_event.set()


def check(condition: bool, what: str) -> None:
    """Fail the self-test (an exception, which main turns into exit status 1)."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def self_test(address: tuple[str, int], pool: Pool) -> None:
    """Three waves of ten connections; check every echo and every pause."""
    waves, per_wave = 3, 10
    for wave in range(waves):
        with pool.lock:
            pauses_before = pool.pauses
        pool.paused_event.clear()
        clients = [socket.create_connection(address, timeout=TIMEOUT) for _ in range(per_wave)]
        try:
            # Nobody has sent anything: the workers wait for data, the queue fills.
            check(pool.paused_event.wait(TIMEOUT), "the listener never paused")
            for i, client in enumerate(clients):
                client.sendall(f"wave {wave} client {i}".encode())
                client.shutdown(socket.SHUT_WR)
            for i, client in enumerate(clients):
                echo = bytearray()
                while chunk := client.recv(65536):
                    echo += chunk
                check(echo == f"wave {wave} client {i}".encode(), f"echo {echo!r}")
        finally:
            for client in clients:
                client.close()
        with pool.lock:
            pauses = pool.pauses - pauses_before
        print(f"wave {wave}: {per_wave} connections echoed, the listener paused {pauses} times")
        check(pauses >= 1, f"wave {wave} did not pause the listener")
    with pool.lock:
        pauses, resumes, most = pool.pauses, pool.resumes, pool.most_queued
    # Every pause was followed by a resume: the last wave was fully accepted.
    check(pauses == resumes, f"{pauses} pauses but {resumes} resumes")
    check(most <= QUEUE_SIZE, f"the queue held {most} sockets")


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C, or run the self-test; 0 on success.  Main thread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=PORT, help="default: %(default)s")
    parser.add_argument("--self-test", action="store_true", help="drive it and check it")
    args = parser.parse_args(argv)

    pool = Pool(WORKERS)
    base = EventBase()
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
    port = 0 if args.self_test else args.port
    listener = Listener.bind(base, (HOST, port), on_accept, pool, flags=flags)
    address = listener.socket.getsockname()
    pool.start(listener)
    base.start_thread()
    print(f"listening on {address[0]}:{address[1]}", flush=True)
    try:
        if args.self_test:
            self_test(address, pool)
        else:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        print("shutting down")
    finally:
        listener.free()  # no callback runs once this returns
        base.stop(TIMEOUT)
        pool.stop()  # the workers finish what is queued, then end
        base.close()
    print(f"served {pool.served}, paused {pool.pauses} times, resumed {pool.resumes} times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
