"""CI's short stress run: ``python -m stress`` for about 25 seconds, in a child
process, and its JSON report checked: zero violations, every invariant held,
no descriptor or thread left behind, and real work done.

The run is a child process so that its lowered switch interval, its threads
and its descriptors never mix with the test session's (the session's own
leak check then only sees the child's pipes, which ``subprocess.run`` closes).
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _support import REPO_ROOT, child_env

# ``stress`` is a directory at the repository root, not an installed package:
# ``python -m pytest`` from the root finds it, a bare ``pytest`` may not.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import stress.fleet
from stress.clients import _one_connection
from stress.fleet import AddressTable, Fleet
from stress.invariants import Violations
from stress.protocol import HEADER, make_request, recv_exactly, response_for
from stress.stats import Stats
from stress.workers import WorkerPool
from threadlisten import EventBase, Listener

#: Seconds the stress run lasts: long enough for hundreds of listener frees
#: and tens of thousands of connections on a 2-core machine.
DURATION = 25

#: Bound on every wait of the in-process tests.
WAIT = 10.0

#: Seconds the child may take in all (start-up, the run, the ending, the report).
CHILD_TIMEOUT = 150


@pytest.mark.timeout(CHILD_TIMEOUT + 30)
def test_short_stress_run_holds_every_invariant(tmp_path: Path) -> None:
    """A short stress run exits 0 and its report shows zero violations and leaks."""
    report_path = tmp_path / "stress.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stress",
            "--duration",
            str(DURATION),
            "--seed",
            "7",
            "--live",
            "plain",
            "--json",
            str(report_path),
        ],
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["violations"] == 0
    # The command as typed, not this checkout's absolute path.
    assert report["command"][:5] == ["python", "-m", "stress", "--duration", str(DURATION)]
    failed = [inv for inv in report["invariants"] if not inv["held"]]
    assert not failed, failed
    assert report["descriptors"]["before"] == report["descriptors"]["after"]
    assert report["descriptors"]["leaked"] == []
    assert report["threads"]["before"] == report["threads"]["after"]
    assert report["deadlock"] is None
    assert report["peak_refcount"] == 2
    # Real work was done: every kind of call, frees, and served connections.
    ops = report["operations"]["by_kind"]
    assert all(ops[kind] > 0 for kind in ("enable", "disable", "set_cb", "set_error_cb", "free"))
    conns = report["connections"]
    assert conns["verified_by_clients"] > 1000
    assert conns["accepted"] == conns["delivered"]
    assert conns["delivered"] == conns["echoed_by_workers"] + conns["foreign_delivered"]
    assert conns["verified_by_clients"] == conns["echoed_by_workers"]
    assert conns["failed"] == 0
    assert conns["attempted"] == (
        conns["verified_by_clients"]
        + conns["refused_after_free"]
        + conns["reset_after_free"]
        + conns["self_connected_after_free"]
    )
    assert report["listeners"]["destroyed"] == report["listeners"]["created"]


# ------------------------------------------------ the harness's own accounting


def test_a_worker_closes_another_runs_request_unanswered() -> None:
    """A request carrying another run's nonce (a client of another stress
    process that reached a reused port) is read, closed unanswered and
    counted as foreign, not as a failure; this run's requests are answered."""
    stats = Stats()
    violations = Violations()
    pool = WorkerPool(run=1, n=1, io_timeout=10.0, stats=stats, violations=violations)
    pool.start()
    rng = random.Random(0)
    try:
        for run, conn_id in ((2, 7), (1, 8)):
            client, server = socket.socketpair()
            with client:
                client.settimeout(10.0)
                request = make_request(run, conn_id, rng)
                client.sendall(request)
                pool.submit(server, 0)
                answer = recv_exactly(client, len(request))
                assert answer == (b"" if run == 2 else response_for(request))
    finally:
        assert pool.close(10.0) == []
    counts = stats.snapshot()
    assert counts["worker.foreign"] == 1
    assert counts["worker.echoed"] == 1
    assert pool.echoed_ids() == [8]
    assert violations.total == 0


def test_a_client_reading_back_its_own_request_is_self_connected() -> None:
    """A peer that sends the request's own bytes back (what a TCP self-connect
    on a stale port does) is classified "self-connected", never "echoed";
    a real answer is "echoed"."""
    request = make_request(5, 9, random.Random(1))
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve(answer_with: str) -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10.0)
                got = recv_exactly(conn, HEADER.size)
                got += recv_exactly(conn, len(request) - HEADER.size)
                conn.sendall(got if answer_with == "mirror" else response_for(got))

        for answer_with, expected in (("mirror", "self-connected"), ("answer", "echoed")):
            thread = threading.Thread(target=serve, args=(answer_with,))
            thread.start()
            try:
                assert _one_connection(port, request, 10.0) == expected
            finally:
                thread.join(10.0)


class _Table:
    """An ``AddressTable`` backing store for one process: a list with a lock."""

    def __init__(self, n: int) -> None:
        self._items = [0] * n
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock

    def __getitem__(self, i: int) -> int:
        return self._items[i]

    def __setitem__(self, i: int, value: int) -> None:
        self._items[i] = value


def test_a_new_listener_takes_no_connection_before_its_record_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client with a stale address may connect to a listener the moment its
    port is reused, before the fleet has recorded it.  The fleet makes the
    listener disabled and enables it once the record exists, so the callback
    always finds its record.  Here the window is held open: inside
    ``_create``, right after ``bind``, a client connects and the loop thread
    goes round twice; the old code ran the callback then and recorded a
    ``callback of unknown`` violation (the 10-minute run's one violation)."""
    base = EventBase()
    base.start_thread()
    delivered: list[int] = []
    got = threading.Event()

    def submit(sock: socket.socket, gen: int) -> None:
        sock.close()
        delivered.append(gen)
        got.set()

    def loop_round() -> None:
        done = threading.Event()
        base.call_soon_threadsafe(done.set)
        assert done.wait(WAIT)

    clients: list[socket.socket] = []

    class BindThenConnect:
        """Stands in for ``Listener`` in ``stress.fleet``: ``bind`` makes the
        real listener, then a client connects and the loop goes round twice,
        all before ``_create`` can record it.  (Patching a method of
        ``Listener`` itself would miss: the lock checker gives listeners a
        checked subclass of their own.)"""

        @staticmethod
        def bind(**kwargs: Any) -> Listener:
            listener = Listener.bind(**kwargs)
            address = listener.socket.getsockname()
            clients.append(socket.create_connection(address, timeout=WAIT))
            loop_round()  # the readiness is reported in the round after the connect
            loop_round()
            return listener

    monkeypatch.setattr(stress.fleet, "Listener", BindThenConnect)
    violations = Violations()
    fleet = Fleet(base, 1, AddressTable(_Table(2)), submit, Stats(), violations)
    try:
        fleet.populate()
        assert got.wait(WAIT)
        assert delivered == [fleet.current(0).gen]
        assert violations.total == 0, violations
    finally:
        base.stop(WAIT)
        monkeypatch.undo()
        fleet.free_all()
        base.close()
        for client in clients:
            client.close()
