"""The stateful suite: random lifecycles of real THREADSAFE listeners.

A ``RuleBasedStateMachine`` drives one ``EventBase`` with a real acceptor
thread, real loopback sockets and real helper threads, and checks every step
against the sequential model in ``model.py``.

Rules: create a listener (THREADSAFE plus drawn CLOSE_ON_FREE, DISABLED,
LEAVE_SOCKETS_BLOCKING, REUSEABLE; by ``bind`` or ``from_socket``; a drawn
callback or none); ``enable``, ``disable``, ``set_cb``, ``set_error_cb`` and
``free``, each from the main thread or a helper thread (``<op>``), or racing
the loop thread (``<op>_racing``): from inside the listener's own callback,
from a helper thread while a callback of that listener runs (held at a gate),
or from a helper thread while the loop thread has dispatched the listener's
read event but not yet taken its lock (held there through the runtime's
``listener.dispatched`` scheduling point); connect 1-4 clients; quiesce;
call anything on a freed listener (``ListenerFreedError``).  Every draw
happens in the main thread before the step; callbacks never draw.

Those rules are deterministic: each step's outcome does not depend on timing,
so a failure replays and shrinks.  Two "storm" rules add real, unsynchronised
races: a helper thread connects clients while the main thread swaps the
callback several times (``set_cb_storm``) or stops the listener
(``stop_storm``: ``disable``, ``free`` or ``set_cb(None)``), with the GIL
switch interval lowered.  How the deliveries split around those calls depends
on timing, so the model takes the split from what happened once it has been
checked against what does not: each connection delivered once, with its own
callback's arg, to callbacks in install order, none after the stopping call
returned.  After a ``disable``/``set_cb(None)`` storm the step lets the
connections left queued in (and stops the listener again), so that the model's
state after the step, and so every later precondition and draw, is the same
whatever the timing.  A failure inside a storm may not replay: Hypothesis then
reports it as Flaky, which is evidence of a race, and the machine prints the
first failure of each example on stderr.

Each step ends quiescent: the deliveries the model expects have happened
(a bounded wait on a condition the callbacks feed) and the loop thread has
run two ``call_soon_threadsafe`` round trips.  Then the invariants compare
the listener (read through its public properties, which take its lock) with
the model.  Checked, as issue 3 lists them:

* refcount 1 while idle, 2 inside a callback, 0 exactly once after ``free``;
  destroy runs exactly then, once, with the lock held (the runtime's
  ``listener.refcount``/``listener.destroy`` points are traced);
* no callback starts after ``free()``/``disable()``/``set_cb(None)`` returned
  (each call's return is stamped under a lock; each callback start is checked
  against the stamp);
* accepted = delivered + closed by the listener, with closed = 0 (threadlisten
  only closes an accepted socket when ``setblocking`` fails); every connection
  is delivered once, to the callback the model says, in the model's order;
  connections that arrived while disabled are delivered after ``enable()``;
* the (callback, arg) pair is never torn: each callback checks its arg;
* callbacks run on the loop thread with the listener lock held; every call
  leaves the caller's lock depth as it found it; a call from another thread
  does not return while a callback of that listener runs;
* the listening socket is closed once, and only with CLOSE_ON_FREE;
* every call returns within a timeout: helper threads are joined with one,
  and ``faulthandler`` dumps every thread if a step hangs;
* no thread or descriptor is left after teardown;
* no error in any thread is swallowed: callbacks, ``threading.excepthook``
  and a handler on the ``threadlisten`` logger feed a per-example error
  channel, which tells the callbacks' deliberate raises apart from anything else.

Each example gets its own ``MachineRuntime``, which wraps the default
runtime: under the suite's lock checker (``threadlisten.debug``) the listeners
still get the checker's locks and its checked class, and the checker's
errors fail the test as usual.  The seeded-bug tests at the end substitute a
broken ``Listener`` subclass through ``Runtime.listener_type`` and assert
that the machine fails.

Profiles, chosen by ``THREADLISTEN_HYPOTHESIS_PROFILE``: ``ci`` (the default;
Hypothesis profile ``threadlisten-stateful-ci``, 400 examples of up to 30
steps) and ``thorough`` (``threadlisten-stateful-thorough``, 5,000 examples).
Failing examples are kept in Hypothesis's default directory database
(``.hypothesis/``) and replayed first.  The thorough profile::

    THREADLISTEN_HYPOTHESIS_PROFILE=thorough python -m pytest tests/stateful -q -s
"""

from __future__ import annotations

import faulthandler
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    Any,
    ClassVar,
    Final,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    cast,
    runtime_checkable,
)

import pytest
from _support import open_fds
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import threadlisten.debug
from threadlisten import LEV_OPT, EventBase, Listener, ListenerFreedError
from threadlisten._accept_errors import AcceptErrorClass, classify
from threadlisten._runtime import (
    DelegatingRuntime,
    LockLike,
    LockWrapper,
    Runtime,
    get_default_runtime,
)
from threadlisten.listener import logger as listener_logger

from .model import (
    ACTIONS,
    FREED,
    GATE,
    OK,
    Action,
    CbSpec,
    Model,
    ModelCb,
    ModelListener,
    ModelOp,
    Op,
    OpKind,
)

_T = TypeVar("_T")

# ------------------------------------------------------------------ settings

PROFILE_ENV: Final = "THREADLISTEN_HYPOTHESIS_PROFILE"

_COMMON = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)
settings.register_profile(
    "threadlisten-stateful-ci", _COMMON, max_examples=400, stateful_step_count=30
)
settings.register_profile(
    "threadlisten-stateful-thorough", _COMMON, max_examples=5000, stateful_step_count=30
)
#: Profile name in the environment -> (Hypothesis profile, pytest timeout in s).
PROFILES: Final[dict[str, tuple[str, float]]] = {
    "ci": ("threadlisten-stateful-ci", 600.0),
    "thorough": ("threadlisten-stateful-thorough", 4 * 3600.0),
}


def _profile() -> tuple[str, float]:
    name = os.environ.get(PROFILE_ENV, "ci")
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {sorted(PROFILES)}")
    return PROFILES[name]


PROFILE, PROFILE_TIMEOUT = _profile()

# ------------------------------------------------------------------ bounds

#: Listeners per example, and not yet freed, at most.
MAX_LISTENERS: Final = 8
MAX_LIVE_LISTENERS: Final = 3
#: Connections left in a listener's backlog at most (the kernel's is 128):
#: past it, ``connect`` connects fewer clients rather than block.
MAX_QUEUED: Final = 100
#: Every wait for another thread is bounded by this; running out is a failure.
WAIT_TIMEOUT: Final = 10.0
#: ``faulthandler`` dumps every thread's stack if a step takes this long.
STEP_DUMP_TIMEOUT: Final = 30.0
#: How long the "block" action blocks the loop thread.
BLOCK_SECONDS: Final = 0.002
#: The GIL switch interval during a storm (the default is 0.005 s).
STORM_SWITCH_INTERVAL: Final = 1e-5
#: How long a helper's call gets to (wrongly) return while a callback holds the lock.
GATE_PROBE_SECONDS: Final = 0.005

# ------------------------------------------------------------------ errors


class InvariantViolation(AssertionError):
    """The real listener and the model (or the contract) disagree."""


class ExpectedRaise(Exception):
    """Raised by a callback whose drawn action is ``raise``."""

    def __init__(self, lid: int, cb_id: int) -> None:
        super().__init__(f"listener {lid}: callback {cb_id} raises on purpose")
        self.lid = lid


