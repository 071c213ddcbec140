"""Measurements behind docs/explorer.md.

``python -m tests.explorer.bench schedules``
    For every must-have scenario: the exhaustive run (``DFSChooser``, bound 2):
    how many schedules, how long, schedules per second, the longest schedule;
    then Hypothesis and PCT throughput on the same scenarios.

``python -m tests.explorer.bench bugs``
    For every seeded bug: after how many schedules DFS finds it and with how
    many preemptions; how many Hypothesis runs find it, over 8 seeds
    (generation only); what ``Explorer.minimize`` makes of the first one.

``python -m tests.explorer.bench seam``
    What the runtime seam costs on the accept path with the default
    ``Runtime``: how many ``point()`` calls an accepted connection makes, what
    one no-op call costs, and what accepting one connection costs, both on
    the listener's accept path alone (``_on_readable`` over an in-memory
    listening socket, no system calls) and end to end (loopback TCP, a burst
    drained by one ``loop(nonblock=True)``).

Run from the repository root.  Each figure is the best of ``--repeat`` runs
(the machine this was written on is shared; the minimum is the least noisy).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import socket
import sys
import time
import timeit
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from threadlisten import LEV_OPT, EventBase, Listener
from threadlisten._accept_errors import AcceptErrorClass, classify
from threadlisten._runtime import Runtime
from threadlisten.event import EV_READ
from threadlisten.listener import logger
from threadlisten.testing import (
    DFSChooser,
    Explorer,
    HypothesisChooser,
    PCTChooser,
    Report,
    ScheduleFailure,
)
from threadlisten.testing.lincheck import Call, LinScenario, lincheck
from threadlisten.testing.strategies import lin_scenarios

from .scenarios import SCENARIOS

_T = TypeVar("_T")

# ------------------------------------------------------------- schedules


def _best(reports: list[Report]) -> Report:
    return min(reports, key=lambda r: r.seconds)


def _hypothesis_throughput(scenario: Any, examples: int) -> tuple[float, int]:
    """Seconds and runs for *examples* Hypothesis examples (generation only)."""
    runs = [0]

    @seed(1)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        runs[0] += 1
        Explorer(HypothesisChooser(data)).run(scenario)

    start = time.perf_counter()
    run()
    return time.perf_counter() - start, runs[0]


def bench_schedules(repeat: int, hypothesis_examples: int, pct_runs: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        dfs = _best([Explorer(DFSChooser(max_preemptions=2)).run(scenario) for _ in range(repeat)])
        pct = _best(
            [
                Explorer(PCTChooser(seed=1, depth=3, runs=pct_runs)).run(scenario)
                for _ in range(repeat)
            ]
        )
        hyp_seconds = [_hypothesis_throughput(scenario, hypothesis_examples) for _ in range(repeat)]
        hyp_time, hyp_runs = min(hyp_seconds)
        rows[name] = {
            "dfs_schedules": dfs.schedules,
            "dfs_complete": dfs.complete,
            "dfs_by_preemptions": dfs.by_preemptions,
            "dfs_seconds": round(dfs.seconds, 3),
            "dfs_per_second": round(dfs.schedules_per_second),
            "steps_max": dfs.steps_max,
            "pct_per_second": round(pct.schedules_per_second),
            "hypothesis_per_second": round(hyp_runs / hyp_time),
        }
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    lin = _best(
        [
            Explorer(DFSChooser(max_preemptions=1)).run(lincheck(LINCHECK_FIXED))
            for _ in range(repeat)
        ]
    )
    lin_hyp = min(_lincheck_throughput(hypothesis_examples) for _ in range(repeat))
    rows["lincheck (fixed scenario, bound 1)"] = {
        "dfs_schedules": lin.schedules,
        "dfs_complete": lin.complete,
        "dfs_by_preemptions": lin.by_preemptions,
        "dfs_seconds": round(lin.seconds, 3),
        "dfs_per_second": round(lin.schedules_per_second),
        "steps_max": lin.steps_max,
        "pct_per_second": None,
        "hypothesis_per_second": round(lin_hyp[1] / lin_hyp[0]),
    }
    return rows


#: The lincheck scenario of tests/explorer/test_lincheck.py's exhaustive test.
LINCHECK_FIXED = LinScenario(
    prefix=(Call("connect"),),
    parallel=((Call("set_cb", 2),), (Call("disable"), Call("enable"))),
    suffix=(Call("free"),),
    close_on_free=False,
)


def _lincheck_throughput(examples: int) -> tuple[float, int]:
    """Seconds and runs for *examples* lincheck examples (scenario and schedule drawn)."""
    runs = [0]

    @seed(1)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(lin_scenarios(), st.data())
    def run(scenario: LinScenario, data: st.DataObject) -> None:
        runs[0] += 1
        Explorer(HypothesisChooser(data)).run(lincheck(scenario))

    start = time.perf_counter()
    run()
    return time.perf_counter() - start, runs[0]


# ------------------------------------------------------------ seeded bugs


def _runs_to_find(case: Any, which: int, budget: int) -> tuple[int | None, ScheduleFailure | None]:
    """Hypothesis runs (seed *which*, generation only) until *case*'s bug fails a run."""
    runs = [0]

    @seed(which)
    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        runs[0] += 1
        Explorer(HypothesisChooser(data), listener_class=case.listener_class).run(case.scenario)

    try:
        run()
    except ScheduleFailure as failure:
        return runs[0], failure
    return None, None


