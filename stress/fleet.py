"""The shared listeners of a stress run, their callbacks and the checks made inside them.

A ``Fleet`` keeps ``n`` slots, each holding the current THREADSAFE listener
of that slot (a ``ListenerRecord``).  When a listener is freed, by an API
thread or by its own callback, the slot gets a new listener on a new port and
the address table the clients read is updated.  Records of freed listeners
are kept to the end of the run: the clients report which listener a refused
or reset connection targeted, and the report checks that it had started
``free()`` before.

The accept callbacks are ``Handler`` objects.  Each has its own ``arg`` and
checks that it receives that very object (``set_cb`` must never tear the
pair), that it runs on the loop thread with the listener lock held and the
refcount at 2, and that ``free()`` has not returned in another thread.  Then
it hands the socket to the worker pool and, depending on its kind, disables,
re-targets or frees its own listener.

``CountingRuntime`` counts, through the core's scheduling points, the
connections ``accept()`` returned (independently of the callbacks), the peak
refcount, and the listeners destroyed.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from stress.invariants import Violations
from stress.stats import Stats
from threadlisten import LEV_OPT, EventBase, Listener, ListenerFreedError
from threadlisten._runtime import Runtime

__all__ = [
    "HANDLER_KINDS",
    "CountingRuntime",
    "ErrorHandler",
    "Fleet",
    "Handler",
    "ListenerRecord",
]

FLAGS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE
LOOPBACK = "127.0.0.1"

#: The accept-callback kinds an API thread may install with ``set_cb``, with
#: their weights.  Mostly plain echo, so that most connections are served at
#: once; the re-entrant kinds exercise a callback calling its own listener
#: (libevent's recursive-lock contract); "free" is rare because each one
#: costs a listener and resets its queued connections.
HANDLER_KINDS: dict[str, int] = {
    "echo": 40,
    "echo-disable": 8,
    "echo-swap": 8,
    "echo-free": 1,
}


class CountingRuntime(Runtime):
    """The production runtime plus counters fed by the core's scheduling points.

    ``accepted`` is written only by the loop thread (the only thread that
    accepts); the rarer counters take a lock.  Any thread may read them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.accepted = 0
        self.peak_refcount = 0
        self.destroyed = 0

    def point(self, kind: str, **info: Any) -> None:
        """Count ``listener.accepted``, ``listener.refcount`` peaks and ``listener.destroy``."""
        if kind == "listener.accepted":
            self.accepted += 1
        elif kind == "listener.refcount":
            refcount = info["refcount"]
            if refcount > self.peak_refcount:
                with self._lock:
                    self.peak_refcount = max(self.peak_refcount, refcount)
        elif kind == "listener.destroy":
            with self._lock:
                self.destroyed += 1


@dataclasses.dataclass(eq=False)
class ListenerRecord:
    """One listener of the run and what happened to it.

    Times are ``time.monotonic()`` seconds, comparable across processes on Linux.
    """

    gen: int
    slot: int
    port: int
    listener: Listener
    sock: socket.socket
    free_started: float | None = None  # the earliest moment any thread called free()
    free_returned: float | None = None  # free() returned in an API thread (not a callback)
    freed_in_callback: bool = False

    def mark_free_started(self) -> None:
        """Note that a thread is about to call ``free()`` (the earliest call wins)."""
        now = time.monotonic()
        if self.free_started is None or now < self.free_started:
            self.free_started = now


class AddressTable:
    """Where the clients find each slot's current listener: ``(gen, port)`` per slot.

    Backed by anything indexable with a ``get_lock()`` (a ``multiprocessing``
    ``Array``), so client processes read the same table.
    """

    def __init__(self, array: Any) -> None:
        self._array = array

    def publish(self, slot: int, gen: int, port: int) -> None:
        """Make *slot* point at listener *gen* on *port* (any thread)."""
        with self._array.get_lock():
            self._array[2 * slot] = gen
            self._array[2 * slot + 1] = port

    def read(self, slot: int) -> tuple[int, int]:
        """Return ``(gen, port)`` of *slot*; port 0 until the first publish."""
        with self._array.get_lock():
            return int(self._array[2 * slot]), int(self._array[2 * slot + 1])


