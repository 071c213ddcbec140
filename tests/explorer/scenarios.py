"""The races the explorer must cover (issue 4), as scenarios with their contract.

Each scenario is a function ``scenario(rt)`` for ``Explorer.run``: it builds
a base and THREADSAFE listener(s) on fake sockets, starts a loop thread, then
races it from the scenario's own thread ``"main"`` (a thread other than the
loop thread, which is all "a helper" means; a second helper only where two
are needed), and asserts what ``threadlisten.listener`` promises for that race:

* ``free_vs_dispatch``: ``free()`` from another thread while the loop may sit
  between dispatching the read event and taking the listener lock
  (libevent's remaining deadlock window, point ``listener.dispatched``);
* ``disable_during_callback``: ``disable()`` from another thread while an accept
  callback runs (libevent #1224);
* ``callback_frees_while_set_cb``: a callback frees its own listener while a
  another thread calls ``set_cb``;
* ``set_cb_none_vs_accept``: ``set_cb(None)`` racing the accept loop;
* ``error_vs_free(EMFILE | EBADF)``: the error-callback path, and for EMFILE
  the back-off timer, racing ``free()``;
* ``backoff_vs_enable``: the back-off timer racing ``disable()``/``enable()``;
* ``two_listeners``: two listeners on one base, driven from two threads
  (besides the loop thread),
  with callbacks that call the other listener (lock order across listeners).

"After ``free()``/``disable()`` returns in another thread, no callback is
running and none starts" is checked on the schedule itself: every
``listener.callback_enter``/``callback_exit`` point of that listener must come
before the step at which the call returned.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from threadlisten import LEV_OPT, Listener, ListenerFreedError
from threadlisten._accept_errors import BACKOFF_MAX
from threadlisten.testing import SchedRuntime, SchedThread, StepRecord, as_fake

__all__ = [
    "SCENARIOS",
    "World",
    "backoff_vs_enable",
    "callback_frees_while_set_cb",
    "disable_during_callback",
    "error_vs_free",
    "free_vs_dispatch",
    "set_cb_none_vs_accept",
    "two_listeners",
]

FLAGS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE

#: ``base.loop(nonblock=True)`` rounds of a drain: one to run a due back-off
#: timer (which re-arms the listener), one to accept, one spare.
DRAIN_ROUNDS = 3

Scenario = Callable[[SchedRuntime], None]


@dataclass(frozen=True)
class Delivery:
    """One accept callback: which connection, which callback and argument, where, when."""

    conn: int
    cb: str
    arg: Any
    thread: str
    step: int


class World:
    """A base, a fake listening socket and a THREADSAFE listener, with records.

    Args:
        rt: the run's runtime.
        connections: clients connected before anything runs.
        errors: ``accept()`` errors queued ahead of them.
        flags: the listener's flags.
    """

    def __init__(
        self,
        rt: SchedRuntime,
        *,
        connections: int = 1,
        errors: tuple[int, ...] = (),
        flags: LEV_OPT = FLAGS,
    ) -> None:
        self.rt = rt
        self.base = rt.new_base()
        self.lsock = rt.listening_socket()
        self.fd = self.lsock.fileno()
        self.delivered: list[Delivery] = []
        self.errors_seen: list[int] = []
        self.listener = Listener.from_socket(self.base, self.lsock, self.cb_a, "a", flags=flags)
        for code in errors:
            self.lsock.queue_error(code)
        for _ in range(connections):
            self.lsock.connect_client()

    # ------------------------------------------------------------ callbacks

    def _record(self, name: str, listener: Listener, sock: Any, arg: Any) -> None:
        # The contract inside a callback: the batch holds a second reference.
        assert listener.refcount == 2, f"refcount {listener.refcount} inside a callback"
        conn = as_fake(sock)
        conn.close()
        rt = self.rt
        self.delivered.append(Delivery(conn.id, name, arg, rt.current_thread_name(), rt.step))

    def cb_a(self, listener: Listener, sock: Any, address: Any, arg: Any) -> None:
        """Accept callback "a": record the delivery."""
        self._record("a", listener, sock, arg)

    def cb_b(self, listener: Listener, sock: Any, address: Any, arg: Any) -> None:
        """Accept callback "b": record the delivery."""
        self._record("b", listener, sock, arg)

    def errorcb(self, listener: Listener, error: OSError, arg: Any) -> None:
        """Error callback: record the errno."""
        assert listener.refcount == 2, f"refcount {listener.refcount} inside the error callback"
        assert error.errno is not None
        self.errors_seen.append(error.errno)

    # ----------------------------------------------------------------- loop

    def start_loop(self) -> SchedThread:
        """Start thread "loop" running ``dispatch()`` (ended by ``stop_loop``)."""
        return self.rt.spawn(self.base.dispatch, "loop")

    def stop_loop(self, loop: SchedThread) -> None:
        """``loopexit()`` (kept even if the loop has not started yet), then join it."""
        self.base.loopexit()
        loop.join()

    def drain(self) -> None:
        """On this thread: let any back-off end and accept whatever may be accepted."""
        for _ in range(DRAIN_ROUNDS):
            self.rt.advance(BACKOFF_MAX)
            self.base.loop(nonblock=True)

    # ------------------------------------------------------------- checks

    def assert_quiet_after(self, returned: int, listener: Listener, what: str) -> None:
        """No callback of *listener* was running at step *returned* or started after it."""
        for kind in ("listener.callback_enter", "listener.callback_exit"):
            late = [
                p.number for p in self.rt.points(kind, listener=listener) if p.number > returned
            ]
            assert not late, f"{kind} at steps {late}, after {what} returned at step {returned}"

    def assert_destroyed_once(self, listener: Listener) -> StepRecord:
        """Destroy ran exactly once; return its step."""
        destroys = self.rt.points("listener.destroy", listener=listener)
        assert len(destroys) == 1, f"destroy ran {len(destroys)} times"
        assert listener.refcount == 0
        return destroys[0]

    def registered(self) -> bool:
        """Whether the listening descriptor is in the base's (fake) selector."""
        return any(self.fd in sel.get_map() for sel in self.rt.selectors())

    def registrations_after(self, listener: Listener, step: int) -> list[int]:
        """Steps after *step* at which the listener's read event was (re)registered."""
        out = []
        for p in self.rt.points("event.register"):
            info = getattr(p.op, "info", {})
            owner = getattr(getattr(info.get("event"), "callback", None), "__self__", None)
            if owner is listener and p.number > step:
                out.append(p.number)
        return out

    def close(self, *listeners: Listener) -> None:
        """Free what is still alive, close the base."""
        for listener in (self.listener, *listeners):
            if not listener.freed:
                listener.free()
        self.base.close()


