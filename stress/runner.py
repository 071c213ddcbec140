"""One stress run, from start-up to the report.

Order of events, and why:

1. Shared memory for the clients (address table, live counters, stop flag)
   is made first, then descriptors and threads are counted: what the run
   itself leaves behind is measured, not the harness's fixed plumbing.
2. On a GIL build the switch interval is lowered (restored at the end).
3. A base with a counting runtime (wrapped by the lock checker with
   ``--lock-debug``), its loop thread, the worker pool, the listeners, the
   clients, the API threads and the watchdog start, in that order.
4. The run goes until every target is met or the time limit passes.
5. The ending has a fixed order so that every connection is served: API
   threads stop; every listener gets the plain echo callback and is enabled
   (queued connections move on); clients finish their connection in flight
   and stop; the workers drain; listeners are freed; the loop thread stops.
   Each step is a watchdog phase with a deadline.
6. The accounting is reconciled and the invariants are checked.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import resource
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from stress.api import ApiThreads
from stress.clients import LIVE_FIELDS, ClientResult, Clients
from stress.config import DRAIN_TIMEOUT, StressConfig
from stress.display import Display, Sample
from stress.fleet import AddressTable, CountingRuntime, Fleet
from stress.invariants import Violations
from stress.protocol import new_run_nonce
from stress.report import REPORT_VERSION, format_summary, write_json
from stress.stats import MaxTracker, Stats
from stress.watchdog import Watchdog
from stress.workers import WorkerPool
from threadlisten import EventBase
from threadlisten._runtime import Runtime, set_default_runtime
from threadlisten.demo import open_fds

__all__ = ["EXIT_OK", "EXIT_TARGETS_MISSED", "EXIT_VIOLATIONS", "run"]

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_TARGETS_MISSED = 4  # every invariant held, but the run stopped at its time limit

#: Seconds between display samples (and target checks).
SAMPLE_INTERVAL = 0.5

#: Errors kept from the "threadlisten" logger.
MAX_LOG_RECORDS = 20

_OP_KINDS = ("enable", "disable", "set_cb", "set_error_cb", "read", "free", "create")


def gil_enabled() -> bool:
    """Return whether the GIL is on right now (always True before 3.13)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def free_threaded_build() -> bool:
    """Return whether this interpreter was built with ``--disable-gil``."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def fd_count() -> int:
    """Return how many descriptors are open (cheap enough for the display)."""
    path = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    return len(os.listdir(path)) - 1


class _ErrorLog(logging.Handler):
    """Collects ERROR records of the 'threadlisten' logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.messages) < MAX_LOG_RECORDS:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.messages.append(text)


@contextmanager
def _switch_interval(interval: float | None) -> Iterator[float]:
    """Lower the switch interval on GIL builds for the duration; yield the one in force."""
    old = sys.getswitchinterval()
    if interval is None or not gil_enabled():
        yield old
        return
    sys.setswitchinterval(interval)
    try:
        yield interval
    finally:
        sys.setswitchinterval(old)


@contextmanager
def _runtime(lock_debug: bool) -> Iterator[tuple[Runtime, CountingRuntime]]:
    """Yield (the runtime for the base, the counting runtime inside it)."""
    counting = CountingRuntime()
    if not lock_debug:
        yield counting, counting
        return
    import threadlisten.debug as tldebug

    previous = set_default_runtime(counting)
    try:
        checked = tldebug.enable_lock_debugging()
        try:
            yield checked, counting
        finally:
            tldebug.disable_lock_debugging()
    finally:
        set_default_runtime(previous)


