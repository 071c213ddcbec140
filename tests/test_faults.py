"""Faults under a running acceptor thread (issue 5): descriptor exhaustion,
clients that reset before they are accepted, callbacks that raise or are
slow, ``free()`` inside an error callback, ``loopbreak()`` in the middle of a
batch, and the base stopped while listeners are alive.

What is already covered elsewhere is not repeated: the back-off delays on a
fake clock and a real EMFILE with the limit lowered *before* the loop starts
(``test_accept_errors.py``); ``free()`` inside the error callback with the loop
in the test's thread (``test_libevent_ports.py``).  Here every scenario runs
with real threads and real loopback clients, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _support import (
    LOCALHOST,
    REPO_ROOT,
    Clients,
    Collector,
    ContentionRuntime,
    child_env,
    loop_barrier,
)

from threadlisten import LEV_OPT, EventBase, EventBaseClosedError, Listener, ListenerFreedError
from threadlisten._runtime import Runtime

#: Every bounded wait in this file, in seconds.
WAIT = 10.0
TS = LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE


# ------------------------------------------------------------------ helpers


class HeldCollector(Collector):
    """A ``Collector`` whose every call signals ``entered``, then holds the
    loop thread (bounded) until ``release`` is set: a slow callback."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        super().__call__(listener, sock, address, arg)
        self.entered.set()
        assert self.release.wait(WAIT)


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, threading.Event, list[Any]]:
    """Start *fn* in a thread; return it, an Event set when fn returns, and its outcome."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name="fault-helper")
    thread.start()
    return thread, done, outcome


def rst_close(sock: socket.socket) -> None:
    """Close *sock* with SO_LINGER 0, so the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------- real descriptor exhaustion


#: Runs in a child process (RLIMIT_NOFILE is per process).  The parent's
#: clients connect and send a 16-byte payload each; the accept callback only
#: queues the sockets, so the child's descriptors fill up and accept() fails
#: with EMFILE.  The CPU used during ``WINDOW`` seconds of exhaustion is
#: measured.  Then the main thread serves the queued sockets one by one
#: (echo, close): each close frees a descriptor, the back-off timer retries,
#: and every connection still queued in the kernel must come through.
_EXHAUSTION_CHILD = """
import errno, json, os, queue, resource, sys, threading, time
from threadlisten import LEV_OPT, EventBase, Listener

N = int(sys.argv[1])
HEADROOM = int(sys.argv[2])
WINDOW = float(sys.argv[3])
held = queue.SimpleQueue()
errors = []
exhausted = threading.Event()
accepted = [0]

def acceptcb(listener, sock, address, arg):
    accepted[0] += 1
    held.put(sock)

def errorcb(listener, error, arg):
    errors.append((time.monotonic(), error.errno))
    exhausted.set()

base = EventBase()
listener = Listener.bind(base, ("127.0.0.1", 0), acceptcb,
                         flags=LEV_OPT.THREADSAFE | LEV_OPT.CLOSE_ON_FREE)
listener.set_error_cb(errorcb)
base.start_thread()
# Count descriptors only once the loop thread has run a round and waits in
# select(): its first round opens a source file for a moment (the lock
# checker, inherited through THREADLISTEN_LOCK_DEBUG, reads call-site lines
# through linecache).  Counted as open, that file made one descriptor too
# many free under the limit, and five connections were accepted for four.
looping = threading.Event()
base.call_soon_threadsafe(looping.set)
assert looping.wait(20)
def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False  # the descriptor listdir itself used
    return True

fds = [fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd)]
holes = max(fds) + 1 - len(fds)
limit = max(fds) + 1 + HEADROOM - min(holes, HEADROOM)  # exactly HEADROOM free below it
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
print("PORT", listener.socket.getsockname()[1], flush=True)

got_exhausted = exhausted.wait(20)
accepted_at_exhaustion = accepted[0]
cpu0, wall0, errors0 = time.process_time(), time.monotonic(), len(errors)
threading.Event().wait(WINDOW)  # the measurement window itself, not a synchronisation
cpu1, wall1, errors1 = time.process_time(), time.monotonic(), len(errors)
accepted_in_window = accepted[0] - accepted_at_exhaustion
backing_off = listener.backing_off

served = 0
bad = 0
deadline = time.monotonic() + 30
while served < N and time.monotonic() < deadline:
    try:
        sock = held.get(timeout=max(0.01, deadline - time.monotonic()))
    except queue.Empty:
        break
    sock.setblocking(True)
    sock.settimeout(10)
    data = b""
    while len(data) < 16:
        chunk = sock.recv(16 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) == 16:
        sock.sendall(data)
    else:
        bad += 1
    sock.close()
    served += 1
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
base.stop(10)
listener.free()
base.close()
print(json.dumps({
    "got_exhausted": got_exhausted,
    "accepted_at_exhaustion": accepted_at_exhaustion,
    "accepted_in_window": accepted_in_window,
    "backing_off": backing_off,
    "errors_in_window": errors1 - errors0,
    "errnos": sorted(set(e for _, e in errors)),
    "cpu": cpu1 - cpu0,
    "wall": wall1 - wall0,
    "served": served,
    "bad": bad,
    "accepted": accepted[0],
    "emfile": errno.EMFILE,
}), flush=True)
"""

