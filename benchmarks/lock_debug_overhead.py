"""What does lock debugging cost, and what does production pay for the seam?

Three measurements, each against its production counterpart:

1. **Per lock operation**: ``with lock: pass`` on the production locks
   (``threading.RLock`` for ``listener.lock``, ``threading.Lock`` for
   ``base.lock``) and on ``threadlisten.debug.DebugLock`` -- alone, nested
   under another lock (the lock-order fast path: one set lookup per held
   lock), and re-acquired by its owner (recursion counted in Python).
2. **Per seam call**: the production ``Runtime.point()`` (a no-op call, all
   production pays for the scheduling points) against ``DebugRuntime.point()``,
   and a read of guarded listener state (a slot read in production, a
   checking property under the checker).
3. **Accept throughput** of a drained burst (``_burst.burst_rate``, as
   ``benchmarks/max_accepts.py``): a batch of clients connects first, then one
   ``loop()`` accepts (and closes) them all; the production runtime and a
   ``DebugRuntime`` are measured in interleaved rounds, THREADSAFE and plain.

Run: ``python benchmarks/lock_debug_overhead.py [--ops 200000] [--repeat 7]
[--burst 2000] [--rounds 5] [--json FILE]``.  Loopback only.  Writes
``benchmarks/results/lock_debug_overhead.json`` by default.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _burst import burst_rate

import threadlisten
from threadlisten import DEFAULT_MAX_ACCEPTS, LEV_OPT, EventBase, Listener
from threadlisten._runtime import LockLike, Runtime
from threadlisten.debug import DebugRuntime

DEFAULT_JSON = Path(__file__).parent / "results" / "lock_debug_overhead.json"


def time_ns(body: Callable[[int], None], ops: int) -> float:
    """Return nanoseconds per operation of one ``body(ops)`` run."""
    start = time.perf_counter_ns()
    body(ops)
    return (time.perf_counter_ns() - start) / ops


def with_lock(lock: LockLike) -> Callable[[int], None]:
    """``with lock: pass``, *n* times."""

    def body(n: int) -> None:
        for _ in range(n):
            with lock:
                pass

    return body


def nested(outer: LockLike, inner: LockLike) -> Callable[[int], None]:
    """``with inner: pass`` *n* times while holding *outer* (one order edge, seen before)."""

    def body(n: int) -> None:
        with outer:
            for _ in range(n):
                with inner:
                    pass

    return body


def reentered(lock: LockLike) -> Callable[[int], None]:
    """``with lock: pass`` *n* times while already holding *lock* (recursion)."""

    def body(n: int) -> None:
        with lock:
            for _ in range(n):
                with lock:
                    pass

    return body


def empty_loop(n: int) -> None:
    """The loop overhead, subtracted from nothing: printed for reference."""
    for _ in range(n):
        pass


def point_calls(runtime: Runtime, listener: object) -> Callable[[int], None]:
    """``runtime.point("listener.accepted", listener=...)``, *n* times (lock held for debug)."""

    def body(n: int) -> None:
        point = runtime.point
        for _ in range(n):
            point("listener.accepted", listener=listener)

    return body


def held_while(listener: Listener, body: Callable[[int], None]) -> Callable[[int], None]:
    """Run *body* with *listener*'s lock held (where the core calls its points)."""

    def held(n: int) -> None:
        with listener._lock:
            body(n)

    return held


def guarded_reads(listener: Listener) -> Callable[[int], None]:
    """``listener._cb``, *n* times, with the listener lock held."""

    def body(n: int) -> None:
        with listener._lock:
            for _ in range(n):
                listener._cb  # noqa: B018

    return body