class _Run:
    """The state of one run (see the module docstring for the order of events)."""

    def __init__(self, cfg: StressConfig, stream: TextIO) -> None:
        self.cfg = cfg
        self.stream = stream
        self.stats = Stats()
        self.violations = Violations()
        self.max_wait = MaxTracker()
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.switch_interval = sys.getswitchinterval()
        self.counting: CountingRuntime | None = None
        self.fleet: Fleet | None = None
        self.clients: Clients | None = None
        self.loadavg_start = os.getloadavg()
        self.targets_met_at_end = False
        self.run = new_run_nonce()
        self.source = source_info()  # read at the start: the tree that was imported
        self.max_probe_delay = 0.0

    # --------------------------------------------------------------- numbers

    def ops(self, snapshot: Counter[str]) -> dict[str, int]:
        by_kind = {k: snapshot.get("op." + k, 0) for k in _OP_KINDS}
        by_kind["total"] = sum(by_kind.values())
        return by_kind

    def sample(self) -> Sample:
        snap = self.stats.snapshot()
        assert self.clients is not None and self.fleet is not None and self.counting is not None
        return Sample(
            elapsed=time.monotonic() - self.started,
            ops=self.ops(snap),
            connections=self.clients.live_counts(),
            accepted=self.counting.accepted,
            descriptors=fd_count(),
            listeners=self.fleet.live_count(),
            listeners_created=self.fleet.created,
            violations=self.violations.total,
        )

    def targets_met(self, s: Sample) -> bool:
        cfg = self.cfg
        checks = []
        if cfg.duration is not None:
            checks.append(s.elapsed >= cfg.duration)
        if cfg.operations is not None:
            checks.append(s.ops["total"] >= cfg.operations)
        if cfg.connections is not None:
            checks.append(s.connections["attempted"] >= cfg.connections)
        return all(checks) if checks else s.elapsed >= 30.0

    def partial_report(self, why: str) -> None:
        """Write what is known when the watchdog fires (no listener lock is taken)."""
        if self.cfg.json_path is None:
            return
        snap = self.stats.snapshot()
        report = {
            "version": REPORT_VERSION,
            "ok": False,
            "exit_code": 3,
            "deadlock": why,
            "elapsed_s": time.monotonic() - self.started,
            "config": self.cfg.as_dict(),
            "command": command_line(),
            "python": self.python_info(),
            "counters": dict(snap),
            "connections_live": self.clients.live_counts() if self.clients else {},
            "violations": self.violations.total + 1,
            "invariants": self.violations.as_list(),
        }
        write_json(report, self.cfg.json_path)

    def python_info(self) -> dict[str, Any]:
        return {
            "version": sys.version.split()[0],
            "full_version": sys.version,
            "implementation": sys.implementation.name,
            "free_threaded": free_threaded_build(),
            "gil_enabled": gil_enabled(),
            "switch_interval": self.switch_interval,
            "cpu_count": os.cpu_count(),
            "platform": sys.platform,
        }


