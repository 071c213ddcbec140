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

import pytest
from _support import REPO_ROOT, child_env

# ``stress`` is a directory at the repository root, not an installed package:
# ``python -m pytest`` from the root finds it, a bare ``pytest`` may not.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from stress.clients import _one_connection
from stress.invariants import Violations
from stress.protocol import HEADER, make_request, recv_exactly, response_for
from stress.stats import Stats
from stress.workers import WorkerPool

#: Seconds the stress run lasts: long enough for hundreds of listener frees
#: and tens of thousands of connections on a 2-core machine.
DURATION = 25

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
