"""The deadlock watchdog: if an API call stays in flight, the loop thread stops
answering, or a phase of the run's ending overruns its deadline, it dumps every
thread's stack with ``faulthandler`` and ends the process with ``EXIT_DEADLOCK``.

It must not take any lock the stuck threads might hold: it reads the API
threads' in-flight table without locking, posts probes to the loop with
``call_soon_threadsafe`` (the base lock, held only for bookkeeping), and
writes the partial report through a callback that reads only counters.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable

from stress.api import InFlight
from threadlisten import EventBase, EventBaseClosedError

__all__ = ["CHECK_INTERVAL", "EXIT_DEADLOCK", "Watchdog"]

#: The exit code of a run the watchdog ended.
EXIT_DEADLOCK = 3

#: Seconds between checks; also how often a probe is posted to the loop thread.
CHECK_INTERVAL = 1.0


class Watchdog:
    """Watches a run for deadlocks.

    Args:
        base: the base whose loop thread must keep answering probes.
        in_flight: the API threads' calls in flight.
        timeout: seconds after which a call, a probe or a phase counts as stuck.
        on_deadlock: called with a description just before the process exits
            (to write a partial report); its exceptions are ignored.

    Thread-safety: ``start``/``stop``/``phase`` from the thread that owns the run.
    """

    def __init__(
        self,
        base: EventBase,
        in_flight: InFlight,
        timeout: float,
        on_deadlock: Callable[[str], None],
    ) -> None:
        self.base = base
        self.in_flight = in_flight
        self.timeout = timeout
        self.on_deadlock = on_deadlock
        self.max_probe_delay = 0.0
        self._stop = threading.Event()
        self._probe_sent: float | None = None
        self._phase: tuple[str, float] | None = None
        self._thread = threading.Thread(target=self._main, name="stress-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the base is closed) and join the thread."""
        self._stop.set()
        self._thread.join(CHECK_INTERVAL * 10)

    def phase(self, label: str | None, timeout: float | None = None) -> None:
        """Start a phase that must end within *timeout* seconds (None: end the phase)."""
        if label is None:
            self._phase = None
        else:
            limit = self.timeout if timeout is None else timeout
            self._phase = (label, time.monotonic() + limit)

    def _probe(self, sent: float) -> None:
        # On the loop thread.
        self.max_probe_delay = max(self.max_probe_delay, time.monotonic() - sent)
        if self._probe_sent == sent:
            self._probe_sent = None

    def _main(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL):
            now = time.monotonic()
            for index, op, started in self.in_flight.snapshot():
                if now - started > self.timeout:
                    self._fire(f"API thread {index}: {op}() in flight for {now - started:.1f} s")
            sent = self._probe_sent
            if sent is not None and now - sent > self.timeout:
                self._fire(f"the loop thread has not run a probe for {now - sent:.1f} s")
            if sent is None:
                self._probe_sent = now
                try:
                    self.base.call_soon_threadsafe(self._probe, now)
                except EventBaseClosedError:
                    self._probe_sent = None
            phase = self._phase
            if phase is not None and now > phase[1]:
                self._fire(f"the run's ending is stuck in phase {phase[0]!r}")

    def _fire(self, why: str) -> None:
        sys.stderr.write(f"\nstress: DEADLOCK: {why}; every thread's stack follows\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        try:
            self.on_deadlock(why)
        except Exception as exc:  # the dump above is what matters
            sys.stderr.write(f"stress: could not write the partial report: {exc!r}\n")
        sys.stderr.flush()
        os._exit(EXIT_DEADLOCK)