def run(cfg: StressConfig, stream: TextIO | None = None) -> tuple[int, dict[str, Any]]:
    """Run the stress test described by *cfg*; return ``(exit code, report)``.

    The report is also printed on *stream* (stdout by default) and, with
    ``cfg.json_path``, written as JSON.  A deadlock never returns: the
    watchdog dumps every stack and exits the process with code 3.

    Raises:
        ValueError: a bad configuration (non-positive counts).
        RuntimeError: ``--lock-debug`` asked for but ``threadlisten.debug`` is missing.

    Thread-safety: call from the main thread, one run per process at a time.
    """
    out = sys.stdout if stream is None else stream
    _validate(cfg)
    state = _Run(cfg, out)
    ctx = multiprocessing.get_context("spawn")
    table_array = ctx.Array("q", 2 * cfg.listeners)
    live = ctx.RawArray("q", cfg.client_threads * len(LIVE_FIELDS))
    client_stop = ctx.Event()
    client_results = ctx.Queue()

    errlog = _ErrorLog()
    tl_logger = logging.getLogger("threadlisten")
    tl_logger.addHandler(errlog)
    gc.collect()
    fds_before = open_fds()
    threads_before = set(threading.enumerate())
    display = Display(cfg.live, cfg.progress_interval, out)
    client_result = ClientResult()
    interrupted = False
    try:
        with (
            _runtime(cfg.lock_debug) as (rt, counting),
            _switch_interval(cfg.switch_interval) as interval,
        ):
            state.switch_interval = interval
            state.counting = counting
            base = EventBase(runtime=rt)
            base.start_thread("stress-loop")
            workers = WorkerPool(
                state.run, cfg.workers, cfg.client_timeout, state.stats, state.violations
            )
            workers.start()
            fleet = Fleet(
                base,
                cfg.listeners,
                AddressTable(table_array),
                workers.submit,
                state.stats,
                state.violations,
            )
            state.fleet = fleet
            fleet.populate()
            clients = Clients(
                ctx,
                table_array,
                cfg.listeners,
                cfg.client_threads,
                cfg.client_processes,
                cfg.seed,
                state.run,
                cfg.client_timeout,
                live,
                client_stop,
                client_results,
            )
            state.clients = clients
            api = ApiThreads(
                fleet,
                cfg.api_threads,
                cfg.seed,
                cfg.free_probability,
                state.stats,
                state.violations,
                state.max_wait,
            )
            watchdog = Watchdog(base, api.in_flight, cfg.deadlock_timeout, state.partial_report)
            state.started = time.monotonic()
            clients.start()
            api.start()
            watchdog.start()
            display.start()
            try:
                limit = cfg.effective_time_limit()
                tick = threading.Event()
                while True:
                    sample = state.sample()
                    display.update(sample)
                    if state.targets_met(sample) or sample.elapsed >= limit:
                        break
                    tick.wait(SAMPLE_INTERVAL)  # a display period, not a synchronisation
            except KeyboardInterrupt:
                interrupted = True
            state.elapsed = time.monotonic() - state.started
            final_sample = state.sample()
            state.targets_met_at_end = state.targets_met(final_sample) and not interrupted

            # The ending (see the module docstring).
            watchdog.phase("stopping the API threads")
            stuck = api.stop(cfg.deadlock_timeout)
            state.violations.check("deadlock", not stuck, f"API threads did not stop: {stuck}")
            watchdog.phase("enabling every listener with the echo callback")
            fleet.quiesce()
            watchdog.phase("stopping the clients", 3 * cfg.client_timeout + 60)
            client_result, stuck = clients.stop()
            state.violations.check("deadlock", not stuck, f"clients did not stop: {stuck}")
            watchdog.phase("draining the workers", DRAIN_TIMEOUT + 10)
            stuck = workers.close(DRAIN_TIMEOUT)
            state.violations.check("deadlock", not stuck, f"workers did not stop: {stuck}")
            watchdog.phase("freeing the listeners")
            fleet.free_all()
            watchdog.phase("stopping the loop thread")
            base.stop(cfg.deadlock_timeout)
            watchdog.phase(None)
            watchdog.stop()
            state.max_probe_delay = watchdog.max_probe_delay
            base.close()
            display.stop()
            if cfg.lock_debug:
                import threadlisten.debug as tldebug

                for err in tldebug.errors():
                    state.violations.record("lock-debug", repr(err))
    finally:
        tl_logger.removeHandler(errlog)

    report = _reconcile(state, client_result, workers, fleet, counting, errlog)
    gc.collect()
    fds_after = open_fds()
    threads_after = set(threading.enumerate())
    v = state.violations
    v.check(
        "descriptors",
        fds_after == fds_before,
        f"leaked {sorted(fds_after - fds_before)}, lost {sorted(fds_before - fds_after)}",
    )
    new_threads = sorted(t.name for t in threads_after - threads_before)
    v.check("threads", threads_after == threads_before, f"threads left behind: {new_threads}")
    report["descriptors"] = {
        "before": len(fds_before),
        "after": len(fds_after),
        "leaked": sorted(fds_after - fds_before),
    }
    report["threads"] = {
        "before": len(threads_before),
        "after": len(threads_after),
        "left_behind": new_threads,
    }
    report["interrupted"] = interrupted
    report["targets_met"] = state.targets_met_at_end
    report["violations"] = v.total
    report["invariants"] = v.as_list()
    if v.total:
        code = EXIT_VIOLATIONS
    elif not report["targets_met"]:
        code = EXIT_TARGETS_MISSED
    else:
        code = EXIT_OK
    report["ok"] = code == EXIT_OK
    report["exit_code"] = code
    out.write(format_summary(report) + "\n")
    if cfg.json_path is not None:
        write_json(report, cfg.json_path)
        out.write(f"report written to {cfg.json_path}\n")
    out.flush()
    return code, report


