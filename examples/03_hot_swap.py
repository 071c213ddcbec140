#!/usr/bin/env python3
"""Hot-swapping the accept callback from other threads: on SIGHUP, and from a timer.

A greeting server: every connection gets one line from the current handler,
then is closed.  The handlers rotate through ``HANDLERS`` (a callback and its
argument each).  Two things swap them while the server runs:

* SIGHUP (``kill -HUP <pid>``): Python runs the handler on the main thread,
  which calls ``listener.set_cb(cb, arg)``;
* a timer (a ``threading.Timer`` thread; ``--swap-every SECONDS``).

``set_cb`` may be called from any thread at any moment.  It takes the
listener lock, which the acceptor thread holds while a batch of callbacks
runs, so a swap waits for the running callback to finish and changes the
callback *and* its argument together: every connection is served by exactly
one (cb, arg) pair, never by the new callback with the old argument.  Neither
thread ever waits for the loop itself.

A caution about signal handlers: Python runs them on the main thread between
two bytecodes, possibly in the middle of a listener call that thread is
making (the lock is recursive, so the handler would get in).  Here the main
thread makes no listener call while SIGHUP is handled, and it ignores SIGHUP
before it frees the listener.  A program whose main thread does use the
listener should hand the swap to another thread (``base.call_soon_threadsafe``
runs it on the acceptor thread).

Run it::

    python examples/03_hot_swap.py --swap-every 5     # 127.0.0.1:9878
    nc 127.0.0.1 9878; kill -HUP <pid>; nc 127.0.0.1 9878
    python examples/03_hot_swap.py --self-test

The self-test connects (handler 1), sends itself SIGHUP and connects (handler
2), lets a one-shot timer swap and connects (handler 3), then checks the three
greetings, and that each came from its own callback with its own argument.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

HOST = "127.0.0.1"
PORT = 9878
#: Seconds any socket operation or wait may take.
TIMEOUT = 10.0


def polite(listener: Listener, sock: socket.socket, address: Any, arg: str) -> None:
    """One handler: a polite greeting.  Runs on the acceptor thread."""
    with sock:
        sock.sendall(f"polite {arg}: good day, {address[0]}\n".encode())


def curt(listener: Listener, sock: socket.socket, address: Any, arg: str) -> None:
    """Another handler: a curt one."""
    with sock:
        sock.sendall(f"curt {arg}: what?\n".encode())


#: The handlers in turn: (callback, its argument).
HANDLERS = ((polite, "v1"), (curt, "v2"), (polite, "v3"))


class Swapper:
    """Rotates the listener's callback; ``swap`` may run on any thread."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._turns: Iterator[tuple[Any, str]] = itertools.cycle(HANDLERS)
        # Serialises the rotation, so that concurrent swaps apply in turn.
        # Order: this lock, then the listener lock (set_cb); no callback
        # takes this one, so the order has no cycle.
        self._lock = threading.Lock()
        self.swapped = threading.Event()  # set after each swap (the self-test waits on it)
        self.swap("start")

    def swap(self, why: str) -> None:
        """Install the next handler (``set_cb`` takes the listener lock)."""
        with self._lock:
            cb, arg = next(self._turns)
            self.listener.set_cb(cb, arg)
        print(f"{threading.current_thread().name}: {why}: now {cb.__name__} {arg}", flush=True)
        self.swapped.set()

    def on_sighup(self, signum: int, frame: FrameType | None) -> None:
        """The SIGHUP handler (main thread)."""
        self.swap("SIGHUP")


def greeting(address: tuple[str, int]) -> str:
    """Connect, read the one line the server sends, return it."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        data = bytearray()
        while chunk := sock.recv(1024):
            data += chunk
    return data.decode().strip()


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def self_test(address: tuple[str, int], swapper: Swapper) -> None:
    """Handler 1, then SIGHUP -> handler 2, then a timer -> handler 3."""
    first = greeting(address)
    swapper.swapped.clear()
    os.kill(os.getpid(), signal.SIGHUP)  # the handler runs on this (main) thread
    check(swapper.swapped.wait(TIMEOUT), "SIGHUP did not swap")
    second = greeting(address)
    swapper.swapped.clear()
    timer = threading.Timer(0.01, swapper.swap, args=("timer",))
    timer.name = "timer"
    timer.start()
    check(swapper.swapped.wait(TIMEOUT), "the timer did not swap")
    timer.join(TIMEOUT)
    third = greeting(address)
    for line in (first, second, third):
        print(f"got: {line}")
    check(first == "polite v1: good day, 127.0.0.1", first)
    check(second == "curt v2: what?", second)
    check(third.startswith("polite v3: "), third)


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C, or run the self-test; 0 on success.  Main thread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=PORT, help="default: %(default)s")
    parser.add_argument(
        "--swap-every", type=float, default=None, metavar="SECONDS", help="swap on a timer too"
    )
    parser.add_argument("--self-test", action="store_true", help="drive it and check it")
    args = parser.parse_args(argv)

    base = EventBase()
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
    port = 0 if args.self_test else args.port
    # No callback yet: a listener without one accepts nothing (connections wait).
    listener = Listener.bind(base, (HOST, port), None, flags=flags)
    swapper = Swapper(listener)
    address = listener.socket.getsockname()
    stop = threading.Event()
    timer_thread: threading.Thread | None = None
    if args.swap_every and not args.self_test:

        def every() -> None:
            while not stop.wait(args.swap_every):
                swapper.swap("timer")

        timer_thread = threading.Thread(target=every, name="timer")
        timer_thread.start()
    signal.signal(signal.SIGHUP, swapper.on_sighup)
    base.start_thread()
    print(f"listening on {address[0]}:{address[1]} (pid {os.getpid()})", flush=True)
    try:
        if args.self_test:
            self_test(address, swapper)
        else:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        print("shutting down")
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no swap may interrupt free()
        stop.set()
        if timer_thread is not None:
            timer_thread.join(TIMEOUT)
        listener.free()
        base.stop(TIMEOUT)
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
