"""The listener's lifecycle: enabling and disabling, the callbacks, ``free()``,
the refcount and the thread-safety contract (issue 2, semantics 4, 5, 6, 7, 11).

Accept errors (9, 10), EMFILE, the ports of libevent's tests and the deadlock
window (8) are tested elsewhere; socket options and bad input are in
``test_listener_options.py``.

Two ways of running the loop appear here:

* the test thread runs it (``loop_once``/``loop_until``/``loop(nonblock=True)``):
  deterministic, for counting what one readiness round does;
* an acceptor thread runs it (the ``make_base(thread=True)`` fixture): for the
  cross-thread contract.  ``loop_barrier`` then returns once the loop thread
  has dispatched whatever was ready when it was called, which is how a test
  shows that something did *not* happen without sleeping.

A completed ``socket.create_connection`` on loopback means the kernel has the
connection in the listener's accept queue: no further wait is needed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import os
import random
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from _support import (
    LOCALHOST,
    Clients,
    Collector,
    ContentionRuntime,
    loop_barrier,
    loop_once,
    loop_until,
    tcp_socket,
)

from threadlisten import (
    DEFAULT_MAX_ACCEPTS,
    LEV_OPT,
    EventBase,
    Listener,
    ListenerFreedError,
)
from threadlisten._runtime import Runtime

#: Every bounded wait in this file (the shared helpers bound theirs by ``_support.WAIT``).
WAIT = 5.0
TS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE

T = TypeVar("T")


# ------------------------------------------------------------------ helpers


class ProbeRuntime(ContentionRuntime):
    """A runtime that traces the listener's callbacks and destroy, and reports
    (``contended``) when a thread is kept waiting for a listener lock."""

    TRACED = (
        "listener.dispatched",
        "listener.callback_enter",
        "listener.callback_exit",
        "listener.destroy",
    )

    def __init__(self) -> None:
        super().__init__()
        self.base: EventBase | None = None  # the base whose loop ran last
        self._trace_lock = threading.Lock()
        #: (kind without "listener.", thread ident, on the loop thread)
        self._trace: list[tuple[str, int, bool]] = []

    def point(self, kind: str, **info: Any) -> None:
        if kind == "base.loop_enter":
            self.base = info["base"]
        elif kind in self.TRACED:
            in_loop = self.base is not None and self.base.in_loop_thread()
            with self._trace_lock:
                self._trace.append((kind.split(".", 1)[1], threading.get_ident(), in_loop))

    @property
    def trace(self) -> list[tuple[str, int, bool]]:
        with self._trace_lock:
            return list(self._trace)

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.trace]


def run_in_loop(base: EventBase, fn: Callable[[], T]) -> T:
    """Run *fn* on *base*'s loop thread and return its result (bounded wait)."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def call() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    base.call_soon_threadsafe(call)
    return future.result(timeout=WAIT)


def run_threads(targets: list[Callable[[], None]], timeout: float = 3 * WAIT) -> None:
    """Run *targets* in threads at once, join them (bounded), re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(WAIT)
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(fn), name=f"test-{i}") for i, fn in enumerate(targets)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [t.name for t in threads if t.is_alive()], "worker threads did not end"
    if errors:
        raise errors[0]


def accept_queue_length(sock: socket.socket) -> int | None:
    """Connections waiting in a listening TCP socket's accept queue (Linux), else None.

    For a listening socket Linux reports the queue length in ``tcpi_unacked``.
    """
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return None
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    unacked: int = struct.unpack_from("=I", info, 24)[0]
    return unacked


def assert_queued(listener: Listener, n: int) -> None:
    """*n* connections wait in *listener*'s accept queue (checked where the kernel says)."""
    queued = accept_queue_length(listener.socket)
    if queued is not None:
        assert queued == n


def assert_alive_connection(server: socket.socket, client: socket.socket) -> None:
    """*server* and *client* are the two ends of one open connection."""
    server.setblocking(True)
    server.settimeout(WAIT)
    server.sendall(b"ping")
    assert client.recv(4) == b"ping"
    client.sendall(b"pong")
    assert server.recv(4) == b"pong"


def address_of(listener: Listener) -> tuple[str, int]:
    host, port = listener.socket.getsockname()
    return host, port


# ----------------------------------------------- semantics 4: enabled or not