def micro(ops: int, repeat: int) -> dict[str, dict[str, float]]:
    """Measure the per-operation costs; return ``{name: {"median_ns", "min_ns"}}``.

    The cases run in interleaved rounds (A B C ... A B C ...), *repeat* of
    them, so that a change in the machine's load hits every case alike.
    """
    prod, dbg = Runtime(), DebugRuntime()
    cases: dict[str, Callable[[int], None]] = {
        "empty loop (reference)": empty_loop,
        "RLock (production listener.lock)": with_lock(prod.rlock("listener.lock")),
        "Lock (production base.lock)": with_lock(prod.lock("base.lock")),
        "DebugLock recursive": with_lock(dbg.rlock("listener.lock")),
        "DebugLock non-recursive": with_lock(dbg.lock("base.lock")),
        "Lock nested under RLock": nested(prod.rlock("listener.lock"), prod.lock("base.lock")),
        "DebugLock nested (order fast path)": nested(
            dbg.rlock("listener.lock"), dbg.lock("base.lock")
        ),
        "RLock re-entered by owner": reentered(prod.rlock("listener.lock")),
        "DebugLock re-entered by owner": reentered(dbg.rlock("listener.lock")),
    }
    bases: list[EventBase] = []
    listeners: list[Listener] = []
    try:
        for label, runtime in (("production", prod), ("debug", dbg)):
            base = EventBase(runtime=runtime)
            bases.append(base)
            flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
            lev = Listener.bind(base, ("127.0.0.1", 0), lambda *a: None, flags=flags)
            listeners.append(lev)
            cases[f"point() {label}"] = held_while(lev, point_calls(runtime, lev))
            cases[f"guarded read {label}"] = guarded_reads(lev)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, body in cases.items():
                samples[name].append(time_ns(body, ops))
    finally:
        for lev in listeners:
            lev.free()
        for base in bases:
            base.close()
    return {
        name: {"median_ns": statistics.median(s), "min_ns": min(s)} for name, s in samples.items()
    }


def throughput(burst: int, rounds: int) -> dict[str, dict[str, float]]:
    """Interleaved burst rounds; return ``{"<runtime> <listener>": {median, min, max}}``."""
    configs: list[tuple[str, Runtime, LEV_OPT]] = [
        ("production THREADSAFE", Runtime(), LEV_OPT.THREADSAFE),
        ("debug THREADSAFE", DebugRuntime(), LEV_OPT.THREADSAFE),
        ("production plain", Runtime(), LEV_OPT(0)),
        ("debug plain", DebugRuntime(), LEV_OPT(0)),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for _ in range(rounds):
        for name, runtime, flags in configs:
            rates[name].append(burst_rate(burst, flags, runtime=runtime))
    return {
        name: {"median": statistics.median(r), "min": min(r), "max": max(r)}
        for name, r in rates.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the tables, write the JSON; return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200_000, help="operations per timing run")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs per case")
    parser.add_argument("--burst", type=int, default=2000, help="clients per round (<= somaxconn)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="write the results here")
    args = parser.parse_args(argv)

    ops = micro(args.ops, args.repeat)
    base_rlock = ops["RLock (production listener.lock)"]["median_ns"]
    print(f"per operation ({args.ops} ops x {args.repeat} runs; median, min)")
    print(f"{'case':<38} {'median ns':>10} {'min ns':>9} {'x RLock':>8}")
    for name, r in ops.items():
        ratio = r["median_ns"] / base_rlock
        print(f"{name:<38} {r['median_ns']:>10.0f} {r['min_ns']:>9.0f} {ratio:>8.1f}")

    rates = throughput(args.burst, args.rounds)
    print()
    print(
        f"accept throughput: burst of {args.burst}, {args.rounds} interleaved rounds, "
        f"max_accepts={DEFAULT_MAX_ACCEPTS}"
    )
    print(f"{'runtime / listener':<24} {'median/s':>10} {'min/s':>9} {'max/s':>9} {'vs prod':>8}")
    for name, r in rates.items():
        prod = rates["production " + name.split()[1]]["median"]
        print(
            f"{name:<24} {r['median']:>10.0f} {r['min']:>9.0f} {r['max']:>9.0f} "
            f"{r['median'] / prod:>8.2f}"
        )

    summary: dict[str, Any] = {
        "python": sys.version.split()[0],
        "threadlisten": threadlisten.__version__,
        "machine": platform.platform(),
        "ops": args.ops,
        "repeat": args.repeat,
        "burst": args.burst,
        "rounds": args.rounds,
        "max_accepts": DEFAULT_MAX_ACCEPTS,
        "per_operation_ns": ops,
        "accepts_per_second": rates,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
