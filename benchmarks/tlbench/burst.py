"""Burst mode: fill the accept queue first, then time the server draining it.

The harness connects *burst* clients while the server listens without
accepting (it has printed READY and waits for GO), so every connection is
queued in the kernel before the clock starts.  Then GO.  The clients do
nothing meanwhile, so this measures the server alone: its accept loop, its
per-connection work and its close, with no load generator competing for the
CPU.  Two figures come from every drain:

``rate`` (wall clock)
    ``burst / (last callback - first accept)``.  The clock starts when the
    accept queue begins to shrink, seen from outside by
    ``qwatch.QueueWatcher``, and stops at the server's last callback, so it
    covers every accept and every callback whether a framework runs its
    callbacks at once (threadlisten, tornado, the C servers) or a loop pass
    later (asyncio, gevent, Twisted, trio).  Server start-up and the
    framework's set-up after GO are outside the clock.
``cpu_rate`` (per CPU-second)
    ``burst / CPU time spent on the drain``: the CPU time of the server's
    threads from GO to DONE (the scheduler's exact account, which includes
    the kernel's work in the server's system calls and the loopback packets
    they send), plus that of ``ksoftirqd`` on the server's core (the kernel
    defers part of that packet work to it: 5-15 % of a drain here), less the
    framework's set-up after GO, measured separately (``measure_setup``).
    When other work shares the server's core the wall clock counts the time
    the server waited for the core; this does not.  On an idle machine the
    two agree (``busy`` near 1).

Where netlink ``sock_diag`` is missing, the clock starts at the first
callback instead, and the result says so (``start="first callback"``).
"""

from __future__ import annotations

import socket
import statistics
import struct
import time
from dataclasses import dataclass

from tlbench.machine import Cores, ksoftirqd_pid, task_cpu_ns
from tlbench.peers import Peer
from tlbench.procs import Launcher, ServerProc
from tlbench.qwatch import QueueWatcher

#: close() then sends a RST: no TIME_WAIT, so rounds never run out of ports.
LINGER_0 = struct.pack("ii", 1, 0)
#: Seconds one connect may take (it never should on loopback).
CONNECT_TIMEOUT = 10.0
#: Seconds a server may take to drain a burst: far above the slowest peer.
DRAIN_TIMEOUT = 120.0
#: By default a drain's start must be known to within this fraction of the
#: drain time; the midpoint is then off by at most half of it (1 %).  The
#: queue watcher polls every ~0.3 ms and a 4,000-connection drain takes
#: 50-500 ms, so only a preempted watcher misses it.
MAX_START_WINDOW = 0.02
#: Seconds between queue queries while waiting for the queue to empty.
DRAINED_POLL = 0.002
#: Tries per round before a round counts as failed.
ATTEMPTS = 3
#: Set-up measurement: the server's CPU time is read this long after GO and
#: again as long after that.  Every framework here is set up in well under
#: 50 ms (imports happen before READY); the second reading gives the cost of
#: idling, which is taken out.
SETUP_SETTLE = 0.15


@dataclass(frozen=True)
class BurstResult:
    """One drained burst.

    Attributes:
        rate: connections per second, first accept to last callback.
        cpu_rate: connections per CPU-second of the server (None where its
            CPU time cannot be read).
        busy: the drain's CPU time over its wall time (about 1 when the
            server had its core to itself).
        count: connections the server counted (the burst).
        seconds: first accept to last callback.
        cpu_seconds: the server's CPU time for the drain, set-up taken out.
        accept_rate: connections per second from the first accept until the
            queue was empty (None without netlink): above ``rate`` when a
            framework defers its callbacks.
        start: what started the clock: ``"queue"`` or ``"first callback"``.
        start_window: seconds between the two queue queries that bracket the
            first accept: how well the start is known.
    """

    rate: float
    cpu_rate: float | None
    busy: float | None
    count: int
    seconds: float
    cpu_seconds: float | None
    accept_rate: float | None
    start: str
    start_window: float


def measure_setup(launcher: Launcher, peer: Peer, cores: Cores) -> float | None:
    """Return the CPU seconds *peer* spends after GO before it can accept.

    The server gets GO with an empty queue; its CPU time is read before GO,
    ``SETUP_SETTLE`` after and twice that after.  Set-up is the first span's
    CPU time less the second span's (what idling costs).  None where CPU time
    cannot be read.
    """
    with ServerProc(launcher, peer, backlog=16, core=cores.server) as server:
        c0 = server.cpu_ns()
        server.go(0)
        # Waiting out a measurement window: there is no "set up" signal common
        # to every framework, and all of them are set up long before it ends.
        time.sleep(SETUP_SETTLE)
        c1 = server.cpu_ns()
        time.sleep(SETUP_SETTLE)
        c2 = server.cpu_ns()
    if c0 is None or c1 is None or c2 is None:
        return None
    return max(0, (c1 - c0) - (c2 - c1)) / 1e9


