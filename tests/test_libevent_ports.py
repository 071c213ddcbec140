"""libevent's own listener tests (``test/regress_listener.c``), ported one by one,
then the scenarios of ``../shared/reference/libevent.md`` §4.4 that upstream
does not test.

Each ported test keeps the upstream name in its own name and docstring and
follows the upstream steps (libevent.md §4.2).  Where threadlisten differs
from libevent on purpose the docstring says so:

* ``event_base_dispatch`` returns in libevent once no event is pending; here
  ``dispatch()`` keeps running (an acceptor thread must survive a disabled
  listener), so the tests end the loop themselves with ``loopbreak()`` or run
  ``loop(once=True)``, always under a timer that bounds the wait.
* upstream feeds ``evconnlistener_new(..., backlog=0, ...)`` a *connected*
  AF_UNIX socket to make ``accept()`` fail; threadlisten refuses ``backlog=0``
  with a socket that is not listening, so the tests use a real listening
  socket instead and make ``accept()`` fail on it (``shutdown(SHUT_RD)`` for
  EINVAL, a low ``RLIMIT_NOFILE`` for EMFILE).
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import threading
from typing import Any

import pytest
from _support import ContentionRuntime, connect, run_child, still_queued, tcp_socket

from threadlisten import LEV_OPT, EventBase, Listener, ListenerFreedError
from threadlisten._runtime import Runtime

LOOPBACK = ("127.0.0.1", 0)
#: Upper bound on any wait in these tests: long enough never to fire on a
#: healthy run, short enough that a hang fails the test instead of the session.
BOUND = 10.0


# ----------------------------------------------------------------- helpers


class Counter:
    """The ``int *`` that upstream passes as the callbacks' ``arg``."""

    def __init__(self, value: int) -> None:
        self.value = value


def acceptcb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
    """Upstream's shared ``acceptcb`` (regress_listener.c:77-88): decrement the
    counter, close the accepted socket, disable the listener when it reaches 0."""
    counter: Counter = arg
    counter.value -= 1
    sock.close()
    if counter.value == 0:
        listener.disable()


def loop_once_bounded(base: EventBase) -> None:
    """``event_base_loop(base, EVLOOP_ONCE)``, but never longer than ``BOUND``:
    a no-op timer makes ``loop(once=True)`` return if nothing else happens."""
    guard = base.call_later(BOUND, lambda: None)
    try:
        base.loop(once=True)
    finally:
        guard.cancel()


def dispatch_bounded(base: EventBase) -> None:
    """``event_base_dispatch(base)``: the callbacks end it with ``loopbreak()``;
    a timer ends it after ``BOUND`` seconds so that a bug cannot hang the test."""
    guard = base.call_later(BOUND, base.loopbreak)
    try:
        base.dispatch()
    finally:
        guard.cancel()


def listening_socket() -> socket.socket:
    sock = tcp_socket()
    sock.listen(16)
    return sock


def join_bounded(thread: threading.Thread) -> None:
    thread.join(BOUND)
    assert not thread.is_alive(), f"thread {thread.name} did not end within {BOUND} s"


class RecordingRuntime(Runtime):
    """Records every scheduling point with the thread that announced it."""

    def __init__(self) -> None:
        self.points: list[tuple[str, int]] = []

    def point(self, kind: str, **info: Any) -> None:
        self.points.append((kind, threading.get_ident()))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.points]


# ------------------------------------------------- #1/#2 randport, randport_ts


