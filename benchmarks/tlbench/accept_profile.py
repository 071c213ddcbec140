"""Profile threadlisten's accept path, in one fresh process.

``python -m tlbench.accept_profile [--burst N] [--rounds R] [--alloc-lib PATH]
[--loadgen PATH]``
prints one JSON object.  Everything runs in this process, on its main
thread: a burst of clients connects first, then ``EventBase.loop(once=True)``
runs until the listener has accepted them all (the approach of
``benchmarks/max_accepts.py``).  What it reports:

``batches``
    Connections per readiness event (per ``_on_readable`` call) and the
    number of ``select()`` calls per batch, from a counting runtime, for a
    burst and (with ``--loadgen``) under the steady load generator, where
    wake-ups are many and batches small.
``locks``
    Lock acquisitions per batch and per connection, by lock class
    (``listener.lock``, ``base.lock``), from the same counting runtime.
``points``
    Scheduling-point calls per connection, by kind, as a runtime that
    watches them (a checker) sees them; the calls the production runtime
    actually receives per connection (counted with ``sys.setprofile`` on
    ``Runtime.point``: the core skips the per-connection ones when nobody
    watches); and the cost of one production call in nanoseconds.
``allocations``
    CPython allocator calls (objects and buffers) per connection, for the
    THREADSAFE and plain listeners and for the selectors floor doing the
    same work, with the production runtime.  Needs the small C counter
    (``csrc/alloc_counter.c``; ``--alloc-lib``); left out without it.
``seconds_per_connection``
    Wall time per connection of the drain with the production runtime
    (in-process, unpinned: a rough scale for the other figures).

The counting runtime is slower than production (its locks are Python
objects), so only its counts are reported, never its times.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import timeit
from collections import Counter
from collections.abc import Callable
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener
from threadlisten._runtime import DelegatingLock, LockLike, Runtime
from tlbench.loopback import rst_clients

#: Seconds a drain may take: far above what one needs.
DRAIN_TIMEOUT = 60.0
#: Seconds of steady load for the steady-mode batch sizes.
STEADY_SECONDS = 1.0


class CountingLock(DelegatingLock):
    """A lock that counts its acquisitions into a shared ``Counter`` under its class name."""

    __slots__ = ("_counts", "_name")

    def __init__(self, inner: LockLike, name: str, counts: Counter[str]) -> None:
        super().__init__(inner)
        self._name = name
        self._counts = counts

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the wrapped lock and count it."""
        self._counts[self._name] += 1
        return self._lock.acquire(blocking, timeout)


class CountingRuntime(Runtime):
    """A runtime that counts lock acquisitions, scheduling points and ``select()`` calls.

    ``batch_sizes`` gets one entry per ``listener.dispatched`` point: the
    connections accepted in the previous batch.
    """

    def __init__(self) -> None:
        self.locks: Counter[str] = Counter()
        self.points: Counter[str] = Counter()
        self.selects = 0
        self.batch_sizes: list[int] = []
        self._in_batch = 0

    def rlock(self, name: str) -> LockLike:
        """A counted ``threading.RLock``."""
        return CountingLock(threading.RLock(), name, self.locks)

    def lock(self, name: str) -> LockLike:
        """A counted ``threading.Lock``."""
        return CountingLock(threading.Lock(), name, self.locks)

    def point(self, kind: str, **info: Any) -> None:
        """Count the point; close a batch at each dispatch."""
        self.points[kind] += 1
        if kind == "listener.accepted":
            self._in_batch += 1
        elif kind == "listener.dispatched":
            self.end_batch()

    def end_batch(self) -> None:
        """Record the batch in progress, if any."""
        if self._in_batch:
            self.batch_sizes.append(self._in_batch)
            self._in_batch = 0

    def selector(self) -> selectors.BaseSelector:
        """A selector whose ``select()`` calls are counted."""
        inner = super().selector()
        runtime = self
        original = inner.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            runtime.selects += 1
            return original(timeout)

        inner.select = select  # type: ignore[method-assign]
        return inner


def _close(clients: list[socket.socket]) -> None:
    for c in clients:
        c.close()