class ErrorChannel:
    """Problems seen in any thread during one example, raised in the main thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[str] = []

    def report(self, message: str) -> None:
        with self._lock:
            self._messages.append(message)

    def take(self) -> list[str]:
        with self._lock:
            messages, self._messages = self._messages, []
        return messages

    def raise_if_any(self) -> None:
        messages = self.take()
        if messages:
            raise InvariantViolation("\n".join(messages))


def all_stacks() -> str:
    """Every thread's stack, as ``faulthandler`` prints it."""
    with tempfile.TemporaryFile("w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return f.read()


def _dump_later() -> None:
    """Arm ``faulthandler`` to dump every thread if the step hangs.

    Written to ``sys.stderr`` when it is a real file (pytest's default
    fd-level capture), else to the process's original stderr.
    """
    try:
        sys.stderr.fileno()
        out: Any = sys.stderr
    except (AttributeError, OSError, ValueError):
        out = sys.__stderr__
    faulthandler.dump_traceback_later(STEP_DUMP_TIMEOUT, exit=False, file=out)


# ------------------------------------------------------------------ the runtime


@runtime_checkable
class OwnedLock(LockLike, Protocol):
    """A lock that knows its owner and recursion count: ``TrackedRLock``
    here, or the lock checker's ``threadlisten.debug`` locks."""

    @property
    def owner(self) -> int | None: ...

    @property
    def count(self) -> int: ...

    def held_by_me(self) -> bool: ...


def depth_for_me(lock: OwnedLock) -> int:
    """How many times the calling thread holds *lock* (0 if another thread does)."""
    return lock.count if lock.held_by_me() else 0


class TrackedRLock(LockWrapper):
    """A recursive lock that knows its owner and depth (used when the lock
    checker is off, so the callbacks can still check that they hold it)."""

    def __init__(self, inner: LockLike, channel: ErrorChannel) -> None:
        self._inner = inner
        self._channel = channel
        self._owner: int | None = None  # written only by the thread holding _inner
        self._count = 0

    @property
    def owner(self) -> int | None:
        return self._owner

    @property
    def count(self) -> int:
        return self._count

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._inner.acquire(blocking, timeout)
        if got:
            self._owner = threading.get_ident()
            self._count += 1
        return got

    def release(self) -> None:
        if self._owner != threading.get_ident():
            self._channel.report(
                f"listener lock released by thread {threading.current_thread().name}, "
                f"which does not own it"
            )
        else:
            self._count -= 1
            if not self._count:
                self._owner = None
        self._inner.release()

    def held_by_me(self) -> bool:
        return self._owner == threading.get_ident()


@dataclass
class Hold:
    """Keeps the loop thread in a listener's dispatch window until released."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class ListenerTrace:
    """What the scheduling points said about one listener."""

    refcounts: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    accepted: int = 0
    destroys: int = 0
    problems: list[str] = field(default_factory=list)


class MachineRuntime(DelegatingRuntime):
    """The runtime of one example: delegates to the default runtime, hands out
    owner-tracking listener locks, traces the listener scheduling points, and
    can hold the loop thread in a listener's dispatch window."""

    def __init__(self, inner: Runtime, channel: ErrorChannel) -> None:
        super().__init__(inner)
        self._channel = channel
        self._mutex = threading.Lock()  # a leaf lock: guards the fields below
        self._traces: dict[object, ListenerTrace] = {}
        self._locks: dict[object, OwnedLock] = {}
        self._holds: dict[object, Hold] = {}
        self._local = threading.local()

    # The seam, delegated.

    def rlock(self, name: str) -> LockLike:
        inner = self._inner.rlock(name)
        if name != "listener.lock":
            return inner
        # The lock checker's locks know their owner already; wrapping them
        # would hide them from the checker.
        lock = inner if isinstance(inner, OwnedLock) else TrackedRLock(inner, self._channel)
        self._local.last_listener_lock = lock
        return lock

    def point(self, kind: str, **info: Any) -> None:
        hold = None
        if kind.startswith("listener."):
            lev = info["listener"]
            with self._mutex:
                trace = self._traces.setdefault(lev, ListenerTrace())
                lock = self._locks.get(lev)
                if kind == "listener.refcount":
                    trace.refcounts.append(info["refcount"])
                    trace.events.append(f"refcount={info['refcount']}")
                elif kind == "listener.accepted":
                    trace.accepted += 1
                elif kind == "listener.destroy":
                    trace.destroys += 1
                    trace.events.append("destroy")
                    if lock is not None and not lock.held_by_me():
                        trace.problems.append("destroy ran without the listener lock held")
                elif kind == "listener.destroyed":
                    trace.events.append("destroyed")
                    if lock is not None and lock.owner is not None:
                        trace.problems.append("the listener lock is still held after destroy")
                elif kind == "listener.dispatched":
                    hold = self._holds.pop(lev, None)
        if hold is not None:
            hold.reached.set()
            if not hold.release.wait(WAIT_TIMEOUT):
                self._channel.report("the loop thread was held in a dispatch window too long")
        self._inner.point(kind, **info)

    # For the machine.

    def take_listener_lock(self) -> OwnedLock:
        """The listener lock made last by the calling thread."""
        lock = self._local.last_listener_lock
        assert isinstance(lock, OwnedLock)
        self._local.last_listener_lock = None
        return lock

    def register(self, listener: Listener, lock: OwnedLock) -> None:
        with self._mutex:
            self._locks[listener] = lock

    def hold_dispatch(self, listener: Listener) -> Hold:
        hold = Hold()
        with self._mutex:
            self._holds[listener] = hold
        return hold

    def release_holds(self) -> None:
        with self._mutex:
            holds, self._holds = list(self._holds.values()), {}
        for hold in holds:
            hold.release.set()

    def trace(self, listener: Listener) -> ListenerTrace:
        """A copy of *listener*'s trace so far."""
        with self._mutex:
            t = self._traces.get(listener, ListenerTrace())
            return ListenerTrace(
                list(t.refcounts), list(t.events), t.accepted, t.destroys, list(t.problems)
            )


def check_trace(trace: ListenerTrace, freed: bool) -> list[str]:
    """The refcount rules: steps of one from 1, never below 0, 0 exactly once
    (after free), destroy exactly once and just before the final 0."""
    problems = list(trace.problems)
    previous = 1
    for value in trace.refcounts:
        if value < 0 or abs(value - previous) != 1 or previous == 0:
            problems.append(f"refcount went {previous} -> {value}: {trace.events}")
            break
        previous = value
    zeros = trace.refcounts.count(0)
    if freed:
        last = trace.events[-3:]
        if zeros != 1 or trace.destroys != 1 or last != ["destroy", "refcount=0", "destroyed"]:
            problems.append(
                f"freed, so refcount 0 and destroy exactly once, last: "
                f"{zeros} zeros, {trace.destroys} destroys, {trace.events[-6:]}"
            )
    elif zeros or trace.destroys or previous != 1:
        problems.append(
            f"not freed, so refcount 1 and no destroy: refcount {previous}, "
            f"{trace.destroys} destroys, {trace.events[-6:]}"
        )
    return problems


class CountingSocket(socket.socket):
    """A listening socket that counts its ``close()`` calls (for ``from_socket``)."""

    __slots__ = ("closes",)

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


# ------------------------------------------------------------------ callbacks


@dataclass(frozen=True)
class Arg:
    """The argument a callback is installed with; it must get exactly this one."""

    cb_id: int
    arg_id: int


@dataclass(frozen=True)
class RealOp:
    """An ``Op`` made real: the callables it installs."""

    kind: OpKind
    cb: AcceptCb | None = None
    errcb: ErrorCb | None = None


@dataclass(frozen=True)
class PendingOp:
    """The next callback performs *op* on its own listener (instead of its action)."""

    op: RealOp
    opens: bool  # the listener may accept once the op is done
    outcome_box: list[str] = field(default_factory=list)


@dataclass
class Gate:
    """The next callback signals ``entered`` and waits for ``release``."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Live:
    """What the real listener did, as its callbacks saw it (guarded by ``World.cond``)."""

    lid: int
    listener: Listener
    lock: OwnedLock
    sock: socket.socket
    leave_blocking: bool
    closed_by: str | None  # set when a call that stops accepting returned
    deliveries: list[tuple[int, int]] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    raises: int = 0
    in_callback: bool = False
    pending: PendingOp | Gate | None = None


def call_op(listener: Listener, op: RealOp) -> str:
    """Make the call; return ``OK`` or ``FREED`` (other exceptions propagate)."""
    try:
        if op.kind == "enable":
            listener.enable()
        elif op.kind == "disable":
            listener.disable()
        elif op.kind == "set_cb":
            listener.set_cb(op.cb, None if op.cb is None else op.cb.arg)
        elif op.kind == "set_error_cb":
            listener.set_error_cb(op.errcb)
        else:
            listener.free()
    except ListenerFreedError:
        return FREED
    return OK


class World:
    """The state shared by the machine (main thread), helpers and callbacks."""

    def __init__(self, channel: ErrorChannel, rt: MachineRuntime) -> None:
        self.channel = channel
        self.rt = rt
        self.cond = threading.Condition()
        self.lives: dict[int, Live] = {}
        self.cbs: dict[int, AcceptCb] = {}  # every callback made, by id
        self.never = threading.Event()  # the "block" action waits on it
        self.gates: list[Gate] = []
        self.base: EventBase | None = None

    def make_cb(self, lid: int, mcb: ModelCb) -> AcceptCb:
        then = None if mcb.then is None else self.make_cb(lid, mcb.then)
        cb = self.cbs[mcb.cb_id] = AcceptCb(self, lid, mcb.cb_id, mcb.arg_id, mcb.action, then)
        return cb

    def make_op(self, lid: int, op: ModelOp) -> RealOp:
        cb = None if op.cb is None else self.make_cb(lid, op.cb)
        errcb = None if op.errcb_id is None else ErrorCb(self, lid, op.errcb_id)
        return RealOp(op.kind, cb, errcb)

    def run_op(self, live: Live, op: RealOp, opens: bool, where: str) -> str:
        """Make the call, stamping the listener open before it (if it will
        accept) or closed when it returns (if it will not)."""
        if opens:
            with self.cond:
                live.closed_by = None
        depth = depth_for_me(live.lock)
        outcome = call_op(live.listener, op)
        if depth_for_me(live.lock) != depth:
            self.channel.report(
                f"listener {live.lid}: {op.kind}() from {where} changed the caller's lock "
                f"depth from {depth} to {depth_for_me(live.lock)}"
            )
        if not opens and outcome == OK:
            with self.cond:
                live.closed_by = f"{op.kind}() from {where} returned"
        return outcome

    def release_everything(self) -> None:
        self.never.set()
        for gate in self.gates:
            gate.release.set()
        self.rt.release_holds()


class ErrorCb:
    """An error callback: no accept error is provoked, so any call is a failure."""

    def __init__(self, world: World, lid: int, errcb_id: int) -> None:
        self.world = world
        self.lid = lid
        self.errcb_id = errcb_id

    def __call__(self, listener: Listener, error: OSError, arg: Any) -> None:
        self.world.channel.report(
            f"listener {self.lid}: unexpected error callback {self.errcb_id}: {error!r}"
        )

    def __repr__(self) -> str:
        return f"<ErrorCb {self.errcb_id} of listener {self.lid}>"


class AcceptCb:
    """An accept callback: checks the contract, records the delivery, closes
    the socket, then does its action (or the pending effect)."""

    def __init__(
        self,
        world: World,
        lid: int,
        cb_id: int,
        arg_id: int,
        action: Action,
        then: AcceptCb | None,
    ) -> None:
        self.world = world
        self.lid = lid
        self.cb_id = cb_id
        self.arg_id = arg_id
        self.action = action
        self.then = then
        self.arg = Arg(cb_id, arg_id)

    def __repr__(self) -> str:
        return f"<AcceptCb {self.cb_id} {self.action} of listener {self.lid}>"

    def __call__(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        w = self.world
        problems: list[str] = []
        with w.cond:
            live = w.lives[self.lid]
            if live.in_callback:
                problems.append("two callbacks of one listener ran at once")
            live.in_callback = True
            if live.closed_by is not None:
                problems.append(f"callback {self.cb_id} started after {live.closed_by}")
            pending, live.pending = live.pending, None
        raise_after = False
        try:
            raise_after = self._run(live, listener, sock, arg, pending, problems)
        except Exception:
            problems.append(f"callback {self.cb_id} failed:\n{traceback.format_exc()}")
        finally:
            with w.cond:
                live.in_callback = False
            for problem in problems:
                w.channel.report(f"listener {self.lid}: {problem}")
        if raise_after:
            raise ExpectedRaise(self.lid, self.cb_id)

    def _run(
        self,
        live: Live,
        listener: Listener,
        sock: socket.socket,
        arg: Any,
        pending: PendingOp | Gate | None,
        problems: list[str],
    ) -> bool:
        w = self.world
        try:
            if listener is not live.listener:
                problems.append(f"callback got {listener!r}, not its own listener")
            if type(arg) is not Arg or arg != self.arg:
                problems.append(f"torn (cb, arg): callback {self.cb_id} got arg {arg!r}")
            if not live.lock.held_by_me():
                problems.append("the callback runs without the listener lock held")
            assert w.base is not None
            if not w.base.in_loop_thread():
                problems.append("the callback runs outside the loop thread")
            refcount = listener.refcount
            if refcount != 2:
                problems.append(f"refcount is {refcount} inside a callback, not 2")
            if sock.getblocking() != live.leave_blocking:
                problems.append(f"accepted socket blocking={sock.getblocking()}")
            peer = sock.getpeername()[1]
        finally:
            sock.close()
        with w.cond:
            live.deliveries.append((self.cb_id, self.arg_id))
            live.peers.append(peer)
            w.cond.notify_all()
        where = f"callback {self.cb_id}"
        if isinstance(pending, Gate):
            pending.entered.set()
            if not pending.release.wait(WAIT_TIMEOUT):
                problems.append("the gate was never released")
        elif isinstance(pending, PendingOp):
            outcome = w.run_op(live, pending.op, pending.opens, where)
            pending.outcome_box.append(outcome)
            if pending.op.kind == "free" and outcome == OK:
                self._check_freed_inside(live, listener, problems)
        elif self.action in ("disable", "free", "set_cb_none", "swap"):
            if self.action == "disable":
                op = RealOp("disable")
            elif self.action == "free":
                op = RealOp("free")
            else:
                op = RealOp("set_cb", self.then)  # then is None for set_cb_none
            outcome = w.run_op(live, op, self.action == "swap", where)
            if outcome != OK:
                problems.append(f"{self.action} from its callback: {outcome}")
            if self.action == "free":
                self._check_freed_inside(live, listener, problems)
        elif self.action == "block":
            w.never.wait(BLOCK_SECONDS)
        return self.action == "raise" and pending is None

    def _check_freed_inside(self, live: Live, listener: Listener, problems: list[str]) -> None:
        # The batch's reference keeps it alive until this callback returns.
        refcount = listener.refcount
        destroys = self.world.rt.trace(listener).destroys
        if refcount != 1 or destroys or live.sock.fileno() == -1:
            problems.append(
                f"freed from its callback: refcount {refcount}, {destroys} destroys, "
                f"socket fd {live.sock.fileno()} (want 1, 0, open)"
            )


class ChannelLogHandler(logging.Handler):
    """Counts the deliberate raises logged by the listener; reports anything else."""

    def __init__(self, world: World) -> None:
        super().__init__(level=logging.WARNING)
        self.world = world

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ExpectedRaise):
            with self.world.cond:
                self.world.lives[exc.lid].raises += 1
            return
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.world.channel.report(f"{record.levelname} logged on 'threadlisten': {text}")


# ------------------------------------------------------------------ helpers


class Helper(Generic[_T]):
    """Runs a call on a new thread; ``join`` bounds the wait and re-raises."""

    def __init__(self, fn: Callable[[], _T], what: str) -> None:
        self.fn = fn
        self.what = what
        self.done = threading.Event()
        self._result: list[_T] = []
        self._error: list[BaseException] = []
        self.thread = threading.Thread(target=self._main, name=f"stateful-{what}", daemon=True)

    def _main(self) -> None:
        try:
            self._result.append(self.fn())
        except BaseException as exc:
            self._error.append(exc)
        finally:
            self.done.set()

    def start(self) -> Helper[_T]:
        self.thread.start()
        return self

    def join(self) -> _T:
        self.thread.join(WAIT_TIMEOUT)
        if self.thread.is_alive():
            raise InvariantViolation(
                f"{self.what} did not return within {WAIT_TIMEOUT} s (deadlock?)\n{all_stacks()}"
            )
        if self._error:
            raise self._error[0]
        return self._result[0]


# ------------------------------------------------------------------ strategies

ARG_IDS = st.integers(min_value=0, max_value=3)
#: ``record`` five times in eleven: a listener should often go on accepting.
_ACTION_CHOICES: Final[tuple[Action, ...]] = ("record", "record", "record", "record", *ACTIONS)


@st.composite
def cb_specs(draw: st.DrawFn) -> CbSpec:
    """A callback: its action, its arg id, and for ``swap`` its successor."""
    action = draw(st.sampled_from(_ACTION_CHOICES))
    arg_id = draw(ARG_IDS)
    then = None
    if action == "swap":
        then_action = draw(st.sampled_from([a for a in _ACTION_CHOICES if a != "swap"]))
        then = CbSpec(then_action, draw(ARG_IDS))
    return CbSpec(action, arg_id, then)


@st.composite
def listener_flags(draw: st.DrawFn) -> LEV_OPT:
    """THREADSAFE always; CLOSE_ON_FREE, LEAVE_SOCKETS_BLOCKING and REUSEABLE
    one time in two; DISABLED one time in four (most listeners should accept)."""
    flags = LEV_OPT.THREADSAFE
    for flag in (LEV_OPT.CLOSE_ON_FREE, LEV_OPT.LEAVE_SOCKETS_BLOCKING, LEV_OPT.REUSEABLE):
        if draw(st.booleans()):
            flags |= flag
    if draw(st.integers(min_value=0, max_value=3)) == 3:
        flags |= LEV_OPT.DISABLED
    return flags


LISTENER_FLAGS = listener_flags()
MAX_ACCEPTS = st.sampled_from((64, 1, 2))
Make = Literal["bind", "from_socket"]
MAKE = st.sampled_from(("bind", "from_socket"))
IDX = st.integers(min_value=0, max_value=MAX_LISTENERS - 1)
Via = Literal["main", "helper"]
VIA = st.sampled_from(("main", "helper"))
How = Literal["callback", "helper_during_callback", "helper_in_dispatch_window"]
HOW = st.sampled_from(("callback", "helper_during_callback", "helper_in_dispatch_window"))


@st.composite
def optional_cb_specs(draw: st.DrawFn) -> CbSpec | None:
    """A callback three times in four, else None (shrinks towards a callback)."""
    return None if draw(st.integers(min_value=0, max_value=3)) == 3 else draw(cb_specs())


SET_CB = optional_cb_specs()
#: Clients that connect after a call from the main thread or a helper.
THEN_CONNECT = st.integers(min_value=0, max_value=2)
ERRCB = st.none() | st.integers(min_value=0, max_value=2)


# ------------------------------------------------------------------ the machine


@dataclass
class Entry:
    """One listener of the example, as the main thread knows it."""

    model: ModelListener
    live: Live
    port: int
    clients: list[socket.socket] = field(default_factory=list)
    client_ports: set[int] = field(default_factory=set)

    @property
    def listener(self) -> Listener:
        return self.live.listener


def _may_create(self: ListenerMachine) -> bool:
    live = sum(not e.model.freed for e in self.entries)
    return len(self.entries) < MAX_LISTENERS and live < MAX_LIVE_LISTENERS


def _has_live(self: ListenerMachine) -> bool:
    return any(not e.model.freed for e in self.entries)


def _has_freed(self: ListenerMachine) -> bool:
    return any(e.model.freed for e in self.entries)


def _has_accepting(self: ListenerMachine) -> bool:
    return any(e.model.can_accept() for e in self.entries)


def _neutral(m: ModelListener) -> bool:
    """Accepting, with a callback that changes nothing (so a storm's outcome
    depends on timing only in how the deliveries split)."""
    return m.can_accept() and m.cb is not None and m.cb.action in ("record", "raise", "block")


def _has_neutral(self: ListenerMachine) -> bool:
    return any(_neutral(e.model) for e in self.entries)


def _has_open_socket(self: ListenerMachine) -> bool:
    return any(e.model.socket_open for e in self.entries)


@dataclass
class RunStats:
    """What one run of the machine did (for the report and docs/testing.md)."""

    examples: int = 0
    failed_examples: int = 0
    steps: int = 0
    deliveries: int = 0
    listeners: int = 0
    rules: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        racing = sum(n for name, n in self.rules.items() if "_racing/" in name or "storm" in name)
        return (
            f"{self.examples} example runs ({self.failed_examples} failed), {self.steps} steps "
            f"({racing} racing the loop thread), {self.listeners} listeners, "
            f"{self.deliveries} deliveries"
        )


class ListenerMachine(RuleBasedStateMachine):
    """Random lifecycles of THREADSAFE listeners on one threaded base.

    ``idx`` picks a listener by creation order, modulo the number of
    listeners the rule may use: those not freed for the calls from the main
    or a helper thread, the freed ones for ``call_after_free``, the accepting
    ones for the ``*_racing`` calls, those with an open socket for ``connect``.
    """

    #: Seeded-bug tests replace the runtime (and so the listener class).
    runtime_type: ClassVar[type[MachineRuntime]] = MachineRuntime
    #: Set by a test to count what the run did.
    stats: ClassVar[RunStats | None] = None

    def __init__(self) -> None:
        super().__init__()
        self._failed = False
        if self.stats is not None:
            self.stats.examples += 1
        self._fds_before = open_fds()
        self._threads_before = set(threading.enumerate())
        self.channel = ErrorChannel()
        self.rt = self.runtime_type(get_default_runtime(), self.channel)
        self.world = World(self.channel, self.rt)
        self.model = Model()
        self.entries: list[Entry] = []
        self._log_handler = ChannelLogHandler(self.world)
        self._previous_excepthook = threading.excepthook
        self.base = EventBase(runtime=self.rt)
        self.world.base = self.base
        listener_logger.addHandler(self._log_handler)
        threading.excepthook = self._excepthook
        try:
            self.base.start_thread("stateful-acceptor")
        except BaseException:
            listener_logger.removeHandler(self._log_handler)
            threading.excepthook = self._previous_excepthook
            self.base.close()
            raise

    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
        self.channel.report(f"uncaught exception in thread {name}:\n{text}")

    @contextmanager
    def _step(self, name: str | None = None) -> Iterator[None]:
        """Bound a step (or an invariant check, *name* None): dump every
        thread's stack if it hangs, and remember a failure for teardown."""
        if name is not None and self.stats is not None:
            self.stats.steps += 1
            self.stats.rules[name] += 1
        try:
            _dump_later()
            yield
        except BaseException as exc:
            # Printed as well as raised: if the failure does not replay (a
            # race), Hypothesis reports a Flaky error that may not show it.
            if not self._failed:
                print(f"stateful: {name or 'invariant'} failed: {exc!r}", file=sys.stderr)
            self._failed = True
            raise
        finally:
            faulthandler.cancel_dump_traceback_later()

    # ---------------------------------------------------------- plumbing

    def _pick(self, idx: int, usable: Callable[[ModelListener], bool]) -> Entry:
        candidates = [e for e in self.entries if usable(e.model)]
        return candidates[idx % len(candidates)]

    def _quiesce(self) -> None:
        """Two round trips through the loop thread: what it had to do is done."""
        for _ in range(2):
            done = threading.Event()
            self.base.call_soon_threadsafe(done.set)
            if not done.wait(WAIT_TIMEOUT):
                raise InvariantViolation(
                    f"the loop thread did not run a call_soon within {WAIT_TIMEOUT} s\n"
                    f"{all_stacks()}"
                )

    def _settle(self) -> None:
        """Wait for the deliveries the model expects, then quiesce."""

        def arrived() -> bool:
            return all(len(e.live.deliveries) >= e.model.delivered for e in self.entries)

        with self.world.cond:
            ok = self.world.cond.wait_for(arrived, WAIT_TIMEOUT)
        if not ok:
            with self.world.cond:
                got = [(len(e.live.deliveries), e.model.delivered) for e in self.entries]
            raise InvariantViolation(f"deliveries (got, expected) per listener: {got}")
        self._quiesce()
        # What went wrong in another thread is the cause of anything the
        # step would find next: report it first.
        self.channel.raise_if_any()

    def _connect(self, entry: Entry, n: int) -> None:
        """Connect *n* clients, after the model has been told about them."""
        for _ in range(n):
            try:
                client = socket.create_connection(("127.0.0.1", entry.port), timeout=WAIT_TIMEOUT)
            except (ConnectionRefusedError, ConnectionResetError):
                # A callback freed a CLOSE_ON_FREE listener after an earlier
                # client of this step: the model has it closed, and a client
                # that comes too late is refused (or reset mid-handshake).
                if entry.model.socket_open:
                    raise
                continue
            entry.clients.append(client)
            entry.client_ports.add(client.getsockname()[1])

    def _in_thread(self, fn: Callable[[], _T], via: Via, what: str) -> _T:
        if via == "main":
            return fn()
        return Helper(fn, what).start().join()

    # ---------------------------------------------------------- rules

    @initialize(cb=SET_CB, flags=LISTENER_FLAGS, max_accepts=MAX_ACCEPTS, make=MAKE, via=VIA)
    def first_listener(
        self,
        cb: CbSpec | None,
        flags: LEV_OPT,
        max_accepts: int,
        make: Make,
        via: Via,
    ) -> None:
        """Every example has a listener (swarm testing may disable ``create``)."""
        self.create(cb, flags, max_accepts, make, via)

    @precondition(_may_create)
    @rule(cb=SET_CB, flags=LISTENER_FLAGS, max_accepts=MAX_ACCEPTS, make=MAKE, via=VIA)
    def create(
        self,
        cb: CbSpec | None,
        flags: LEV_OPT,
        max_accepts: int,
        make: Make,
        via: Via,
    ) -> None:
        with self._step("create"):
            lid = len(self.model.listeners)
            mcb = None if cb is None else self.model.make_cb(cb)
            real = None if mcb is None else self.world.make_cb(lid, mcb)
            arg = None if real is None else real.arg

            def build() -> tuple[Listener, OwnedLock, socket.socket]:
                if make == "bind":
                    listener = Listener.bind(
                        self.base, ("127.0.0.1", 0), real, arg, flags=flags, max_accepts=max_accepts
                    )
                    return listener, self.rt.take_listener_lock(), listener.socket
                sock = CountingSocket()
                try:
                    sock.bind(("127.0.0.1", 0))
                    listener = Listener.from_socket(
                        self.base, sock, real, arg, flags=flags, max_accepts=max_accepts
                    )
                except BaseException:
                    sock.close()
                    raise
                return listener, self.rt.take_listener_lock(), sock

            listener, lock, sock = self._in_thread(build, via, "create")
            self.rt.register(listener, lock)
            m = self.model.add(flags, max_accepts, mcb)
            live = Live(
                lid=lid,
                listener=listener,
                lock=lock,
                sock=sock,
                leave_blocking=bool(flags & LEV_OPT.LEAVE_SOCKETS_BLOCKING),
                closed_by=None if m.can_accept() else "creation (disabled or no callback)",
            )
            with self.world.cond:
                self.world.lives[lid] = live
            self.entries.append(Entry(m, live, sock.getsockname()[1]))

    def _direct(self, idx: int, op: Op, via: Via, then_connect: int) -> None:
        """*op* from the main thread or a helper, then *then_connect* clients
        connect (if the socket is still open)."""
        with self._step(f"{op.kind}/{via}"):
            entry = self._pick(idx, lambda m: not m.freed)
            m = entry.model
            mop = self.model.make_op(op)
            real = self.world.make_op(m.lid, mop)
            expected = m.apply(mop)
            opens = m.can_accept()
            m.drain()
            outcome = self._in_thread(
                lambda: self.world.run_op(entry.live, real, opens, via), via, op.kind
            )
            if outcome != expected:
                raise InvariantViolation(f"{op.kind}() from {via}: {outcome}, model: {expected}")
            then_connect = min(then_connect, MAX_QUEUED - m.queued)
            if then_connect and m.socket_open:
                m.connect(then_connect)
                self._connect(entry, then_connect)
            self._settle()

    def _racing(self, idx: int, op: Op, how: How) -> None:
        with self._step(f"{op.kind}_racing/{how}"):
            entry = self._pick(idx, lambda m: m.can_accept())
            m, live = entry.model, entry.live
            mop = self.model.make_op(op)
            real = self.world.make_op(m.lid, mop)
            if how == "callback":
                self._from_callback(entry, mop, real)
            elif how == "helper_during_callback":
                self._during_callback(entry, mop, real)
            else:
                self._in_dispatch_window(entry, mop, real)
            with self.world.cond:
                if live.pending is not None:
                    raise InvariantViolation(f"the pending effect was not consumed: {live.pending}")

    def _from_callback(self, entry: Entry, mop: ModelOp, real: RealOp) -> None:
        m, live = entry.model, entry.live
        m.pending = mop
        m.connect(1)
        pending = PendingOp(real, opens=m.can_accept())
        with self.world.cond:
            live.pending = pending
        self._connect(entry, 1)
        self._settle()
        if pending.outcome_box != m.callback_outcomes[-1:]:
            raise InvariantViolation(
                f"{mop.kind}() from the callback: {pending.outcome_box}, "
                f"model: {m.callback_outcomes[-1:]}"
            )

    def _during_callback(self, entry: Entry, mop: ModelOp, real: RealOp) -> None:
        m, live = entry.model, entry.live
        m.pending = GATE
        m.connect(1)
        expected = m.apply(mop)
        opens = m.can_accept()
        m.drain()
        gate = Gate()
        self.world.gates.append(gate)
        with self.world.cond:
            live.pending = gate
        self._connect(entry, 1)
        if not gate.entered.wait(WAIT_TIMEOUT):
            raise InvariantViolation("no callback reached the gate")
        helper = Helper(lambda: self.world.run_op(live, real, opens, "helper"), mop.kind).start()
        try:
            if helper.done.wait(GATE_PROBE_SECONDS):
                raise InvariantViolation(
                    f"{mop.kind}() from a helper returned while a callback of its listener ran"
                )
        finally:
            gate.release.set()
        outcome = helper.join()
        if outcome != expected:
            raise InvariantViolation(f"{mop.kind}() during a callback: {outcome}, model {expected}")
        self._settle()

    def _in_dispatch_window(self, entry: Entry, mop: ModelOp, real: RealOp) -> None:
        m, live = entry.model, entry.live
        m.queued += 1
        expected = m.apply(mop)
        opens = m.can_accept()
        m.drain()
        hold = self.rt.hold_dispatch(live.listener)
        try:
            self._connect(entry, 1)
            if not hold.reached.wait(WAIT_TIMEOUT):
                raise InvariantViolation("the loop thread never dispatched the listener")
            # It must not wait for the loop thread, which is held right here.
            helper = Helper(lambda: self.world.run_op(live, real, opens, "helper"), mop.kind)
            outcome = helper.start().join()
        finally:
            hold.release.set()
        if outcome != expected:
            raise InvariantViolation(f"{mop.kind}() in the window: {outcome}, model {expected}")
        self._settle()

    @precondition(_has_live)
    @rule(idx=IDX, via=VIA, then_connect=THEN_CONNECT)
    def enable(self, idx: int, via: Via, then_connect: int) -> None:
        self._direct(idx, Op("enable"), via, then_connect)

    @precondition(_has_live)
    @rule(idx=IDX, via=VIA, then_connect=THEN_CONNECT)
    def disable(self, idx: int, via: Via, then_connect: int) -> None:
        self._direct(idx, Op("disable"), via, then_connect)

    @precondition(_has_live)
    @rule(idx=IDX, cb=SET_CB, via=VIA, then_connect=THEN_CONNECT)
    def set_cb(self, idx: int, cb: CbSpec | None, via: Via, then_connect: int) -> None:
        self._direct(idx, Op("set_cb", cb), via, then_connect)

    @precondition(_has_live)
    @rule(idx=IDX, errcb=ERRCB, via=VIA, then_connect=THEN_CONNECT)
    def set_error_cb(self, idx: int, errcb: int | None, via: Via, then_connect: int) -> None:
        self._direct(idx, Op("set_error_cb", errcb_id=errcb), via, then_connect)

    @precondition(_has_live)
    @rule(idx=IDX, via=VIA, then_connect=THEN_CONNECT)
    def free(self, idx: int, via: Via, then_connect: int) -> None:
        self._direct(idx, Op("free"), via, then_connect)

    @precondition(_has_freed)
    @rule(idx=IDX, kind=st.sampled_from(("free", "enable", "disable", "set_cb", "set_error_cb")))
    def call_after_free(self, idx: int, kind: OpKind) -> None:
        """Every call on a freed listener raises ListenerFreedError, and changes nothing."""
        with self._step("call_after_free"):
            entry = self._pick(idx, lambda m: m.freed)
            spec = CbSpec("record", 0) if kind == "set_cb" else None
            real = self.world.make_op(entry.model.lid, self.model.make_op(Op(kind, spec, 0)))
            outcome = call_op(entry.listener, real)
            if outcome != FREED:
                raise InvariantViolation(f"{kind}() after free: {outcome}")
            self._settle()

    @precondition(_has_accepting)
    @rule(idx=IDX, how=HOW)
    def enable_racing(self, idx: int, how: How) -> None:
        self._racing(idx, Op("enable"), how)

    @precondition(_has_accepting)
    @rule(idx=IDX, how=HOW)
    def disable_racing(self, idx: int, how: How) -> None:
        self._racing(idx, Op("disable"), how)

    @precondition(_has_accepting)
    @rule(idx=IDX, cb=SET_CB, how=HOW)
    def set_cb_racing(self, idx: int, cb: CbSpec | None, how: How) -> None:
        self._racing(idx, Op("set_cb", cb), how)

    @precondition(_has_accepting)
    @rule(idx=IDX, errcb=ERRCB, how=HOW)
    def set_error_cb_racing(self, idx: int, errcb: int | None, how: How) -> None:
        self._racing(idx, Op("set_error_cb", errcb_id=errcb), how)

    @precondition(_has_accepting)
    @rule(idx=IDX, how=HOW)
    def free_racing(self, idx: int, how: How) -> None:
        self._racing(idx, Op("free"), how)

    # Storms: real, unsynchronised races between a helper thread that
    # connects clients and calls from the main thread.  How the deliveries
    # split around the calls depends on timing, so the model takes the split
    # from what happened, after checking it against everything that does not
    # depend on timing: each connection is delivered once, with its callback's
    # own arg, to callbacks in the order they were installed, and none after
    # disable()/free()/set_cb(None) returned.  The GIL switch interval is
    # lowered meanwhile so that the threads interleave finely.

    def _storm(
        self, entry: Entry, clients: int, calls: Callable[[], None]
    ) -> list[tuple[int, int]]:
        """Connect *clients* from a helper while *calls* runs here; return the
        deliveries of the connections that came in (all made by now)."""
        m, live = entry.model, entry.live
        with self.world.cond:
            before = len(live.deliveries)
        connected = len(entry.clients)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(STORM_SWITCH_INTERVAL)
        try:
            connecting = Helper(lambda: self._connect(entry, clients), "connect").start()
            calls()
            connecting.join()
        finally:
            sys.setswitchinterval(interval)
        arrived = len(entry.clients) - connected  # a freed socket refuses the late ones
        if m.can_accept():  # the listener kept accepting: every connection is delivered
            with self.world.cond:
                ok = self.world.cond.wait_for(
                    lambda: len(live.deliveries) >= before + arrived, WAIT_TIMEOUT
                )
            if not ok:
                raise InvariantViolation(f"storm: {arrived} connections, not all delivered")
        # Otherwise the call that stopped it has returned: no callback runs or
        # will start, so the deliveries are final.
        self._quiesce()
        with self.world.cond:
            observed = live.deliveries[before:]
        if len(observed) > arrived:
            raise InvariantViolation(f"storm: {len(observed)} deliveries of {arrived} connections")
        m.queued += arrived - len(observed)
        return observed

    @precondition(_has_neutral)
    @rule(
        idx=IDX,
        arg_ids=st.lists(ARG_IDS, min_size=1, max_size=4),
        clients=st.integers(min_value=2, max_value=8),
    )
    def set_cb_storm(self, idx: int, arg_ids: list[int], clients: int) -> None:
        """``set_cb`` (recording callbacks) from the main thread while clients connect."""
        with self._step("set_cb_storm"):
            entry = self._pick(idx, _neutral)
            m, live = entry.model, entry.live
            old = m.cb
            assert old is not None
            new = [self.model.make_cb(CbSpec("record", arg_id)) for arg_id in arg_ids]
            reals = [self.world.make_cb(m.lid, mcb) for mcb in new]
            m.cb = new[-1]

            def calls() -> None:
                for real in reals:
                    outcome = self.world.run_op(live, RealOp("set_cb", real), True, "main")
                    if outcome != OK:
                        raise InvariantViolation(f"set_cb() in a storm: {outcome}")

            observed = self._storm(entry, clients, calls)
            order = [old.cb_id] + [mcb.cb_id for mcb in new]
            ranks = [order.index(cb_id) if cb_id in order else -1 for cb_id, _ in observed]
            if -1 in ranks or ranks != sorted(ranks):
                raise InvariantViolation(
                    f"set_cb storm: deliveries {observed} out of install order {order}"
                )
            self._absorb(m, old, observed)

    @precondition(_has_neutral)
    @rule(
        idx=IDX,
        kind=st.sampled_from(("disable", "free", "set_cb")),
        clients=st.integers(min_value=1, max_value=8),
    )
    def stop_storm(self, idx: int, kind: OpKind, clients: int) -> None:
        """``disable``, ``free`` or ``set_cb(None)`` from the main thread while
        clients connect: some are delivered, the rest wait (or are lost to free)."""
        with self._step("stop_storm"):
            entry = self._pick(idx, _neutral)
            m, live = entry.model, entry.live
            old = m.cb
            assert old is not None
            mop = ModelOp(kind)  # set_cb(None)
            m.apply(mop)

            def calls() -> None:
                outcome = self.world.run_op(live, RealOp(kind), False, "main")
                if outcome != OK:
                    raise InvariantViolation(f"{kind}() in a storm: {outcome}")

            observed = self._storm(entry, clients, calls)
            if kind != "free" and m.queued:
                observed += self._let_in_leftovers(entry, kind, old)
            if any(cb_id != old.cb_id for cb_id, _ in observed):
                raise InvariantViolation(f"stop storm: deliveries {observed}, callback {old}")
            self._absorb(m, old, observed)

    def _let_in_leftovers(self, entry: Entry, kind: OpKind, old: ModelCb) -> list[tuple[int, int]]:
        """Undo a storm's ``disable``/``set_cb(None)``, let the connections it
        left queued in, and stop again.  How many it left depends on timing;
        left queued, they would make the model's later states (and so the
        preconditions, and Hypothesis's draws) depend on timing too."""
        m, live = entry.model, entry.live
        with self.world.cond:
            before = len(live.deliveries)
        undo = (
            RealOp("enable") if kind == "disable" else RealOp("set_cb", self.world.cbs[old.cb_id])
        )
        if self.world.run_op(live, undo, True, "main") != OK:
            raise InvariantViolation(f"undoing {kind}() after a storm failed")
        with self.world.cond:
            ok = self.world.cond.wait_for(
                lambda: len(live.deliveries) >= before + m.queued, WAIT_TIMEOUT
            )
        if not ok:
            raise InvariantViolation(f"{m.queued} connections left by a storm, not all delivered")
        if self.world.run_op(live, RealOp(kind), False, "main") != OK:
            raise InvariantViolation(f"{kind}() again after a storm failed")
        self._quiesce()
        with self.world.cond:
            drained = live.deliveries[before:]
        if len(drained) != m.queued:
            raise InvariantViolation(f"{len(drained)} deliveries of {m.queued} leftovers")
        m.queued = 0
        return drained

    @staticmethod
    def _absorb(m: ModelListener, old: ModelCb, observed: list[tuple[int, int]]) -> None:
        """Take a storm's deliveries into the model."""
        m.deliveries += observed
        if old.action == "raise":
            m.raises += sum(cb_id == old.cb_id for cb_id, _ in observed)

    @precondition(_has_open_socket)
    @rule(idx=IDX, n=st.integers(min_value=1, max_value=4))
    def connect(self, idx: int, n: int) -> None:
        with self._step("connect"):
            entry = self._pick(idx, lambda m: m.socket_open)
            n = min(n, MAX_QUEUED - entry.model.queued)
            entry.model.connect(n)
            self._connect(entry, n)
            self._settle()

    @rule()
    def quiesce(self) -> None:
        with self._step("quiesce"):
            self._settle()

    # ---------------------------------------------------------- invariants

    @invariant()
    def matches_model(self) -> None:
        with self._step():
            self.channel.raise_if_any()
            problems: list[str] = []
            for entry in self.entries:
                problems += [f"listener {entry.model.lid}: {p}" for p in self._check(entry)]
            if problems:
                raise InvariantViolation("\n".join(problems))

    def _check(self, entry: Entry) -> list[str]:
        m, live, listener = entry.model, entry.live, entry.listener
        problems: list[str] = []
        trace = self.rt.trace(listener)
        problems += check_trace(trace, m.freed)
        refcount = listener.refcount
        if listener.freed != m.freed:
            problems.append(f"freed={listener.freed}, model {m.freed}")
        if m.freed:
            if refcount != 0:
                problems.append(f"refcount {refcount} after free, not 0")
            try:
                listener.enabled  # noqa: B018 (the property raises after free)
            except ListenerFreedError:
                pass
            else:
                problems.append("a property did not raise ListenerFreedError after free")
        else:
            if refcount != 1:
                problems.append(f"refcount {refcount} while idle, not 1")
            if listener.enabled != m.enabled:
                problems.append(f"enabled={listener.enabled}, model {m.enabled}")
            if listener.backing_off:
                problems.append("backing off, with no accept error")
            if listener.socket is not live.sock or listener.fd != live.sock.fileno():
                problems.append("the listening socket changed")
        closed = live.sock.fileno() == -1
        if closed != (m.freed and m.close_on_free):
            problems.append(f"listening socket closed={closed}; freed={m.freed}, flags={m.flags!r}")
        if isinstance(live.sock, CountingSocket) and live.sock.closes != int(closed):
            problems.append(f"listening socket close() called {live.sock.closes} times")
        with self.world.cond:
            deliveries = list(live.deliveries)
            peers = list(live.peers)
            raises = live.raises
        if deliveries != m.deliveries:
            problems.append(f"deliveries (cb_id, arg_id) {deliveries}, model {m.deliveries}")
        if trace.accepted != len(deliveries) + m.closed_by_listener:
            # threadlisten closes an accepted socket itself only if setblocking fails.
            problems.append(
                f"accepted {trace.accepted} != delivered {len(deliveries)} + closed by "
                f"the listener {m.closed_by_listener} (the model's)"
            )
        if len(set(peers)) != len(peers) or not set(peers) <= entry.client_ports:
            problems.append(f"peers {peers} are not distinct clients of {entry.client_ports}")
        if raises != m.raises:
            problems.append(f"{raises} deliberate raises logged, model {m.raises}")
        return problems

    # ---------------------------------------------------------- teardown

    def _free_and_check_all(self) -> list[str]:
        """Free what is alive, then check every listener as freed."""
        problems: list[str] = []
        try:
            self._quiesce()
        except InvariantViolation as exc:
            problems.append(str(exc))
        for entry in self.entries:
            if not entry.model.freed:
                try:
                    self.world.run_op(entry.live, RealOp("free"), False, "teardown")
                except Exception as exc:
                    problems.append(f"listener {entry.model.lid}: free() failed: {exc!r}")
                entry.model.apply(ModelOp("free"))
        for entry in self.entries:
            problems += [f"listener {entry.model.lid}: {p}" for p in self._check(entry)]
        return problems

    def teardown(self) -> None:
        problems: list[str] = []
        try:
            _dump_later()
            self.world.release_everything()
            problems += self._free_and_check_all()
        except Exception:
            problems.append(f"teardown failed:\n{traceback.format_exc()}")
        finally:
            for entry in self.entries:
                entry.live.sock.close()  # the caller's, without CLOSE_ON_FREE
            try:
                self.base.stop(WAIT_TIMEOUT)
                self.base.close()
            except Exception as exc:
                problems.append(f"stopping the base: {exc!r}")
            for entry in self.entries:
                for client in entry.clients:
                    client.close()
            listener_logger.removeHandler(self._log_handler)
            threading.excepthook = self._previous_excepthook
            faulthandler.cancel_dump_traceback_later()
        problems += self.channel.take()
        if self.stats is not None:
            self.stats.failed_examples += self._failed or bool(problems)
            self.stats.listeners += len(self.entries)
            self.stats.deliveries += sum(len(e.live.deliveries) for e in self.entries)
        new_threads = [t for t in threading.enumerate() if t not in self._threads_before]
        for thread in new_threads:
            thread.join(WAIT_TIMEOUT)
        alive = [t.name for t in new_threads if t.is_alive()]
        if alive:
            problems.append(f"threads left running: {alive}")
        leaked = open_fds() - self._fds_before
        if leaked:
            problems.append(f"descriptors left open: {sorted(leaked)}")
        if problems and not self._failed:
            raise InvariantViolation("\n".join(problems))


# ------------------------------------------------------------------ the tests

pytestmark = pytest.mark.allow_error_logs  # the "raise" action logs ERROR records


@pytest.mark.timeout(PROFILE_TIMEOUT)
def test_listener_machine(capsys: pytest.CaptureFixture[str]) -> None:
    """The machine, with the profile chosen by THREADLISTEN_HYPOTHESIS_PROFILE."""
    stats = RunStats()
    started = time.monotonic()
    ListenerMachine.stats = stats
    try:
        run_state_machine_as_test(ListenerMachine, settings=settings.get_profile(PROFILE))
    finally:
        ListenerMachine.stats = None
        with capsys.disabled():
            print(
                f"\nstateful suite, profile {PROFILE}: {stats.summary()}, "
                f"{time.monotonic() - started:.1f} s"
            )


# Seeded bugs: a listener subclass, substituted through Runtime.listener_type.


class NoBatchReferenceListener(Listener):
    """Seeded bug (a): the accept batch holds no reference, so the callbacks
    see refcount 1 and one that frees its listener destroys it mid-batch."""

    def _on_readable(self, fileobj: object, what: int, arg: object) -> None:
        self._point("listener.dispatched", listener=self)
        self._lock.acquire()
        if not self._can_accept():
            self._lock.release()
            return
        try:
            self._accept_batch()
        finally:
            self._lock.release()


class CallbackOutsideLockListener(Listener):
    """Seeded bug (b): libevent before #1224: the lock is dropped around the
    user callback, and the callback and its arg are read after dropping it."""

    def _accept_batch(self) -> None:
        for _ in range(self._max_accepts):
            if not self._can_accept():
                return
            try:
                conn, address = self._sock.accept()
            except OSError as err:
                kind = classify(err)
                if kind is AcceptErrorClass.DRAINED:
                    return
                if kind is AcceptErrorClass.PER_CONNECTION:
                    continue
                self._accept_failed(err, kind)
                return
            self._point("listener.accepted", listener=self)
            conn.setblocking(bool(self._flags & LEV_OPT.LEAVE_SOCKETS_BLOCKING))
            self._lock.release()
            try:
                cb, arg = self._cb, self._arg  # outside the lock: the bug
                if cb is None:
                    conn.close()
                    continue
                try:
                    cb(self, conn, address, arg)
                except Exception:
                    listener_logger.exception("exception in accept callback %r", cb)
            finally:
                self._lock.acquire()


def _seeded_machine(listener_cls: type[Listener]) -> type[ListenerMachine]:
    class SeededRuntime(MachineRuntime):
        def listener_type(self, cls: type[_T]) -> type[_T]:
            return cast(type[_T], listener_cls)

    class SeededMachine(ListenerMachine):
        runtime_type = SeededRuntime

    SeededMachine.__name__ = f"ListenerMachineWith{listener_cls.__name__}"
    return SeededMachine


SEEDED_SETTINGS = settings(
    _COMMON,
    max_examples=100,
    stateful_step_count=10,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
)


@pytest.mark.parametrize(
    ("listener_cls", "symptom"),
    [
        (NoBatchReferenceListener, "refcount is 1 inside a callback, not 2"),
        (CallbackOutsideLockListener, "the callback runs without the listener lock held"),
    ],
)
def test_the_machine_catches_a_seeded_bug(listener_cls: type[Listener], symptom: str) -> None:
    """Break one rule of the contract in a listener subclass: the machine fails."""
    try:
        with pytest.raises(InvariantViolation) as info:
            run_state_machine_as_test(_seeded_machine(listener_cls), settings=SEEDED_SETTINGS)
    finally:
        # With lock debugging on, the checker sees the bug too (bug (a): the
        # listener destroyed under the batch's lock): expected here.
        threadlisten.debug.clear_errors()
    assert symptom in str(info.value)


def test_the_machine_substitutes_no_listener_class() -> None:
    """The machine tests the listener class the default runtime gives
    (``Listener``, or its lock-checked subclass) unless a test substitutes one."""
    machine = ListenerMachine()
    try:
        machine.create(None, LEV_OPT.THREADSAFE, 64, "bind", "main")
        expected = get_default_runtime().listener_type(Listener)
        assert type(machine.entries[0].listener) is expected
    finally:
        machine.teardown()


# A few checks of the model itself.


def _model_with(spec: CbSpec, flags: LEV_OPT = LEV_OPT.THREADSAFE) -> tuple[Model, ModelListener]:
    model = Model()
    return model, model.add(flags, 64, model.make_cb(spec))


def test_model_disable_action_leaves_the_rest_queued() -> None:
    model, m = _model_with(CbSpec("disable", 0))
    m.connect(3)
    assert (m.delivered, m.queued, m.enabled) == (1, 2, False)
    m.apply(model.make_op(Op("enable")))
    m.drain()
    assert (m.delivered, m.queued, m.enabled) == (2, 1, False)


def test_model_swap_hands_the_rest_to_the_successor() -> None:
    _, m = _model_with(CbSpec("swap", 1, CbSpec("raise", 2)))
    m.connect(3)
    assert m.deliveries == [(0, 1), (1, 2), (1, 2)]
    assert m.raises == 2


def test_model_pending_op_replaces_the_action_once() -> None:
    model, m = _model_with(CbSpec("raise", 0))
    m.pending = model.make_op(Op("free"))
    m.connect(2)
    assert (m.delivered, m.raises, m.freed, m.callback_outcomes) == (1, 0, True, [OK])
    assert m.apply(model.make_op(Op("enable"))) == FREED


def test_model_disabled_connections_wait_for_enable() -> None:
    model, m = _model_with(CbSpec("record", 0), LEV_OPT.THREADSAFE | LEV_OPT.DISABLED)
    m.connect(4)
    assert (m.delivered, m.queued) == (0, 4)
    m.apply(model.make_op(Op("enable")))
    m.drain()
    assert (m.delivered, m.queued) == (4, 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
