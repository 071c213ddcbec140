"""How many connections per readiness event should the listener accept?

Burst mode (``_burst.burst_rate``): a batch of clients connects first, so
the kernel's backlog is full before the loop runs; then one
``EventBase.loop()`` drains it and the time to accept (and close) them all is
measured.  This measures the server alone: the clients do nothing while the
clock runs.

Each ``max_accepts`` value is measured in interleaved rounds (A B C ... A B
C ...) so that drift in the machine's speed hits every value alike, and the
median, min and max of the rounds are reported.  The result chose
``threadlisten.listener.DEFAULT_MAX_ACCEPTS`` (see docs/performance.md).

Run: ``python benchmarks/max_accepts.py [--burst 2000] [--rounds 5] [--json FILE]``.
Loopback only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from typing import Any

from _burst import burst_rate

import threadlisten
from threadlisten import LEV_OPT

VALUES = (1, 4, 16, 32, 64, 128, 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=2000, help="clients per round (<= somaxconn)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results: dict[str, dict[int, list[float]]] = {"THREADSAFE": {}, "plain": {}}
    for _ in range(args.rounds):
        for label, flags in (("THREADSAFE", LEV_OPT.THREADSAFE), ("plain", LEV_OPT(0))):
            for value in VALUES:
                rate = burst_rate(args.burst, flags, max_accepts=value)
                results[label].setdefault(value, []).append(rate)
    print(f"burst of {args.burst} connections, {args.rounds} interleaved rounds")
    print(f"{'listener':<11} {'max_accepts':>11} {'median/s':>10} {'min/s':>9} {'max/s':>9}")
    summary: dict[str, Any] = {
        "python": sys.version.split()[0],
        "threadlisten": threadlisten.__version__,
        "machine": platform.platform(),
        "burst": args.burst,
        "rounds": args.rounds,
        "results": {},
    }
    for label, by_value in results.items():
        for value, rates in by_value.items():
            med = statistics.median(rates)
            print(f"{label:<11} {value:>11} {med:>10.0f} {min(rates):>9.0f} {max(rates):>9.0f}")
            summary["results"].setdefault(label, {})[value] = {
                "median": med,
                "min": min(rates),
                "max": max(rates),
            }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