def test_disabled_flag_creates_a_disabled_listener(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """DISABLED creates it disabled; a connection queued meanwhile arrives after enable()."""
    with Listener.bind(base, LOCALHOST, collector, flags=LEV_OPT.DISABLED | TS) as lst:
        assert not lst.enabled
        clients.connect(address_of(lst))
        base.loop(nonblock=True)
        assert collector.count == 0
        assert_queued(lst, 1)
        lst.enable()
        assert lst.enabled
        loop_until(base, lambda: collector.count == 1)


def test_none_callback_acts_as_disabled(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """cb=None at creation: enabled (the intent), but nothing is accepted until set_cb(cb)."""
    with Listener.bind(base, LOCALHOST, None, flags=TS) as lst:
        assert lst.enabled
        clients.connect(address_of(lst))
        base.loop(nonblock=True)
        assert_queued(lst, 1)
        lst.set_cb(collector)
        loop_until(base, lambda: collector.count == 1)


def test_enable_without_callback_records_the_intent(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """enable() with no callback sets enabled but accepts nothing; set_cb(cb) then arms it."""
    with Listener.bind(base, LOCALHOST, None, flags=LEV_OPT.DISABLED | TS) as lst:
        lst.enable()
        assert lst.enabled
        clients.connect(address_of(lst))
        base.loop(nonblock=True)
        assert lst.enabled
        assert_queued(lst, 1)
        lst.set_cb(collector, "armed")
        loop_until(base, lambda: collector.count == 1)
        assert collector.args == ["armed"]


def test_set_cb_none_stops_delivery_and_leaves_connections_queued(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """set_cb(None) on an enabled listener stops delivery; set_cb(cb) delivers what queued."""
    with Listener.bind(base, LOCALHOST, collector, flags=TS) as lst:
        address = address_of(lst)
        clients.connect(address)
        loop_until(base, lambda: collector.count == 1)
        lst.set_cb(None)
        assert lst.enabled
        clients.connect(address)
        clients.connect(address)
        base.loop(nonblock=True)
        assert collector.count == 1
        assert_queued(lst, 2)
        lst.set_cb(collector)
        loop_until(base, lambda: collector.count == 3)


@pytest.mark.parametrize("how", ["no-callback", "disabled", "set_cb-none", "disable"])
def test_an_idle_listener_does_not_wake_the_loop(
    make_base: Callable[..., EventBase], collector: Collector, clients: Clients, how: str
) -> None:
    """With no callback to deliver to, the loop does not dispatch the listener
    again and again (no spin).  A listener made idle while armed (``set_cb(None)``,
    ``disable()``) keeps its event until the loop's next dispatch finds it idle
    and deletes it (the lazy delete): at most one dispatch, no callback."""
    rt = ProbeRuntime()
    base = make_base(runtime=rt)
    cb = None if how == "no-callback" else collector
    flags = TS | (LEV_OPT.DISABLED if how == "disabled" else LEV_OPT(0))
    with Listener.bind(base, LOCALHOST, cb, flags=flags) as lst:
        if how == "set_cb-none":
            lst.set_cb(None)
        elif how == "disable":
            lst.disable()
        clients.connect(address_of(lst))
        lazily_idle = how in ("set_cb-none", "disable")
        for _ in range(3):
            base.loop(nonblock=True)
        assert rt.kinds() == (["dispatched"] if lazily_idle else [])
        for _ in range(3):
            base.loop(nonblock=True)
        assert len(rt.kinds()) == (1 if lazily_idle else 0)  # never again
        assert collector.count == 0
        assert_queued(lst, 1)
        lst.set_cb(collector)
        lst.enable()
        loop_until(base, lambda: collector.count == 1)
        assert rt.kinds()[-3:] == ["dispatched", "callback_enter", "callback_exit"]


class RegistrationRuntime(Runtime):
    """Counts the read event's registrations with the selector, from any thread."""

    def __init__(self) -> None:
        self._count_lock = threading.Lock()
        self.registered = 0
        self.unregistered = 0

    def point(self, kind: str, **info: Any) -> None:
        if kind in ("event.register", "event.unregister"):
            with self._count_lock:
                if kind == "event.register":
                    self.registered += 1
                else:
                    self.unregistered += 1


def test_pausing_and_resuming_touches_neither_selector_nor_loop(
    make_base: Callable[..., EventBase], collector: Collector, clients: Clients
) -> None:
    """``disable(); enable()`` on an armed listener leaves its event added, so
    the readiness the loop has seen is not dropped; the loop deletes the event
    only when it finds the listener disabled (docs/performance.md, control)."""
    rt = RegistrationRuntime()
    base = make_base(runtime=rt)
    with Listener.bind(base, LOCALHOST, collector, flags=TS) as lst:
        assert (rt.registered, rt.unregistered) == (1, 0)
        for _ in range(100):
            lst.disable()
            lst.enable()
            lst.set_cb(None)
            lst.set_cb(collector)
        assert (rt.registered, rt.unregistered) == (1, 0)
        clients.connect(address_of(lst))
        loop_until(base, lambda: collector.count == 1)
        lst.disable()
        clients.connect(address_of(lst))
        base.loop(nonblock=True)  # finds it disabled: deletes, accepts nothing
        assert (rt.registered, rt.unregistered) == (1, 1)
        assert collector.count == 1
        lst.enable()
        assert (rt.registered, rt.unregistered) == (2, 1)
        loop_until(base, lambda: collector.count == 2)


def test_a_callback_that_disables_leaves_the_event_deleted(
    make_base: Callable[..., EventBase], clients: Clients
) -> None:
    """disable() from the accept callback: the batch stops and, at its end, the
    loop thread deletes the event itself (no further dispatch while disabled)."""
    rt = RegistrationRuntime()
    base = make_base(runtime=rt)
    got: list[socket.socket] = []

    def cb(lst: Listener, conn: socket.socket, addr: Any, arg: Any) -> None:
        got.append(conn)
        lst.disable()

    try:
        with Listener.bind(base, LOCALHOST, cb, flags=TS) as lst:
            for _ in range(3):
                clients.connect(address_of(lst))
            loop_until(base, lambda: len(got) == 1)
            assert (rt.registered, rt.unregistered) == (1, 1)
            assert_queued(lst, 2)
    finally:
        for conn in got:
            conn.close()


# --------------------------------- semantics 5: accept only for a callback


@pytest.mark.parametrize("how", ["no-callback", "disabled"])
def test_unreceived_connection_stays_in_the_kernel(
    acceptor: EventBase, collector: Collector, clients: Clients, how: str
) -> None:
    """With no callback to receive it, a connection is left queued, not accepted and reset."""
    flags = TS | (LEV_OPT.DISABLED if how == "disabled" else LEV_OPT(0))
    cb = None if how == "no-callback" else collector
    with Listener.bind(acceptor, LOCALHOST, cb, flags=flags) as lst:
        client = clients.connect(address_of(lst))
        loop_barrier(acceptor)
        loop_barrier(acceptor)
        assert collector.count == 0
        assert_queued(lst, 1)
        # Not reset, not closed: a read would block.
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(1)
        if how == "no-callback":
            lst.set_cb(collector)
        else:
            lst.enable()
        assert collector.wait_for(1)
        assert_alive_connection(collector.socks[0], client)


def test_set_cb_none_inside_the_callback_leaves_the_rest_queued(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """The callback check runs before every accept: set_cb(None) mid-batch accepts no more."""

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        collector(lst, sock, address, arg)
        lst.set_cb(None)

    with Listener.bind(base, LOCALHOST, cb, flags=TS) as lst:
        address = address_of(lst)
        for _ in range(3):
            clients.connect(address)
        loop_once(base)
        assert collector.count == 1
        assert_queued(lst, 2)
        lst.set_cb(collector)
        loop_until(base, lambda: collector.count == 3)


# ------------------------------------------- semantics 6: inside the callback


def test_callback_runs_on_the_loop_thread_with_refcount_two(
    acceptor: EventBase, clients: Clients, collector: Collector
) -> None:
    """The accept callback runs on the loop thread with the refcount raised to 2."""
    seen: list[tuple[bool, int, str]] = []

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        seen.append((lst.base.in_loop_thread(), lst.refcount, threading.current_thread().name))
        collector(lst, sock, address, arg)

    with Listener.bind(acceptor, LOCALHOST, cb, flags=TS) as lst:
        assert lst.refcount == 1
        client = clients.connect(address_of(lst))
        assert collector.wait_for(1)
        assert seen == [(True, 2, "threadlisten-acceptor")]
        assert lst.refcount == 1
        assert collector.addresses == [client.getsockname()]
        assert not acceptor.in_loop_thread()


def test_threadsafe_callback_may_call_every_method_of_its_listener(
    acceptor: EventBase, clients: Clients, collector: Collector
) -> None:
    """A THREADSAFE callback may call every method and property of its own listener."""
    results: dict[str, object] = {}
    errors: list[BaseException] = []
    done = threading.Event()

    def other(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        sock.close()

    def on_error(lst: Listener, error: OSError, arg: Any) -> None:
        pass

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        collector(lst, sock, address, arg)
        try:
            results["fd"] = lst.fd == lst.socket.fileno()
            results["base"] = lst.base is acceptor
            results["flags"] = lst.flags
            results["max_accepts"] = lst.max_accepts
            results["backing_off"] = lst.backing_off
            results["freed"] = lst.freed
            results["refcount"] = lst.refcount
            results["repr"] = repr(lst)
            lst.set_error_cb(on_error)
            lst.set_error_cb(None)
            lst.disable()
            results["after disable"] = lst.enabled
            lst.enable()
            results["after enable"] = lst.enabled
            lst.set_cb(other, "other")
            lst.set_cb(cb, "mine")
            lst.free()
            results["after free"] = (lst.freed, lst.refcount)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    lst = Listener.bind(acceptor, LOCALHOST, cb, "mine", flags=TS)
    try:
        clients.connect(address_of(lst))
        assert done.wait(WAIT)
    finally:
        with contextlib.suppress(ListenerFreedError):
            lst.free()
    assert errors == []
    assert isinstance(results.pop("repr"), str)
    assert results == {
        "fd": True,
        "base": True,
        "flags": TS,
        "max_accepts": DEFAULT_MAX_ACCEPTS,
        "backing_off": False,
        "freed": False,
        "refcount": 2,
        "after disable": False,
        "after enable": True,
        "after free": (True, 1),
    }
    loop_barrier(acceptor)
    assert lst.refcount == 0


def test_disable_inside_the_callback_stops_the_batch_at_once(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """disable() in the callback: 1 of 3 queued connections delivered, the rest after enable()."""

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        collector(lst, sock, address, arg)
        if collector.count == 1:
            lst.disable()

    with Listener.bind(base, LOCALHOST, cb, flags=TS) as lst:
        address = address_of(lst)
        for _ in range(3):
            clients.connect(address)
        loop_once(base)
        assert collector.count == 1
        assert not lst.enabled
        base.loop(nonblock=True)
        assert collector.count == 1
        lst.enable()
        loop_until(base, lambda: collector.count == 3)


def test_free_inside_the_callback_destroys_right_after_it_returns(
    make_base: Callable[..., EventBase], collector: Collector, clients: Clients
) -> None:
    """free() in the callback: destroyed on the loop thread as it returns; no more calls."""
    rt = ProbeRuntime()
    base = make_base(runtime=rt)
    inside: list[tuple[int, bool]] = []

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        collector(lst, sock, address, arg)
        lst.free()
        inside.append((lst.refcount, lst.freed))

    lst = Listener.bind(base, LOCALHOST, cb, flags=TS)
    listening = lst.socket
    address = address_of(lst)
    client = clients.connect(address)
    for _ in range(2):
        clients.connect(address)
    loop_once(base)
    # The batch's reference kept it alive inside the callback.
    assert inside == [(1, True)]
    assert lst.refcount == 0
    assert lst.freed
    assert rt.kinds() == ["dispatched", "callback_enter", "callback_exit", "destroy"]
    assert all(in_loop for _, _, in_loop in rt.trace)
    assert listening.fileno() == -1  # CLOSE_ON_FREE
    # The accepted socket belongs to the callback: the library did not close it.
    assert collector.count == 1
    assert_alive_connection(collector.socks[0], client)
    base.loop(nonblock=True)
    assert collector.count == 1


# ----------------------------------------- semantics 7: free() at any moment


@pytest.mark.parametrize("close_on_free", [False, True], ids=["keep-socket", "close-on-free"])
def test_free_from_another_thread_while_a_callback_runs(
    make_base: Callable[..., EventBase],
    collector: Collector,
    clients: Clients,
    close_on_free: bool,
) -> None:
    """free() racing a running callback returns with none running and none ever starting again."""
    rt = ProbeRuntime()
    base = make_base(runtime=rt, thread=True)
    state = threading.Lock()
    running = 0
    entered = threading.Event()
    saw_free_waiting: list[bool] = []

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        nonlocal running
        with state:
            running += 1
        collector(lst, sock, address, arg)
        entered.set()
        # Held until free() is blocked on the listener lock (bounded).
        saw_free_waiting.append(rt.contended.wait(WAIT))
        with state:
            running -= 1

    sock = tcp_socket()
    address = sock.getsockname()
    flags = LEV_OPT.THREADSAFE | (LEV_OPT.CLOSE_ON_FREE if close_on_free else LEV_OPT(0))
    try:
        lst = Listener.from_socket(base, sock, cb, flags=flags)
    except BaseException:
        sock.close()
        raise
    try:
        clients.connect(address)
        assert entered.wait(WAIT)
        # Two more queue while the callback runs: the batch may still take them.
        clients.connect(address)
        clients.connect(address)
        assert not rt.contended.is_set()
        lst.free()
        with state:
            assert running == 0
        delivered = collector.count
        assert saw_free_waiting[0]
        assert 1 <= delivered <= 3
        assert lst.freed
        assert lst.refcount == 0
        if not close_on_free:
            for _ in range(3):
                clients.connect(address)
        loop_barrier(base)
        loop_barrier(base)
        assert collector.count == delivered
        destroys = [(ident, in_loop) for kind, ident, in_loop in rt.trace if kind == "destroy"]
        # Exactly once, in this thread: the one that dropped the last reference.
        assert destroys == [(threading.get_ident(), False)]
        if close_on_free:
            assert sock.fileno() == -1
        else:
            assert sock.fileno() >= 0
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        if not lst.freed:
            lst.free()
        sock.close()


def test_free_leaves_a_passed_int_descriptor_open(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """Without CLOSE_ON_FREE an int fd passed in stays open after free() and after GC."""
    sock = tcp_socket()
    address = sock.getsockname()
    fd = sock.detach()
    closed = False
    try:
        lst = Listener.from_socket(base, fd, collector, flags=LEV_OPT.THREADSAFE)
        assert lst.fd == fd
        clients.connect(address)
        loop_until(base, lambda: collector.count == 1)
        lst.free()
        os.fstat(fd)
        ref = weakref.ref(lst)
        del lst
        gc.collect()
        assert ref() is None
        os.fstat(fd)
        with socket.socket(fileno=fd) as again:
            closed = True
            assert again.getsockname() == address
            assert again.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        if not closed:
            os.close(fd)


def test_free_closes_a_passed_int_descriptor_with_close_on_free(base: EventBase) -> None:
    """With CLOSE_ON_FREE an int fd passed in is closed by free()."""
    sock = tcp_socket()
    fd = sock.detach()
    try:
        lst = Listener.from_socket(base, fd, None, flags=LEV_OPT.CLOSE_ON_FREE)
    except BaseException:
        os.close(fd)
        raise
    lst.free()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_free_keeps_a_passed_socket_open_without_close_on_free(base: EventBase) -> None:
    """Without CLOSE_ON_FREE the socket object passed in stays open and listening."""
    with tcp_socket() as sock:
        Listener.from_socket(base, sock, None).free()
        assert sock.fileno() >= 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_free_twice_raises(base: EventBase) -> None:
    """A second free() raises ListenerFreedError."""
    lst = Listener.bind(base, LOCALHOST, None, flags=TS)
    lst.free()
    with pytest.raises(ListenerFreedError):
        lst.free()


AFTER_FREE: dict[str, Callable[[Listener], object]] = {
    "enable": lambda lst: lst.enable(),
    "disable": lambda lst: lst.disable(),
    "set_cb": lambda lst: lst.set_cb(lambda *a: None),
    "set_cb(None)": lambda lst: lst.set_cb(None),
    "set_error_cb": lambda lst: lst.set_error_cb(None),
    "free": lambda lst: lst.free(),
    "fd": lambda lst: lst.fd,
    "base": lambda lst: lst.base,
    "socket": lambda lst: lst.socket,
    "flags": lambda lst: lst.flags,
    "enabled": lambda lst: lst.enabled,
    "max_accepts": lambda lst: lst.max_accepts,
    "backing_off": lambda lst: lst.backing_off,
}


@pytest.mark.parametrize("threadsafe", [True, False], ids=["threadsafe", "plain"])
@pytest.mark.parametrize("name", sorted(AFTER_FREE))
def test_every_call_after_free_raises(base: EventBase, name: str, threadsafe: bool) -> None:
    """After free() every method and property raises ListenerFreedError but freed and refcount."""
    flags = TS if threadsafe else LEV_OPT.CLOSE_ON_FREE
    lst = Listener.bind(base, LOCALHOST, None, flags=flags)
    lst.free()
    with pytest.raises(ListenerFreedError):
        AFTER_FREE[name](lst)
    assert lst.freed
    assert lst.refcount == 0
    assert repr(lst)


def test_context_manager_frees_on_exit(base: EventBase) -> None:
    """`with listener:` frees it on exit, destroying it (socket closed with CLOSE_ON_FREE)."""
    with Listener.bind(base, LOCALHOST, None, flags=TS) as lst:
        sock = lst.socket
        assert not lst.freed
    assert lst.freed
    assert lst.refcount == 0
    assert sock.fileno() == -1


def test_context_manager_frees_when_the_body_raises(base: EventBase) -> None:
    """An exception in the with-body propagates and the listener is still freed."""
    with pytest.raises(KeyError), Listener.bind(base, LOCALHOST, None, flags=TS) as lst:
        raise KeyError("boom")
    assert lst.freed


def test_context_manager_exit_does_not_raise_if_already_freed(base: EventBase) -> None:
    """Leaving the with-block after an explicit free() does not raise."""
    with Listener.bind(base, LOCALHOST, None, flags=TS) as lst:
        lst.free()
    assert lst.freed
    assert lst.refcount == 0


# ------------------------------------------------- many threads at once


def test_concurrent_control_calls_deliver_each_connection_exactly_once(
    acceptor: EventBase, clients: Clients
) -> None:
    """enable/disable/set_cb from 4 threads while clients connect: each socket delivered once."""
    collector = Collector()
    n_clients = 100

    def cb_a(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        collector(lst, sock, address, arg)

    def cb_b(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        collector(lst, sock, address, arg)

    try:
        with Listener.bind(acceptor, LOCALHOST, cb_a, "a", flags=TS) as lst:
            address = address_of(lst)

            def control(seed: int) -> None:
                rng = random.Random(seed)
                for _ in range(1000):
                    op = rng.randrange(5)
                    if op == 0:
                        lst.enable()
                    elif op == 1:
                        lst.disable()
                    elif op == 2:
                        lst.set_cb(cb_a, "a")
                    elif op == 3:
                        lst.set_cb(cb_b, "b")
                    else:
                        lst.set_cb(None)

            def connect_all() -> None:
                for _ in range(n_clients):
                    clients.connect(address)

            controls = [functools.partial(control, seed) for seed in range(4)]
            run_threads([connect_all, *controls])
            lst.set_cb(cb_a, "a")
            lst.enable()
            assert collector.wait_for(n_clients)
            loop_barrier(acceptor)
            socks = collector.socks
            assert len(socks) == n_clients
            assert len({s.fileno() for s in socks}) == n_clients
            assert sorted(s.getpeername() for s in socks) == sorted(
                c.getsockname() for c in clients.socks
            )
            assert set(collector.args) <= {"a", "b"}
            assert lst.refcount == 1
    finally:
        collector.close()


def test_callback_and_arg_are_never_torn(acceptor: EventBase, clients: Clients) -> None:
    """With 3 threads alternating set_cb(cb_a, "a")/set_cb(cb_b, "b"), each call sees its arg."""
    collector = Collector()
    seen: list[tuple[str, Any]] = []
    n_clients = 120
    stop = threading.Event()

    def cb_a(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        seen.append(("a", arg))
        collector(lst, sock, address, arg)

    def cb_b(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        seen.append(("b", arg))
        collector(lst, sock, address, arg)

    try:
        # One connection per batch: each one takes the lock afresh, between two set_cb.
        with Listener.bind(acceptor, LOCALHOST, cb_a, "a", flags=TS, max_accepts=1) as lst:
            address = address_of(lst)

            def swap(phase: int) -> None:
                for i in range(phase, 20_000 + phase):
                    if stop.is_set():
                        return
                    if i % 2:
                        lst.set_cb(cb_a, "a")
                    else:
                        lst.set_cb(cb_b, "b")

            def connect_all() -> None:
                try:
                    for _ in range(n_clients):
                        clients.connect(address)
                    assert collector.wait_for(n_clients)
                finally:
                    stop.set()

            swappers = [functools.partial(swap, phase) for phase in range(3)]
            run_threads([connect_all, *swappers])
            assert collector.count == n_clients
    finally:
        collector.close()
    assert len(seen) == n_clients
    torn = [(which, arg) for which, arg in seen if which != arg]
    assert torn == []


# ----------------------------------------- semantics 11: no THREADSAFE


def test_plain_listener_works_from_the_loop_thread_only(
    acceptor: EventBase, collector: Collector, clients: Clients
) -> None:
    """A listener without THREADSAFE, used only on the loop thread, works.

    Every call goes through call_soon_threadsafe.  Nothing checks misuse from
    another thread outside lock-debugging mode: that would be a data race.
    """
    in_loop: list[tuple[bool, int]] = []

    def cb(lst: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        in_loop.append((acceptor.in_loop_thread(), lst.refcount))
        collector(lst, sock, address, arg)

    lst = run_in_loop(
        acceptor, lambda: Listener.bind(acceptor, LOCALHOST, cb, flags=LEV_OPT.CLOSE_ON_FREE)
    )
    try:
        address = run_in_loop(acceptor, lambda: address_of(lst))
        clients.connect(address)
        assert collector.wait_for(1)
        run_in_loop(acceptor, lst.disable)
        clients.connect(address)
        loop_barrier(acceptor)
        assert collector.count == 1
        run_in_loop(acceptor, lst.enable)
        assert collector.wait_for(2)
        assert in_loop == [(True, 2), (True, 2)]
    finally:
        run_in_loop(acceptor, lst.free)
    assert run_in_loop(acceptor, lambda: lst.refcount) == 0


# ------------------------------------------------- properties, max_accepts


def test_properties(base: EventBase) -> None:
    """fd, base, socket, flags, enabled, max_accepts, backing_off, freed, refcount, repr."""
    flags = TS | LEV_OPT.DISABLED
    with tcp_socket() as sock:
        with Listener.from_socket(base, sock, None, flags=flags, max_accepts=7) as lst:
            assert lst.fd == sock.fileno()
            assert lst.base is base
            assert lst.socket is sock
            assert lst.flags == flags
            assert isinstance(lst.flags, LEV_OPT)
            assert lst.enabled is False
            assert lst.max_accepts == 7
            assert lst.backing_off is False
            assert lst.freed is False
            assert lst.refcount == 1
            assert "Listener" in repr(lst)
            lst.enable()
            assert lst.enabled is True
            assert repr(lst)
        assert repr(lst)
    with Listener.bind(base, LOCALHOST, None, flags=TS) as lst:
        assert lst.max_accepts == DEFAULT_MAX_ACCEPTS
        assert lst.flags == TS
        assert lst.enabled is True


def test_max_accepts_bounds_one_readiness_round(
    base: EventBase, collector: Collector, clients: Clients
) -> None:
    """max_accepts=2 with 5 queued connections: each readiness round delivers 2."""
    with Listener.bind(base, LOCALHOST, collector, flags=TS, max_accepts=2) as lst:
        address = address_of(lst)
        for _ in range(5):
            clients.connect(address)
        loop_once(base)
        assert collector.count == 2
        loop_once(base)
        assert collector.count == 4
        loop_once(base)
        assert collector.count == 5


@pytest.mark.parametrize(
    ("bad", "error"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), ("2", TypeError), (2.0, TypeError)],
)
def test_bad_max_accepts(base: EventBase, bad: Any, error: type[Exception]) -> None:
    """max_accepts must be an int >= 1 (bool refused): else ValueError/TypeError, nothing leaks."""
    with pytest.raises(error):
        Listener.bind(base, LOCALHOST, None, flags=TS, max_accepts=bad)
    with tcp_socket() as sock:
        with pytest.raises(error):
            Listener.from_socket(base, sock, None, flags=TS, max_accepts=bad)
        assert sock.fileno() >= 0
