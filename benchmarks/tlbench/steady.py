"""Steady mode: the C load generator connects for a fixed time while the server accepts.

The load generator (``csrc/loadgen.c``) keeps a bounded number of connects in
flight from several threads, closes each connection with SO_LINGER 0 once
the server has closed it, and stops by itself after its run time.  The
server's own counter is read twice, after a warm-up and at the end of the
window: the rate and the server's CPU time between the two readings are the
server's figures.

On loopback the client side of a connection (connect, the handshake the
kernel runs for both ends, the RST) costs the load generator's core more
than accept-and-close costs the server's, so on a two-core machine the
generator's one core saturates near 60,000 connections per second whatever
the server.  A row whose server was not busy the whole window
(``server_busy`` well below 1) measured the generator, not the server; the
server's CPU time per connection (``cpu_us``) is still its own, and is the
figure to compare there.  Burst mode has no such limit.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tlbench.machine import Cores, ksoftirqd_pid, pin, proc_cpu_seconds, task_cpu_ns
from tlbench.peers import Peer
from tlbench.procs import Launcher, ServerProc

#: Generator threads and connects in flight per thread: 4 x 16 = 64 in
#: flight, far below any accept queue (no SYN is ever dropped) and enough to
#: keep the server's queue non-empty.
THREADS = 4
INFLIGHT = 16
#: The accept queue (listen backlog) of a steady-mode server.
BACKLOG = 1024
#: The generator runs this long past the second reading, so the load does
#: not stop inside the window.
TAIL = 0.3


@dataclass(frozen=True)
class Window:
    """How long to warm up and how long to measure, in seconds."""

    warmup: float
    measure: float


@dataclass(frozen=True)
class SteadyResult:
    """One steady-mode window.

    Attributes:
        rate: connections per second the server accepted in the window.
        server_busy: server CPU seconds per second in the window (1.0 = one
            core all the time; more with several busy threads), counting
            ``ksoftirqd`` on its core as in burst mode.
        cpu_us: server CPU microseconds per connection (the same account);
            None when nothing was accepted (only with ``allow_idle``).
        generator_busy: the load generator's CPU seconds per second.
        extras: the server's extra counters, per second (``ops`` ...).
        generator_errors: connects that failed (refused, reset).
    """

    rate: float
    server_busy: float
    cpu_us: float | None
    generator_busy: float | None
    extras: dict[str, float]
    generator_errors: int


def steady_round(
    launcher: Launcher,
    peer: Peer,
    cores: Cores,
    loadgen: Path,
    window: Window,
    extra_args: tuple[str, ...] = (),
    allow_idle: bool = False,
) -> SteadyResult:
    """Run *peer* under the load generator and measure one window.

    *allow_idle*: a window in which nothing was accepted is a result (rate 0),
    not an error.  For cross-thread control, where threads calling the
    listener flat out can starve the loop thread: there, 0 is the
    measurement; elsewhere it means a broken server.

    Raises:
        ServerError: the server failed.
        RuntimeError: the generator failed, or nothing was accepted (unless
            *allow_idle*).
    """
    run_time = window.warmup + window.measure + TAIL
    with ServerProc(
        launcher, peer, backlog=BACKLOG, core=cores.server, extra_args=extra_args
    ) as server:
        softirq = ksoftirqd_pid(cores.server)
        server.go(0)
        gen = subprocess.Popen(
            [str(loadgen), "steady", str(server.port), str(THREADS), str(INFLIGHT), str(run_time)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            pin(gen.pid, cores.client)
            # Waiting out a time window of a measurement, not synchronising.
            time.sleep(window.warmup)
            first = server.sample()
            soft_first = task_cpu_ns(softirq)
            gen_first = proc_cpu_seconds(gen.pid)
            time.sleep(window.measure)
            second = server.sample()
            soft_second = task_cpu_ns(softirq)
            gen_second = proc_cpu_seconds(gen.pid)
            out, err = gen.communicate(timeout=run_time + 30)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.communicate()
    if gen.returncode != 0 or not out.startswith("DONE"):
        raise RuntimeError(f"load generator failed ({gen.returncode}): {err.strip()[-300:]}")
    errors = int(out.split()[2])
    seconds = (second.now_ns - first.now_ns) / 1e9
    accepted = second.count - first.count
    if seconds <= 0 or (accepted <= 0 and not allow_idle):
        raise RuntimeError("nothing was accepted in the window")
    cpu = (second.cpu_ns - first.cpu_ns) / 1e9
    if soft_first is not None and soft_second is not None:
        cpu += (soft_second - soft_first) / 1e9
    gen_busy = None
    if gen_first is not None and gen_second is not None:
        gen_busy = (gen_second - gen_first) / seconds
    extras = {
        key: (second.extras[key] - first.extras.get(key, 0)) / seconds for key in second.extras
    }
    return SteadyResult(
        rate=accepted / seconds,
        server_busy=cpu / seconds,
        cpu_us=cpu / accepted * 1e6 if accepted > 0 else None,
        generator_busy=gen_busy,
        extras=extras,
        generator_errors=errors,
    )
