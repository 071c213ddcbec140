"""REUSEABLE_PORT: one port served by two processes against one.

Each process makes its listener the way an application would,
``Listener.bind(..., flags=THREADSAFE | REUSEABLE_PORT | DISABLED)``, and
enables it on GO.  The kernel spreads incoming connections over the
listening sockets by a hash of the connection's addresses.

Burst mode again, so the load generator is idle while the servers work and
two servers can have the two cores: the harness fills the queues, each
server drains its own (its target is what was queued on its socket at GO),
and the rate is the whole burst over the time from the first callback of
either to the last callback of either.  (threadlisten calls back as it
accepts, so its first callback is its first accept.)
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from tlbench.burst import DRAIN_TIMEOUT, close_all, connect_many
from tlbench.machine import Cores
from tlbench.peers import Peer
from tlbench.procs import Launcher, ServerProc, Times


@dataclass(frozen=True)
class ReuseportResult:
    """One drained burst over *processes* listeners on one port."""

    processes: int
    rate: float
    split: tuple[int, ...]


def reuseport_round(
    launcher: Launcher, peer: Peer, cores: Cores, processes: int, burst: int
) -> ReuseportResult:
    """Fill *processes* REUSEABLE_PORT listeners with *burst* connections and time the drain.

    The first server goes on the server core, the second on the client core
    (the harness only waits while they drain).

    Raises:
        ServerError: a server failed.
        RuntimeError: the servers' counts do not add up to the burst.
    """
    placement = [cores.server, cores.client]
    with ExitStack() as stack:
        servers: list[ServerProc] = []
        port = 0
        for i in range(processes):
            server = ServerProc(
                launcher,
                peer,
                port=port,
                backlog=burst,
                core=placement[i % 2],
                reuseport=True,
                extra_args=("--bind-self",),
            )
            stack.enter_context(server)
            servers.append(server)
            port = server.port
        clients = connect_many(port, burst)
        try:
            for server in servers:
                server.go("auto")
            done: list[Times] = [s.wait_done(DRAIN_TIMEOUT) for s in servers]
        finally:
            close_all(clients)
    split = tuple(t.count for t in done)
    if sum(split) != burst:
        raise RuntimeError(f"the servers counted {split}, not {burst} in all")
    start = min(t.first_ns for t in done)
    end = max(t.last_ns for t in done)
    return ReuseportResult(processes, burst / ((end - start) / 1e9), split)