def _first_step_of(rt: SchedRuntime, thread: str, after: int) -> int:
    """The first step after *after* performed by *thread* (its next operation)."""
    for record in rt.trace:
        if record.number > after and record.thread == thread:
            return record.number
    raise AssertionError(f"thread {thread!r} took no step after {after}")


# ------------------------------------------------------------- scenarios


def free_vs_dispatch(rt: SchedRuntime) -> None:
    """``free()`` racing a dispatch that has not yet taken the lock."""
    w = World(rt, connections=1)
    lev = w.listener
    loop = rt.spawn(lambda: w.base.loop(once=True), "loop")
    lev.free()
    returned = rt.step
    w.stop_loop(loop)
    w.assert_quiet_after(returned, lev, "free()")
    assert lev.freed
    w.assert_destroyed_once(lev)
    assert w.lsock.fake_closed
    # Accepted means delivered: nothing is accepted and then dropped.
    assert len(w.lsock.accepted) == len(w.delivered) <= 1
    w.close()


def disable_during_callback(rt: SchedRuntime) -> None:
    """``disable()`` while a callback may be running (libevent #1224)."""
    w = World(rt, connections=2)
    lev = w.listener
    loop = w.start_loop()
    lev.disable()
    w.assert_quiet_after(rt.step, lev, "disable()")
    assert len(w.lsock.accepted) == len(w.delivered)
    lev.enable()
    w.stop_loop(loop)
    w.drain()
    # Every connection delivered exactly once, in order, none lost.
    assert [d.conn for d in w.delivered] == [1, 2]
    assert lev.refcount == 1
    w.close()


def _freeing(w: World, name: str) -> Callable[[Listener, Any, Any, Any], None]:
    def cb(listener: Listener, sock: Any, address: Any, arg: Any) -> None:
        w._record(name, listener, sock, arg)
        listener.free()
        # Freed from inside: the batch's reference keeps it alive until we return.
        assert listener.freed
        assert listener.refcount == 1

    return cb


def callback_frees_while_set_cb(rt: SchedRuntime) -> None:
    """A callback frees its own listener while another thread calls ``set_cb``."""
    w = World(rt, connections=1)
    lev = w.listener
    lev.set_cb(_freeing(w, "a"), "a")
    loop = rt.spawn(lambda: w.base.loop(once=True), "loop")
    try:
        lev.set_cb(_freeing(w, "b"), "b")
        swapped = True
    except ListenerFreedError:
        swapped = False
    w.stop_loop(loop)
    assert len(w.delivered) == 1
    d = w.delivered[0]
    assert (d.cb, d.arg) in {("a", "a"), ("b", "b")}, f"torn callback pair {d}"
    # set_cb succeeded exactly when it came before the callback (which frees).
    assert (d.cb == "b") == swapped, (d, swapped)
    destroy = w.assert_destroyed_once(lev)
    assert destroy.thread == "loop"
    w.close()