def _regress_pick_a_port(threadsafe: bool) -> None:
    """Upstream ``regress_pick_a_port`` (regress_listener.c:90-165)."""
    flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.CLOSE_ON_EXEC
    if threadsafe:
        flags |= LEV_OPT.THREADSAFE
    count1, count2 = Counter(2), Counter(1)
    clients: list[socket.socket] = []
    with EventBase() as base:

        def cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            acceptcb(listener, sock, address, arg)
            if count1.value == 0 and count2.value == 0:
                base.loopbreak()  # what "no events left" does in libevent

        listener1 = Listener.bind(base, LOOPBACK, cb, count1, flags=flags, backlog=-1)
        listener2 = Listener.bind(base, LOOPBACK, cb, count2, flags=flags, backlog=-1)
        sock1, sock2 = listener1.socket, listener2.socket
        try:
            assert listener1.fd >= 0
            assert listener2.fd >= 0
            ss1, ss2 = sock1.getsockname(), sock2.getsockname()
            assert sock1.family == socket.AF_INET
            assert sock2.family == socket.AF_INET
            assert ss1[0] == "127.0.0.1"
            assert ss2[0] == "127.0.0.1"
            assert ss1[1] != ss2[1]
            assert listener1.base is base
            assert listener2.base is base

            clients += [connect(ss1), connect(ss1), connect(ss2)]
            dispatch_bounded(base)

            assert count1.value == 0
            assert count2.value == 0
            assert not listener1.enabled
            assert not listener2.enabled
            # Upstream's debug locks check the lock balance at free; here the
            # refcount is back to the owner's alone and another thread can
            # take the lock (a property read takes it).
            for listener in (listener1, listener2):
                assert listener.refcount == 1
                seen: list[bool] = []
                t = threading.Thread(target=lambda lis=listener, out=seen: out.append(lis.enabled))
                t.start()
                join_bounded(t)
                assert seen == [False]
        finally:
            for client in clients:
                client.close()
            listener1.free()
            listener2.free()
        assert sock1.fileno() == -1  # CLOSE_ON_FREE
        assert sock2.fileno() == -1
        assert listener1.refcount == 0
        assert listener2.refcount == 0


def test_randport() -> None:
    """Upstream ``listener/randport``: two listeners bound to 127.0.0.1:0 get
    different ports and the same base; three clients (two on the first, one on
    the second) are accepted and each listener disables itself when its count
    reaches 0."""
    _regress_pick_a_port(threadsafe=False)


def test_randport_ts() -> None:
    """Upstream ``listener/randport_ts``: ``randport`` with LEV_OPT_THREADSAFE;
    the lock is balanced afterwards (another thread can take it)."""
    _regress_pick_a_port(threadsafe=True)


# ---------------------------------------------------------- #3 error_unlock

_ERROR_UNLOCK_CHILD = """
import errno, json, logging, os, resource, socket, threading
from threadlisten import LEV_OPT, EventBase, Listener

records = []

class Handler(logging.Handler):
    def emit(self, record):
        records.append([record.levelname, record.getMessage()])

log = logging.getLogger("threadlisten")
log.addHandler(Handler())
log.setLevel(logging.DEBUG)

accepted = []

def acceptcb(listener, sock, address, arg):
    accepted.append(1)
    sock.close()

base = EventBase()
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE
listener = Listener.from_socket(base, srv, acceptcb, None, flags=flags, backlog=0)
client = socket.create_connection(srv.getsockname(), timeout=10)

# No new descriptor can be made: accept() fails with EMFILE.
probe = os.dup(1)
os.close(probe)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
guard = base.call_later(10.0, lambda: None)
base.loop(once=True)
guard.cancel()
backing_off = listener.backing_off

# The lock must have been released by the error path: free() from another
# thread (a recursive lock would let this thread in even if it were not).
done = []
t = threading.Thread(target=lambda: (listener.free(), done.append(1)))
t.start()
t.join(10)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
result = {
    "free_returned": done == [1] and not t.is_alive(),
    "refcount": listener.refcount,
    "srv_closed": srv.fileno() == -1,
    "accepted": len(accepted),
    "backing_off": backing_off,
    "records": records,
    "emfile_text": os.strerror(errno.EMFILE),
}
client.close()
base.close()
print(json.dumps(result))
"""