def command_line() -> list[str]:
    """Return the command that started this run as a user would type it.

    ``python -m stress`` puts the absolute path of ``stress/__main__.py`` in
    ``sys.argv[0]``, which named this machine's checkout (a /tmp clone, a
    home directory) in every committed report; it is written as ``-m stress``.
    """
    first = sys.argv[0] if sys.argv else ""
    if Path(first).name == "__main__.py" and Path(first).parent.name == "stress":
        return ["python", "-m", "stress", *sys.argv[1:]]
    return list(sys.argv)


def source_info() -> dict[str, Any]:
    """Return the git commit of the tree that ran, and whether tracked files of
    ``threadlisten/`` had local changes (untracked files are not counted).

    ``None`` values when git or the repository is not there.
    """
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", "threadlisten")
    return {
        "commit": git("rev-parse", "HEAD"),
        "threadlisten_modified": None if status is None else bool(status),
    }


def _validate(cfg: StressConfig) -> None:
    for name in ("api_threads", "client_threads", "listeners", "workers"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if cfg.client_processes < 0 or cfg.client_processes > cfg.client_threads:
        raise ValueError("client_processes must be between 0 and client_threads")
    if not 0.0 <= cfg.free_probability <= 1.0:
        raise ValueError("free_probability must be within [0, 1]")
    if cfg.lock_debug:
        try:
            import threadlisten.debug  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("--lock-debug needs threadlisten.debug") from exc


def _reconcile(
    state: _Run,
    clients: ClientResult,
    workers: WorkerPool,
    fleet: Fleet,
    counting: CountingRuntime,
    errlog: _ErrorLog,
) -> dict[str, Any]:
    """Check the end-of-run invariants and return the report without leak data."""
    v = state.violations
    snap = state.stats.snapshot()
    assert state.clients is not None
    live = state.clients.live_counts()
    attempted = live["attempted"]
    verified = len(clients.verified)
    refused = len(clients.refused)
    reset = len(clients.reset)
    self_connected = len(clients.self_connected)
    v.check(
        "client-outcomes",
        attempted == verified + refused + reset + self_connected + clients.failed,
        f"attempted {attempted} != verified {verified} + refused {refused} + reset {reset}"
        f" + self-connected {self_connected} + failed {clients.failed}",
    )
    if clients.failed:
        v.record("client-outcomes", f"{clients.failed} connections failed", 0)
        for problem in clients.problems:
            v.record("client-outcomes", problem)
        extra = clients.failed - len(clients.problems)
        if extra > 0:
            v.record("client-outcomes", f"... and {extra} more failures", extra)

    accepted = counting.accepted
    delivered = snap.get("cb.accept", 0)
    v.check(
        "accepted-delivered",
        accepted == delivered,
        f"accepted {accepted} != delivered {delivered}",
    )
    echoed = snap.get("worker.echoed", 0)
    foreign = snap.get("worker.foreign", 0)
    failed_workers = snap.get("worker.failed", 0)
    v.check(
        "delivered-echoed",
        delivered == echoed + foreign + failed_workers and failed_workers == 0,
        f"delivered {delivered}, echoed by workers {echoed}, foreign {foreign},"
        f" worker failures {failed_workers}",
    )

    worker_ids = workers.echoed_ids()
    worker_set = set(worker_ids)
    client_set = set(clients.verified)
    dups = len(worker_ids) - len(worker_set)
    v.check("echo-reconciles", dups == 0, f"{dups} connection ids echoed twice")
    dups = verified - len(client_set)
    v.check("echo-reconciles", dups == 0, f"{dups} connection ids verified twice")
    lost = worker_set - client_set
    v.check("echo-reconciles", not lost, f"echoed, never verified: {sorted(lost)[:10]}")
    crossed = client_set - worker_set
    v.check("echo-reconciles", not crossed, f"verified, never echoed: {sorted(crossed)[:10]}")

    records = {r.gen: r for r in fleet.records()}
    bad = [
        (gen, when)
        for gen, when in clients.refused
        if gen not in records
        or records[gen].free_started is None
        or records[gen].free_started > when  # type: ignore[operator]
    ]
    if bad:
        v.record("refused-after-free", f"{len(bad)} refusals, e.g. listener {bad[0][0]}", len(bad))
    bad_self = [
        (gen, when)
        for gen, when in clients.self_connected
        if gen not in records
        or records[gen].free_started is None
        or records[gen].free_started > when  # type: ignore[operator]
    ]
    if bad_self:
        v.record(
            "refused-after-free",
            f"{len(bad_self)} self-connects to a live listener's port, e.g. listener"
            f" {bad_self[0][0]}",
            len(bad_self),
        )
    bad_reset = [
        (conn_id, gen)
        for conn_id, gen, when in clients.reset
        if gen not in records
        or records[gen].free_started is None
        or records[gen].free_started > when  # type: ignore[operator]
        or conn_id in worker_set
    ]
    if bad_reset:
        v.record(
            "reset-after-free",
            f"{len(bad_reset)} resets, e.g. connection {bad_reset[0][0]} of listener"
            f" {bad_reset[0][1]}",
            len(bad_reset),
        )

    for record in records.values():
        fleet.check_destroyed(record, "end of run")
    v.check(
        "refcount",
        counting.peak_refcount <= 2,
        f"peak refcount {counting.peak_refcount}",
    )
    v.check(
        "refcount",
        counting.destroyed == fleet.created,
        f"destroyed {counting.destroyed} times for {fleet.created} listeners",
    )
    for message in errlog.messages:
        v.record("no-error-logs", message)
    if errlog.count > len(errlog.messages):
        v.record("no-error-logs", "...", errlog.count - len(errlog.messages))

    ops = state.ops(snap)
    elapsed = state.elapsed or 1e-9
    usage = resource.getrusage(resource.RUSAGE_SELF)
    freed_in_cb = snap.get("listener.freed_in_callback", 0)
    return {
        "version": REPORT_VERSION,
        "command": command_line(),
        "config": state.cfg.as_dict(),
        "python": state.python_info(),
        "run_nonce": f"{state.run:016x}",
        "source": state.source,
        "deadlock": None,
        "elapsed_s": state.elapsed,
        "cpu_s": {"user": usage.ru_utime, "system": usage.ru_stime},
        "loadavg": {"start": state.loadavg_start, "end": os.getloadavg()},
        "operations": {
            "by_kind": {k: ops[k] for k in _OP_KINDS},
            "total": ops["total"],
            "raced_free": snap.get("op.raced_free", 0),
            "per_second": ops["total"] / elapsed,
        },
        "connections": {
            "attempted": attempted,
            "accepted": accepted,
            "delivered": delivered,
            "echoed_by_workers": echoed,
            "verified_by_clients": verified,
            "closed_by_listener": accepted - delivered,
            "refused_after_free": refused,
            "reset_after_free": reset,
            "self_connected_after_free": self_connected,
            "foreign_delivered": foreign,
            "failed": clients.failed,
            "per_second": attempted / elapsed,
            "client_mode": (
                f"{state.cfg.client_processes} processes"
                if state.cfg.client_processes
                else "threads"
            ),
        },
        "callbacks": {
            "accept": delivered,
            "error": snap.get("cb.error", 0),
        },
        "listeners": {
            "created": fleet.created,
            "freed_by_api": snap.get("listener.freed_by_api", 0),
            "freed_in_callback": freed_in_cb,
            "destroyed": counting.destroyed,
        },
        "max_api_wait_s": state.max_wait.value,
        "max_api_wait_op": state.max_wait.label,
        "max_loop_probe_delay_s": state.max_probe_delay,
        "peak_refcount": counting.peak_refcount,
        "error_logs": errlog.count,
    }
