#!/usr/bin/env python3
"""The error callback under descriptor exhaustion: back-off, then recovery.

When a process runs out of descriptors, ``accept()`` fails with EMFILE and
the connection stays in the kernel's backlog.  libevent then calls the error
callback on every pass of its loop (the listening socket is still readable):
a busy loop, burning a CPU for as long as the shortage lasts (libevent #71).

threadlisten pauses instead.  A resource error (EMFILE, ENFILE, ENOBUFS,
ENOMEM) stops accepting for 10 ms, then 20, 40 ... up to 1 s; each failed
attempt is reported to the error callback (with the ``OSError``; the
listener's ``backing_off`` is True during the pause); the queued connections
wait in the backlog; and the first success resets the delay.

This example makes the shortage real, in its own process only: it lowers its
own soft ``RLIMIT_NOFILE`` to the lowest free descriptor number, so that the
next descriptor the process asks for, the one ``accept()`` needs, is refused.
The client sockets are made before that (``connect()`` needs no new
descriptor), and nothing else in this process opens a descriptor until the
limit is restored.  Run it on its own; it changes nothing outside itself.

Run it::

    python examples/06_emfile_backoff.py [--self-test]

What happens: five clients connect while the process has no descriptor to
spare; the error callback reports EMFILE at growing intervals (printed);
then the limit is restored, and at the end of the current pause every
queued client is accepted and greeted.  The self-test checks that every
report was EMFILE with ``backing_off`` set, that the first four reports
were spread over tens of milliseconds (the back-off: 10 + 20 + 40 ms; a busy
loop would report every few microseconds), that all five clients were served
after the recovery, and that the back-off is over.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import resource
import socket
import sys
import threading
import time
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

HOST = "127.0.0.1"
CLIENTS = 5
#: Error reports to wait for before restoring the limit: delays 10, 20, 40 ms.
REPORTS = 4
#: The back-offs between the first four reports, in seconds (10 ms doubling).
#: A timer never fires early, so the reports span at least their sum, less the
#: moment between the first failure and its report; a busy loop would report
#: every few microseconds.
BACKOFFS = (0.010, 0.020, 0.040)
#: How much of that sum the check demands: half, so that a loaded machine that
#: stalls the acceptor thread right after the first failure cannot fail it.
SHARE = 0.5
#: Seconds any socket operation or wait may take.
TIMEOUT = 10.0


class Watch:
    """What the callbacks saw (appended on the acceptor thread)."""

    def __init__(self) -> None:
        self.errors: list[tuple[float, int | None, bool]] = []  # (time, errno, backing_off)
        self.served = 0
        self.enough_errors = threading.Event()
        self.all_served = threading.Event()


def on_accept(listener: Listener, sock: socket.socket, address: Any, watch: Watch) -> None:
    """Greet and close.  The first success also ends the back-off."""
    with sock:
        sock.sendall(b"welcome\n")
    watch.served += 1
    if watch.served == CLIENTS:
        watch.all_served.set()


def on_error(listener: Listener, error: OSError, watch: Watch) -> None:
    """The error callback: runs on the acceptor thread, lock held, like the accept one."""
    watch.errors.append((time.monotonic(), error.errno, listener.backing_off))
    n = len(watch.errors)
    gap = "" if n == 1 else f", {1000 * (watch.errors[-1][0] - watch.errors[-2][0]):.0f} ms after"
    print(f"error callback #{n}: {error.strerror} (backing off: {listener.backing_off}{gap})")
    if n == REPORTS:
        watch.enough_errors.set()


def lowest_free_fd() -> int:
    """The descriptor number the next open() would get."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration (and its checks with --self-test); 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--self-test", action="store_true", help="check what happened too")
    args = parser.parse_args(argv)

    watch = Watch()
    base = EventBase()
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    listener = Listener.bind(base, (HOST, 0), on_accept, watch, flags=flags)
    listener.set_error_cb(on_error)
    address = listener.socket.getsockname()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(CLIENTS)]
    for c in clients:
        c.settimeout(TIMEOUT)
    base.start_thread()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    greetings: list[bytes] = []
    try:
        # From here until the limit is restored, no new descriptor can be made.
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free_fd(), hard))
        try:
            for c in clients:
                c.connect(address)  # completes in the kernel; accept() will fail
            print(f"{CLIENTS} clients connected; the process is out of descriptors")
            check(watch.enough_errors.wait(TIMEOUT), f"fewer than {REPORTS} error reports")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print("limit restored; the queued clients are accepted when the pause ends")
        check(watch.all_served.wait(TIMEOUT), "not every client was served")
        for c in clients:
            greetings.append(c.recv(100))
        backing_off = listener.backing_off
    finally:
        listener.free()
        base.stop(TIMEOUT)
        base.close()
        for c in clients:
            c.close()
    print(
        f"served {watch.served}, {len(watch.errors)} error reports, backing off now: {backing_off}"
    )
    if args.self_test:
        first = watch.errors[:REPORTS]
        check(all(e == errno.EMFILE and off for _, e, off in first), f"reports {first}")
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(first)]
        shown = ", ".join(f"{g * 1000:.1f}" for g in gaps)
        check(
            sum(gaps) >= SHARE * sum(BACKOFFS),
            f"gaps of {shown} ms between reports: no back-off",
        )
        check(greetings == [b"welcome\n"] * CLIENTS, f"greetings {greetings}")
        check(not backing_off, "still backing off after a success")
        print("self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
