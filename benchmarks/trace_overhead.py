"""What the lifecycle tracer costs on the accept path, off and on.

Off means the default ``Runtime``: no tracer code runs at all; what is left
of the seam on the accept path is the core's own no-op ``Runtime.point()``
calls.  So this measures

1. the cost of one no-op ``point()`` call (``timeit``), and how many the
   accept path makes per connection (counted on a real run);
2. burst-mode accept throughput (as ``benchmarks/max_accepts.py``: clients
   connect first, then one loop drains the backlog, accepting and closing
   each connection) with the default ``Runtime`` ("off") and with a
   ``TraceRuntime`` ("on"), in interleaved rounds; medians reported.

Run: ``python benchmarks/trace_overhead.py [--burst 2000] [--rounds 7]``.  Loopback only.
"""

from __future__ import annotations

import argparse
import platform
import socket
import statistics
import struct
import sys
import time
import timeit
from collections import Counter
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener
from threadlisten._runtime import Runtime
from threadlisten.trace import TraceRuntime

_LINGER_0 = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT, ports never run out
_FLAGS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE


class CountingRuntime(Runtime):
    """Counts the core's point() calls by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def point(self, kind: str, **info: Any) -> None:
        self.counts[kind] += 1


def one_round(runtime: Runtime, burst: int) -> float:
    """Connections per second for one drained burst of *burst* clients."""
    count = 0

    def on_accept(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        nonlocal count
        sock.close()
        count += 1
        if count == burst:
            base.loopbreak()

    with EventBase(runtime=runtime) as base:
        lev = Listener.bind(base, ("127.0.0.1", 0), on_accept, flags=_FLAGS, backlog=burst)
        port = lev.socket.getsockname()[1]
        clients = []
        try:
            for _ in range(burst):
                c = socket.socket()
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
                c.connect(("127.0.0.1", port))
                clients.append(c)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    rt = Runtime()
    calls = 500_000
    per_call = (
        min(
            timeit.repeat(
                "point('listener.accepted', listener=x)",
                globals={"point": rt.point, "x": rt},
                number=calls,
                repeat=5,
            )
        )
        / calls
    )
    counting = CountingRuntime()
    one_round(counting, args.burst)
    per_conn = (
        sum(
            n
            for kind, n in counting.counts.items()
            if kind.startswith("listener.") or kind.startswith("event.")
        )
        / args.burst
    )

    rates: dict[str, list[float]] = {"off (Runtime)": [], "on (TraceRuntime)": []}
    events_per_conn = 0.0
    for _ in range(args.rounds):
        rates["off (Runtime)"].append(one_round(Runtime(), args.burst))
        traced = TraceRuntime()
        rates["on (TraceRuntime)"].append(one_round(traced, args.burst))
        events_per_conn = len(traced.tracer.events) / args.burst

    print(f"python {platform.python_version()} on {platform.system()}, {args.burst} per burst")
    print(f"no-op point(): {per_call * 1e9:.0f} ns per call")
    print(
        f"point() calls on the accept path: {per_conn:.2f} per connection ({dict(counting.counts)})"
    )
    off = statistics.median(rates["off (Runtime)"])
    print(
        f"seam cost when off: {per_call * per_conn * 1e6:.2f} us per connection, "
        f"{per_call * per_conn * off * 100:.1f} % of the {1e6 / off:.1f} us "
        "each connection takes"
    )
    for name, values in rates.items():
        print(
            f"{name:>18}: median {statistics.median(values):,.0f}/s "
            f"(min {min(values):,.0f}, max {max(values):,.0f})"
        )
    on = statistics.median(rates["on (TraceRuntime)"])
    print(
        f"tracing on: {events_per_conn:.1f} events per connection, "
        f"{(1e6 / on - 1e6 / off):.1f} us more per connection ({off / on:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
