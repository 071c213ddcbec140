"""What must hold at the end of a stress run, and the collector of violations.

Each invariant has a short name (used in the report and the JSON) and a
sentence saying what it means; ``docs/stress.md`` explains why each one
matters.  Checks made during the run (inside callbacks, in the API threads,
in the clients) and checks made at the end record into one ``Violations``.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["INVARIANTS", "MAX_DETAILS", "Violations"]

#: name -> what it means.  Every one must have 0 violations for exit code 0.
INVARIANTS: dict[str, str] = {
    "client-outcomes": "every connection a client attempted ended in exactly one of: "
    "answered and verified, refused by the kernel, reset (dropped from an accept queue, or "
    "closed unanswered by another run on a reused port), self-connected on a stale port; "
    "none timed out, got a wrong answer, or saw the server close badly",
    "accepted-delivered": "every connection accept() returned was handed to exactly one "
    "accept callback (accepted == delivered; the listener closed none itself)",
    "delivered-echoed": "every delivered connection reached a worker that read a well-formed "
    "request with a valid CRC and answered it, or closed it as another run's (delivered == "
    "answered + foreign, no worker failure)",
    "echo-reconciles": "the connection ids the workers echoed are exactly the ids the "
    "clients verified: no connection lost, none duplicated, none crossed",
    "refused-after-free": "a connection was refused (or self-connected) only when the "
    "listener it targeted had started free() before, so its port was closed",
    "reset-after-free": "a connection was reset (dropped from an accept queue) only when the "
    "listener it targeted had started free() before, and no reset connection was delivered",
    "no-callback-after-free": "no accept or error callback started after free() had returned "
    "in another thread",
    "callback-context": "every callback ran on the loop thread, with its listener's lock "
    "held, refcount 2 (1 after its own free()), and the (cb, arg) pair set together "
    "(never torn)",
    "refcount": "seen from another thread a live listener's refcount is 1; after free() "
    "returns there it is 0 and the socket is closed; the peak is 2; each listener was "
    "destroyed exactly once",
    "no-accept-errors": "the error callback never ran (nothing here makes accept() fail but "
    "per-connection errors, which are skipped)",
    "api-exceptions": "API calls raised nothing but ListenerFreedError after a racing free()",
    "no-error-logs": "nothing was logged at ERROR on the 'threadlisten' logger",
    "descriptors": "the process has the same open descriptors after the run as before",
    "threads": "the process has the same threads after the run as before",
    "lock-debug": "threadlisten.debug recorded no lock error (only with --lock-debug)",
    "deadlock": "no API call waited longer than the deadlock timeout and the loop thread "
    "answered every probe in time",
}

#: How many examples of each violation the report keeps.
MAX_DETAILS = 20


class Violations:
    """Violations by invariant name, with a few examples each.  Any thread may call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(INVARIANTS, 0)
        self._details: dict[str, list[str]] = {name: [] for name in INVARIANTS}

    def record(self, name: str, detail: str, count: int = 1) -> None:
        """Record *count* violations of invariant *name*, described by *detail*.

        Raises:
            KeyError: *name* is not in ``INVARIANTS``.
        """
        if name not in INVARIANTS:
            raise KeyError(name)
        with self._lock:
            self._counts[name] += count
            details = self._details[name]
            if len(details) < MAX_DETAILS:
                details.append(detail)

    def check(self, name: str, ok: bool, detail: str) -> None:
        """Record one violation of *name* when *ok* is false."""
        if not ok:
            self.record(name, detail)

    @property
    def total(self) -> int:
        """The number of violations recorded so far."""
        with self._lock:
            return sum(self._counts.values())

    def as_list(self) -> list[dict[str, Any]]:
        """Return one dict per invariant: name, description, held, violations, details."""
        with self._lock:
            return [
                {
                    "name": name,
                    "description": description,
                    "held": self._counts[name] == 0,
                    "violations": self._counts[name],
                    "details": list(self._details[name]),
                }
                for name, description in INVARIANTS.items()
            ]