#: Connections the parent makes; descriptors free for them in the child; the
#: seconds of exhaustion over which the child's CPU time is measured (the
#: back-off reaches its 1 s ceiling after 1.27 s, so 2.5 s covers both the
#: doubling and the ceiling).
EXHAUSTION_CLIENTS = 24
EXHAUSTION_HEADROOM = 4
EXHAUSTION_WINDOW = 2.5

#: The loose bound on CPU during exhaustion: a busy accept loop burns a whole
#: core (ratio ~1.0); the back-off burns almost nothing.  0.25 leaves room for
#: a loaded CI machine.
MAX_CPU_RATIO = 0.25


@pytest.mark.timeout(90)
def test_descriptor_exhaustion_backs_off_cheaply_and_loses_no_queued_connection(
    record_property: Callable[[str, object], None],
) -> None:
    """Descriptors run out *while the loop runs* (the server holds every
    accepted socket): the listener reports EMFILE through the error callback,
    backs off (a handful of attempts, not a busy loop), burns little CPU
    while exhausted (measured, reported, loosely asserted), accepts nothing
    in the meantime, and once the held sockets are closed one by one it
    accepts again: every one of the connections that waited in the kernel's
    queue is served and echoes its own payload."""
    args = [str(EXHAUSTION_CLIENTS), str(EXHAUSTION_HEADROOM), str(EXHAUSTION_WINDOW)]
    clients = Clients()
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_EXHAUSTION_CHILD), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            first = child.stdout.readline().split()
            assert first[:1] == ["PORT"], first
            address = ("127.0.0.1", int(first[1]))
            payloads = [f"payload-{i:08d}".encode() for i in range(EXHAUSTION_CLIENTS)]
            socks = [clients.connect(address, payload) for payload in payloads]
            echoes = []
            for sock in socks:
                data = b""
                while len(data) < 16:
                    chunk = sock.recv(16 - len(data))
                    if not chunk:
                        break
                    data += chunk
                echoes.append(data)
            out, err = child.communicate(timeout=60)
        finally:
            clients.close()
            if child.poll() is None:
                child.kill()
    assert child.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    ratio = result["cpu"] / result["wall"]
    record_property("exhaustion_cpu_seconds", result["cpu"])
    record_property("exhaustion_wall_seconds", result["wall"])
    record_property("exhaustion_error_callbacks", result["errors_in_window"])
    print(
        f"descriptor exhaustion: {result['cpu']:.4f} s CPU over {result['wall']:.2f} s "
        f"({ratio:.1%}), {result['errors_in_window']} error callbacks in the window"
    )
    assert echoes == payloads  # every queued connection came through, each its own
    assert result["got_exhausted"]
    assert result["errnos"] == [result["emfile"]]
    assert result["accepted_at_exhaustion"] <= EXHAUSTION_HEADROOM
    assert result["accepted_in_window"] == 0
    assert result["backing_off"]
    # 10+20+...+640 ms then 1 s: about 9 attempts in 2.5 s; a busy loop makes thousands.
    assert 2 <= result["errors_in_window"] <= 30
    assert ratio < MAX_CPU_RATIO, result
    assert result["served"] == result["accepted"] == EXHAUSTION_CLIENTS
    assert result["bad"] == 0


