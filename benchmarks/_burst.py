"""The drained burst shared by ``max_accepts.py``, ``lock_debug_overhead.py``
and ``trace_overhead.py``.

Burst mode: a batch of clients connects first, so the kernel's backlog is
full before the loop runs; then one ``EventBase.loop()`` drains it, accepting
(and closing) every connection, and only that is timed.  This measures the
server alone: the clients do nothing while the clock runs.  Loopback only.

Imported as ``_burst``: running ``python benchmarks/NAME.py`` puts this
folder on ``sys.path``.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from tlbench.loopback import rst_clients

from threadlisten import DEFAULT_MAX_ACCEPTS, LEV_OPT, EventBase, Listener
from threadlisten._runtime import Runtime

#: Seconds after which a burst that has not drained ends the loop (and fails).
DRAIN_TIMEOUT = 60.0


def burst_rate(
    burst: int,
    flags: LEV_OPT,
    *,
    runtime: Runtime | None = None,
    max_accepts: int = DEFAULT_MAX_ACCEPTS,
) -> float:
    """Return connections per second for one drained burst of *burst* clients.

    The listener is bound on 127.0.0.1 with *flags* plus ``CLOSE_ON_FREE``,
    ``backlog=burst`` and *max_accepts*, on a base built on *runtime* (the
    default runtime if None).  *burst* must not exceed ``somaxconn``.

    Raises:
        RuntimeError: the loop ended before every connection was accepted.
    """
    count = 0

    def on_accept(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        nonlocal count
        sock.close()
        count += 1
        if count == burst:
            base.loopbreak()

    with EventBase(runtime=runtime) as base:
        lev = Listener.bind(
            base,
            ("127.0.0.1", 0),
            on_accept,
            flags=flags | LEV_OPT.CLOSE_ON_FREE,
            backlog=burst,
            max_accepts=max_accepts,
        )
        clients: list[socket.socket] = []
        try:
            clients = rst_clients(lev.socket.getsockname()[1], burst)
            base.loopexit(DRAIN_TIMEOUT)  # bounds the loop if something breaks
            start = time.perf_counter()
            base.loop()
            elapsed = time.perf_counter() - start
        finally:
            lev.free()
            for c in clients:
                c.close()
    if count != burst:
        raise RuntimeError(f"accepted {count} of {burst}")
    return burst / elapsed