def bench_bugs(seeds: int, budget: int) -> dict[str, Any]:
    """For each seeded bug: DFS discovery, Hypothesis runs-to-find over *seeds*
    seeds (generation only, no shrinking), and the minimized schedule."""
    from .test_seeded_bugs import CASES

    rows: dict[str, Any] = {}
    for case in CASES:
        explorer = Explorer(DFSChooser(max_preemptions=2), listener_class=case.listener_class)
        start = time.perf_counter()
        try:
            explorer.run(case.scenario)
            raise AssertionError(f"{case.id}: not found")
        except ScheduleFailure as failure:
            dfs = failure
        dfs_seconds = time.perf_counter() - start
        found: list[int | None] = []
        first: ScheduleFailure | None = None
        for s in range(seeds):
            runs, found_failure = _runs_to_find(case, s, budget)
            found.append(runs)
            first = first or found_failure
        minimal = (
            Explorer(DFSChooser(), listener_class=case.listener_class).minimize(
                case.scenario, first
            )
            if first is not None
            else None
        )
        rows[case.id] = {
            "kind": dfs.kind,
            "dfs_found_after": dfs.schedules_run,
            "dfs_seconds": round(dfs_seconds, 3),
            "dfs_preemptions": dfs.preemptions,
            "dfs_schedule": dfs.schedule,
            "hypothesis_runs_to_find": found,
            "hypothesis_first_preemptions": first.preemptions if first else None,
            "minimized_preemptions": minimal.preemptions if minimal else None,
            "minimized_schedule": minimal.schedule if minimal else None,
        }
        print(f"{case.id}: {rows[case.id]}", file=sys.stderr, flush=True)
    return rows


def print_bugs(rows: dict[str, Any]) -> None:
    print(
        "| seeded bug | failure | DFS: found after | preemptions | Hypothesis: runs to find "
        "(8 seeds) | minimized | pinned schedule |"
    )
    print("|---|---|---:|---:|---|---:|---|")
    for name, r in rows.items():
        runs = ", ".join("-" if n is None else str(n) for n in r["hypothesis_runs_to_find"])
        print(
            f"| {name} | {r['kind']} | {r['dfs_found_after']} schedules ({r['dfs_seconds']:.2f} s) "
            f"| {r['dfs_preemptions']} | {runs} | {r['minimized_preemptions']} "
            f"| `{r['dfs_schedule']}` |"
        )


