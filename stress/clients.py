"""Stress clients: threads (or threads in child processes) that connect to the
shared listeners as fast as they are allowed and record the outcome of every
connection.

Each client thread has one connection in flight at a time, so the number of
client threads bounds the connections in flight (and keeps every accept
queue far below its backlog: a full backlog makes Linux drop SYNs, which
would turn a fast refusal into a slow retry).  One connection:

1. read ``(gen, port)`` of a random slot from the address table;
2. connect to 127.0.0.1:port; ``ECONNREFUSED`` -> **refused**;
3. send the request, read the answer; a reset (or EOF) before the first
   byte -> **reset** (the listener was freed with the connection still in
   its accept queue, so the kernel dropped it; or the stale port now belongs
   to another run, whose worker closes a foreign request unanswered);
4. our own request read back -> **self-connected** (the kernel picked the
   stale port as this socket's own port: TCP self-connect, see
   ``stress.protocol``);
5. check the answer byte for byte and that the server then closes -> **echoed**.

Anything else (a timeout, a wrong echo, a reset after part of the echo, a
server that does not close) is a **failure**, reported with the connection
id.  Refusals, resets and self-connects carry the target listener and the moment they were
seen, for the ``refused-after-free``/``reset-after-free`` invariants.

Connection ids are ``client_index << 40 | sequence``: unique across processes.
"""

from __future__ import annotations

import array
import dataclasses
import multiprocessing
import multiprocessing.context
import queue
import random
import socket
import threading
import time
from typing import Any

from stress.fleet import LOOPBACK, AddressTable
from stress.protocol import make_request, recv_exactly, response_for

__all__ = ["LIVE_FIELDS", "ClientResult", "Clients"]

#: The live counters each client thread keeps in shared memory, in order.
LIVE_FIELDS = ("attempted", "echoed", "refused", "reset", "self_connected", "failed")
_ATTEMPTED, _ECHOED, _REFUSED, _RESET, _SELF, _FAILED = range(len(LIVE_FIELDS))

#: Failures kept as examples per client thread.
MAX_PROBLEMS = 10

#: Seconds a child process gets, beyond the client timeout, to report its results.
RESULT_GRACE = 30.0


@dataclasses.dataclass
class ClientResult:
    """What a group of client threads saw.  Picklable (sent back by processes)."""

    verified: array.array[int] = dataclasses.field(default_factory=lambda: array.array("Q"))
    refused: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (gen, when)
    reset: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)  # (id, gen, when)
    self_connected: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (gen, when)
    problems: list[str] = dataclasses.field(default_factory=list)
    failed: int = 0

    def merge(self, other: ClientResult) -> None:
        """Add *other*'s records to these."""
        self.verified.extend(other.verified)
        self.refused.extend(other.refused)
        self.reset.extend(other.reset)
        self.self_connected.extend(other.self_connected)
        self.failed += other.failed
        self.problems.extend(other.problems[: max(0, MAX_PROBLEMS * 4 - len(self.problems))])


