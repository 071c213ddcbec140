"""Measure the memory of idle listeners, in a fresh process (run by ``memory``).

``python -m tlbench.memprobe KIND COUNT WHAT`` makes COUNT idle listeners of
KIND on 127.0.0.1 and prints one JSON number: with WHAT ``heap``, the Python
heap bytes per listener (``tracemalloc``: everything allocated and still
alive); with ``rss``, the resident-set bytes per listener
(``/proc/self/statm``), measured with tracemalloc off (its own tables would
count).  Kernel memory of the sockets is in neither; it is the same for
every kind.

Kinds:

``socket``        a bound, listening ``socket.socket``: the baseline
``tl-threadsafe`` ``Listener.bind`` with THREADSAFE, on one ``EventBase``
``tl-plain``      ``Listener.bind`` without THREADSAFE
``asyncio``       ``loop.create_server`` on one running asyncio loop
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from threadlisten import LEV_OPT, EventBase, Listener

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Return this process's resident set size in bytes (Linux), else 0."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except OSError:
        return 0


def _listening_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def _noop(*args: Any) -> None:
    pass


#: Objects made before measuring, to warm caches and free lists.
WARM = 10


def _reading(what: str) -> int:
    if what == "heap":
        return tracemalloc.get_traced_memory()[0]
    return rss_bytes()


def measure(make: Callable[[], Any], count: int, what: str) -> float:
    """Make *count* objects with *make*; return the bytes (*what*: heap or rss) each costs."""
    keep = [make() for _ in range(WARM)]
    gc.collect()
    if what == "heap":
        tracemalloc.start()
    before = _reading(what)
    keep += [make() for _ in range(count)]
    gc.collect()
    after = _reading(what)
    tracemalloc.stop()
    del keep
    return (after - before) / count


async def _measure_asyncio(count: int, what: str) -> float:
    # As measure(), with create_server awaited on the running loop.
    loop = asyncio.get_running_loop()
    servers: list[asyncio.AbstractServer] = []

    async def make(n: int) -> None:
        for _ in range(n):
            servers.append(await loop.create_server(asyncio.Protocol, sock=_listening_socket()))

    try:
        await make(WARM)
        gc.collect()
        if what == "heap":
            tracemalloc.start()
        before = _reading(what)
        await make(count)
        gc.collect()
        after = _reading(what)
        tracemalloc.stop()
    finally:
        for server in servers:
            server.close()
    return (after - before) / count


def main(kind: str, count: int, what: str) -> float:
    """Measure *count* listeners of *kind*; return the per-listener figures."""
    if kind == "socket":
        socks: list[socket.socket] = []

        def make_socket() -> socket.socket:
            socks.append(_listening_socket())
            return socks[-1]

        try:
            return measure(make_socket, count, what)
        finally:
            for s in socks:
                s.close()
    if kind in ("tl-threadsafe", "tl-plain"):
        flags = LEV_OPT.CLOSE_ON_FREE
        if kind == "tl-threadsafe":
            flags |= LEV_OPT.THREADSAFE
        made: list[Listener] = []
        with EventBase() as base:

            def make_listener() -> Listener:
                made.append(Listener.bind(base, ("127.0.0.1", 0), _noop, flags=flags))
                return made[-1]

            try:
                return measure(make_listener, count, what)
            finally:
                for lev in made:
                    lev.free()
    if kind == "asyncio":
        return asyncio.run(_measure_asyncio(count, what))
    raise SystemExit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("heap", "rss"):
        raise SystemExit("usage: python -m tlbench.memprobe KIND COUNT heap|rss")
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