# ----------------------------------------- clients that reset before accept


class BsdAcceptSocket(socket.socket):
    """A listening socket whose ``accept()`` reports a connection that was
    reset while queued as ``ECONNABORTED``, as FreeBSD, macOS and Windows do.

    Linux instead returns such a connection from ``accept()`` (its first read
    then fails or sees EOF), so without this the ECONNABORTED path of the
    accept loop cannot be reached with real sockets on Linux.  The reset is
    real: ``SO_ERROR`` of the accepted socket says ``ECONNRESET``.
    """

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.aborted = 0

    def accept(self) -> tuple[socket.socket, Any]:
        conn, address = super().accept()
        if conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET:
            conn.close()
            self.aborted += 1
            raise ConnectionAbortedError(errno.ECONNABORTED, os.strerror(errno.ECONNABORTED))
        return conn, address


def _queue_mixed_clients(
    clients: Clients, address: tuple[str, int], n: int
) -> tuple[list[socket.socket], int]:
    """Queue *n* good clients (payload sent) interleaved with *n* that reset."""
    good = []
    for i in range(n):
        good.append(clients.connect(address, f"good-{i:04d}".encode()))
        rst_close(socket.create_connection(address, timeout=WAIT))
    return good, n


def test_reset_before_accept_takes_the_econnaborted_path(
    acceptor: EventBase, collector: Collector, clients: Clients
) -> None:
    """Clients that connect and reset (SO_LINGER 0) while queued, between good
    ones, on a kernel that reports them as ECONNABORTED: each is skipped (not
    delivered, no error callback, nothing logged), the listener stays enabled,
    and every good connection is delivered and works."""
    errors: list[OSError] = []
    sock = BsdAcceptSocket()
    sock.bind(LOCALHOST)
    flags = TS | LEV_OPT.DISABLED
    with Listener.from_socket(acceptor, sock, collector, flags=flags) as lst:
        lst.set_error_cb(lambda listener, error, arg: errors.append(error))
        good, n_reset = _queue_mixed_clients(clients, sock.getsockname(), 8)
        lst.enable()
        assert collector.wait_for(len(good))
        loop_barrier(acceptor)
        assert collector.count == len(good)
        assert sock.aborted == n_reset
        assert errors == []
        assert lst.enabled
        assert not lst.backing_off
        for i, server in enumerate(collector.socks):
            server.settimeout(WAIT)
            assert server.recv(9) == f"good-{i:04d}".encode()
        # Still accepting after the aborted ones.
        clients.connect(sock.getsockname())
        assert collector.wait_for(len(good) + 1)


def test_reset_before_accept_on_linux_is_delivered_and_harmless(
    acceptor: EventBase, collector: Collector, clients: Clients
) -> None:
    """The same clients on the real Linux socket: a connection reset while
    queued is returned by accept() and delivered (its SO_ERROR says
    ECONNRESET, then reads see EOF); no error callback, the listener keeps
    going, and the good connections in between all arrive in order."""
    if not sys.platform.startswith("linux"):
        pytest.skip("checks Linux's accept() behaviour for reset connections")
    errors: list[OSError] = []
    flags = TS | LEV_OPT.DISABLED
    with Listener.bind(acceptor, LOCALHOST, collector, flags=flags) as lst:
        lst.set_error_cb(lambda listener, error, arg: errors.append(error))
        address = lst.socket.getsockname()
        good, n_reset = _queue_mixed_clients(clients, address, 8)
        lst.enable()
        assert collector.wait_for(len(good) + n_reset)
        payloads = []
        resets = 0
        for server in collector.socks:
            server.settimeout(WAIT)
            if server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET:
                resets += 1
                assert server.recv(9) == b""
            else:
                payloads.append(server.recv(9))
        assert resets == n_reset
        assert payloads == [f"good-{i:04d}".encode() for i in range(len(good))]
        assert errors == []
        assert lst.enabled