def median_setup(values: list[float | None]) -> float:
    """The median of the set-up measurements that worked (0.0 if none did)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else 0.0


def connect_many(port: int, n: int) -> list[socket.socket]:
    """Open *n* connections to 127.0.0.1:*port* (each with SO_LINGER 0).

    Every connect completes in the kernel (the server's accept queue takes
    it) without the server doing anything.  On failure the ones made are closed.
    """
    clients: list[socket.socket] = []
    try:
        for _ in range(n):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(c)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            c.settimeout(CONNECT_TIMEOUT)
            c.connect(("127.0.0.1", port))
    except BaseException:
        close_all(clients)
        raise
    return clients


def close_all(clients: list[socket.socket]) -> None:
    """Close every socket of *clients* (a RST each)."""
    for c in clients:
        c.close()


def burst_round(
    launcher: Launcher,
    peer: Peer,
    cores: Cores,
    burst: int,
    setup_cpu: float = 0.0,
    max_window: float | None = MAX_START_WINDOW,
) -> BurstResult:
    """Start *peer*, fill its queue with *burst* connections, time the drain.

    *setup_cpu* (seconds, from ``measure_setup``) is taken out of the
    drain's CPU time.  A round whose start is known only to within more
    than *max_window* of its drain time (the harness was preempted while
    watching the queue: a busy machine) is run again, up to ``ATTEMPTS``
    times in all; None takes the first attempt whatever its precision.

    Raises:
        ServerError: the server failed or did not drain in time.
        OSError: a connect failed.
        RuntimeError: not every connection was queued before GO, or no
            attempt could be timed precisely enough.
    """
    for _ in range(ATTEMPTS):
        result = _burst_once(launcher, peer, cores, burst, setup_cpu)
        if max_window is None or result.start_window <= max_window * result.seconds:
            return result
    raise RuntimeError(
        f"start of the drain known only to {result.start_window * 1e3:.1f} ms of "
        f"{result.seconds * 1e3:.1f} ms in {ATTEMPTS} attempts (machine too busy?)"
    )


def _burst_once(
    launcher: Launcher, peer: Peer, cores: Cores, burst: int, setup_cpu: float
) -> BurstResult:
    with ServerProc(launcher, peer, backlog=burst, core=cores.server) as server:
        watch = _watcher(server.port)
        clients = connect_many(server.port, burst)
        try:
            if watch is not None and (queued := watch.queued()) != burst:
                raise RuntimeError(f"{queued} of {burst} connections queued before GO")
            softirq = ksoftirqd_pid(cores.server)
            cpu_go = _add(server.cpu_ns(), task_cpu_ns(softirq))
            go_ns = time.monotonic_ns()
            server.go(burst)
            start_ns = drained_ns = None
            window = 0.0
            if watch is not None:
                first_span = watch.wait_below(burst, DRAIN_TIMEOUT, go_ns)
                start_ns = _midpoint(first_span)
                window = (first_span[1] - first_span[0]) / 1e9
                # The end of the queue is only informative (accept_rate): poll
                # it gently, so the harness's core stays nearly idle while the
                # server drains (on a VM the two cores may share a physical one).
                drained_ns = _midpoint(
                    watch.wait_below(1, DRAIN_TIMEOUT, first_span[1], DRAINED_POLL)
                )
            times = server.wait_done(DRAIN_TIMEOUT)
            cpu_done = _add(server.cpu_ns(), task_cpu_ns(softirq))
        finally:
            close_all(clients)
            if watch is not None:
                watch.close()
    if times.count != burst:
        raise RuntimeError(f"the server counted {times.count} of {burst}")
    if start_ns is None or drained_ns is None:
        # Without netlink: first to last callback, one connection fewer.
        start, accept_rate, how = times.first_ns, None, "first callback"
        seconds = (times.last_ns - start) / 1e9
        rate = (burst - 1) / seconds
    else:
        # The queue cannot have started to shrink after the first callback.
        start, how = min(start_ns, times.first_ns), "queue"
        seconds = (times.last_ns - start) / 1e9
        rate = burst / seconds
        accept_rate = burst / (max(drained_ns - start, 1) / 1e9)
    cpu = None
    if cpu_go is not None and cpu_done is not None:
        cpu = (cpu_done - cpu_go) / 1e9 - setup_cpu
        if cpu <= 0:
            cpu = None
    return BurstResult(
        rate=rate,
        cpu_rate=None if cpu is None else burst / cpu,
        busy=None if cpu is None else cpu / seconds,
        count=burst,
        seconds=seconds,
        cpu_seconds=cpu,
        accept_rate=accept_rate,
        start=how,
        start_window=window,
    )


def _add(server: int | None, softirq: int | None) -> int | None:
    # The server's CPU time, plus ksoftirqd's where it is known.
    if server is None:
        return None
    return server + (softirq or 0)


def _watcher(port: int) -> QueueWatcher | None:
    try:
        return QueueWatcher(port)
    except OSError:
        return None


def _midpoint(span: tuple[int, int]) -> int:
    return (span[0] + span[1]) // 2
