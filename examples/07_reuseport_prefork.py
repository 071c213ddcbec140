#!/usr/bin/env python3
"""SO_REUSEPORT across processes (prefork): each worker binds the same port,
and the kernel spreads the connections among them.

The parent forks ``--workers`` processes.  Each one makes its *own*
``EventBase`` and binds its *own* listener to the same 127.0.0.1 port with
``LEV_OPT.REUSEABLE_PORT`` (``SO_REUSEPORT``).  Linux then keeps one accept
queue per socket and hashes each new connection (by its addresses and ports)
to one of them: the load is spread without any lock or hand-over between the
processes, and one process's stall does not block the others' accepts.
Nothing is shared after the fork: no listener, no base, no thread crosses a
process boundary (forking a process that runs threads is unsafe, so the
parent forks before it makes any).

The parent keeps the port reserved until the workers are listening: it binds
a placeholder socket with ``SO_REUSEPORT`` to port 0 and never listens on it
(a socket that does not listen gets no connections).  Then it makes
``--connections`` connections; each worker answers with its number; the
parent counts who answered, stops the workers (by closing a pipe they
watch), collects their own counts, and prints the spread.

``REUSEABLE_PORT`` is refused (``ENOPROTOOPT``) where the platform has no
load-balancing ``SO_REUSEPORT`` (as libevent does); this example then says so
and exits 0.

Run it::

    python examples/07_reuseport_prefork.py [--workers 4] [--connections 200] [--self-test]

The self-test checks that every connection was answered, that each worker's
own count matches what the clients saw, that the counts add up, and that every
worker got some of the load.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

HOST = "127.0.0.1"
#: Seconds any socket operation, pipe read or wait may take.
TIMEOUT = 10.0


def reuseport_available() -> bool:
    """Whether ``REUSEABLE_PORT`` load-balances here (threadlisten accepts it)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def worker(index: int, port: int, report_fd: int, stop_fd: int) -> int:
    """A worker process: listen on *port*, answer until *stop_fd* reaches EOF.

    Writes ``ready`` and then its count to *report_fd*.  Returns the exit status.
    """
    count = 0

    def on_accept(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        nonlocal count
        count += 1
        with sock:
            sock.sendall(f"{index}\n".encode())

    base = EventBase()
    flags = LEV_OPT.REUSEABLE_PORT | LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    listener = Listener.bind(base, (HOST, port), on_accept, flags=flags)
    base.start_thread()
    try:
        os.write(report_fd, b"ready\n")
        # Wait for the parent to close the stop pipe (EOF), bounded.
        select.select([stop_fd], [], [], TIMEOUT * 3)
    finally:
        listener.free()  # after this no callback runs, so `count` is final
        base.stop(TIMEOUT)
        base.close()
    os.write(report_fd, f"{count}\n".encode())
    return 0


def read_line(fd: int, deadline: float) -> str:
    """Read one line from the pipe *fd* before *deadline* (monotonic seconds)."""
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError("a worker did not report in time")
        chunk = os.read(fd, 64)
        if not chunk:
            raise EOFError("a worker ended without reporting")
        data += chunk
    return data.decode().strip()


def wait_exit(pid: int, deadline: float) -> int | None:
    """The exit code of process *pid* once it ends, or None if it is still
    running at *deadline* (monotonic seconds)."""
    if hasattr(os, "pidfd_open"):  # Linux >= 5.3: a descriptor readable at exit
        fd = os.pidfd_open(pid)
        try:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return None
        finally:
            os.close(fd)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    while True:  # elsewhere there is no waitable handle: poll waitpid
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def reap(pids: list[int], deadline: float) -> list[int]:
    """Wait for the worker processes (bounded); kill any left; return their exit codes."""
    statuses: list[int] = []
    for pid in pids:
        status = wait_exit(pid, deadline)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = -signal.SIGKILL
        statuses.append(status)
    return statuses


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def main(argv: list[str] | None = None) -> int:
    """Fork the workers, drive them, print the spread; 0 on success.  Main thread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--connections", type=int, default=200, help="default: %(default)s")
    parser.add_argument("--self-test", action="store_true", help="check what happened too")
    args = parser.parse_args(argv)
    if not reuseport_available():
        print("no load-balancing SO_REUSEPORT on this platform: nothing to show")
        return 0
    if threading.active_count() != 1:
        raise RuntimeError("fork before starting any thread")

    placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    placeholder.bind((HOST, 0))  # reserves the port; never listens, gets no connections
    port = placeholder.getsockname()[1]
    stop_r, stop_w = os.pipe()
    pids: list[int] = []
    reports: list[int] = []
    for index in range(args.workers):
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker process
            status = 1
            try:
                placeholder.close()
                os.close(stop_w)  # else the stop pipe would never reach EOF
                os.close(report_r)
                status = worker(index, port, report_w, stop_r)
            finally:
                os._exit(status)  # never return into the parent's code
        os.close(report_w)
        pids.append(pid)
        reports.append(report_r)
    os.close(stop_r)

    answers: Counter[int] = Counter()
    own: list[int] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        for fd in reports:
            check(read_line(fd, deadline) == "ready", "a worker did not start")
        placeholder.close()
        print(f"{args.workers} workers listening on {HOST}:{port}")
        for _ in range(args.connections):
            with socket.create_connection((HOST, port), timeout=TIMEOUT) as client:
                data = bytearray()
                while chunk := client.recv(64):
                    data += chunk
            answers[int(data)] += 1
    finally:
        placeholder.close()
        os.close(stop_w)  # EOF on the stop pipe: the workers free and exit
        deadline = time.monotonic() + TIMEOUT
        try:
            own = [int(read_line(fd, deadline)) for fd in reports]
        finally:
            for fd in reports:
                os.close(fd)
            statuses = reap(pids, time.monotonic() + TIMEOUT)
    width = max(answers.values(), default=0)
    for index in range(args.workers):
        bar = "#" * round(40 * answers[index] / width) if width else ""
        print(f"worker {index} (pid {pids[index]}): {answers[index]:4} {bar}")
    if args.self_test:
        check(statuses == [0] * args.workers, f"worker exit statuses {statuses}")
        check(sum(answers.values()) == args.connections, "a connection went unanswered")
        check(own == [answers[i] for i in range(args.workers)], f"counts {own} vs {answers}")
        check(all(answers[i] > 0 for i in range(args.workers)), "a worker got no connection")
        print("self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
