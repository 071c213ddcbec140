"""The control protocol every benchmark server speaks, Python side.

A server is a process that listens on 127.0.0.1, accepts connections in its
framework's own idiomatic way, closes each at once, and counts them.  The
harness (``tlbench.procs``) drives it over stdin/stdout, one line each way:

``READY <port> <info-json>``  (server -> harness)
    The socket is listening; nothing is accepted yet, so a burst of clients
    can fill the kernel's accept queue first.
``GO <target>``  (harness -> server)
    Start accepting.  ``<target>`` > 0: print ``DONE`` once that many
    connections were accepted; 0: count for ever; ``auto``: the number of
    connections queued on the socket right now (read from ``TCP_INFO``).
``DONE <count> <first_ns> <last_ns>``  (server -> harness)
    The target was reached; the times are those of the first and last
    callbacks.
``COUNT`` -> ``COUNT <count> <now_ns> <cpu_ns> [key=value ...]``
    Connections so far, the time, the process's CPU time (all threads), and
    any extra counters the server registered (e.g. ``ops=`` for control calls).
``TIMES`` -> ``TIMES <count> <first_ns> <last_ns>``
``STAMPS <path>`` -> ``OK``
    Latency mode only: write the ``(peer port, ns)`` pairs, int64 native.
``EXIT`` or end of input
    The process exits at once (``os._exit``: no framework shutdown to wait for).

Every time is ``time.monotonic_ns()`` (Linux ``CLOCK_MONOTONIC``), the clock
of the C servers and of the load generator too.  The counter is hit at the
start of the callback, before the close, in every server alike.  A server
also ends by itself after ``LIFETIME`` seconds.

This module is imported by the server processes (the project's interpreter
or the peers' venv); it needs only the standard library.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Longest a server may live, in seconds: far above any measurement.
LIFETIME = 600.0

#: Offset of ``tcpi_unacked`` in ``struct tcp_info``: eight one-byte fields,
#: then ``tcpi_rto``, ``tcpi_ato``, ``tcpi_snd_mss``, ``tcpi_rcv_mss`` (u32
#: each).  For a socket in LISTEN, Linux reports its accept-queue length there.
_TCPI_UNACKED_OFFSET = 24
_TCP_INFO_SIZE = 104

Tick = Callable[[], None]
Stamp = Callable[[int], None]


@dataclass
class Options:
    """What a server process was asked to do (from its command line)."""

    port: int
    backlog: int
    reuseport: bool
    stamp: bool
    extra: list[str]


@dataclass
class Counter:
    """The connection counter one server shares with its command thread.

    ``tick()`` is called once per connection on the accepting thread.  The
    command thread reads the fields; under the GIL each read is whole.
    """

    target: int = 0
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    ports: array.array[int] = field(default_factory=lambda: array.array("q"))
    stamps: array.array[int] = field(default_factory=lambda: array.array("q"))
    extras: dict[str, Callable[[], int]] = field(default_factory=dict)

    def make_tick(self) -> Tick:
        """Return the per-connection counting function (count mode)."""
        clock = time.monotonic_ns

        def tick() -> None:
            n = self.count + 1
            self.count = n
            if n == 1:
                self.first_ns = clock()
            if n == self.target:
                self.last_ns = clock()
                say(f"DONE {n} {self.first_ns} {self.last_ns}")

        return tick

    def make_stamp(self) -> Stamp:
        """Return the per-connection stamping function (latency mode): the
        time first, then the peer's port it pairs with."""
        clock = time.monotonic_ns
        stamps = self.stamps
        ports = self.ports

        def stamp(port: int) -> None:
            stamps.append(clock())
            ports.append(port)
            self.count += 1

        return stamp


_out_lock = threading.Lock()


def say(line: str) -> None:
    """Write one protocol line to stdout (any thread)."""
    data = (line + "\n").encode()
    with _out_lock:
        os.write(1, data)


def parse_options(argv: list[str] | None = None) -> Options:
    """Parse a server's command line: ``--port --backlog --reuseport --stamp`` and
    any server-specific extras, which are returned unparsed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=128)
    parser.add_argument("--reuseport", action="store_true")
    parser.add_argument("--stamp", type=int, default=0, help="latency mode (capacity unused)")
    args, extra = parser.parse_known_args(argv)
    return Options(args.port, args.backlog, args.reuseport, bool(args.stamp), extra)


def listening_socket(opts: Options) -> socket.socket:
    """Return a blocking TCP socket listening on 127.0.0.1 with the asked backlog.

    Every server gets the same kind of socket, so none gains from options
    another does not have; each sets the blocking mode its framework wants.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if opts.reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", opts.port))
    sock.listen(opts.backlog)
    return sock


def queued(sock: socket.socket) -> int:
    """Return how many connections wait in *sock*'s accept queue (Linux)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    return int(struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)[0])


def _command_loop(counter: Counter) -> None:
    stdin = sys.stdin.buffer
    for raw in stdin:
        line = raw.decode().strip()
        if line == "COUNT":
            count = counter.count
            now = time.monotonic_ns()
            cpu = time.process_time_ns()
            extras = "".join(f" {k}={fn()}" for k, fn in counter.extras.items())
            say(f"COUNT {count} {now} {cpu}{extras}")
        elif line == "TIMES":
            say(f"TIMES {counter.count} {counter.first_ns} {counter.last_ns}")
        elif line.startswith("STAMPS "):
            n = min(len(counter.stamps), len(counter.ports))
            pairs = array.array("q")
            for i in range(n):
                pairs.append(counter.ports[i])
                pairs.append(counter.stamps[i])
            with open(line[7:], "wb") as fh:
                pairs.tofile(fh)
            say("OK")
        elif line == "EXIT":
            break
        else:
            say(f"ERROR unknown command {line!r}")
    sys.stderr.flush()
    os._exit(0)


Serve = Callable[[socket.socket, Counter, Options], None]


def run(
    serve: Serve,
    info: dict[str, str],
    listen: Callable[[Options], socket.socket] = listening_socket,
) -> None:
    """The life of a server process: listen, ``READY``, wait for ``GO``, serve.

    Args:
        serve: starts accepting on the socket; it may block for ever (most
            frameworks run their loop in the calling thread) or return (when
            it started a loop thread of its own).  It calls
            ``counter.make_tick()``/``make_stamp()`` to get its hooks.
        info: a few facts for the results (backend, loop implementation).
        listen: makes the listening socket (by default ``listening_socket``).

    Never returns: the process ends with ``os._exit`` on ``EXIT``, at the end
    of input, or after ``LIFETIME`` seconds.
    """
    watchdog = threading.Timer(LIFETIME, os._exit, (3,))
    watchdog.daemon = True
    watchdog.start()
    opts = parse_options()
    sock = listen(opts)
    say(f"READY {sock.getsockname()[1]} {json.dumps(info)}")
    go = sys.stdin.buffer.readline().decode().split()
    if len(go) != 2 or go[0] != "GO":
        say("ERROR expected GO")
        os._exit(2)
    counter = Counter(target=queued(sock) if go[1] == "auto" else int(go[1]))
    threading.Thread(target=_command_loop, args=(counter,), daemon=True).start()
    serve(sock, counter, opts)
    # serve() returned: it runs its own loop thread.  Wait for EXIT (the
    # command thread ends the process) or the watchdog.
    threading.Event().wait(LIFETIME)
    os._exit(3)
