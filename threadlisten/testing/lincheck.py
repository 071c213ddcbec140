"""Lincheck-style linearizability scenarios for a THREADSAFE ``Listener``.

A scenario is a sequential *prefix*, two or three *parallel* lists of calls
(one thread each) and a sequential *suffix* (Lincheck; qcheck-lin; the
parallel state-machine tests of quickcheck-state-machine).  Calls:

``enable()``, ``disable()``, ``free()``
    the listener's own methods; after ``free()`` they raise
    ``ListenerFreedError``, recorded as the result ``"freed"``.
``set_cb(k)``
    callback *k* (1 or 2) with argument *k*, or ``set_cb(None)``.
``set_error_cb(k)``
    error callback *k* (1 or 2).
``connect()``
    a client connects (``FakeListenSocket.connect_client``): result
    ``("ok", connection id)``, or ``"refused"`` once the socket is closed.
``connect_error(errno)``
    an ``accept()`` failure takes a place in the backlog (EMFILE: back-off;
    EBADF: fatal).

The listener starts enabled with callback 1 (argument 1) and error callback
0, on a base whose loop thread runs ``dispatch()`` the whole time.  Every
accept callback and error callback records an operation of the thread it runs
on: ``deliver(conn) -> (cb, arg)`` and ``error(errno) -> (errorcb, arg)``.
Afterwards the loop is stopped, the listener drained on the scenario's thread
(the fake clock moved past any back-off), and a final ``observe()`` records
its state.  The history is then checked against ``ListenerModel``, the
sequential specification, with ``check_linearizable``; a violation fails the
run, so the explorer reports the interleaving that produced it.

The model is the contract of ``threadlisten.listener`` for one listener, where
every call and every callback is atomic (callbacks run under the listener
lock):

* a connection is delivered only while the listener is alive, enabled, has a
  callback and is not backing off; to the head of the backlog (FIFO); with the
  ``(cb, arg)`` pair current at that moment, never half of an update;
* an accept error is consumed the same way; EMFILE starts a back-off, which
  ends at a moment of the timer's choosing (a silent model step), EBADF
  disables; the error callback receives the current error callback's id and
  the accept argument;
* ``free()`` clears both callbacks, cancels the back-off, and with
  ``CLOSE_ON_FREE`` closes the socket, resetting what was queued;
* at the end (``observe``), nothing deliverable is left queued: no connection
  is lost, and the listener is armed exactly when it should be.

Thread-safety: the scenario function runs inside ``Explorer.run``.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from threadlisten import LEV_OPT, Listener, ListenerFreedError
from threadlisten._accept_errors import BACKOFF_MAX, AcceptErrorClass, classify
from threadlisten.testing._fakes import FakeConnection, as_fake
from threadlisten.testing._sched_runtime import SchedRuntime
from threadlisten.testing.linearizability import History, Operation, check_linearizable

__all__ = [
    "CALL_NAMES",
    "Call",
    "LinScenario",
    "ListenerModel",
    "ListenerState",
    "Observation",
    "lincheck",
]

#: The calls a scenario may make.
CALL_NAMES: Final = (
    "enable",
    "disable",
    "set_cb",
    "set_error_cb",
    "free",
    "connect",
    "connect_error",
)

#: The accept callback and argument the listener starts with.
INITIAL_CB: Final = 1
#: The error callback it starts with (set before the loop starts).
INITIAL_ERRORCB: Final = 0


@dataclass(frozen=True)
class Call:
    """One call of a scenario: *name* (see ``CALL_NAMES``) and its argument.

    Raises:
        ValueError: unknown name or bad argument.
    """

    name: str
    arg: int | None = None

    def __post_init__(self) -> None:
        if self.name not in CALL_NAMES:
            raise ValueError(f"unknown call {self.name!r}")
        if self.name == "set_cb" and self.arg not in (None, 1, 2):
            raise ValueError("set_cb takes 1, 2 or None")
        if self.name == "set_error_cb" and self.arg not in (1, 2):
            raise ValueError("set_error_cb takes 1 or 2")
        if self.name == "connect_error" and self.arg not in (errno.EMFILE, errno.EBADF):
            raise ValueError("connect_error takes EMFILE or EBADF")

    def __str__(self) -> str:
        if self.name == "connect_error":
            return f"connect_error({errno.errorcode[self.arg or 0]})"
        if self.name in ("set_cb", "set_error_cb"):
            return f"{self.name}({self.arg})"
        return f"{self.name}()"


@dataclass(frozen=True)
class LinScenario:
    """A prefix, parallel threads of calls, a suffix (Lincheck's scenario shape).

    Attributes:
        prefix: calls made on the scenario's thread before the parallel part.
        parallel: one tuple of calls per thread (2 or 3 threads).
        suffix: calls made on the scenario's thread after joining them.
        close_on_free: whether the listener has ``CLOSE_ON_FREE``.
    """

    prefix: tuple[Call, ...] = ()
    parallel: tuple[tuple[Call, ...], ...] = field(default=((), ()))
    suffix: tuple[Call, ...] = ()
    close_on_free: bool = True

    def __str__(self) -> str:
        def calls(seq: tuple[Call, ...]) -> str:
            return "[" + ", ".join(map(str, seq)) + "]"

        parallel = " || ".join(calls(t) for t in self.parallel)
        flag = "CLOSE_ON_FREE" if self.close_on_free else "no CLOSE_ON_FREE"
        return f"{calls(self.prefix)} ; {parallel} ; {calls(self.suffix)} ({flag})"


class Observation(NamedTuple):
    """The listener's state at the end (the ``observe`` operation's result)."""

    freed: bool
    refcount: int
    enabled: bool | None  # None once freed (the property raises)
    backing_off: bool | None
    queue: tuple[int, ...]  # connection ids; an error as -errno
    closed: bool


class ListenerState(NamedTuple):
    """The model's state (hashable, for memoisation)."""

    freed: bool
    closed: bool
    enabled: bool
    cb: int | None
    arg: int | None
    errorcb: int | None
    backoff: bool
    queue: tuple[int, ...]  # connection ids; an error as -errno

    def can_accept(self) -> bool:
        """Whether the accept loop may take the head of the backlog now."""
        return not self.freed and self.enabled and self.cb is not None and not self.backoff


