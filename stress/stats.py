"""Counters that many threads update without sharing a lock.

Each thread owns a ``Tally`` (a plain dict it alone writes) and the
``Stats`` registry sums them on demand.  A single shared counter would need a
lock on free-threaded builds and would serialise the very threads the run is
trying to interleave; a reader summing dicts that other threads write sees
each int either before or after an update, which is all a progress display
and a post-join total need (the final totals are read after every writer
has been joined).
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["MaxTracker", "Stats", "Tally"]


class Tally:
    """One thread's counters.  Only its owner thread may call ``add``."""

    __slots__ = ("counts", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        """Add *n* to counter *key* (owner thread only)."""
        counts = self.counts
        counts[key] = counts.get(key, 0) + n


class Stats:
    """The registry of every thread's ``Tally``.  Any thread may call any method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: list[Tally] = []
        self._extra: list[dict[str, int]] = []

    def tally(self, name: str) -> Tally:
        """Return a new ``Tally`` for the calling thread and register it."""
        t = Tally(name)
        with self._lock:
            self._tallies.append(t)
        return t

    def add_external(self, counts: dict[str, int]) -> None:
        """Register counts that were gathered elsewhere (client processes)."""
        with self._lock:
            self._extra.append(dict(counts))

    def snapshot(self) -> Counter[str]:
        """Return the sum of every tally as it is now."""
        total: Counter[str] = Counter()
        with self._lock:
            tallies = list(self._tallies)
            extra = list(self._extra)
        for t in tallies:
            total.update(dict(t.counts))
        for counts in extra:
            total.update(counts)
        return total


class MaxTracker:
    """The largest value seen, with a label for it.  Any thread may call ``offer``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0
        self.label = ""

    def offer(self, value: float, label: str) -> None:
        """Record *value* (labelled *label*) if it is the largest so far."""
        if value <= self.value:  # a racy pre-check: the common case takes no lock
            return
        with self._lock:
            if value > self.value:
                self.value = value
                self.label = label