def print_schedules(rows: dict[str, Any]) -> None:
    print(
        "| scenario | DFS schedules (≤2 preemptions) | by preemptions 0/1/2 | steps max "
        "| DFS s | DFS/s | PCT/s | Hypothesis/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        tiers = "/".join(str(r["dfs_by_preemptions"].get(p, 0)) for p in range(3))
        print(
            f"| `{name}` | {r['dfs_schedules']:,} | {tiers} | {r['steps_max']} "
            f"| {r['dfs_seconds']:.2f} | {r['dfs_per_second']} | {r['pct_per_second']} "
            f"| {r['hypothesis_per_second']} |"
        )


# ------------------------------------------------------------------ seam


class CountingRuntime(Runtime):
    """Counts ``point()`` calls by kind (for the number of points per connection)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def point(self, kind: str, **info: Any) -> None:
        self.counts[kind] += 1


class MemoryListenSocket(socket.socket):
    """A listening socket whose backlog is a deque of ready-made connections
    (a real descriptor for the core's checks; accept() never reaches the kernel)."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.backlog: deque[Any] = deque()

    def listen(self, backlog: int = 128, /) -> None:
        pass

    def setblocking(self, flag: bool, /) -> None:
        pass

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.backlog:
            raise BlockingIOError(11, "empty")
        return self.backlog.popleft(), ("127.0.0.1", 1)


class NullConnection:
    """An accepted connection that only takes ``setblocking``."""

    def setblocking(self, flag: bool) -> None:
        pass


def _noop_cb(listener: Listener, sock: Any, address: Any, arg: Any) -> None:
    pass


class GuardedListener(Listener):
    """For measurement only: ``Listener._accept_batch`` as proposed to the lead,
    skipping the three per-connection ``point()`` calls when the runtime's
    ``point`` is the production no-op (the rest of the accept path, per batch,
    is unchanged: 3 points per 64 connections)."""

    def _accept_batch(self) -> None:
        accept = self._sock.accept
        leave_blocking = bool(self._flags & LEV_OPT.LEAVE_SOCKETS_BLOCKING)
        runtime_point = type(self._base.runtime).point
        point = None if runtime_point is Runtime.point else self._point
        for _ in range(self._max_accepts):
            if not self._can_accept():
                return
            try:
                conn, address = accept()
            except OSError as err:
                kind = classify(err)
                if kind is AcceptErrorClass.DRAINED:
                    return
                if kind is AcceptErrorClass.PER_CONNECTION:
                    continue
                self._accept_failed(err, kind)
                return
            if point is not None:
                point("listener.accepted", listener=self)
            self._backoff_delay = None
            try:
                conn.setblocking(leave_blocking)
            except OSError:
                conn.close()
                continue
            cb, arg = self._cb, self._arg
            assert cb is not None
            if point is not None:
                point("listener.callback_enter", listener=self, which="accept")
            try:
                cb(self, conn, address, arg)
            except Exception:
                logger.exception("exception in accept callback %r", cb)
            if point is not None:
                point("listener.callback_exit", listener=self, which="accept")


class _GuardedRuntime(Runtime):
    """The default runtime, but building ``GuardedListener``s."""

    def listener_type(self, cls: type[_T]) -> type[_T]:
        return cast(type[_T], GuardedListener)


def points_per_connection(batch: int) -> dict[str, float]:
    """Run one batch of *batch* accepts through the accept path; return points per connection."""
    rt = CountingRuntime()
    base = EventBase(runtime=rt)
    lsock = MemoryListenSocket()
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    listener = Listener.from_socket(base, lsock, _noop_cb, flags=flags, max_accepts=batch)
    rt.counts.clear()
    lsock.backlog.extend(NullConnection() for _ in range(batch))
    listener._on_readable(None, EV_READ, None)
    counts = {kind: n / batch for kind, n in sorted(rt.counts.items())}
    listener.free()
    base.close()
    return counts


def accept_path_seconds(batch: int, rounds: int, runtime: Runtime | None = None) -> float:
    """Seconds per connection on the accept path alone (default runtime, in memory)."""
    base = EventBase(runtime=runtime)
    lsock = MemoryListenSocket()
    flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
    listener = Listener.from_socket(base, lsock, _noop_cb, flags=flags, max_accepts=batch)
    conns = [NullConnection() for _ in range(batch)]
    best = float("inf")
    for _ in range(rounds):
        lsock.backlog.extend(conns)
        start = time.perf_counter()
        listener._on_readable(None, EV_READ, None)
        best = min(best, (time.perf_counter() - start) / batch)
    listener.free()
    base.close()
    return best


def tcp_accept_seconds(batch: int, rounds: int, runtime: Runtime | None = None) -> float:
    """Seconds per connection end to end: a burst of loopback clients, one loop pass."""
    best = float("inf")
    with EventBase(runtime=runtime) as base:
        accepted: list[socket.socket] = []

        def cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            accepted.append(sock)

        flags = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
        with Listener.bind(
            base, ("127.0.0.1", 0), cb, flags=flags, backlog=batch * 2, max_accepts=batch
        ) as listener:
            address = listener.socket.getsockname()
            for _ in range(rounds):
                clients = [socket.create_connection(address) for _ in range(batch)]
                start = time.perf_counter()
                while len(accepted) < batch:
                    base.loop(nonblock=True)
                best = min(best, (time.perf_counter() - start) / batch)
                for sock in accepted + clients:
                    sock.close()
                accepted.clear()
    return best


def point_call_seconds() -> float:
    """Seconds per ``point("listener.accepted", listener=x)`` on the default runtime."""
    point = Runtime().point
    x = object()
    timer = timeit.Timer(lambda: point("listener.accepted", listener=x))
    empty = timeit.Timer(lambda: None)
    n = 200_000
    with_call = min(timer.repeat(repeat=7, number=n)) / n
    baseline = min(empty.repeat(repeat=7, number=n)) / n
    return with_call - baseline


def guard_seconds() -> float:
    """Seconds per ``if point is not None: point(...)`` when *point* is None:
    the cost of the seam if the core skipped the call for the default runtime."""
    point: Callable[..., None] | None = None
    x = object()

    def guarded() -> None:
        if point is not None:
            point("listener.accepted", listener=x)

    timer = timeit.Timer(guarded)
    empty = timeit.Timer(lambda: None)
    n = 200_000
    return (min(timer.repeat(repeat=7, number=n)) - min(empty.repeat(repeat=7, number=n))) / n


def bench_seam(batch: int, rounds: int) -> dict[str, Any]:
    gc.collect()
    counts = points_per_connection(batch)
    per_conn_points = sum(counts.values())
    call = point_call_seconds()
    path = accept_path_seconds(batch, rounds)
    tcp = tcp_accept_seconds(batch, max(3, rounds // 20))
    seam = per_conn_points * call
    guarded = per_conn_points * guard_seconds()
    # A/B, interleaved so that drift hits both alike.
    guarded_rt = _GuardedRuntime()
    ab: dict[str, list[float]] = {"current": [], "guarded": []}
    tcp_ab: dict[str, list[float]] = {"current": [], "guarded": []}
    for _ in range(5):
        ab["current"].append(accept_path_seconds(batch, rounds // 5))
        ab["guarded"].append(accept_path_seconds(batch, rounds // 5, guarded_rt))
        tcp_ab["current"].append(tcp_accept_seconds(batch, max(3, rounds // 100)))
        tcp_ab["guarded"].append(tcp_accept_seconds(batch, max(3, rounds // 100), guarded_rt))
    path_cur, path_grd = min(ab["current"]), min(ab["guarded"])
    tcp_cur, tcp_grd = min(tcp_ab["current"]), min(tcp_ab["guarded"])
    return {
        "batch": batch,
        "points_per_connection": counts,
        "points_per_connection_total": round(per_conn_points, 3),
        "point_call_ns": round(call * 1e9, 1),
        "accept_path_us": round(path * 1e6, 3),
        "tcp_accept_us": round(tcp * 1e6, 2),
        "seam_ns_per_connection": round(seam * 1e9, 1),
        "seam_share_of_accept_path": round(seam / path, 4),
        "seam_share_of_tcp_accept": round(seam / tcp, 4),
        "guarded_ns_per_connection": round(guarded * 1e9, 1),
        "guarded_share_of_tcp_accept": round(guarded / tcp, 4),
        "ab_accept_path_us": {
            "current": round(path_cur * 1e6, 3),
            "guarded": round(path_grd * 1e6, 3),
        },
        "ab_tcp_accept_us": {
            "current": round(tcp_cur * 1e6, 3),
            "guarded": round(tcp_grd * 1e6, 3),
        },
    }


def print_seam(r: dict[str, Any]) -> None:
    kinds = ", ".join(f"{k} {v:g}" for k, v in r["points_per_connection"].items())
    print(
        f"batch of {r['batch']} connections; points per connection: {kinds} "
        f"(total {r['points_per_connection_total']:g})"
    )
    print(f"one no-op point() call: {r['point_call_ns']} ns")
    print(
        f"accept path alone (in memory): {r['accept_path_us']} us per connection; "
        f"seam {r['seam_ns_per_connection']} ns = {r['seam_share_of_accept_path']:.1%}"
    )
    print(
        f"end to end (loopback TCP): {r['tcp_accept_us']} us per connection; "
        f"seam = {r['seam_share_of_tcp_accept']:.2%}"
    )
    print(
        f"if the core skipped the call for the default runtime (a None check): "
        f"{r['guarded_ns_per_connection']} ns = {r['guarded_share_of_tcp_accept']:.2%}"
    )
    a, t = r["ab_accept_path_us"], r["ab_tcp_accept_us"]
    print(
        f"A/B, current vs guarded _accept_batch: in memory {a['current']} vs {a['guarded']} us "
        f"({1 - a['guarded'] / a['current']:.1%} less); loopback TCP {t['current']} vs "
        f"{t['guarded']} us ({1 - t['guarded'] / t['current']:.1%} less)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("schedules", help="schedules per second and exhaustive coverage")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hypothesis-examples", type=int, default=100)
    p.add_argument("--pct-runs", type=int, default=200)
    b = sub.add_parser("bugs", help="how the seeded bugs are found and shrunk")
    b.add_argument("--seeds", type=int, default=8)
    b.add_argument("--budget", type=int, default=3000)
    s = sub.add_parser("seam", help="cost of the runtime seam on the accept path")
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--rounds", type=int, default=2000)
    for each in (p, b, s):
        each.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result: dict[str, Any]
    if args.what == "schedules":
        result = bench_schedules(args.repeat, args.hypothesis_examples, args.pct_runs)
        print_schedules(result)
    elif args.what == "bugs":
        result = bench_bugs(args.seeds, args.budget)
        print_bugs(result)
    else:
        result = bench_seam(args.batch, args.rounds)
        print_seam(result)
    result = {"python": sys.version.split()[0], "results": result}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