_OK = "ok"
_FREED = "freed"
_REFUSED = "refused"
_API = frozenset({"enable", "disable", "set_cb", "set_error_cb", "free"})
_WITH_ARG = frozenset({"set_cb", "set_error_cb", "connect_error"})


@dataclass(frozen=True)
class ListenerModel:
    """The sequential specification of one THREADSAFE listener (see the module docstring).

    Args:
        close_on_free: whether the listener has ``CLOSE_ON_FREE``.
    """

    close_on_free: bool = True

    def init(self) -> ListenerState:
        """Enabled, callback 1 with argument 1, error callback 0, nothing queued."""
        return ListenerState(
            freed=False,
            closed=False,
            enabled=True,
            cb=INITIAL_CB,
            arg=INITIAL_CB,
            errorcb=INITIAL_ERRORCB,
            backoff=False,
            queue=(),
        )

    def step(self, state: ListenerState, op: Operation) -> Iterable[ListenerState]:
        """The states *op* may lead to; a back-off may end first (the timer is free to fire)."""
        before = [state]
        if state.backoff:
            before.append(state._replace(backoff=False))
        out = []
        for s in before:
            after = self._apply(s, op)
            if after is not None and after not in out:
                out.append(after)
        return out

    def _apply(self, s: ListenerState, op: Operation) -> ListenerState | None:
        name, result = op.name, op.result
        if name in _API:
            if s.freed:
                return s if result == _FREED else None
            if result != _OK:
                return None
            if name == "enable":
                return s._replace(enabled=True)
            if name == "disable":
                return s._replace(enabled=False)
            if name == "set_cb":
                return s._replace(cb=op.args[0], arg=op.args[0])
            if name == "set_error_cb":
                return s._replace(errorcb=op.args[0])
            # free: the owner's reference was the last one (no callback runs
            # in another thread while free() holds the lock): destroy now.
            return s._replace(
                freed=True,
                cb=None,
                arg=None,
                errorcb=None,
                backoff=False,
                closed=self.close_on_free,
                queue=() if self.close_on_free else s.queue,
            )
        if name in ("connect", "connect_error"):
            if s.closed:
                return s if result == _REFUSED else None
            if name == "connect":
                if not (isinstance(result, tuple) and result[0] == _OK):
                    return None
                return s._replace(queue=(*s.queue, result[1]))
            if result != _OK:
                return None
            return s._replace(queue=(*s.queue, -op.args[0]))
        if name == "deliver":
            conn = op.args[0]
            if not (s.can_accept() and s.queue and s.queue[0] == conn):
                return None
            if result != (s.cb, s.arg):
                return None
            return s._replace(queue=s.queue[1:])
        if name == "error":
            code = op.args[0]
            if not (s.can_accept() and s.queue and s.queue[0] == -code):
                return None
            if result != (s.errorcb, s.arg):
                return None
            rest = s.queue[1:]
            if classify(OSError(code, "")) is AcceptErrorClass.RESOURCE:
                return s._replace(queue=rest, backoff=True)
            return s._replace(queue=rest, enabled=False)
        if name == "observe":
            return s if self._observed(s, result) else None
        raise ValueError(f"unknown operation {name!r}")

    @staticmethod
    def _observed(s: ListenerState, obs: Observation) -> bool:
        # Quiescent: nothing left that the listener should have delivered.
        if s.can_accept() and s.queue:
            return False
        if obs.freed != s.freed or obs.closed != s.closed or obs.queue != s.queue:
            return False
        if s.freed:
            return obs.refcount == 0
        return obs.refcount == 1 and obs.enabled == s.enabled and obs.backing_off == s.backoff


