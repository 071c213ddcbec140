"""The parameters of a stress run, with named and justified defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = [
    "CLIENT_IO_TIMEOUT",
    "DEADLOCK_TIMEOUT",
    "DEFAULT_SWITCH_INTERVAL",
    "DRAIN_TIMEOUT",
    "StressConfig",
]

#: ``sys.setswitchinterval`` on GIL builds during a run, in seconds.  CPython's
#: default (5 ms) lets a thread run thousands of bytecodes between switches, so
#: most interleavings never happen; 10 us forces a switch every few dozen
#: bytecodes (race-testing.md §7.a) while the run still makes progress.
DEFAULT_SWITCH_INTERVAL = 1e-5

#: Seconds a client waits for any one step (connect, send, the echo, the
#: server's close) before it records a timeout, which is a violation.  A
#: queued connection waits at most until its listener is enabled again, which
#: the API threads do many times a second, so 30 s means something is stuck.
CLIENT_IO_TIMEOUT = 30.0

#: Seconds an API call may stay in flight, or the loop thread may ignore a
#: probe, before the watchdog calls it a deadlock.  The longest legitimate
#: wait is one accept batch (milliseconds); a loaded 2-core machine with a
#: 10 us switch interval stretches that by orders of magnitude, not to 30 s.
DEADLOCK_TIMEOUT = 30.0

#: Seconds the end of a run (stopping clients, draining the workers) may take.
DRAIN_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class StressConfig:
    """What one ``python -m stress`` run does.

    The run ends once every target that was given is met: ``duration``
    (seconds), ``operations`` (API calls made) and ``connections`` (client
    connections attempted); ``time_limit`` (seconds) ends it regardless, and a
    run stopped by it has missed its targets.

    Attributes:
        duration: seconds to run for at least (None: no time target).
        operations: API operations to make at least (None: no target).
        connections: client connections to attempt at least (None: no target).
        time_limit: hard limit in seconds; None means ``max(2 * duration, 60)``
            or 3600 s without a duration.
        api_threads: threads calling enable/disable/set_cb/set_error_cb/free.
        client_threads: client threads in all (each has one connection in flight).
        client_processes: 0: client threads run in this process; N > 0: they
            are spread over N child processes (no GIL shared with the server).
        listeners: how many shared listeners exist at any moment.
        workers: threads in the echo worker pool.
        free_probability: chance that one API operation is a free-and-replace.
        seed: seeds every random choice (each thread derives its own stream).
        switch_interval: ``sys.setswitchinterval`` on GIL builds (None: leave it).
        lock_debug: switch on ``threadlisten.debug`` lock checking.
        json_path: where to write the JSON report (None: do not write one).
        live: "auto" (rich when stdout is a TTY), "rich" or "plain".
        progress_interval: seconds between plain progress lines.
        deadlock_timeout: see ``DEADLOCK_TIMEOUT``.
        client_timeout: see ``CLIENT_IO_TIMEOUT``.
    """

    duration: float | None = 30.0
    operations: int | None = None
    connections: int | None = None
    time_limit: float | None = None
    api_threads: int = 4
    client_threads: int = 8
    client_processes: int = 0
    listeners: int = 4
    workers: int = 4
    free_probability: float = 0.002
    seed: int = 0
    switch_interval: float | None = DEFAULT_SWITCH_INTERVAL
    lock_debug: bool = False
    json_path: Path | None = None
    live: str = "auto"
    progress_interval: float = 10.0
    deadlock_timeout: float = DEADLOCK_TIMEOUT
    client_timeout: float = CLIENT_IO_TIMEOUT

    def effective_time_limit(self) -> float:
        """Return the hard time limit in seconds (see ``time_limit``)."""
        if self.time_limit is not None:
            return self.time_limit
        if self.duration is not None:
            return max(2 * self.duration, 60.0)
        return 3600.0

    def as_dict(self) -> dict[str, object]:
        """Return the configuration as JSON-ready values."""
        out = dataclasses.asdict(self)
        out["json_path"] = None if self.json_path is None else str(self.json_path)
        out["effective_time_limit"] = self.effective_time_limit()
        return out