def set_cb_none_vs_accept(rt: SchedRuntime) -> None:
    """``set_cb(None)`` racing the accept loop."""
    w = World(rt, connections=2)
    lev = w.listener
    loop = w.start_loop()
    lev.set_cb(None)
    w.assert_quiet_after(rt.step, lev, "set_cb(None)")
    # Nothing is accepted unless a callback receives it.
    assert len(w.lsock.accepted) == len(w.delivered)
    w.stop_loop(loop)
    lev.set_cb(w.cb_a, "a")
    w.drain()
    assert [d.conn for d in w.delivered] == [1, 2]
    w.close()


def error_vs_free(code: int) -> Scenario:
    """The error path (and, for EMFILE, the back-off timer) racing ``free()``."""

    def scenario(rt: SchedRuntime) -> None:
        w = World(rt, connections=1, errors=(code,))
        lev = w.listener
        lev.set_error_cb(w.errorcb)
        loop = w.start_loop()
        lev.free()
        returned = rt.step
        w.stop_loop(loop)
        w.assert_quiet_after(returned, lev, "free()")
        # A back-off timer that fires after free() finds the listener freed:
        # it never re-arms it.
        assert not w.registrations_after(lev, returned)
        assert not w.registered()
        w.assert_destroyed_once(lev)
        assert w.errors_seen in ([], [code])
        assert len(w.lsock.accepted) == len(w.delivered) <= 1
        w.close()

    scenario.__name__ = f"error_vs_free_{errno.errorcode[code]}"
    return scenario


def backoff_vs_enable(rt: SchedRuntime) -> None:
    """The back-off timer racing ``disable()`` then ``enable()``."""
    w = World(rt, connections=1, errors=(errno.EMFILE,))
    lev = w.listener
    lev.set_error_cb(w.errorcb)
    loop = w.start_loop()
    lev.disable()
    off = rt.step
    lev.enable()
    # While disabled (from disable()'s return to enable()'s first step) no callback starts.
    on = _first_step_of(rt, "main", off)
    for p in rt.points("listener.callback_enter", listener=lev):
        assert not off < p.number < on, f"a callback at step {p.number} while disabled"
    w.stop_loop(loop)
    w.drain()
    assert [d.conn for d in w.delivered] == [1]
    assert w.errors_seen in ([], [errno.EMFILE])
    assert lev.enabled and not lev.backing_off
    assert w.registered()  # enabled, a callback, no back-off: armed
    w.close()


def two_listeners(rt: SchedRuntime) -> None:
    """Two listeners on one base, two driver threads, callbacks that call the
    other listener (so the loop thread holds one listener lock and takes the other)."""
    w = World(rt, connections=1)
    a = w.listener
    lsock_b = rt.listening_socket()
    b = Listener.from_socket(w.base, lsock_b, None, "b", flags=FLAGS)
    lsock_b.connect_client()
    delivered: list[str] = []

    def cb_a(listener: Listener, sock: Any, address: Any, arg: Any) -> None:
        as_fake(sock).close()
        delivered.append("a")
        with contextlib.suppress(ListenerFreedError):
            b.disable()  # a.lock -> b.lock

    def cb_b(listener: Listener, sock: Any, address: Any, arg: Any) -> None:
        as_fake(sock).close()
        delivered.append("b")
        with contextlib.suppress(ListenerFreedError):
            a.enable()  # b.lock -> a.lock

    a.set_cb(cb_a, "a")
    b.set_cb(cb_b, "b")
    # One round: both descriptors are ready, so both callbacks may run in it.
    loop = rt.spawn(lambda: w.base.loop(once=True), "loop")

    other = rt.spawn(b.free, "driver")
    a.disable()  # this thread is the second driver
    other.join()
    w.stop_loop(loop)
    assert b.freed and b.refcount == 0
    assert len(rt.points("listener.destroy", listener=b)) == 1
    assert not a.freed and a.refcount == 1
    a.enable()
    w.drain()
    assert delivered.count("a") == 1  # a's connection: delivered once, at the latest now
    assert delivered.count("b") <= 1
    assert len(w.lsock.accepted) == delivered.count("a")
    assert len(lsock_b.accepted) == delivered.count("b")
    w.close()


#: Every must-have scenario, by name.
SCENARIOS: dict[str, Scenario] = {
    "free_vs_dispatch": free_vs_dispatch,
    "disable_during_callback": disable_during_callback,
    "callback_frees_while_set_cb": callback_frees_while_set_cb,
    "set_cb_none_vs_accept": set_cb_none_vs_accept,
    "error_vs_free_EMFILE": error_vs_free(errno.EMFILE),
    "error_vs_free_EBADF": error_vs_free(errno.EBADF),
    "backoff_vs_enable": backoff_vs_enable,
    "two_listeners": two_listeners,
}
