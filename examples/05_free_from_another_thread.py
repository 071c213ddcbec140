#!/usr/bin/env python3
"""``free()`` from another thread while a callback runs: the lock is the
barrier, and the refcount decides who destroys.

A THREADSAFE listener's accept callback runs on the acceptor thread with the
listener lock held.  Here a *freer* thread calls ``free()`` in the middle of
that callback:

1. ``free()`` needs the lock, which the acceptor holds: the freer blocks.
   Meanwhile the callback still sees its listener alive: not freed, refcount 2
   (the owner's reference and the batch's).  Nothing is torn down under a
   running callback.
2. The callback returns, the batch drops its reference (2 -> 1) and releases
   the lock.  Only now does ``free()`` get in: it drops the owner's
   reference (1 -> 0), and since that was the last one, it destroys the
   listener right there, in the freer thread: unregisters its event and
   closes the socket (CLOSE_ON_FREE).
3. When ``free()`` returns, no callback is running and none will ever start:
   the acceptor checks "freed" under the same lock before every accept.

``free()`` waited for the running *batch*, never for the loop: it holds no
lock while the acceptor might need one, so it cannot deadlock the way
libevent's ``evconnlistener_free`` can (docs/threading.md).  Compare example
4, where the callback frees its own listener and the batch's reference keeps
it alive until the callback returns.

This example records it all with the lifecycle tracer (``threadlisten.trace``):
the callback waits until the trace shows the freer blocked on the lock, so the
race always goes the same way, and the recorded steps are printed at the end.
``python -m threadlisten trace free-during-callback`` draws the same story.

Run it::

    python examples/05_free_from_another_thread.py [--self-test]

The self-test checks, from the trace: the freer blocked while the callback ran;
the callback saw refcount 2 and its listener not freed; ``free()`` returned
only after the batch released the lock; destroy ran in the freer thread; the
refcount went 1 -> 2 -> 1 -> 0; and a client after ``free()`` is refused.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener
from threadlisten.trace import TraceEvent, Tracer, TraceRuntime

HOST = "127.0.0.1"
#: Seconds any socket operation or wait may take.
TIMEOUT = 10.0


class Seen:
    """What the callback saw (written on the acceptor thread)."""

    refcount: int | None = None
    freed: bool | None = None


def check(condition: bool, what: str) -> None:
    """Fail the self-test."""
    if not condition:
        raise RuntimeError(f"self-test failed: {what}")


def first(events: list[TraceEvent], thread: str, kind: str, detail: str = "") -> TraceEvent:
    """The first event of *kind* by *thread* (with *detail*, if given)."""
    for e in events:
        if e.thread == thread and e.kind == kind and (not detail or e.detail == detail):
            return e
    raise RuntimeError(f"self-test failed: no {kind} {detail} by {thread} in the trace")


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration (and its checks with --self-test); 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--self-test", action="store_true", help="check what happened too")
    args = parser.parse_args(argv)

    tracer = Tracer()
    seen = Seen()

    def on_accept(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        sock.close()
        tracer.mark("callback: waiting until the freer is blocked")
        # Bounded: wait until the freer has found the lock taken.
        tracer.wait_for(lambda e: e.kind == "lock.wait" and e.thread == "freer", TIMEOUT)
        seen.refcount = listener.refcount  # the lock is recursive: we may read it
        seen.freed = listener.freed
        tracer.mark(f"callback: refcount {seen.refcount}, freed {seen.freed}; returning")

    base = EventBase(runtime=TraceRuntime(tracer))  # trace this base and its listeners
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    listener = Listener.bind(base, (HOST, 0), on_accept, flags=flags)
    address = listener.socket.getsockname()
    base.start_thread(name="acceptor")
    refused = False
    try:
        with socket.create_connection(address, timeout=TIMEOUT):
            tracer.wait_for(lambda e: e.kind == "callback_enter", TIMEOUT)
            freer = threading.Thread(target=listener.free, name="freer")
            freer.start()  # calls free() while the callback runs
            freer.join(TIMEOUT)
            check(not freer.is_alive(), "free() did not return")
        tracer.mark("main: free() has returned; a new client connects")
        try:
            socket.create_connection(address, timeout=TIMEOUT).close()
        except ConnectionRefusedError:
            refused = True
    finally:
        base.stop(TIMEOUT)
        base.close()

    events = tracer.events
    for e in events:
        value = "" if e.value is None else f" {e.value:g}"
        print(
            f"{e.seq:3} {e.time * 1000:8.3f} ms  {e.thread:9} {e.listener or '':3} {e.kind}"
            f"{value} {e.detail}"
        )
    print(f"a client after free() was {'refused' if refused else 'NOT refused'}")
    if args.self_test:
        wait = first(events, "freer", "lock.wait")
        leave = first(events, "acceptor", "callback_exit")
        released = [e for e in events if e.thread == "acceptor" and e.kind == "lock.release"]
        returned = first(events, "freer", "return", "free")
        check(
            first(events, "acceptor", "callback_enter").seq < wait.seq < leave.seq,
            "the freer did not block while the callback ran",
        )
        check(seen.refcount == 2 and seen.freed is False, f"callback saw {vars(seen)}")
        check(
            bool(released) and released[-1].seq < returned.seq,
            "free() returned before the batch released the lock",
        )
        first(events, "freer", "destroy")  # destroy ran in the freer thread
        refs = [e.value for e in events if e.kind == "refcount"]
        check(refs == [2, 1, 0], f"refcount steps {refs}")
        check(refused, "a client after free() was accepted")
        check(listener.refcount == 0, "not destroyed")
        print("self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