# ------------------------------------------------------ callbacks that raise


@pytest.mark.allow_error_logs
def test_raising_callbacks_under_load_keep_the_listener_working(
    acceptor: EventBase, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    """An accept callback that raises on every connection, while another
    thread keeps toggling the listener: each exception is logged once with
    its traceback, no connection is lost or delivered twice, the lock is
    never left held (the toggling thread always gets it), and after a
    ``set_cb`` to a good callback the listener serves normally."""
    calls = Collector()

    def raising(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        calls(listener, sock, address, arg)
        raise RuntimeError("callback failure")

    n = 30
    stop = threading.Event()
    toggles = [0]

    def toggle(lst: Listener) -> None:
        while not stop.is_set():
            lst.disable()
            lst.enable()
            toggles[0] += 1

    caplog.set_level(logging.ERROR, logger="threadlisten")
    try:
        with Listener.bind(acceptor, LOCALHOST, raising, flags=TS) as lst:
            thread, done, outcome = in_thread(lambda: toggle(lst))
            try:
                address = lst.socket.getsockname()
                for _ in range(n):
                    clients.connect(address)
                assert calls.wait_for(n)
            finally:
                stop.set()
                assert done.wait(WAIT), "the toggling thread is stuck: a lock left held?"
                thread.join(WAIT)
            assert outcome == [None]
            loop_barrier(acceptor)
            assert calls.count == n
            assert toggles[0] > 0
            records = [r for r in caplog.records if r.name == "threadlisten"]
            assert len(records) == n
            assert all(r.exc_info and "callback failure" in str(r.exc_info[1]) for r in records)
            assert lst.refcount == 1
            good = Collector()
            try:
                lst.set_cb(good)
                lst.enable()
                clients.connect(address)
                assert good.wait_for(1)
            finally:
                good.close()
    finally:
        calls.close()


# --------------------------------------------------------- slow callbacks


def test_slow_callback_holds_back_free_and_nothing_runs_after_it(
    acceptor: EventBase, clients: Clients
) -> None:
    """A slow accept callback holds the listener lock: a ``free()`` from
    another thread waits while it runs, returns soon after it ends, and from
    then on no callback runs although connections are still queued; calls on
    *another* listener of the same base are not held back (each listener has
    its own lock).

    Not asserted here: that free() waits for *one* batch only.  The listener
    lock is not fair, so the loop thread may win it back for the next batch
    before the waiting thread wakes; see the next test and docs/stress.md."""
    slow = HeldCollector()
    queued = 8
    try:
        lst = Listener.bind(acceptor, LOCALHOST, slow, flags=TS, max_accepts=2)
        with Listener.bind(acceptor, LOCALHOST, None, flags=TS) as other:
            address = lst.socket.getsockname()
            for _ in range(queued):
                clients.connect(address)
            assert slow.entered.wait(WAIT)
            thread, freed, outcome = in_thread(lst.free)
            # The other listener's lock is free: these return at once.
            other.disable()
            other.enable()
            assert other.refcount == 1
            # free() waits while the callback runs (a bounded check that it has not returned).
            assert not freed.wait(0.2)
            assert slow.count == 1
            slow.release.set()
            assert freed.wait(WAIT)
            thread.join(WAIT)
            assert outcome == [None]
            assert lst.refcount == 0
            after_free = slow.count
            assert after_free >= 1
            loop_barrier(acceptor)
            assert slow.count == after_free  # none started after free() returned
    finally:
        slow.release.set()
        slow.close()


def test_free_from_another_thread_waits_for_the_batch_in_progress_only(clients: Clients) -> None:
    """README: "a call from another thread waits at most for the batch of
    accepts in progress".  With ``max_accepts=2``, eight queued connections
    and the first callback held until free() is known to be waiting for the
    lock, free() returns after that batch's two callbacks."""
    rt = ContentionRuntime()
    base = EventBase(runtime=rt)
    slow = HeldCollector()
    try:
        lst = Listener.bind(base, LOCALHOST, slow, flags=TS, max_accepts=2)
        address = lst.socket.getsockname()
        for _ in range(8):
            clients.connect(address)
        base.start_thread()
        assert slow.entered.wait(WAIT)
        rt.contended.clear()
        thread, freed, outcome = in_thread(lst.free)
        assert rt.contended.wait(WAIT)  # free() is blocked on the listener lock
        slow.release.set()
        assert freed.wait(WAIT)
        thread.join(WAIT)
        assert outcome == [None]
        assert slow.count == 2
    finally:
        slow.release.set()
        base.stop(WAIT)
        base.close()
        slow.close()


# ------------------------------------------------ free() inside an error callback


def test_free_inside_error_callback_while_other_threads_use_the_listener(
    acceptor: EventBase,
) -> None:
    """A fatal accept error (EINVAL: the listening socket was shut down) whose
    error callback frees the listener, while two other threads keep calling
    enable/disable/set_cb on it: everyone finishes (no deadlock), the other
    threads end with ListenerFreedError, the error callback ran exactly once,
    and the listener is destroyed (refcount 0, socket closed)."""
    calls: list[int] = []

    def errorcb(listener: Listener, error: OSError, arg: Any) -> None:
        calls.append(error.errno or 0)
        listener.free()

    stop = threading.Event()

    def hammer(lst: Listener) -> str:
        while not stop.is_set():
            try:
                lst.disable()
                lst.set_cb(None)
                lst.set_cb(lambda *a: None)
                lst.enable()
            except ListenerFreedError:
                return "freed"
        return "stopped"

    collector = Collector()
    lst = Listener.bind(acceptor, LOCALHOST, collector, flags=TS)
    sock = lst.socket
    lst.set_error_cb(errorcb)
    helpers = [in_thread(lambda: hammer(lst)) for _ in range(2)]
    try:
        sock.shutdown(socket.SHUT_RD)  # accept() now fails with EINVAL
        deadline = time.monotonic() + WAIT
        while not lst.freed and time.monotonic() < deadline:
            # Each enable() re-arms the event; the readable socket makes the
            # loop call accept(), which fails and reaches the error callback.
            loop_barrier(acceptor)
    finally:
        stop.set()
        for thread, done, _ in helpers:
            assert done.wait(WAIT), "a helper thread is stuck"
            thread.join(WAIT)
        collector.close()
    assert lst.freed
    assert calls == [errno.EINVAL]
    assert [outcome for _, _, outcome in helpers] == [["freed"], ["freed"]]
    assert lst.refcount == 0
    assert sock.fileno() == -1


# --------------------------------------------- loopbreak() in the middle of a batch


class ReadyOrder(Runtime):
    """Records the order in which listener read events are dispatched."""

    def __init__(self) -> None:
        self.dispatched: list[int] = []

    def point(self, kind: str, **info: Any) -> None:
        if kind == "listener.dispatched":
            self.dispatched.append(id(info["listener"]))


def test_loopbreak_in_the_middle_of_a_batch_loses_nothing(clients: Clients) -> None:
    """``loopbreak()`` from an accept callback, with two listeners ready: the
    batch that called it finishes (a batch is one event callback), the loop
    then ends before the other listener's batch, and nothing is lost: the
    next loop delivers the other listener's queued connections, all of them."""
    rt = ReadyOrder()
    base = EventBase(runtime=rt)
    first = Collector()
    second = Collector()
    broke = []

    def breaking(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        first(listener, sock, address, arg)
        if first.count == 2:
            base.loopbreak()
            broke.append(first.count)

    try:
        with (
            Listener.bind(base, LOCALHOST, breaking, flags=TS) as a,
            Listener.bind(base, LOCALHOST, second, flags=TS) as b,
        ):
            for _ in range(5):
                clients.connect(a.socket.getsockname())
                clients.connect(b.socket.getsockname())
            guard = base.call_later(WAIT, base.loopbreak)
            try:
                base.loop()
            finally:
                guard.cancel()
            assert broke == [2]
            order = rt.dispatched
            if order and order[0] == id(a):
                # a's batch ran first and broke the loop: all five of a's
                # connections came in that one batch, b's are all still queued.
                assert first.count == 5
                assert second.count == 0
            else:
                # b happened to be dispatched first: its batch ran whole.
                assert second.count == 5
            # The next loop picks up everything that is left: nothing was lost.
            guard = base.call_later(WAIT, base.loopbreak)
            try:
                while first.count < 5 or second.count < 5:
                    base.loop(once=True)
            finally:
                guard.cancel()
            assert first.count == 5
            assert second.count == 5
    finally:
        first.close()
        second.close()
        base.close()


def test_loopbreak_from_another_thread_during_a_slow_batch(clients: Clients) -> None:
    """``loopbreak()`` from another thread while a batch runs: the batch ends
    normally, the loop thread leaves its loop, and a new loop thread on the
    same base delivers the connections still queued: none lost."""
    base = EventBase()
    slow = HeldCollector()
    try:
        with Listener.bind(base, LOCALHOST, slow, flags=TS, max_accepts=2) as lst:
            for _ in range(5):
                clients.connect(lst.socket.getsockname())
            thread = base.start_thread()
            assert slow.entered.wait(WAIT)
            base.loopbreak()
            slow.release.set()
            thread.join(WAIT)
            assert not thread.is_alive()
            assert slow.count == 2  # the batch that was running, whole
            base.stop(WAIT)  # forget the ended thread
            base.start_thread()
            assert slow.wait_for(5)
            base.stop(WAIT)
    finally:
        slow.release.set()
        slow.close()
        base.stop(WAIT)
        base.close()


# --------------------------------------- the base stopped while listeners are alive


def test_base_stopped_while_listeners_are_alive(clients: Clients) -> None:
    """``stop()`` with listeners alive and enabled: the listeners stay usable
    from any thread (no loop needed), connections queue in the kernel, a new
    loop thread delivers them all, and after the base is closed ``free()``
    still works (``enable()`` then says the base is closed)."""
    base = EventBase()
    calls = Collector()
    try:
        a = Listener.bind(base, LOCALHOST, calls, flags=TS)
        b = Listener.bind(base, LOCALHOST, calls, flags=TS)
        base.start_thread()
        clients.connect(a.socket.getsockname())
        assert calls.wait_for(1)
        base.stop(WAIT)
        # No loop thread now: every control call still works.
        a.disable()
        a.enable()
        b.set_cb(calls)
        for lst in (a, b):
            for _ in range(3):
                clients.connect(lst.socket.getsockname())
        assert calls.count == 1  # queued, not lost
        base.start_thread()
        assert calls.wait_for(7)
        base.stop(WAIT)
        base.close()
        b.disable()  # deleting an event needs no open base
        with pytest.raises(EventBaseClosedError):
            b.enable()
        sock_a = a.socket
        a.free()
        b.free()
        assert a.refcount == b.refcount == 0
        assert sock_a.fileno() == -1
    finally:
        calls.close()
        base.stop(WAIT)
        base.close()


def test_free_after_stop_resets_the_connections_still_queued(clients: Clients) -> None:
    """Freeing a listener of a stopped base destroys it at once, in the
    calling thread; its queued connections are reset by the kernel (the
    client sees ECONNRESET or EOF), never left hanging, and later connects
    are refused."""
    base = EventBase()
    calls = Collector()
    try:
        lst = Listener.bind(base, LOCALHOST, calls, flags=TS)
        address = lst.socket.getsockname()
        queued = [clients.connect(address, b"x") for _ in range(3)]
        lst.free()
        assert lst.refcount == 0
        for client in queued:
            client.settimeout(WAIT)
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(1) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=WAIT).close()
        assert calls.count == 0
    finally:
        calls.close()
        base.close()