class AllocCounter:
    """CPython allocator calls, counted by ``csrc/alloc_counter.c`` (loaded with ctypes)."""

    def __init__(self, path: str) -> None:
        self._lib = ctypes.PyDLL(path)
        self._lib.tlc_count.restype = ctypes.c_ulonglong
        self._lib.tlc_install()

    def count(self) -> int:
        """Allocations so far."""
        return int(self._lib.tlc_count())


def drain_listener(
    burst: int, flags: LEV_OPT, runtime: Runtime | None, allocs: AllocCounter | None
) -> tuple[float, int]:
    """Drain one burst through a listener; return (seconds, allocations or 0)."""
    count = 0

    def on_accept(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        nonlocal count
        count += 1
        sock.close()
        if count == burst:
            base.loopbreak()

    with EventBase(runtime=runtime) as base:
        lev = Listener.bind(
            base, ("127.0.0.1", 0), on_accept, flags=flags | LEV_OPT.CLOSE_ON_FREE, backlog=burst
        )
        clients = rst_clients(lev.socket.getsockname()[1], burst)
        try:
            a0 = allocs.count() if allocs else 0
            t0 = time.perf_counter()
            # One loop() until the last callback's loopbreak(), as dispatch()
            # runs in an acceptor thread; loopexit() bounds it.
            base.loopexit(DRAIN_TIMEOUT)
            base.loop()
            seconds = time.perf_counter() - t0
            a1 = allocs.count() if allocs else 0
        finally:
            lev.free()
            _close(clients)
    if count != burst:
        raise RuntimeError(f"accepted {count} of {burst}")
    return seconds, a1 - a0


def drain_floor(
    burst: int, setblocking: bool, allocs: AllocCounter | None, raw: bool = False
) -> tuple[float, int]:
    """Drain one burst through the selectors floor; return (seconds, allocations or 0).

    *raw*: call ``sock._accept()`` and build the socket from ints looked up
    once, instead of ``sock.accept()`` (which converts two enums per call).
    """
    count = 0
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(burst)
    server.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    clients = rst_clients(server.getsockname()[1], burst)

    def handler(conn: socket.socket, addr: Any) -> None:
        nonlocal count
        count += 1
        if setblocking:
            conn.setblocking(False)
        conn.close()

    accept = server.accept
    raw_accept: Callable[[], tuple[int, Any]] = server._accept  # type: ignore[attr-defined]
    family, stype, proto = int(server.family), int(server.type), server.proto
    try:
        a0 = allocs.count() if allocs else 0
        t0 = time.perf_counter()
        while count < burst:
            ready = sel.select(DRAIN_TIMEOUT)
            if not ready:
                raise RuntimeError(f"accepted {count} of {burst}")
            for _key, _mask in ready:
                while True:
                    try:
                        if raw:
                            fd, addr = raw_accept()
                            conn = socket.socket(family, stype, proto, fileno=fd)
                        else:
                            conn, addr = accept()
                    except BlockingIOError:
                        break
                    handler(conn, addr)
        seconds = time.perf_counter() - t0
        a1 = allocs.count() if allocs else 0
    finally:
        sel.close()
        server.close()
        _close(clients)
    return seconds, a1 - a0


class BatchCountingRuntime(Runtime):
    """The production runtime (plain locks, no-op points) whose listeners
    count their wake-ups: ``listener_type`` hands out a subclass whose
    ``_on_readable`` counts its calls.  Nothing is added per connection, so
    batch sizes under load are those of production, not of a slowed server.
    """

    def __init__(self) -> None:
        self.wakeups = 0

    def listener_type(self, cls: type[Any]) -> type[Any]:
        """A subclass of *cls* whose read callback counts its calls."""
        runtime = self

        class Counting(cls):  # type: ignore[misc]
            __slots__ = ()

            def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
                runtime.wakeups += 1
                super()._on_readable(fileobj, what, arg)

        return Counting


def steady_batches(loadgen: str, seconds: float) -> dict[str, Any]:
    """Connections per wake-up of a THREADSAFE listener (loop in its own
    thread, production locks and points) under the C load generator for
    *seconds*: the server's batches when connections arrive as it works."""
    rt = BatchCountingRuntime()
    count = 0

    def on_accept(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
        nonlocal count
        count += 1
        sock.close()

    with EventBase(runtime=rt) as base:
        lev = Listener.bind(
            base,
            ("127.0.0.1", 0),
            on_accept,
            flags=LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE,
            backlog=1024,
        )
        base.start_thread()
        try:
            subprocess.run(
                [loadgen, "steady", str(lev.socket.getsockname()[1]), "4", "16", str(seconds)],
                capture_output=True,
                check=True,
                timeout=seconds + 60,
            )
        finally:
            # free() from this thread: the loop thread stays up until stop().
            lev.free()
    if not rt.wakeups:
        return {"connections": count, "wakeups": 0}
    return {
        "connections": count,
        "wakeups": rt.wakeups,
        "mean_size": count / rt.wakeups,
        "rate": count / seconds,
    }


def production_points(burst: int) -> float:
    """Calls of the production ``Runtime.point`` per connection in a drain
    with the default runtime (counted by a profile hook on its code object)."""
    target = Runtime.point.__code__
    calls = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code is target:
            calls += 1

    sys.setprofile(hook)
    try:
        drain_listener(burst, LEV_OPT.THREADSAFE, None, None)
    finally:
        sys.setprofile(None)
    return calls / burst


def point_cost_ns(number: int = 1_000_000) -> dict[str, float]:
    """Nanoseconds per production ``Runtime.point()`` call (with one keyword
    argument, as the accept path calls it) and per empty loop pass."""
    rt = Runtime()
    env = {"point": rt.point, "obj": object()}
    loop = min(timeit.repeat("pass", number=number, repeat=5))
    call = min(
        timeit.repeat(
            'point("listener.accepted", listener=obj)', globals=env, number=number, repeat=5
        )
    )
    return {"point_call_ns": (call - loop) / number * 1e9, "empty_loop_ns": loop / number * 1e9}


def profile(
    burst: int, rounds: int, alloc_lib: str | None, loadgen: str | None = None
) -> dict[str, Any]:
    """Run every measurement described in the module docstring; return the JSON-ready dict."""
    out: dict[str, Any] = {"burst": burst, "rounds": rounds}
    # Counts, from the counting runtime (THREADSAFE listener).
    rt = CountingRuntime()
    drain_listener(burst, LEV_OPT.THREADSAFE, rt, None)
    rt.end_batch()
    batches = len(rt.batch_sizes)
    out["batches"] = {
        "count": batches,
        "mean_size": burst / batches,
        "sizes_seen": sorted(Counter(rt.batch_sizes).items()),
        "selects_per_batch": rt.selects / batches,
    }
    if loadgen:
        out["steady_batches"] = steady_batches(loadgen, STEADY_SECONDS)
    out["locks"] = {
        name: {"per_batch": n / batches, "per_connection": n / burst}
        for name, n in sorted(rt.locks.items())
    }
    out["points"] = {
        "per_connection": {k: n / burst for k, n in sorted(rt.points.items())},
        "total_per_connection": sum(rt.points.values()) / burst,
        "production_per_connection": production_points(burst),
        **point_cost_ns(),
    }
    # Allocations and times, production runtime.
    allocs = AllocCounter(alloc_lib) if alloc_lib else None
    cases: dict[str, Callable[[], tuple[float, int]]] = {
        "tl-threadsafe": lambda: drain_listener(burst, LEV_OPT.THREADSAFE, None, allocs),
        "tl-plain": lambda: drain_listener(burst, LEV_OPT(0), None, allocs),
        "selectors": lambda: drain_floor(burst, False, allocs),
        "floor-setblocking": lambda: drain_floor(burst, True, allocs),
        "floor-raw-accept": lambda: drain_floor(burst, False, allocs, raw=True),
    }
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    alloc_counts: dict[str, list[int]] = {k: [] for k in cases}
    for _ in range(rounds):
        for key, run in cases.items():
            s, a = run()
            seconds[key].append(s / burst)
            alloc_counts[key].append(a)
    out["seconds_per_connection"] = {k: statistics.median(v) for k, v in seconds.items()}
    if allocs is not None:
        out["allocations"] = {k: statistics.median(v) / burst for k, v in alloc_counts.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: print the profile as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alloc-lib", help="path of the compiled alloc_counter library")
    parser.add_argument("--loadgen", help="path of the compiled load generator")
    args = parser.parse_args(argv)
    print(json.dumps(profile(args.burst, args.rounds, args.alloc_lib, args.loadgen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
