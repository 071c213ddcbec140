"""Paired A/B of a modified ``listener.py`` against the tree's, in one process.

``python -m tlbench.ab --listener PATH [--burst N] [--pairs P] [--json FILE]``

On a shared or virtual machine whole stretches of time run slower for reasons
outside the program (other work, the host), so two servers measured a few
seconds apart can differ by more than the change being measured.  This tool
removes that: it loads the modified ``listener.py`` as a second module next to
the tree's ``threadlisten.listener`` (it imports the rest of the package from
the tree, so only the listener differs), and drains bursts through the two
``Listener`` classes alternately in one process (A B, then B A, ...), each
burst taking ~50 ms.  Each pair's two drains see the same machine; the median
of the pairs' ratios is the figure.  The selectors floor and the floor with
``sock._accept()`` run in the same rotation, for scale, and two rows that
split the gap between them: the modified listener with no batch bound
(``max_accepts`` 100,000: what the bound of 64 costs a burst) and the floor
with ``sock._accept()`` plus ``setblocking(False)`` (what the one system call
of the non-blocking contract costs).  asyncio's ``create_server`` and, when
the interpreter has it (run this with ``benchmarks/.peers-venv/bin/python``),
uvloop's join the rotation too, so the targets against them are paired as well.

Everything runs on this process's main thread with ``EventBase.loop()``, as
``benchmarks/max_accepts.py`` does; the clients connect before each drain and
are not timed.  Times are wall clock (``perf_counter``) and this thread's CPU
time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import threadlisten
from threadlisten import LEV_OPT, EventBase, Listener
from tlbench.loopback import rst_clients

#: Seconds a drain may take before it counts as hung.
DRAIN_TIMEOUT = 60.0
#: max_accepts of the "no batch bound" row: above any burst.
UNBOUNDED = 100_000

Drain = Callable[[int], tuple[float, float]]


def load_listener(path: Path) -> type[Listener]:
    """Import *path* as a module beside ``threadlisten.listener``; return its ``Listener``.

    Raises:
        ImportError: the file cannot be loaded or has no ``Listener``.
    """
    spec = importlib.util.spec_from_file_location("threadlisten._ab_listener", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, "Listener", None)
    if not isinstance(cls, type):
        raise ImportError(f"{path} defines no Listener class")
    return cls


def listener_drain(
    cls: type[Listener], flags: LEV_OPT, max_accepts: int = threadlisten.DEFAULT_MAX_ACCEPTS
) -> Drain:
    """A drain through *cls*: returns (wall seconds, CPU seconds) for *n* connections."""

    def drain(n: int) -> tuple[float, float]:
        count = 0

        def on_accept(lev: Listener, sock: socket.socket, addr: Any, arg: Any) -> None:
            nonlocal count
            count += 1
            sock.close()
            if count == n:
                base.loopbreak()

        with EventBase() as base:
            lev = cls.bind(
                base,
                ("127.0.0.1", 0),
                on_accept,
                flags=flags | LEV_OPT.CLOSE_ON_FREE,
                backlog=n,
                max_accepts=max_accepts,
            )
            clients = rst_clients(lev.socket.getsockname()[1], n)
            try:
                base.loopexit(DRAIN_TIMEOUT)  # bounds the loop if something breaks
                w0, c0 = time.perf_counter(), time.thread_time()
                base.loop()
                wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            finally:
                lev.free()
                for c in clients:
                    c.close()
        if count != n:
            raise RuntimeError(f"accepted {count} of {n}")
        return wall, cpu

    return drain


def floor_drain(raw: bool, setblocking: bool = False) -> Drain:
    """A drain through the selectors floor (``raw``: with ``sock._accept()``;
    ``setblocking``: and ``conn.setblocking(False)`` per connection)."""

    def drain(n: int) -> tuple[float, float]:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(n)
        server.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(server, selectors.EVENT_READ)
        clients = rst_clients(server.getsockname()[1], n)
        count = 0

        def handler(conn: socket.socket, addr: Any) -> None:
            nonlocal count
            count += 1
            if setblocking:
                conn.setblocking(False)
            conn.close()

        accept = server.accept
        raw_accept: Callable[[], tuple[int, Any]] = server._accept  # type: ignore[attr-defined]
        family, stype, proto = int(server.family), int(server.type), server.proto
        new_socket = socket.socket
        try:
            w0, c0 = time.perf_counter(), time.thread_time()
            while count < n:
                if not sel.select(DRAIN_TIMEOUT):
                    raise RuntimeError(f"accepted {count} of {n}")
                while True:
                    try:
                        if raw:
                            fd, addr = raw_accept()
                            conn = new_socket(family, stype, proto, fileno=fd)
                        else:
                            conn, addr = accept()
                    except BlockingIOError:
                        break
                    handler(conn, addr)
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        finally:
            sel.close()
            server.close()
            for c in clients:
                c.close()
        return wall, cpu

    return drain


def asyncio_drain(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> Drain:
    """A drain through ``loop.create_server`` on a loop from *new_loop*, with a
    protocol whose ``connection_made`` closes the transport (the harness's
    asyncio and uvloop servers).  The server listens before the clients
    connect, but accepts nothing until the loop runs, which is what is timed."""

    def drain(n: int) -> tuple[float, float]:
        loop = new_loop()
        count = 0
        done = loop.create_future()

        class Close(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                nonlocal count
                count += 1
                transport.close()
                if count == n and not done.done():
                    done.set_result(None)

        try:
            server = loop.run_until_complete(loop.create_server(Close, "127.0.0.1", 0, backlog=n))
            port = server.sockets[0].getsockname()[1]
            clients = rst_clients(port, n)
            try:
                w0, c0 = time.perf_counter(), time.thread_time()
                loop.run_until_complete(asyncio.wait_for(done, DRAIN_TIMEOUT))
                wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                for c in clients:
                    c.close()
        finally:
            loop.close()
        return wall, cpu

    return drain


def _uvloop_new_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        return None
    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def run(alt: type[Listener], burst: int, pairs: int) -> dict[str, Any]:
    """Alternate every case *pairs* times; return per-case rates and paired ratios."""
    cases: dict[str, Drain] = {
        "tree THREADSAFE": listener_drain(Listener, LEV_OPT.THREADSAFE),
        "modified THREADSAFE": listener_drain(alt, LEV_OPT.THREADSAFE),
        "tree plain": listener_drain(Listener, LEV_OPT(0)),
        "modified plain": listener_drain(alt, LEV_OPT(0)),
        "modified THREADSAFE unbounded": listener_drain(alt, LEV_OPT.THREADSAFE, UNBOUNDED),
        "floor": floor_drain(False),
        "floor with _accept": floor_drain(True),
        "floor with _accept + setblocking": floor_drain(True, setblocking=True),
        "asyncio": asyncio_drain(asyncio.new_event_loop),
    }
    uvloop_new = _uvloop_new_loop()
    if uvloop_new is not None:
        cases["uvloop"] = asyncio_drain(uvloop_new)
    walls: dict[str, list[float]] = {k: [] for k in cases}
    cpus: dict[str, list[float]] = {k: [] for k in cases}
    keys = list(cases)
    for i in range(pairs):
        # Alternate the order so neither side always runs first.
        for key in keys if i % 2 == 0 else reversed(keys):
            wall, cpu = cases[key](burst)
            walls[key].append(burst / wall)
            cpus[key].append(burst / cpu)

    def paired(a: str, b: str, data: dict[str, list[float]]) -> float:
        return statistics.median(x / y for x, y in zip(data[a], data[b], strict=True))

    comparisons = {
        "modified/tree THREADSAFE": ("modified THREADSAFE", "tree THREADSAFE"),
        "modified/tree plain": ("modified plain", "tree plain"),
        "tree THREADSAFE/floor": ("tree THREADSAFE", "floor"),
        "modified THREADSAFE/floor": ("modified THREADSAFE", "floor"),
        "modified plain/floor": ("modified plain", "floor"),
        "floor with _accept/floor": ("floor with _accept", "floor"),
        "modified unbounded/modified": ("modified THREADSAFE unbounded", "modified THREADSAFE"),
        "floor _accept+setblocking/_accept": (
            "floor with _accept + setblocking",
            "floor with _accept",
        ),
        "modified THREADSAFE/floor with _accept": ("modified THREADSAFE", "floor with _accept"),
        "tree THREADSAFE/asyncio": ("tree THREADSAFE", "asyncio"),
        "modified THREADSAFE/asyncio": ("modified THREADSAFE", "asyncio"),
    }
    if "uvloop" in cases:
        comparisons["tree THREADSAFE/uvloop"] = ("tree THREADSAFE", "uvloop")
        comparisons["modified THREADSAFE/uvloop"] = ("modified THREADSAFE", "uvloop")
        comparisons["uvloop/floor"] = ("uvloop", "floor")
    return {
        "burst": burst,
        "pairs": pairs,
        "rates": {
            k: {
                "wall_median": statistics.median(walls[k]),
                "cpu_median": statistics.median(cpus[k]),
            }
            for k in cases
        },
        "paired_ratios": {
            name: {"wall": paired(a, b, walls), "cpu": paired(a, b, cpus)}
            for name, (a, b) in comparisons.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print the comparison, optionally write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listener", type=Path, required=True, help="the modified listener.py")
    parser.add_argument("--burst", type=int, default=2000, help="connections per drain")
    parser.add_argument("--pairs", type=int, default=30, help="rotations of every case")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    alt = load_listener(args.listener)
    out = run(alt, args.burst, args.pairs)
    out["command"] = "python -m tlbench.ab " + " ".join(sys.argv[1:] if argv is None else argv)
    out["python"] = sys.version.split()[0]
    out["tree"] = threadlisten.__file__
    out["modified"] = str(args.listener)
    print(f"{args.pairs} rotations of {args.burst}-connection drains, in one process")
    for key, rates in out["rates"].items():
        print(f"  {key:34} {rates['wall_median']:9,.0f}/s wall  {rates['cpu_median']:9,.0f}/s CPU")
    print("paired ratios (median of the rotations' ratios):")
    for name, r in out["paired_ratios"].items():
        print(f"  {name:40} wall {r['wall']:.3f}  CPU {r['cpu']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