def _one_connection(port: int, request: bytes, timeout: float) -> str:
    """Run one connection; return "echoed", "refused", "reset", "self-connected"
    or a failure text."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect((LOOPBACK, port))
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            # The listener was closed while the handshake was in progress:
            # the kernel dropped the half-open connection from its queue.
            return "reset"
        got = b""
        try:
            sock.sendall(request)
            got = recv_exactly(sock, len(request))
        except (ConnectionResetError, BrokenPipeError):
            if not got:
                return "reset"
            return "failed: reset after part of the echo"
        if not got:
            # EOF with no echo: only a dropped queued connection should look
            # like this; the reconciliation checks that no worker saw it.
            return "reset"
        if got == request:
            # Our own bytes back, request magic and all: the kernel gave this
            # socket the stale port as its own ephemeral port and connected
            # it to itself (TCP self-connect).  No server was involved.
            return "self-connected"
        if got != response_for(request):
            return f"failed: wrong answer ({len(got)}/{len(request)} bytes)"
        try:
            tail = sock.recv(1)
        except ConnectionResetError:
            return "failed: reset instead of the server's close"
        if tail:
            return "failed: bytes after the echo"
        return "echoed"
    except TimeoutError:
        return f"failed: timed out after {timeout} s"
    except OSError as exc:
        return f"failed: {exc!r}"
    finally:
        sock.close()


def _client_thread(
    index: int,
    table: AddressTable,
    slots: int,
    stop: Any,
    seed: int,
    run: int,
    timeout: float,
    live: Any,
    result: ClientResult,
    result_lock: threading.Lock,
) -> None:
    rng = random.Random(seed * 1_000_003 + index)
    base = index * len(LIVE_FIELDS)
    mine = ClientResult()
    seq = 0
    while not stop.is_set():
        gen, port = table.read(rng.randrange(slots))
        if port == 0:
            continue  # not published yet (cannot happen after start-up)
        conn_id = index << 40 | seq
        seq += 1
        request = make_request(run, conn_id, rng)
        live[base + _ATTEMPTED] += 1
        outcome = _one_connection(port, request, timeout)
        when = time.monotonic()
        if outcome == "echoed":
            mine.verified.append(conn_id)
            live[base + _ECHOED] += 1
        elif outcome == "refused":
            mine.refused.append((gen, when))
            live[base + _REFUSED] += 1
        elif outcome == "reset":
            mine.reset.append((conn_id, gen, when))
            live[base + _RESET] += 1
        elif outcome == "self-connected":
            mine.self_connected.append((gen, when))
            live[base + _SELF] += 1
        else:
            mine.failed += 1
            live[base + _FAILED] += 1
            if len(mine.problems) < MAX_PROBLEMS:
                mine.problems.append(f"connection {conn_id} to listener {gen}: {outcome}")
    with result_lock:
        result.merge(mine)


def _run_group(
    indices: list[int],
    table_array: Any,
    slots: int,
    stop: Any,
    seed: int,
    run: int,
    timeout: float,
    live: Any,
) -> tuple[ClientResult, list[threading.Thread]]:
    table = AddressTable(table_array)
    result = ClientResult()
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_client_thread,
            args=(i, table, slots, stop, seed, run, timeout, live, result, lock),
            name=f"stress-client-{i}",
            daemon=True,
        )
        for i in indices
    ]
    for t in threads:
        t.start()
    return result, threads


def _process_main(
    indices: list[int],
    table_array: Any,
    slots: int,
    stop: Any,
    seed: int,
    run: int,
    timeout: float,
    live: Any,
    out: Any,
) -> None:
    """A client process: run its client threads until *stop*, then send the result."""
    result, threads = _run_group(indices, table_array, slots, stop, seed, run, timeout, live)
    for t in threads:
        t.join()  # each ends within one connection's timeouts after stop
    out.put(result)


class Clients:
    """The client threads of a run, in this process or spread over child processes.

    Args:
        ctx: the multiprocessing context that made *table_array*, *live* and *stop*.
        table_array: the address table's shared array.
        slots: how many listener slots the table has.
        threads: client threads in all.
        processes: 0 for threads here, else how many child processes.
        seed, timeout: as in ``StressConfig``.
        run: the run's nonce (``stress.protocol``).
        live: a shared array of ``threads * len(LIVE_FIELDS)`` counters.
        stop: a multiprocessing ``Event`` that ends the clients.
        results: a multiprocessing ``Queue`` the processes send their results on
            (made by the caller with the other shared objects; unused with threads).

    Thread-safety: use from the thread that owns the run.
    """

    def __init__(
        self,
        ctx: multiprocessing.context.SpawnContext,
        table_array: Any,
        slots: int,
        threads: int,
        processes: int,
        seed: int,
        run: int,
        timeout: float,
        live: Any,
        stop: Any,
        results: Any,
    ) -> None:
        self.ctx = ctx
        self.table_array = table_array
        self.slots = slots
        self.n = threads
        self.processes = processes
        self.seed = seed
        self.run = run
        self.timeout = timeout
        self.live = live
        self.stop_event = stop
        self._result = ClientResult()
        self._threads: list[threading.Thread] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._out = results

    def start(self) -> None:
        """Start the client threads (or processes)."""
        args = (self.slots, self.stop_event, self.seed, self.run, self.timeout, self.live)
        if self.processes == 0:
            self._result, self._threads = _run_group(list(range(self.n)), self.table_array, *args)
            return
        groups = [list(range(p, self.n, self.processes)) for p in range(self.processes)]
        for p, indices in enumerate(groups):
            proc = self.ctx.Process(
                target=_process_main,
                args=(indices, self.table_array, *args, self._out),
                name=f"stress-clients-{p}",
                daemon=True,
            )
            proc.start()
            self._procs.append(proc)

    def live_counts(self) -> dict[str, int]:
        """Return the live counters summed over every client thread."""
        values = list(self.live)
        k = len(LIVE_FIELDS)
        return {name: sum(values[i::k]) for i, name in enumerate(LIVE_FIELDS)}

    def stop(self) -> tuple[ClientResult, list[str]]:
        """Stop the clients and gather what they saw.

        Each client finishes its connection in flight (bounded by the client
        timeout).  Returns the merged result and the names of threads or
        processes that did not end in time (an empty list when all did).
        """
        self.stop_event.set()
        deadline = time.monotonic() + 3 * self.timeout + RESULT_GRACE
        stuck: list[str] = []
        if not self._procs:
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))
            stuck = [t.name for t in self._threads if t.is_alive()]
            return self._result, stuck
        result = ClientResult()
        for _ in self._procs:
            try:
                result.merge(self._out.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                stuck.append(proc.name)
                proc.kill()
                proc.join(5)
            proc.close()
        return result, stuck