def _queue_ids(items: Iterable[FakeConnection | OSError]) -> tuple[int, ...]:
    return tuple(
        item.id if isinstance(item, FakeConnection) else -(item.errno or 0) for item in items
    )


def lincheck(scenario: LinScenario, *, max_accepts: int = 64) -> Callable[[SchedRuntime], None]:
    """Return the explorer scenario that runs *scenario* and checks linearizability.

    Args:
        scenario: the calls.
        max_accepts: the listener's ``max_accepts``.

    Returns:
        ``body(rt)`` for ``Explorer.run``; it raises ``NotLinearizable`` (an
        ``AssertionError``) when the recorded history has no linearization.
    """

    def body(rt: SchedRuntime) -> None:
        history = History()
        base = rt.new_base()
        lsock = rt.listening_socket()
        flags = LEV_OPT.THREADSAFE
        if scenario.close_on_free:
            flags |= LEV_OPT.CLOSE_ON_FREE

        def accept_cb(k: int) -> Callable[[Listener, Any, Any, Any], None]:
            def cb(listener: Listener, sock: Any, address: Any, arg: Any) -> None:
                conn = as_fake(sock)
                conn.close()
                history.instant(rt.current_thread_name(), "deliver", (conn.id,), (k, arg))

            return cb

        def error_cb(k: int) -> Callable[[Listener, OSError, Any], None]:
            def cb(listener: Listener, error: OSError, arg: Any) -> None:
                history.instant(rt.current_thread_name(), "error", (error.errno,), (k, arg))

            return cb

        callbacks = {k: accept_cb(k) for k in (1, 2)}
        errorcbs = {k: error_cb(k) for k in (0, 1, 2)}
        listener = Listener.from_socket(
            base, lsock, callbacks[INITIAL_CB], INITIAL_CB, flags=flags, max_accepts=max_accepts
        )
        listener.set_error_cb(errorcbs[INITIAL_ERRORCB])

        def perform(call: Call) -> Any:
            name = call.name
            if name == "connect":
                return (_OK, lsock.connect_client().id)
            if name == "connect_error":
                assert call.arg is not None
                lsock.queue_error(call.arg)
            elif name == "enable":
                listener.enable()
            elif name == "disable":
                listener.disable()
            elif name == "free":
                listener.free()
            elif name == "set_cb":
                k = call.arg
                listener.set_cb(None if k is None else callbacks[k], k)
            else:
                assert call.arg is not None
                listener.set_error_cb(errorcbs[call.arg])
            return _OK

        def run_calls(calls: tuple[Call, ...]) -> None:
            thread = rt.current_thread_name()
            for call in calls:
                args = (call.arg,) if call.name in _WITH_ARG else ()
                token = history.invoke(thread, call.name, *args)
                try:
                    result = perform(call)
                except ListenerFreedError:
                    result = _FREED
                except ConnectionRefusedError:
                    result = _REFUSED
                history.respond(token, result)

        loop = rt.spawn(base.dispatch, "loop")
        run_calls(scenario.prefix)
        actors = [
            rt.spawn(functools.partial(run_calls, calls), f"t{i + 1}")
            for i, calls in enumerate(scenario.parallel)
        ]
        for actor in actors:
            actor.join()
        run_calls(scenario.suffix)
        base.loopexit()
        loop.join()
        # Drain: each queued error may need a round for its back-off timer
        # and one to accept again.
        errors = sum(
            1
            for part in (scenario.prefix, *scenario.parallel, scenario.suffix)
            for call in part
            if call.name == "connect_error"
        )
        for _ in range(2 * errors + 2):
            rt.advance(BACKOFF_MAX)
            base.loop(nonblock=True)
        freed = listener.freed
        observation = Observation(
            freed=freed,
            refcount=listener.refcount,
            enabled=None if freed else listener.enabled,
            backing_off=None if freed else listener.backing_off,
            queue=_queue_ids(lsock.queued()),
            closed=lsock.fake_closed,
        )
        history.instant(rt.current_thread_name(), "observe", (), observation)
        if not freed:
            listener.free()
        base.close()
        check_linearizable(history.operations(), ListenerModel(scenario.close_on_free))

    body.__name__ = f"lincheck[{scenario}]"
    return body
