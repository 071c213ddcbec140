"""What the lifecycle tracer costs on the accept path, off and on.

Off means the default ``Runtime``: no tracer code runs at all; what is left
of the seam on the accept path is the core's own no-op ``Runtime.point()``
calls.  So this measures

1. the cost of one no-op ``point()`` call (``timeit``), and how many the
   accept path makes per connection (counted on a real run);
2. burst-mode accept throughput (``_burst.burst_rate``, as
   ``benchmarks/max_accepts.py``: clients connect first, then one loop drains
   the backlog, accepting and closing each connection) with the default
   ``Runtime`` ("off") and with a ``TraceRuntime`` ("on"), in interleaved
   rounds; medians reported.

Run: ``python benchmarks/trace_overhead.py [--burst 2000] [--rounds 7]``.  Loopback only.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import timeit
from collections import Counter
from typing import Any

from _burst import burst_rate

from threadlisten import LEV_OPT
from threadlisten._runtime import Runtime
from threadlisten.trace import TraceRuntime

_FLAGS = LEV_OPT.THREADSAFE


class CountingRuntime(Runtime):
    """Counts the core's point() calls by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def point(self, kind: str, **info: Any) -> None:
        self.counts[kind] += 1


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
    burst_rate(args.burst, _FLAGS, runtime=counting)
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
        rates["off (Runtime)"].append(burst_rate(args.burst, _FLAGS, runtime=Runtime()))
        traced = TraceRuntime()
        rates["on (TraceRuntime)"].append(burst_rate(args.burst, _FLAGS, runtime=traced))
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