def test_error_unlock() -> None:
    """Upstream ``listener/error_unlock`` (regress_listener.c:292-325): an
    accept error with no error callback must release the listener lock.

    As upstream: a THREADSAFE listener with CLOSE_ON_FREE|REUSEABLE, backlog 0,
    a pending connection, and ``RLIMIT_NOFILE`` lowered so that no descriptor
    can be made, so ``accept()`` fails with a real EMFILE; one
    ``loop(once=True)``; then ``free()``.  Upstream's socket is a connected
    AF_UNIX socket; threadlisten refuses backlog 0 with a non-listening socket,
    so this uses a real listening TCP socket.  EMFILE is a resource error
    here: the listener backs off and logs a warning (no error callback).  The
    lock check: ``free()`` from *another* thread returns (the lock is
    recursive, so the loop thread itself would get in even if it leaked).
    Runs in a child process so that the limit cannot affect pytest.
    """
    result = run_child(_ERROR_UNLOCK_CHILD)
    assert result["free_returned"], result
    assert result["refcount"] == 0
    assert result["srv_closed"]
    assert result["accepted"] == 0
    assert result["backing_off"]
    warnings = [msg for level, msg in result["records"] if level == "WARNING"]
    assert len(warnings) == 1, result["records"]
    assert result["emfile_text"] in warnings[0]
    assert not [msg for level, msg in result["records"] if level in ("ERROR", "CRITICAL")]


@pytest.mark.allow_error_logs
def test_error_unlock_fatal_error_variant(caplog: pytest.LogCaptureFixture) -> None:
    """``listener/error_unlock`` on threadlisten's other error path: a fatal
    accept error (EINVAL, from a listening socket after ``shutdown(SHUT_RD)``;
    on Linux that makes it readable and ``accept()`` fail with EINVAL) with no
    error callback is logged at ERROR and releases the lock; ``free()`` from
    another thread returns."""
    flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE
    with EventBase() as base:
        srv = listening_socket()
        listener = Listener.from_socket(base, srv, acceptcb, Counter(1), flags=flags, backlog=0)
        srv.shutdown(socket.SHUT_RD)
        loop_once_bounded(base)
        assert not listener.enabled  # a fatal error disables
        errors = [r for r in caplog.records if r.name == "threadlisten" and r.levelname == "ERROR"]
        assert len(errors) == 1
        assert os.strerror(errno.EINVAL) in errors[0].getMessage()
        t = threading.Thread(target=listener.free)
        t.start()
        join_bounded(t)
        assert listener.refcount == 0
        assert srv.fileno() == -1


# ------------------------------------------------------ #4/#5 error, error_ts


def _regress_listener_error(threadsafe: bool) -> None:
    """Upstream ``regress_listener_error`` (regress_listener.c:175-207)."""
    flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
    if threadsafe:
        flags |= LEV_OPT.THREADSAFE
    count = Counter(1)
    seen: list[OSError] = []
    with EventBase() as base:

        def errorcb(listener: Listener, error: OSError, arg: Any) -> None:
            seen.append(error)
            arg.value = 1000  # upstream: *(int*)user_data = 1000
            listener.disable()
            base.loopbreak()  # what "no events left" does in libevent

        srv = listening_socket()
        listener = Listener.from_socket(base, srv, acceptcb, count, flags=flags, backlog=0)
        listener.set_error_cb(errorcb)
        srv.shutdown(socket.SHUT_RD)  # readable, and accept() -> EINVAL
        try:
            dispatch_bounded(base)
            assert count.value == 1000  # errorcb ran with cb's arg; acceptcb never ran
            assert len(seen) == 1
            assert seen[0].errno == errno.EINVAL
            assert not listener.enabled
            assert listener.refcount == 1
        finally:
            listener.free()
        assert srv.fileno() == -1  # CLOSE_ON_FREE closed it


def test_error() -> None:
    """Upstream ``listener/error``: ``accept()`` fails with EINVAL, the error
    callback gets the accept callback's ``arg`` (sets it to 1000) and disables
    the listener; the accept callback never runs.

    Upstream gets EINVAL from a connected AF_UNIX socket passed with backlog 0;
    threadlisten refuses backlog 0 with a non-listening socket, so here the
    socket is a real listening socket on which ``shutdown(SHUT_RD)`` was
    called after the listener was made: on Linux that makes it readable and
    ``accept()`` fail with EINVAL."""
    _regress_listener_error(threadsafe=False)


