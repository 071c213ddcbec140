"""The named scenarios of ``python -m threadlisten trace``: a listener's lifecycle
under concurrent use, traced on real sockets.

Each scenario runs a THREADSAFE listener on 127.0.0.1 with a loop thread
(``loop``) and one or two other threads, records everything with a
``TraceRuntime``, checks that the story it tells really happened (raising
``ScenarioError`` if not), and returns a ``ScenarioResult`` for the renderer.

Determinism.  The threads are ordered by explicit synchronisation on the
tracer, never by sleeping: a thread that must act "while the callback runs"
is started once the trace shows ``callback_enter``; a callback that must
return "once the other thread is blocked on the lock" waits until the trace
shows that thread's ``lock.wait``; a thread is held in the dispatch window by
a hook on ``dispatched``.  And a step that needs the loop thread to have
really finished its batch (not just recorded its last release) waits for a
callable handed to the loop thread (``_Stage.settle``).  So two runs of a
scenario record the same events in the same order: only the times differ
(``TraceEvent.signature``; tests/test_trace.py checks it).

Every wait is bounded by ``BOUND`` seconds; the modelled libevent deadlock is
stopped by its watchdog after ``DEADLOCK_WATCHDOG`` seconds.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from threadlisten._flags import LEV_OPT
from threadlisten._libevent_model import WAIT_FOR_CALLBACK, ModelBase, ModelListener
from threadlisten._runtime import get_default_runtime
from threadlisten.base import EventBase
from threadlisten.listener import AcceptCallback, Listener
from threadlisten.trace import TraceEvent, Tracer, TraceRuntime

__all__ = [
    "BOUND",
    "DEADLOCK_WATCHDOG",
    "SCENARIOS",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "TracePart",
    "WaitFor",
    "run_scenario",
]

#: Seconds any single wait in a scenario may take before it fails: far above
#: the milliseconds each step takes, so only a real hang reaches it.
BOUND = 10.0

#: Seconds the modelled libevent loop thread waits for the listener lock
#: before the model declares the deadlock.  Long enough to be unmistakable
#: next to the microseconds of every other step, short enough for a test.
DEADLOCK_WATCHDOG = 0.2

_FLAGS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE


class ScenarioError(RuntimeError):
    """A scenario did not go as its story says (a bug in threadlisten or in the scenario)."""


@dataclass(frozen=True)
class WaitFor:
    """One edge of a wait-for graph: *waiter* waits for *holder*, for *what*."""

    waiter: str
    holder: str
    what: str


@dataclass(frozen=True)
class TracePart:
    """One traced run, drawn as one timeline.

    Attributes:
        title: the heading above it.
        events: the events, in recording order.
        cycle: the wait-for edges of a deadlock, if the run shows one.
    """

    title: str
    events: tuple[TraceEvent, ...]
    cycle: tuple[WaitFor, ...] = ()


@dataclass(frozen=True)
class ScenarioResult:
    """What a scenario recorded.

    Attributes:
        name: the scenario's name (``free-during-callback`` ...).
        title: one line saying what it shows.
        story: what to look for in the pictures, one point per line.
        parts: one ``TracePart`` per timeline (two for the deadlock window).
    """

    name: str
    title: str
    story: tuple[str, ...]
    parts: tuple[TracePart, ...]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: its title and the function that runs it."""

    name: str
    title: str
    run: Callable[[], ScenarioResult] = field(repr=False)


# ------------------------------------------------------------------ helpers


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioError(message)


def _find(
    events: Iterable[TraceEvent],
    kind: str,
    thread: str | None = None,
    detail: str | None = None,
    value: float | None = None,
) -> list[TraceEvent]:
    """The events of *kind* (and *thread*, *detail*, *value* where given)."""
    return [
        e
        for e in events
        if e.kind == kind
        and (thread is None or e.thread == thread)
        and (detail is None or e.detail == detail)
        and (value is None or e.value == value)
    ]


def _one(events: Iterable[TraceEvent], kind: str, **match: Any) -> TraceEvent:
    found = _find(events, kind, **match)
    _expect(len(found) == 1, f"expected one {kind} {match}, found {len(found)}")
    return found[0]


def _refcounts(events: Iterable[TraceEvent], listener: str) -> list[float | None]:
    return [e.value for e in events if e.kind == "refcount" and e.listener == listener]


