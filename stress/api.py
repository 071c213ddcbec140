"""The API threads: each one calls ``enable``, ``disable``, ``set_cb``,
``set_error_cb``, reads properties, and now and then frees a listener and
makes its replacement, on randomly chosen shared listeners, as fast as it can.

Every call is timed (the report gives the longest wait and which call it
was) and announced to the watchdog while in flight.  ``ListenerFreedError``
is the one exception a call may raise: another thread (or the listener's own
callback) freed it in the meantime; the thread then replaces it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from stress.fleet import HANDLER_KINDS, Fleet, ListenerRecord
from stress.invariants import Violations
from stress.stats import MaxTracker, Stats, Tally
from threadlisten import ListenerFreedError

__all__ = ["OPERATION_WEIGHTS", "ApiThreads", "InFlight"]

#: The operations and their weights (free is drawn separately, with
#: ``StressConfig.free_probability``).  enable outweighs disable so that a
#: listener is enabled most of the time and queued connections move on;
#: set_cb(None), a "disable" in disguise, is part of set_cb's draw.
OPERATION_WEIGHTS: dict[str, int] = {
    "enable": 30,
    "disable": 20,
    "set_cb": 25,
    "set_error_cb": 15,
    "read": 10,
}

#: Chance that a set_cb installs None (the listener then acts as disabled).
SET_CB_NONE_PROBABILITY = 0.05


class InFlight:
    """What each API thread is calling right now, for the watchdog.

    Slot *i* belongs to API thread *i*: it alone writes it.
    """

    def __init__(self, n: int) -> None:
        self.calls: list[tuple[str, float] | None] = [None] * n

    def snapshot(self) -> list[tuple[int, str, float]]:
        """Return ``(thread index, operation, start time)`` of every call in flight."""
        return [(i, c[0], c[1]) for i, c in enumerate(list(self.calls)) if c is not None]


class ApiThreads:
    """*n* API threads over a ``Fleet``.

    Args:
        fleet: the shared listeners.
        n: how many threads.
        seed: each thread draws from ``random.Random(seed * 1000 + index)``.
        free_probability: chance that an operation is a free-and-replace.
        stats, violations, max_wait: where results go.

    Thread-safety: ``start``/``stop`` from the thread that owns the run.
    """

    def __init__(
        self,
        fleet: Fleet,
        n: int,
        seed: int,
        free_probability: float,
        stats: Stats,
        violations: Violations,
        max_wait: MaxTracker,
    ) -> None:
        self.fleet = fleet
        self.seed = seed
        self.free_probability = free_probability
        self.stats = stats
        self.violations = violations
        self.max_wait = max_wait
        self.in_flight = InFlight(n)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._main, args=(i,), name=f"stress-api-{i}", daemon=True)
            for i in range(n)
        ]

    def start(self) -> None:
        """Start the threads."""
        for t in self._threads:
            t.start()

    def stop(self, timeout: float) -> list[str]:
        """Stop the threads and join each for at most *timeout* seconds in all.

        Returns the names of threads still alive (empty when all ended).
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    # ------------------------------------------------------------ the thread

    def _main(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        tally = self.stats.tally(f"api-{index}")
        fleet = self.fleet
        ops = list(OPERATION_WEIGHTS)
        weights = list(OPERATION_WEIGHTS.values())
        kinds = list(HANDLER_KINDS)
        kind_weights = list(HANDLER_KINDS.values())
        record_wait = self.max_wait.offer
        in_flight = self.in_flight.calls
        stop = self._stop
        while not stop.is_set():
            record = fleet.current(rng.randrange(fleet.slots))
            free = rng.random() < self.free_probability
            op = "free" if free else rng.choices(ops, weights)[0]
            call = self._make_call(op, record, rng, kinds, kind_weights)
            start = time.monotonic()
            in_flight[index] = (op, start)
            try:
                call()
            except ListenerFreedError:
                tally.add("op.raced_free")
                self._replace(index, record, tally)
            except Exception as exc:  # anything else breaks the documented contract
                self.violations.record("api-exceptions", f"{op}: {exc!r}")
            else:
                if op == "free":
                    tally.add("listener.freed_by_api")
            finally:
                in_flight[index] = None
            record_wait(time.monotonic() - start, op)
            tally.add("op." + op)
            if op == "free":
                if record.free_returned is not None and not record.freed_in_callback:
                    fleet.check_destroyed(record, "API free")
                self._replace(index, record, tally)

    def _make_call(
        self,
        op: str,
        record: ListenerRecord,
        rng: random.Random,
        kinds: list[str],
        kind_weights: list[int],
    ) -> Callable[[], object]:
        listener = record.listener
        if op == "enable":
            return listener.enable
        if op == "disable":
            return listener.disable
        if op == "set_cb":
            if rng.random() < SET_CB_NONE_PROBABILITY:
                return lambda: listener.set_cb(None)
            handler = self.fleet.handlers[rng.choices(kinds, kind_weights)[0]]
            return lambda: listener.set_cb(handler, handler.arg)
        if op == "set_error_cb":
            errorcb = self.fleet.error_handler if rng.random() < 0.5 else None
            return lambda: listener.set_error_cb(errorcb)
        if op == "read":
            return lambda: self._read(record)
        if op == "free":
            return lambda: self._free(record)
        raise AssertionError(op)

    def _read(self, record: ListenerRecord) -> None:
        listener = record.listener
        refcount = listener.refcount  # never raises
        # Outside a batch (we do not hold the lock, the loop thread does
        # during a batch) a live listener's refcount is exactly 1; 0 only
        # once it has been freed.
        self.violations.check(
            "refcount",
            refcount == 1 or (refcount == 0 and record.free_started is not None),
            f"refcount {refcount} read from an API thread (listener {record.gen})",
        )
        listener.enabled  # noqa: B018 -- a property read is the operation
        listener.fd  # noqa: B018

    def _free(self, record: ListenerRecord) -> None:
        record.mark_free_started()
        record.listener.free()
        record.free_returned = time.monotonic()

    def _replace(self, index: int, record: ListenerRecord, tally: Tally) -> None:
        # Making the replacement is an API call too (Listener.bind): timed and watched.
        start = time.monotonic()
        self.in_flight.calls[index] = ("create", start)
        try:
            made = self.fleet.replace(record)
        except Exception as exc:
            self.violations.record("api-exceptions", f"create: {exc!r}")
            return
        finally:
            self.in_flight.calls[index] = None
        if made:
            self.max_wait.offer(time.monotonic() - start, "create")
            tally.add("op.create")