def test_error_ts() -> None:
    """Upstream ``listener/error_ts``: ``error`` with LEV_OPT_THREADSAFE (EINVAL
    from a listening socket after ``shutdown(SHUT_RD)``, see ``test_error``)."""
    _regress_listener_error(threadsafe=True)


# ----------------------------------------------------- #6 close_accepted_fd


def test_close_accepted_fd() -> None:
    """Upstream ``listener/close_accepted_fd`` (regress_listener.c:209-252,
    issue #577): the callback frees its own listener; the library must not
    close (or touch) the accepted socket.

    Upstream's callback closes the accepted fd itself and relies on valgrind
    to spot a double close; here the callback keeps it, and the test checks
    that it is still open and usable after the callback, that the listening
    socket was closed (CLOSE_ON_FREE), that destroy ran exactly once, on the
    loop thread, after the callback returned, and that the loop returned."""
    rt = RecordingRuntime()
    count = Counter(1)
    kept: list[socket.socket] = []
    inside: dict[str, Any] = {}
    with EventBase(runtime=rt) as base:

        def acceptcb_free(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            arg.value -= 1
            kept.append(sock)
            if arg.value == 0:
                inside["refcount_before"] = listener.refcount
                listener.free()
                inside["refcount_after"] = listener.refcount
                inside["freed"] = listener.freed
                inside["listener_sock_open"] = lsock.fileno() != -1

        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
        listener = Listener.bind(base, LOOPBACK, acceptcb_free, count, flags=flags, backlog=-1)
        lsock = listener.socket
        client = connect(lsock.getsockname())
        try:
            loop_once_bounded(base)  # returns: the callback ran (libevent: no events left)
            assert count.value == 0
            assert inside == {
                "refcount_before": 2,
                "refcount_after": 1,
                "freed": True,
                "listener_sock_open": True,  # destroy waits for the callback to return
            }
            assert listener.freed
            assert listener.refcount == 0
            assert lsock.fileno() == -1  # CLOSE_ON_FREE
            kinds = rt.kinds()
            assert kinds.count("listener.destroy") == 1
            assert kinds.index("listener.destroy") > kinds.index("listener.callback_exit")
            destroy_thread = next(t for k, t in rt.points if k == "listener.destroy")
            assert destroy_thread == threading.get_ident()  # the loop ran here
            with pytest.raises(ListenerFreedError):
                listener.enable()

            # The accepted socket is still open and usable.
            assert len(kept) == 1
            conn = kept[0]
            assert conn.fileno() != -1
            conn.settimeout(BOUND)
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            conn.sendall(b"pong")
            assert client.recv(4) == b"pong"
        finally:
            client.close()
            for sock in kept:
                sock.close()


# ------------------------------------------------------- #7 immediate_close


def test_immediate_close() -> None:
    """Upstream ``listener/immediate_close`` (regress_listener.c:254-290):
    two connections are queued before the loop runs; the callback (count 1)
    disables the listener after the first, and the accept loop must stop at
    once, so count is 0, not -1.  The second connection stays queued and is
    delivered after ``enable()``."""
    count = Counter(1)
    with EventBase() as base:
        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
        with Listener.bind(base, LOOPBACK, acceptcb, count, flags=flags, backlog=-1) as listener:
            address = listener.socket.getsockname()
            clients = [connect(address), connect(address)]
            try:
                loop_once_bounded(base)
                assert count.value == 0
                assert not listener.enabled
                base.loop(nonblock=True)
                assert count.value == 0  # disabled: nothing more is accepted
                # The second connection was left queued, not dropped.
                listener.enable()
                loop_once_bounded(base)
                assert count.value == -1
            finally:
                for client in clients:
                    client.close()


# ---------------------------------------- #8/#9 disable_in_thread(_error)


def test_disable_in_thread() -> None:
    """Upstream ``listener/disable_in_thread`` (regress_listener.c:329-393,
    regression test for libevent #1224): the accept callback starts a thread
    that calls ``disable()`` while the callback still runs holding the lock.

    Upstream sleeps 5 ms in the callback so that the thread reaches the lock;
    here the callback waits until the thread *is* blocked on the lock.  Pass
    condition as upstream: no deadlock (bounded joins); then the listener is
    disabled."""
    rt = ContentionRuntime()
    threads: list[threading.Thread] = []
    contended_in_cb: list[bool] = []
    with EventBase(runtime=rt) as base:

        def acceptcb_for_thread_test(
            listener: Listener, sock: socket.socket, address: Any, arg: Any
        ) -> None:
            sock.close()
            t = threading.Thread(target=listener.disable, name="disable_thread")
            t.start()
            arg.append(t)
            contended_in_cb.append(rt.contended.wait(BOUND))

        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE
        with Listener.bind(
            base, LOOPBACK, acceptcb_for_thread_test, threads, flags=flags, backlog=-1
        ) as listener:
            client = connect(listener.socket.getsockname())
            try:
                loop_once_bounded(base)
                assert len(threads) == 1
                join_bounded(threads[0])
                assert contended_in_cb == [True]
                assert not listener.enabled
                assert listener.refcount == 1
            finally:
                client.close()


def test_disable_in_thread_error() -> None:
    """Upstream ``listener/disable_in_thread_error`` (regress_listener.c:395-445):
    ``disable_in_thread`` on the error path: the *error* callback starts the
    thread that calls ``disable()`` while the callback holds the lock.

    The accept error is EINVAL from a listening socket after
    ``shutdown(SHUT_RD)`` (on Linux it becomes readable and ``accept()`` fails
    with EINVAL), because threadlisten refuses upstream's non-listening socket
    with backlog 0.  Pass condition: no deadlock (bounded joins)."""
    rt = ContentionRuntime()
    threads: list[threading.Thread] = []
    contended_in_cb: list[bool] = []
    accepted: list[socket.socket] = []
    with EventBase(runtime=rt) as base:

        def acceptcb_for_thread_test_error(
            listener: Listener, sock: socket.socket, address: Any, arg: Any
        ) -> None:
            accepted.append(sock)
            sock.close()

        def errorcb_for_thread_test(listener: Listener, error: OSError, arg: Any) -> None:
            t = threading.Thread(target=listener.disable, name="disable_thread")
            t.start()
            arg.append(t)
            contended_in_cb.append(rt.contended.wait(BOUND))

        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE
        srv = listening_socket()
        with Listener.from_socket(
            base, srv, acceptcb_for_thread_test_error, threads, flags=flags, backlog=0
        ) as listener:
            listener.set_error_cb(errorcb_for_thread_test)
            srv.shutdown(socket.SHUT_RD)
            loop_once_bounded(base)
            assert len(threads) == 1
            join_bounded(threads[0])
            assert contended_in_cb == [True]
            assert not accepted
            assert not listener.enabled
            assert listener.refcount == 1
        assert srv.fileno() == -1


# ------------------------------------------------ #10 reuseport_on_unix_socket


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")
def test_reuseport_on_unix_socket() -> None:
    """Upstream ``listener/reuseport_on_unix_socket`` (regress_listener.c:481-556):
    on an AF_UNIX path, ``bind`` with REUSEABLE or REUSEABLE_PORT fails
    (libevent: NULL; here ValueError, before any socket is made, so the path
    is not created), and with CLOSE_ON_EXEC|CLOSE_ON_FREE it succeeds."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, EventBase() as base:
        path = os.path.join(tmp, "s")  # short: a sockaddr_un path is ~108 bytes
        with pytest.raises(ValueError):
            Listener.bind(
                base, path, acceptcb, Counter(1), flags=LEV_OPT.REUSEABLE | LEV_OPT.CLOSE_ON_FREE
            )
        assert not os.path.exists(path)
        with pytest.raises(ValueError):
            Listener.bind(
                base,
                path,
                acceptcb,
                Counter(1),
                flags=LEV_OPT.REUSEABLE_PORT | LEV_OPT.CLOSE_ON_FREE,
            )
        assert not os.path.exists(path)
        listener = Listener.bind(
            base,
            path,
            acceptcb,
            Counter(1),
            flags=LEV_OPT.CLOSE_ON_EXEC | LEV_OPT.CLOSE_ON_FREE,
        )
        try:
            sock = listener.socket
            assert sock.family == socket.AF_UNIX
            assert not sock.get_inheritable()
            assert os.path.exists(path)
        finally:
            listener.free()
            os.unlink(path)
        assert sock.fileno() == -1


# ===================================================================
# libevent.md §4.4: scenarios upstream does not test
# ===================================================================


def test_free_from_foreign_thread_while_cb_runs() -> None:
    """§4.4: ``free()`` from a foreign thread while the accept callback runs.

    libevent completes the free after the accept loop drains.  threadlisten:
    ``free()`` waits for the running batch (it needs the lock; the freeing
    thread is seen blocked on it while the callback runs), never for the loop
    itself; when it returns, no callback is running, the listener is destroyed
    (socket closed, CLOSE_ON_FREE) and nothing more is delivered."""
    rt = ContentionRuntime()
    in_cb = threading.Event()
    release_cb = threading.Event()
    free_returned = threading.Event()
    running = [0]
    calls_after_free: list[int] = []
    delivered: list[int] = []
    with EventBase(runtime=rt) as base:

        def cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
            running[0] += 1
            try:
                sock.close()
                delivered.append(1)
                if free_returned.is_set():
                    calls_after_free.append(1)
                in_cb.set()
                release_cb.wait(BOUND)
            finally:
                running[0] -= 1

        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE | LEV_OPT.THREADSAFE
        listener = Listener.bind(base, LOOPBACK, cb, flags=flags)
        lsock = listener.socket
        address = lsock.getsockname()
        client = connect(address)
        running_when_free_returned: list[int] = []

        def freer() -> None:
            listener.free()
            running_when_free_returned.append(running[0])
            free_returned.set()

        base.start_thread()
        try:
            assert in_cb.wait(BOUND)
            rt.contended.clear()
            f = threading.Thread(target=freer, name="freer")
            f.start()
            assert rt.contended.wait(BOUND)  # free() is waiting for the batch's lock
            assert not free_returned.is_set()
            release_cb.set()
            join_bounded(f)
            assert running_when_free_returned == [0]
            assert listener.freed
            assert listener.refcount == 0
            assert lsock.fileno() == -1
            # A connection attempt after free() is refused: nothing is listening.
            with pytest.raises(OSError):
                connect(address).close()
            assert delivered == [1]
            assert not calls_after_free
        finally:
            release_cb.set()
            base.stop(BOUND)
            client.close()


def test_set_cb_none_while_enabled() -> None:
    """§4.4: ``set_cb(None)`` on an enabled listener.

    libevent accepts and closes one pending connection per wake-up.
    threadlisten (semantics 5) leaves the connections queued: the clients see
    neither EOF nor a reset; the listener stays enabled in intent, and a new
    callback receives every queued connection."""
    got: list[socket.socket] = []

    def cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        got.append(sock)

    with EventBase() as base:
        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.REUSEABLE
        with Listener.bind(base, LOOPBACK, cb, flags=flags) as listener:
            listener.set_cb(None)
            assert listener.enabled
            address = listener.socket.getsockname()
            clients = [connect(address), connect(address)]
            try:
                for _ in range(3):
                    base.loop(nonblock=True)
                assert got == []
                assert all(still_queued(c) for c in clients)
                listener.set_cb(cb)
                loop_once_bounded(base)
                assert len(got) == 2
                assert all(still_queued(c) for c in clients)  # accepted, not closed
            finally:
                for sock in got + clients:
                    sock.close()


def test_enable_with_cb_none() -> None:
    """§4.4: ``enable()`` with no callback records the intent and accepts
    nothing (libevent: returns 0, adds no event); a later ``set_cb`` arms it."""
    got: list[socket.socket] = []

    def cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        got.append(sock)

    with EventBase() as base:
        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.DISABLED
        with Listener.bind(base, LOOPBACK, None, flags=flags) as listener:
            assert not listener.enabled
            listener.enable()  # no error: the intent is recorded
            assert listener.enabled
            client = connect(listener.socket.getsockname())
            try:
                for _ in range(3):
                    base.loop(nonblock=True)
                assert got == []
                assert still_queued(client)
                listener.set_cb(cb, "arg")
                loop_once_bounded(base)
                assert len(got) == 1
            finally:
                client.close()
                for sock in got:
                    sock.close()


def test_disable_twice() -> None:
    """§4.4: ``disable()`` twice succeeds both times (libevent returns 0 twice);
    the listener can still be enabled and accepts afterwards."""
    count = Counter(5)
    with EventBase() as base:
        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.THREADSAFE
        with Listener.bind(base, LOOPBACK, acceptcb, count, flags=flags) as listener:
            listener.disable()
            listener.disable()  # no error the second time
            assert not listener.enabled
            client = connect(listener.socket.getsockname())
            try:
                base.loop(nonblock=True)
                assert count.value == 5
                listener.enable()
                loop_once_bounded(base)
                assert count.value == 4
            finally:
                client.close()


def test_lev_opt_disabled_then_enable() -> None:
    """§4.4: LEV_OPT_DISABLED creates the listener disabled (a queued connection
    is not accepted); ``enable()`` then delivers it."""
    count = Counter(5)
    with EventBase() as base:
        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.DISABLED
        with Listener.bind(base, LOOPBACK, acceptcb, count, flags=flags) as listener:
            assert not listener.enabled
            client = connect(listener.socket.getsockname())
            try:
                for _ in range(3):
                    base.loop(nonblock=True)
                assert count.value == 5
                assert still_queued(client)
                listener.enable()
                assert listener.enabled
                loop_once_bounded(base)
                assert count.value == 4
            finally:
                client.close()


def test_free_inside_errorcb() -> None:
    """§4.4: ``free()`` inside the error callback: refcount 2 -> 1 inside it,
    the listener lives (socket open) until the callback returns, then it is
    destroyed once (refcount 0, socket closed with CLOSE_ON_FREE) on the loop
    thread.  The error is EINVAL from a listening socket after
    ``shutdown(SHUT_RD)``."""
    rt = RecordingRuntime()
    inside: dict[str, Any] = {}
    with EventBase(runtime=rt) as base:

        def errorcb(listener: Listener, error: OSError, arg: Any) -> None:
            inside["errno"] = error.errno
            inside["arg"] = arg
            inside["before"] = listener.refcount
            listener.free()
            inside["after"] = listener.refcount
            inside["sock_open"] = srv.fileno() != -1
            inside["destroyed_yet"] = "listener.destroy" in rt.kinds()

        srv = listening_socket()
        flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.THREADSAFE
        listener = Listener.from_socket(base, srv, acceptcb, "the-arg", flags=flags, backlog=0)
        listener.set_error_cb(errorcb)
        srv.shutdown(socket.SHUT_RD)
        loop_once_bounded(base)
        assert inside == {
            "errno": errno.EINVAL,
            "arg": "the-arg",
            "before": 2,
            "after": 1,
            "sock_open": True,
            "destroyed_yet": False,
        }
        assert listener.freed
        assert listener.refcount == 0
        assert srv.fileno() == -1
        kinds = rt.kinds()
        assert kinds.count("listener.destroy") == 1
        assert kinds.index("listener.destroy") > kinds.index("listener.callback_exit")