class _Stage:
    """A traced base with its loop thread, a listening socket, clients, helper threads.

    ``close()`` ends and closes all of it, bounded, whatever state the
    scenario left it in.
    """

    def __init__(self) -> None:
        self.tracer = Tracer()
        # Over the default runtime: the production one, or the lock checker
        # when it is on (THREADLISTEN_LOCK_DEBUG, as in the test suite), so
        # every scenario is also a lock-checked run.
        self.base = EventBase(runtime=TraceRuntime(self.tracer, inner=get_default_runtime()))
        self.listener: Listener | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def listen(self, cb: AcceptCallback, arg: Any = None) -> Listener:
        """Bind 127.0.0.1:0 and make a THREADSAFE, CLOSE_ON_FREE listener on it.

        The socket is bound here, not by ``Listener.bind``, so that its
        address is known without reading a listener property (which would
        take the lock and add steps to the trace).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            self.address = sock.getsockname()
            self.listener = Listener.from_socket(self.base, sock, cb, arg, flags=_FLAGS)
        except BaseException:
            sock.close()
            raise
        return self.listener

    def start_loop(self) -> None:
        """Start the loop thread (named ``loop``) and wait until it runs the loop."""
        self.base.start_thread(name="loop")
        self.tracer.wait_for(lambda e: e.kind == "loop_enter", BOUND)

    def connect(self, note: str) -> socket.socket:
        """Mark *note* on this thread, then connect a client (it stays open until close)."""
        self.tracer.mark(note)
        client = socket.create_connection(self.address, timeout=BOUND)
        self._sockets.append(client)
        return client

    def wait_for(self, kind: str, thread: str | None = None, **match: Any) -> TraceEvent:
        """Wait until an event of *kind* (by *thread*, with *match*) is in the trace."""

        def matches(e: TraceEvent) -> bool:
            return (
                e.kind == kind
                and (thread is None or e.thread == thread)
                and all(getattr(e, k) == v for k, v in match.items())
            )

        return self.tracer.wait_for(matches, BOUND)

    def spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Start a thread named *name*; an exception in it fails the scenario at close."""

        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self._errors.append(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def join(self, thread: threading.Thread) -> None:
        thread.join(BOUND)
        _expect(not thread.is_alive(), f"thread {thread.name} is stuck")

    def settle(self) -> None:
        """Return once the loop thread has finished what it was running.

        A callable handed to the loop thread runs only after the running
        callback has returned, i.e. after the listener lock was really
        released (its ``lock.release`` is recorded just before).
        """
        done = threading.Event()
        self.base.call_soon_threadsafe(done.set)
        _expect(done.wait(BOUND), "the loop thread is stuck")

    def snapshot(self) -> tuple[TraceEvent, ...]:
        """The events recorded so far.  Take it before ``close()``, which reads
        ``listener.freed`` (a lock, i.e. steps that are not part of the story)."""
        return tuple(self.tracer.events)

    def close(self) -> None:
        """Stop the loop, join the threads, free the listener if needed, close everything."""
        try:
            self.base.stop(BOUND)
        finally:
            for thread in self._threads:
                thread.join(BOUND)
            if self.listener is not None and not self.listener.freed:
                self.listener.free()
            for sock in self._sockets:
                sock.close()
            self.base.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        _expect(not alive, f"threads stuck: {alive}")
        if self._errors:
            raise ScenarioError(f"a scenario thread failed: {self._errors[0]!r}") from (
                self._errors[0]
            )


def _waits_for_lock_of(tracer: Tracer, thread: str) -> None:
    """Block (bounded) until *thread* has recorded ``lock.wait``: it is blocked on the lock."""
    tracer.wait_for(lambda e: e.kind == "lock.wait" and e.thread == thread, BOUND)


# ------------------------------------------------------------------ scenarios


def free_during_callback() -> ScenarioResult:
    """``free()`` from another thread while the accept callback runs."""
    stage = _Stage()
    tracer = stage.tracer
    try:

        def on_accept(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            sock.close()
            # Return only once the freeing thread is blocked on our lock.
            _waits_for_lock_of(tracer, "freer")

        lev = stage.listen(on_accept)
        stage.start_loop()
        stage.connect("client connects")
        stage.wait_for("callback_enter", "loop")
        freer = stage.spawn("freer", lev.free)
        stage.join(freer)
        stage.settle()
        events = stage.snapshot()
    finally:
        stage.close()
    enter = _one(events, "callback_enter", thread="loop")
    leave = _one(events, "callback_exit", thread="loop")
    wait = _one(events, "lock.wait", thread="freer")
    done = _one(events, "return", thread="freer", detail="free")
    batch_end = _find(events, "lock.release", thread="loop", value=0)[-1]
    _expect(enter.seq < wait.seq < leave.seq, "free() did not wait while the callback ran")
    _expect(batch_end.seq < done.seq, "free() returned before the batch released the lock")
    _one(events, "destroy", thread="freer")
    _expect(_refcounts(events, "L1") == [2, 1, 0], "refcount not 1 -> 2 -> 1 -> 0")
    return ScenarioResult(
        "free-during-callback",
        "free() from another thread while a callback runs: the lock is the barrier",
        (
            "The loop thread runs the accept callback holding L1's lock, refcount 2.",
            "The freer calls free(): the lock is taken, so it waits (hatched bar).",
            "The callback returns, the batch drops its reference (2 -> 1) and the lock.",
            "Only then does free() get the lock: it drops the owner's reference (1 -> 0)",
            "and destroys L1 in the freer thread.  When free() returns no callback runs,",
            "and none can start: the loop checks 'freed' under the same lock.",
        ),
        (TracePart("threadlisten: free() from another thread during a callback", events),),
    )


def free_inside_callback() -> ScenarioResult:
    """The accept callback frees its own listener."""
    stage = _Stage()
    tracer = stage.tracer
    refused = False
    try:

        def on_accept(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            sock.close()
            lev.free()  # drops the owner's reference; the batch's keeps L1 alive

        stage.listen(on_accept)
        stage.start_loop()
        stage.connect("client 1 connects")
        stage.wait_for("destroyed", "loop")
        stage.settle()
        tracer.mark("client 2 connects: refused, the socket is closed")
        try:
            socket.create_connection(stage.address, timeout=BOUND).close()
        except ConnectionRefusedError:
            refused = True
        events = stage.snapshot()
    finally:
        stage.close()
    free = _one(events, "free", thread="loop")
    freed = _one(events, "return", thread="loop", detail="free")
    leave = _one(events, "callback_exit", thread="loop")
    destroy = _one(events, "destroy", thread="loop")
    _expect(free.seq < freed.seq < leave.seq < destroy.seq, "destroy did not wait for the callback")
    _expect(_refcounts(events, "L1") == [2, 1, 0], "refcount not 1 -> 2 -> 1 -> 0")
    _expect(not _find(events, "accepted")[1:], "accepted again after free()")
    _expect(refused, "a connection after destroy was not refused")
    return ScenarioResult(
        "free-inside-callback",
        "free() inside the accept callback: the refcount keeps the listener alive",
        (
            "The callback calls free() on its own listener: the recursive lock lets it in",
            "(depth 2) and free() drops the owner's reference, 2 -> 1.  L1 is not destroyed",
            "yet: the batch still holds a reference, and the callback is still running.",
            "When the callback returns the batch sees 'freed', accepts nothing more, and",
            "drops the last reference (1 -> 0): destroy runs there, on the loop thread.",
            "The socket is closed (CLOSE_ON_FREE): the next client is refused.",
        ),
        (TracePart("threadlisten: free() inside the callback", events),),
    )


def disable_from_worker() -> ScenarioResult:
    """A worker thread disables the listener during a callback, later enables it."""
    stage = _Stage()
    tracer = stage.tracer
    go = threading.Event()
    try:
        served: list[int] = []

        def on_accept(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            sock.close()
            served.append(1)
            tracer.mark(f"serves client {len(served)}")
            if len(served) == 1:
                # Return only once the worker is blocked on our lock.
                _waits_for_lock_of(tracer, "worker")

        def worker() -> None:
            lev.disable()
            if not go.wait(BOUND):
                raise TimeoutError("the worker was never let go")
            lev.enable()

        lev = stage.listen(on_accept)
        stage.start_loop()
        stage.connect("client 1 connects")
        stage.wait_for("mark", "loop", detail="serves client 1")
        thread = stage.spawn("worker", worker)
        stage.wait_for("return", "worker", detail="disable")
        stage.connect("client 2 connects: queued (disabled)")
        # disable() left the read event added (the loop deletes it lazily),
        # so client 2 wakes the loop once: wait until it has found L1
        # disabled and let go of the lock, or enable() could come first and
        # the trace would depend on timing.
        woke = _nth(tracer, "dispatched", 2)
        tracer.wait_for(
            lambda e: e.kind == "lock.release" and e.thread == "loop", BOUND, start=woke.seq
        )
        go.set()
        stage.join(thread)
        _nth(tracer, "callback_exit", 2)
        stage.settle()
        lev.free()
        events = stage.snapshot()
    finally:
        stage.close()
    enters = _find(events, "callback_enter", thread="loop")
    _expect(len(enters) == 2, f"expected two callbacks, got {len(enters)}")
    wait = _one(events, "lock.wait", thread="worker")
    disabled = _one(events, "return", thread="worker", detail="disable")
    enabled = _one(events, "return", thread="worker", detail="enable")
    exits = _find(events, "callback_exit", thread="loop")
    _expect(enters[0].seq < wait.seq < exits[0].seq, "disable() did not wait for the callback")
    _expect(disabled.seq < enabled.seq < enters[1].seq, "a callback ran while disabled")
    return ScenarioResult(
        "disable-from-worker",
        "disable() and enable() from a worker thread: no callback while disabled",
        (
            "The worker calls disable() while the loop thread runs a callback: it waits",
            "for L1's lock until the batch ends.  When disable() returns, no callback runs.",
            "disable() only clears L1's flag.  Client 2 connects while L1 is disabled: the",
            "loop thread wakes once, takes the lock, finds L1 disabled, deletes its read",
            "event and accepts nothing; the connection waits in the kernel's backlog.  The",
            "worker calls enable(): the event is added again and the loop thread accepts",
            "client 2 at once.  Neither call ever waits for the loop thread.",
        ),
        (TracePart("threadlisten: disable() and enable() from a worker", events),),
    )


def _nth(tracer: Tracer, kind: str, n: int) -> TraceEvent:
    """Wait (bounded) for the *n*-th event of *kind* and return it."""
    event = tracer.wait_for(lambda e: e.kind == kind, BOUND)
    for _ in range(n - 1):
        event = tracer.wait_for(lambda e: e.kind == kind, BOUND, start=event.seq + 1)
    return event


def hot_swap() -> ScenarioResult:
    """The main thread swaps the accept callback while the old one runs."""
    stage = _Stage()
    tracer = stage.tracer
    me = threading.current_thread().name
    try:

        def accept_v1(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            sock.close()
            tracer.mark(f"accept_v1 serves ({arg})")
            # Return only once the swapping thread is blocked on our lock.
            _waits_for_lock_of(tracer, me)

        def accept_v2(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            sock.close()
            tracer.mark(f"accept_v2 serves ({arg})")

        lev = stage.listen(accept_v1, "v1")
        stage.start_loop()
        stage.connect("client 1 connects")
        stage.wait_for("mark", "loop", detail="accept_v1 serves (v1)")
        lev.set_cb(accept_v2, "v2")  # waits for the running batch, then swaps
        stage.connect("client 2 connects")
        stage.wait_for("mark", "loop", detail="accept_v2 serves (v2)")
        stage.settle()
        lev.free()
        events = stage.snapshot()
    finally:
        stage.close()
    wait = _one(events, "lock.wait", thread=me)
    swapped = _one(events, "return", thread=me, detail="set_cb")
    v1 = _one(events, "mark", thread="loop", detail="accept_v1 serves (v1)")
    v2 = _one(events, "mark", thread="loop", detail="accept_v2 serves (v2)")
    exits = _find(events, "callback_exit", thread="loop")
    _expect(v1.seq < wait.seq < exits[0].seq, "set_cb() did not wait for the running callback")
    _expect(swapped.seq < v2.seq, "the new callback ran before set_cb() returned")
    return ScenarioResult(
        "hot-swap",
        "set_cb() from another thread: the callback and its argument change together",
        (
            "accept_v1 runs on the loop thread with L1's lock held.",
            "The main thread calls set_cb(accept_v2, 'v2'): it waits for the lock, so the",
            "running callback finishes with its own (cb, arg) pair, never half of the new one.",
            "After set_cb() returns, the next connection goes to accept_v2 with 'v2'.",
        ),
        (TracePart("threadlisten: set_cb() from another thread during a callback", events),),
    )


def _libevent_part() -> TracePart:
    """libevent's free() in the dispatch window, modelled: the wait-for cycle."""
    tracer = Tracer()
    base = ModelBase(tracer, DEADLOCK_WATCHDOG)
    freer_waits = threading.Event()

    def hook(event: TraceEvent) -> None:
        if event.kind == "wait.begin" and event.thread == "freer":
            freer_waits.set()

    def in_window() -> None:
        # Hold the loop thread between dispatch and LOCK(lev) until the
        # freeing thread holds the lock and waits in event_del.
        if not freer_waits.wait(BOUND):
            raise TimeoutError("the freeing thread never reached event_del")

    tracer.add_hook(hook)
    lev = ModelListener(base, "lev", in_window)
    tracer.mark("a connection arrives")
    loop = threading.Thread(
        target=base.process_active, args=(lev.event, lev.read_cb), name="loop", daemon=True
    )
    results: list[bool] = []
    freer = threading.Thread(target=lambda: results.append(lev.free()), name="freer", daemon=True)
    loop.start()
    try:
        tracer.wait_for(lambda e: e.kind == "dispatched", BOUND)
        freer.start()
    finally:
        for thread in (loop, freer):
            if thread.ident is not None:
                thread.join(BOUND)
    _expect(not loop.is_alive() and not freer.is_alive(), "the libevent model itself hung")
    events = tuple(tracer.events)
    _expect(results == [False], "the modelled free() was not stopped by the watchdog")
    _one(events, "lock.timeout", thread="loop")
    _one(events, "wait.begin", thread="freer", detail=WAIT_FOR_CALLBACK)
    return TracePart(
        "libevent 2.2 (modelled): evconnlistener_free() in the window deadlocks",
        events,
        (
            WaitFor("freer", "loop", "for listener_read_cb to return"),
            WaitFor("loop", "freer", "for lev.lock"),
        ),
    )


def _threadlisten_part() -> TracePart:
    """threadlisten's free() in the same window: returns at once, nothing waits."""
    stage = _Stage()
    tracer = stage.tracer
    freed = threading.Event()
    held = [False]

    def hold_in_window(event: TraceEvent) -> None:
        if event.kind == "dispatched" and not held[0]:
            held[0] = True
            if not freed.wait(BOUND):
                raise TimeoutError("free() did not return while the loop was held")

    def on_accept(lev: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        sock.close()

    try:
        lev = stage.listen(on_accept)
        tracer.add_hook(hold_in_window)
        stage.start_loop()
        stage.connect("a connection arrives")
        stage.wait_for("dispatched", "loop")

        def free() -> None:
            lev.free()
            freed.set()

        stage.join(stage.spawn("freer", free))
        stage.settle()
        tracer.mark("loop saw L1 freed: accepted nothing")
        events = stage.snapshot()
    finally:
        freed.set()
        stage.close()
    returned = _one(events, "return", thread="freer", detail="free")
    late = _find(events, "lock.acquire", thread="loop")
    _expect(bool(late) and returned.seq < late[-1].seq, "free() waited for the loop thread")
    _expect(not _find(events, "lock.wait"), "a thread waited for the lock")
    _expect(not _find(events, "accepted"), "a connection was accepted after free()")
    _one(events, "destroy", thread="freer")
    return TracePart("threadlisten: free() in the same window returns at once", events)


def libevent_deadlock_window() -> ScenarioResult:
    """libevent's deadlock (modelled) next to what threadlisten does in the same window."""
    return ScenarioResult(
        "libevent-deadlock-window",
        "free() while the loop has dispatched the read event but not taken the lock",
        (
            "Top, libevent (a model of listener.c and event.c, not libevent itself): the",
            "freer takes lev.lock, drops the last reference and destroys, and destroy's",
            "event_del waits for the running read callback, still holding the lock.  The",
            "loop thread's read callback starts with LOCK(lev): it waits for the freer.",
            "Each waits for the other: a deadlock, stopped here by a watchdog after "
            f"{DEADLOCK_WATCHDOG} s.",
            "Bottom, threadlisten: free() takes the lock, destroys, and returns; nothing",
            "in it waits for the loop thread.  The loop thread then takes the lock, sees",
            "the listener freed, and returns without accepting.",
        ),
        (_libevent_part(), _threadlisten_part()),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "free-during-callback",
            "free() from another thread while a callback runs",
            free_during_callback,
        ),
        Scenario(
            "free-inside-callback",
            "free() inside the accept callback",
            free_inside_callback,
        ),
        Scenario(
            "disable-from-worker",
            "disable()/enable() from a worker thread",
            disable_from_worker,
        ),
        Scenario("hot-swap", "set_cb() from another thread during a callback", hot_swap),
        Scenario(
            "libevent-deadlock-window",
            "libevent's deadlock (modelled) and what threadlisten does instead",
            libevent_deadlock_window,
        ),
    )
}


def run_scenario(name: str) -> ScenarioResult:
    """Run the scenario called *name* and return what it recorded.

    Raises:
        KeyError: no such scenario (``SCENARIOS`` lists them).
        ScenarioError: it did not go as its story says.

    Thread-safety: any thread; it starts and joins its own threads, and
    leaves no socket or thread behind.
    """
    return SCENARIOS[name].run()
