"""threadlisten: a ``Listener`` on an ``EventBase`` whose loop runs in its own thread.

The README's shape: ``base.start_thread()`` runs the loop, the callback
closes the connection.  Options (after the common ones of ``proto``):

``--plain``
    No ``LEV_OPT.THREADSAFE``: no lock at all (the default is THREADSAFE).
``--debug``
    Lock debugging on (``threadlisten.debug.enable_lock_debugging()``).
``--bind-self``
    ``Listener.bind`` makes the socket (``REUSEABLE_PORT`` when
    ``--reuseport``), created ``DISABLED`` and enabled on ``GO``: the way an
    application spreads one port over processes.
``--max-accepts N``
    The listener's ``max_accepts`` (default: threadlisten's default).
``--control-threads N`` and ``--control-op cycle|set_cb|spin``
    N extra threads call the listener as fast as they can while it accepts:
    ``cycle`` is ``disable(); enable(); set_cb(cb, arg)`` (three calls),
    ``set_cb`` is ``set_cb(cb, arg)`` alone; ``spin`` never calls it and
    only runs Python (the GIL's share of the cost).  Their calls (for
    ``spin``, loop iterations) are counted as ``ops=`` in ``COUNT``.
``--control-rate R``
    Pace each control thread to R calls per second instead of flat out.

The threadlisten imported is whatever ``PYTHONPATH`` finds first, so the
harness can run a scratch copy of the core side by side with the real one.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from typing import Any

import threadlisten
from threadlisten import DEFAULT_MAX_ACCEPTS, LEV_OPT, EventBase, Listener
from tlbench.servers import proto


def _extra_options(extra: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--bind-self", action="store_true")
    parser.add_argument("--max-accepts", type=int, default=DEFAULT_MAX_ACCEPTS)
    parser.add_argument("--control-threads", type=int, default=0)
    parser.add_argument("--control-op", choices=("cycle", "set_cb", "spin"), default="cycle")
    parser.add_argument("--control-rate", type=float, default=0.0)
    return parser.parse_args(extra)


_ARGS = _extra_options(proto.parse_options().extra)
if _ARGS.debug:
    # Before any EventBase exists, as enable_lock_debugging() requires.
    import threadlisten.debug

    threadlisten.debug.enable_lock_debugging()

_BASE = EventBase()
#: The listener, once made (by listen() with --bind-self, else by serve()).
_LISTENER: list[Listener] = []
#: The (cb, arg) pair the control threads set again and again.
_LISTENER_CB: list[tuple[Any, Any]] = []


def _flags() -> LEV_OPT:
    flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.DISABLED
    if not _ARGS.plain:
        flags |= LEV_OPT.THREADSAFE
    return flags


def listen(opts: proto.Options) -> socket.socket:
    """Make the listening socket: ``Listener.bind`` with ``--bind-self``, else the
    common one (adopted at ``GO`` with ``Listener.from_socket``)."""
    if not _ARGS.bind_self:
        return proto.listening_socket(opts)
    flags = _flags()
    if opts.reuseport:
        flags |= LEV_OPT.REUSEABLE_PORT
    lev = Listener.bind(
        _BASE,
        ("127.0.0.1", opts.port),
        _noop,
        flags=flags,
        backlog=opts.backlog,
        max_accepts=_ARGS.max_accepts,
    )
    _LISTENER.append(lev)
    return lev.socket


def _noop(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
    sock.close()


def _control(lev: Listener, op: str, rate: float, counts: list[int], slot: int) -> None:
    # A control thread: calls the listener for ever (the process ends it).
    # Each thread counts in its own slot, so no count is lost to a race.
    cb, arg = _LISTENER_CB[0]
    calls = 3 if op == "cycle" else 1
    pause = calls / rate if rate else 0.0
    if op == "spin":
        while True:  # Python bytecode only: holds the GIL, never the listener
            counts[slot] += 1
    while True:
        if op == "cycle":
            lev.disable()
            lev.enable()
        lev.set_cb(cb, arg)
        counts[slot] += calls
        if pause:
            time.sleep(pause)  # pacing the calls, not synchronising


def serve(sock: socket.socket, counter: proto.Counter, opts: proto.Options) -> None:
    """Start the loop thread and return (``proto.run`` then waits for ``EXIT``)."""
    if opts.stamp:
        stamp = counter.make_stamp()

        def on_accept(lev: Listener, conn: socket.socket, address: Any, arg: Any) -> None:
            stamp(address[1])
            conn.close()

    else:
        tick = counter.make_tick()

        def on_accept(lev: Listener, conn: socket.socket, address: Any, arg: Any) -> None:
            tick()
            conn.close()

    if _LISTENER:
        lev = _LISTENER[0]
        lev.set_cb(on_accept)
    else:
        lev = Listener.from_socket(
            _BASE, sock, on_accept, flags=_flags(), backlog=0, max_accepts=_ARGS.max_accepts
        )
        _LISTENER.append(lev)
    _LISTENER_CB.append((on_accept, None))
    # A listener without THREADSAFE belongs to one thread at a time: this one,
    # until the loop thread starts.
    lev.enable()
    _BASE.start_thread()
    if _ARGS.control_threads:
        counts = [0] * _ARGS.control_threads
        counter.extras["ops"] = lambda: sum(counts)
        for slot in range(_ARGS.control_threads):
            threading.Thread(
                target=_control,
                args=(lev, _ARGS.control_op, _ARGS.control_rate, counts, slot),
                daemon=True,
            ).start()


def _info() -> dict[str, str]:
    return {
        "impl": "Listener" + (" (plain)" if _ARGS.plain else " THREADSAFE"),
        "threadlisten": threadlisten.__version__,
        "path": threadlisten.__file__,
        "lock_debugging": str(_ARGS.debug),
        "max_accepts": str(_ARGS.max_accepts),
    }


if __name__ == "__main__":
    proto.run(serve, _info(), listen)
    sys.exit(3)
