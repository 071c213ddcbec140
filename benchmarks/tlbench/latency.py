"""Connect-to-callback latency at a fixed, moderate rate.

The load generator issues connects on a fixed schedule (an open loop: a slow
server does not slow the schedule down) and notes ``CLOCK_MONOTONIC`` just
before each ``connect()`` with the local port it got.  The server notes the
same clock as its callback starts, with the peer port.  Pairing the two
records by port (and by order, should a port come round twice) gives, for
every connection, the time from ``connect()`` to the server's code running:
the kernel's handshake, the server's wake-up from its poll, its accept, and
whatever it does before calling back (tasks, greenlets, a loop pass).
"""

from __future__ import annotations

import array
import subprocess
import tempfile
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from tlbench.machine import Cores, pin
from tlbench.peers import Peer
from tlbench.procs import Launcher, ServerProc
from tlbench.stats import percentile

#: Seconds the server may take to call back the last connections.
SETTLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class LatencyResult:
    """One latency run: percentiles in microseconds and how many were paired."""

    p50_us: float
    p99_us: float
    max_us: float
    paired: int
    issued: int


def _read_pairs(path: Path) -> list[tuple[int, int]]:
    data = array.array("q")
    with open(path, "rb") as fh:
        data.frombytes(fh.read())
    return [(data[i], data[i + 1]) for i in range(0, len(data) - 1, 2)]


def pair_latencies(client: list[tuple[int, int]], server: list[tuple[int, int]]) -> list[int]:
    """Return the latencies (ns) of the connections present in both records.

    Each record is a list of ``(port, ns)`` in time order.  The n-th use of a
    port by the client pairs with the n-th callback for that port.
    """
    sent: dict[int, deque[int]] = defaultdict(deque)
    for port, ns in client:
        if port >= 0:
            sent[port].append(ns)
    latencies = []
    for port, ns in server:
        queue = sent.get(port)
        if queue:
            latencies.append(ns - queue.popleft())
    return latencies


def latency_round(
    launcher: Launcher, peer: Peer, cores: Cores, loadgen: Path, rate: float, count: int
) -> LatencyResult:
    """Run *count* connects at *rate* per second against *peer*.

    Raises:
        ServerError: the server failed.
        RuntimeError: the generator failed, or too few connections paired.
    """
    with tempfile.TemporaryDirectory(prefix="tlbench-lat-") as tmp:
        client_file = Path(tmp) / "client"
        server_file = Path(tmp) / "server"
        with ServerProc(launcher, peer, backlog=1024, core=cores.server, stamp=count) as server:
            server.go(0)
            gen = subprocess.Popen(
                [
                    str(loadgen),
                    "latency",
                    str(server.port),
                    str(rate),
                    str(count),
                    str(client_file),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                pin(gen.pid, cores.client)
                out, err = gen.communicate(timeout=count / rate + 60)
            finally:
                if gen.poll() is None:
                    gen.kill()
                    gen.communicate()
            if gen.returncode != 0 or not out.startswith("DONE"):
                raise RuntimeError(f"load generator failed: {err.strip()[-300:]}")
            issued, finished = (int(x) for x in out.split()[1:3])
            server.wait_count(finished, SETTLE_TIMEOUT)
            server.stamps(server_file)
        latencies = sorted(pair_latencies(_read_pairs(client_file), _read_pairs(server_file)))
    # A handful may go unpaired at the edges; more means the records disagree.
    if len(latencies) < 0.99 * issued:
        raise RuntimeError(f"only {len(latencies)} of {issued} connections paired")
    return LatencyResult(
        p50_us=percentile(latencies, 0.50) / 1e3,
        p99_us=percentile(latencies, 0.99) / 1e3,
        max_us=latencies[-1] / 1e3,
        paired=len(latencies),
        issued=issued,
    )