class Handler:
    """An accept callback of one kind, with its own ``arg`` to detect torn pairs.

    Runs on the loop thread with the listener lock held.
    """

    def __init__(self, fleet: Fleet, kind: str) -> None:
        self.fleet = fleet
        self.kind = kind
        self.arg = (kind, object())  # unique: set_cb must pass exactly this

    def __repr__(self) -> str:
        return f"<Handler {self.kind}>"

    def __call__(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        fleet = self.fleet
        tally = fleet.loop_tally
        tally.add("cb.accept")
        record = fleet.record_of(listener)
        check = fleet.violations.check
        # Hand the socket over first: whatever a check below finds, the
        # connection itself is served and accounted for.
        fleet.submit(sock, -1 if record is None else record.gen)
        check("callback-context", arg is self.arg, f"{self.kind}: torn (cb, arg) pair: {arg!r}")
        check("callback-context", fleet.base.in_loop_thread(), f"{self.kind}: not on loop thread")
        owned = getattr(listener._lock, "_is_owned", None)
        if owned is not None:
            check("callback-context", bool(owned()), f"{self.kind}: listener lock not held")
        refcount = listener.refcount
        check("callback-context", refcount == 2, f"{self.kind}: refcount {refcount} in callback")
        if record is None:
            fleet.violations.record("callback-context", f"callback of unknown {listener!r}")
            return
        returned = record.free_returned
        check(
            "no-callback-after-free",
            returned is None,
            f"accept callback of listener {record.gen} started after free() returned",
        )
        if self.kind == "echo-disable":
            listener.disable()
        elif self.kind == "echo-swap":
            other = fleet.handlers["echo"]
            listener.set_cb(other, other.arg)
        elif self.kind == "echo-free":
            record.mark_free_started()
            listener.free()
            record.freed_in_callback = True
            tally.add("listener.freed_in_callback")
            after = listener.refcount
            check("callback-context", after == 1, f"refcount {after} after free() in callback")


class ErrorHandler:
    """The error callback: nothing in a stress run should make ``accept()`` fail."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def __call__(self, listener: Listener, error: OSError, arg: Any) -> None:
        self.fleet.loop_tally.add("cb.error")
        self.fleet.violations.record("no-accept-errors", f"error callback: {error!r}")
        record = self.fleet.record_of(listener)
        if record is not None and record.free_returned is not None:
            self.fleet.violations.record(
                "no-callback-after-free",
                f"error callback of listener {record.gen} started after free() returned",
            )


class Fleet:
    """The slots of shared listeners.  Every method may be called from any thread.

    Args:
        base: the base whose loop thread accepts.
        slots: how many listeners exist at any moment.
        table: the clients' address table.
        submit: ``submit(sock, gen)`` hands an accepted socket to the workers.
        stats: where the loop thread's counters go.
        violations: where checks record.
    """

    def __init__(
        self,
        base: EventBase,
        slots: int,
        table: AddressTable,
        submit: Callable[[socket.socket, int], None],
        stats: Stats,
        violations: Violations,
    ) -> None:
        self.base = base
        self.table = table
        self.submit = submit
        self.violations = violations
        # Written only by the loop thread (the callbacks).
        self.loop_tally = stats.tally("loop")
        self.handlers = {kind: Handler(self, kind) for kind in HANDLER_KINDS}
        self.error_handler = ErrorHandler(self)
        self._lock = threading.Lock()  # guards the records and the generation counter
        self._next_gen = 1
        self._records: dict[Listener, ListenerRecord] = {}
        self._slot_locks = [threading.Lock() for _ in range(slots)]
        self._current: list[ListenerRecord | None] = [None] * slots
        self.created = 0

    # ---------------------------------------------------------------- lookup

    @property
    def slots(self) -> int:
        """How many slots there are."""
        return len(self._current)

    def current(self, slot: int) -> ListenerRecord:
        """Return the current listener record of *slot* (after ``populate``)."""
        record = self._current[slot]
        assert record is not None, "populate() first"
        return record

    def record_of(self, listener: Listener) -> ListenerRecord | None:
        """Return the record of *listener*, or None if it is not one of ours."""
        return self._records.get(listener)

    def records(self) -> list[ListenerRecord]:
        """Return every record made so far, freed or not."""
        with self._lock:
            return list(self._records.values())

    def live_count(self) -> int:
        """Return how many slots hold a listener that has not been freed."""
        return sum(1 for r in self._current if r is not None and r.free_started is None)

    # -------------------------------------------------------------- creation

    def populate(self) -> None:
        """Make the first listener of every slot."""
        for slot in range(self.slots):
            with self._slot_locks[slot]:
                self._current[slot] = self._create(slot)

    def _create(self, slot: int) -> ListenerRecord:
        # Slot lock held.  Lock order: slot lock -> the new listener's lock ->
        # base lock.  No callback takes a slot lock, so there is no cycle.
        #
        # Made DISABLED and enabled only once its record exists.  Why: a
        # client holding a stale address (a freed listener's port, of this
        # run or of another stress process on the machine) may connect the
        # moment the port is reused, before this slot is published; an
        # enabled listener then ran its callback before the record existed,
        # and the callback reported "callback of unknown listener" (once in
        # 156,000 listeners of a 10-minute run).
        handler = self.handlers["echo"]
        listener = Listener.bind(
            base=self.base,
            address=(LOOPBACK, 0),
            cb=handler,
            arg=handler.arg,
            flags=FLAGS | LEV_OPT.DISABLED,
        )
        try:
            listener.set_error_cb(self.error_handler)
            sock = listener.socket
            port = sock.getsockname()[1]
        except BaseException:
            listener.free()
            raise
        with self._lock:
            gen = self._next_gen
            self._next_gen += 1
            record = ListenerRecord(gen=gen, slot=slot, port=port, listener=listener, sock=sock)
            self._records[listener] = record
            self.created += 1
        try:
            listener.enable()
        except BaseException:
            with self._lock:
                del self._records[listener]
                self.created -= 1
            listener.free()
            raise
        self.table.publish(slot, gen, port)
        return record

    def replace(self, old: ListenerRecord) -> bool:
        """Give *old*'s slot a new listener if *old* is still its current one.

        Returns True if this call made the replacement.  *old* must have been freed.
        """
        slot = old.slot
        with self._slot_locks[slot]:
            if self._current[slot] is not old:
                return False
            self._current[slot] = self._create(slot)
            return True

    # ------------------------------------------------------------ the ending

    def quiesce(self) -> None:
        """Make every slot's listener alive, enabled, with the plain echo callback.

        Called once the API threads have stopped, so that every connection
        still queued is served before the clients stop.
        """
        echo = self.handlers["echo"]
        for slot in range(self.slots):
            record = self.current(slot)
            try:
                record.listener.set_cb(echo, echo.arg)
                record.listener.enable()
            except ListenerFreedError:
                # Freed by its own callback just before the callbacks were swapped.
                self.replace(record)

    def free_all(self) -> None:
        """Free every slot's current listener and check that each was destroyed."""
        for slot in range(self.slots):
            record = self.current(slot)
            if record.free_started is None:
                record.mark_free_started()
                try:
                    record.listener.free()
                except ListenerFreedError:
                    continue
                record.free_returned = time.monotonic()
            self.check_destroyed(record, "free_all")

    def check_destroyed(self, record: ListenerRecord, where: str) -> None:
        """Check that a listener whose free() returned outside a callback is destroyed."""
        refcount = record.listener.refcount
        self.violations.check(
            "refcount",
            refcount == 0,
            f"{where}: refcount {refcount} after free() returned (listener {record.gen})",
        )
        self.violations.check(
            "refcount",
            record.sock.fileno() == -1,
            f"{where}: socket of listener {record.gen} still open after free()",
        )
