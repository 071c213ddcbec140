"""How the accept loop treats ``accept()`` errors (semantics 9) and exceptions
raised by the callbacks (semantics 10).

The accept loop calls ``self._sock.accept``, so a ``socket.socket`` subclass
whose ``accept()`` raises errors from a script drives it with any errno: the
socket is a real listening socket on loopback, made readable by a real queued
connection, and the script decides what each ``accept()`` call does before the
real one runs.

The back-off delays are checked on a fake clock (``FakeClockRuntime``) with
``base.call_later`` wrapped to record each delay: the loop is stepped with
``loop(nonblock=True)`` and the clock advanced by hand, so the tests assert the
delays themselves, never wall time.  A real EMFILE (``RLIMIT_NOFILE``) runs in
a child process at the end.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support import run_child

from threadlisten import LEV_OPT, EventBase, Listener, TimerHandle
from threadlisten._accept_errors import BACKOFF_INITIAL, BACKOFF_MAX
from threadlisten._runtime import Runtime

BOUND = 10.0

PER_CONNECTION = [
    "ECONNABORTED",
    "EPERM",
    "ENETDOWN",
    "EPROTO",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
]
RESOURCE = ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]
FATAL = ["EBADF", "EINVAL", "ENOTSOCK"]

#: The back-off delays, in order, for a persistent resource error.
EXPECTED_DELAYS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0]


def code(name: str) -> int:
    if not hasattr(errno, name):
        pytest.skip(f"errno.{name} does not exist on this platform")
    value: int = getattr(errno, name)
    return value


# ----------------------------------------------------------------- helpers


class ScriptedSocket(socket.socket):
    """A listening socket whose ``accept()`` first plays a script.

    Each call takes the next item of ``script``: an errno is raised as
    ``OSError``; ``None`` (or an empty script) runs the real ``accept()``.
    While ``persistent`` is set, every call raises it instead.
    """

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.script: deque[int | None] = deque()
        self.persistent: int | None = None
        self.calls = 0
        self.raised: list[int] = []

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        item = self.persistent
        if item is None and self.script:
            item = self.script.popleft()
        if item is not None:
            self.raised.append(item)
            raise OSError(item, os.strerror(item))
        return super().accept()


class FakeClockRuntime(Runtime):
    """The loop's clock stands still until the test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Harness:
    """A base on a fake clock, a listener on a ``ScriptedSocket``, the clients,
    and what the callbacks saw.  The loop runs on the test's thread."""

    def __init__(self, flags: LEV_OPT = LEV_OPT.CLOSE_ON_FREE, max_accepts: int = 64) -> None:
        self.rt = FakeClockRuntime()
        self.base = EventBase(runtime=self.rt)
        self.delays: list[float] = []
        self.timers: list[TimerHandle] = []
        real_call_later = self.base.call_later

        def call_later(delay: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
            handle = real_call_later(delay, fn, *args)
            self.delays.append(delay)
            self.timers.append(handle)
            return handle

        self.base.call_later = call_later  # type: ignore[method-assign]
        self.sock = ScriptedSocket()
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.accepted: list[socket.socket] = []
        self.errors: list[OSError] = []
        self.backing_off_in_errorcb: list[bool] = []
        self.enabled_in_errorcb: list[bool] = []
        self.clients: list[socket.socket] = []
        self.listener = Listener.from_socket(
            self.base, self.sock, self.acceptcb, flags=flags, max_accepts=max_accepts
        )

    def acceptcb(self, listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        self.accepted.append(sock)

    def errorcb(self, listener: Listener, error: OSError, arg: Any) -> None:
        self.errors.append(error)
        self.backing_off_in_errorcb.append(listener.backing_off)
        self.enabled_in_errorcb.append(listener.enabled)

    def connect(self, n: int = 1) -> None:
        for _ in range(n):
            self.clients.append(socket.create_connection(self.address, timeout=BOUND))

    def step(self, rounds: int = 3) -> None:
        """Run *rounds* non-blocking loop iterations (each: select, run what is due)."""
        for _ in range(rounds):
            self.base.loop(nonblock=True)

    def advance(self, seconds: float) -> None:
        self.rt.now += seconds

    def close(self) -> None:
        if not self.listener.freed:
            self.listener.free()
        for sock in self.accepted + self.clients:
            sock.close()
        self.sock.close()
        self.base.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def make_harness(request: pytest.FixtureRequest, **kwargs: Any) -> Harness:
    h = Harness(**kwargs)
    request.addfinalizer(h.close)
    return h


def listener_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "threadlisten" and r.levelno == level]


def other_thread(fn: Callable[[], object]) -> None:
    """Run *fn* in another thread, bounded: the listener lock must be free."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(BOUND)
    assert not t.is_alive(), "the other thread is stuck: is the listener lock leaked?"
    assert not failures, failures


# --------------------------------------------------------------- DRAINED


def test_eagain_ends_the_batch(harness: Harness) -> None:
    """EAGAIN/EWOULDBLOCK ends the batch quietly, even with a connection queued;
    the next readiness round accepts it."""
    harness.listener.set_error_cb(harness.errorcb)
    harness.connect()
    harness.sock.script.extend([errno.EAGAIN])
    harness.base.loop(nonblock=True)
    assert harness.sock.calls == 1
    assert harness.accepted == []
    assert harness.errors == []
    harness.base.loop(nonblock=True)
    assert len(harness.accepted) == 1
    assert harness.sock.calls == 3  # the queued one, then the real EAGAIN
    assert harness.listener.enabled
    assert not harness.listener.backing_off


def test_ewouldblock_ends_the_batch(harness: Harness) -> None:
    """EWOULDBLOCK (the same value as EAGAIN on Linux) ends the batch too."""
    harness.connect()
    harness.sock.script.extend([errno.EWOULDBLOCK])
    harness.base.loop(nonblock=True)
    assert harness.sock.calls == 1
    assert harness.accepted == []


# --------------------------------------------------------- PER_CONNECTION


@pytest.mark.parametrize("name", PER_CONNECTION)
def test_per_connection_error_is_skipped(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A per-connection errno skips that connection and the batch goes on: the
    queued connection behind it is accepted in the same round; no error
    callback, no log, no back-off, still enabled."""
    h = make_harness(request)
    h.listener.set_error_cb(h.errorcb)
    h.connect()
    h.sock.script.extend([code(name)])
    h.base.loop(nonblock=True)
    assert h.sock.raised == [code(name)]
    assert len(h.accepted) == 1
    assert h.sock.calls == 3  # the error, the real accept, the real EAGAIN
    assert h.errors == []
    assert h.listener.enabled
    assert not h.listener.backing_off
    assert h.delays == []
    assert listener_records(caplog, logging.WARNING) == []
    assert listener_records(caplog, logging.ERROR) == []


def test_all_per_connection_errors_in_one_batch(request: pytest.FixtureRequest) -> None:
    """All ten per-connection errnos in a row, then two real connections: one
    round skips the ten and accepts both."""
    h = make_harness(request)
    h.listener.set_error_cb(h.errorcb)
    h.connect(2)
    codes = [code(name) for name in PER_CONNECTION]
    h.sock.script.extend(codes)
    h.base.loop(nonblock=True)
    assert h.sock.raised == codes
    assert len(h.accepted) == 2
    assert h.errors == []


def test_per_connection_errors_count_toward_max_accepts(request: pytest.FixtureRequest) -> None:
    """Skipped connections count toward ``max_accepts``: with 3, two errors and
    one accept fill the round; the second queued connection waits for the next."""
    h = make_harness(request, max_accepts=3)
    h.connect(2)
    h.sock.script.extend([errno.ECONNABORTED, errno.ECONNABORTED])
    h.base.loop(nonblock=True)
    assert h.sock.calls == 3
    assert len(h.accepted) == 1
    h.base.loop(nonblock=True)
    assert len(h.accepted) == 2


@pytest.mark.parametrize("max_accepts", [1, 5, 64])
def test_persistent_per_connection_error_cannot_spin(
    request: pytest.FixtureRequest, max_accepts: int
) -> None:
    """A per-connection errno that never stops: one readiness round makes
    exactly ``max_accepts`` calls and returns (the loop is not spun); once it
    stops, the queued connection is accepted."""
    h = make_harness(request, max_accepts=max_accepts)
    h.listener.set_error_cb(h.errorcb)
    h.connect()
    h.sock.persistent = errno.ECONNABORTED
    h.base.loop(nonblock=True)
    assert h.sock.calls == max_accepts
    h.base.loop(nonblock=True)
    assert h.sock.calls == 2 * max_accepts
    assert h.accepted == []
    assert h.errors == []
    assert h.listener.enabled
    h.sock.persistent = None
    h.base.loop(nonblock=True)
    assert len(h.accepted) == 1


# ---------------------------------------------------------------- RESOURCE


@pytest.mark.parametrize("name", RESOURCE)
def test_resource_error_pauses_with_backoff(request: pytest.FixtureRequest, name: str) -> None:
    """A resource errno pauses accepting: the error callback is called once
    with the OSError (``backing_off`` already True inside it), a 10 ms timer
    is scheduled, and no accept() is tried until it is due; the listener stays
    enabled and the connection stays queued; when the timer fires the
    connection is accepted."""
    h = make_harness(request)
    h.listener.set_error_cb(h.errorcb)
    h.connect()
    h.sock.script.extend([code(name)])
    h.step()
    assert [e.errno for e in h.errors] == [code(name)]
    assert isinstance(h.errors[0], OSError)
    assert h.backing_off_in_errorcb == [True]
    assert h.listener.backing_off
    assert h.listener.enabled
    assert h.delays == [pytest.approx(BACKOFF_INITIAL)]
    assert h.timers[0].when == pytest.approx(h.rt.now + BACKOFF_INITIAL)
    assert h.sock.calls == 1
    h.advance(BACKOFF_INITIAL * 0.9)
    h.step()
    assert h.sock.calls == 1  # not yet due: nothing tried
    assert h.accepted == []
    h.advance(BACKOFF_INITIAL * 0.1 + 1e-9)
    h.step()
    assert len(h.accepted) == 1
    assert not h.listener.backing_off
    assert len(h.errors) == 1


def test_backoff_doubles_to_one_second_then_resets(harness: Harness) -> None:
    """A persistent EMFILE: the error callback is called once per failed
    attempt; the delays go 10 ms, 20, 40 ... 640 ms, then stay at 1 s; the
    loop is never spun (one accept() per attempt).  One success resets the
    delay to 10 ms."""
    h = harness
    h.listener.set_error_cb(h.errorcb)
    h.connect(2)
    h.sock.persistent = errno.EMFILE
    h.step()
    for i, delay in enumerate(EXPECTED_DELAYS):
        assert len(h.errors) == i + 1
        assert h.sock.calls == i + 1
        assert h.delays[-1] == pytest.approx(delay)
        assert h.timers[-1].when == pytest.approx(h.rt.now + delay)
        assert h.listener.backing_off
        h.step()  # nothing is due: nothing happens
        assert h.sock.calls == i + 1
        h.advance(delay)
        h.step()
    assert len(h.delays) == len(EXPECTED_DELAYS) + 1
    assert h.delays == pytest.approx([*EXPECTED_DELAYS, BACKOFF_MAX])
    assert all(e.errno == errno.EMFILE for e in h.errors)
    assert all(h.backing_off_in_errorcb)
    assert h.accepted == []

    # The shortage ends: the next attempt accepts both queued connections.
    h.sock.persistent = None
    h.advance(BACKOFF_MAX)
    h.step()
    assert len(h.accepted) == 2
    assert not h.listener.backing_off

    # A success resets the back-off: the next failure waits 10 ms again.
    h.sock.script.extend([errno.EMFILE])
    h.connect()
    h.step()
    assert h.delays[-1] == pytest.approx(BACKOFF_INITIAL)
    assert h.listener.backing_off
    h.advance(BACKOFF_INITIAL)
    h.step()
    assert len(h.accepted) == 3


def test_resource_error_without_errorcb_logs_a_warning(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """With no error callback a resource error is logged (a warning, with the
    delay) on the ``threadlisten`` logger, and the back-off still happens."""
    harness.connect()
    harness.sock.script.extend([errno.EMFILE])
    harness.step()
    warnings = listener_records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert os.strerror(errno.EMFILE) in warnings[0].getMessage()
    assert "0.010" in warnings[0].getMessage()
    assert harness.listener.backing_off
    harness.advance(BACKOFF_INITIAL)
    harness.step()
    assert len(harness.accepted) == 1


def test_disable_enable_set_cb_during_backoff_do_not_cut_it_short(harness: Harness) -> None:
    """``disable()``, ``enable()`` and ``set_cb()`` during a pause leave the
    timer as it was: nothing is accepted before it is due, even though the
    listener is enabled with a callback; when it is due, the new callback
    receives the connection."""
    h = harness
    h.connect()
    h.sock.script.extend([errno.ENFILE])
    h.step()
    assert h.listener.backing_off
    timer = h.timers[-1]
    other: list[socket.socket] = []

    def other_cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        other.append(sock)

    h.listener.disable()
    h.listener.enable()
    h.listener.set_cb(other_cb)
    h.listener.set_cb(None)
    h.listener.set_cb(other_cb)
    h.step()
    assert h.sock.calls == 1
    assert h.listener.backing_off
    assert not timer.cancelled
    assert len(h.delays) == 1
    h.advance(BACKOFF_INITIAL)
    h.step()
    assert h.accepted == []
    assert len(other) == 1
    h.accepted.extend(other)  # closed by the harness


def test_disabled_during_backoff_stays_disabled(harness: Harness) -> None:
    """A listener disabled during a pause is not re-armed when the timer fires;
    ``enable()`` afterwards accepts at once."""
    h = harness
    h.connect()
    h.sock.script.extend([errno.ENOBUFS])
    h.step()
    h.listener.disable()
    h.advance(BACKOFF_INITIAL)
    h.step()
    assert not h.listener.backing_off
    assert h.sock.calls == 1
    assert h.accepted == []
    h.listener.enable()
    h.step()
    assert len(h.accepted) == 1


def test_backoff_timer_never_fires_on_freed_listener(harness: Harness) -> None:
    """``free()`` during a pause cancels the timer; advancing past it does
    nothing: no accept(), no callback, socket closed (CLOSE_ON_FREE)."""
    h = harness
    h.listener.set_error_cb(h.errorcb)
    h.connect()
    h.sock.persistent = errno.EMFILE
    h.step()
    timer = h.timers[-1]
    h.listener.free()
    assert timer.cancelled
    assert h.listener.refcount == 0
    assert h.sock.fileno() == -1
    h.advance(BACKOFF_MAX * 10)
    h.step()
    assert h.sock.calls == 1
    assert len(h.errors) == 1
    assert h.accepted == []


def test_backoff_timer_that_already_started_finds_listener_freed(harness: Harness) -> None:
    """The race the cancel cannot cover: the loop thread has taken the timer off
    the heap (so ``cancel()`` is a no-op) when ``free()`` runs.  The timer's
    function then finds the listener freed and does nothing (white-box: the
    function ``call_later`` was given is called after ``free()``)."""
    h = harness
    h.connect()
    h.sock.script.extend([errno.EMFILE])
    h.step()
    assert h.timers
    expired = h.timers[-1]._fn
    h.listener.free()
    expired()
    assert h.listener.refcount == 0
    h.step()
    assert h.sock.calls == 1
    assert h.accepted == []


def test_free_inside_errorcb_during_resource_error(harness: Harness) -> None:
    """The error callback may free the listener on a resource error: refcount
    2 -> 1 inside it, destroyed after it returns, and the back-off timer is
    cancelled, so it never fires."""
    h = harness
    inside: list[int] = []

    def errorcb(listener: Listener, error: OSError, arg: Any) -> None:
        inside.append(listener.refcount)
        listener.free()
        inside.append(listener.refcount)

    h.listener.set_error_cb(errorcb)
    h.connect()
    h.sock.persistent = errno.EMFILE
    h.step()
    assert inside == [2, 1]
    assert h.listener.refcount == 0
    assert h.sock.fileno() == -1
    assert all(t.cancelled for t in h.timers)
    h.advance(BACKOFF_MAX * 10)
    h.step()
    assert h.sock.calls == 1


# ------------------------------------------------------------------- FATAL


@pytest.mark.parametrize("name", FATAL)
def test_fatal_error_disables_then_calls_errorcb(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A fatal errno disables the listener *before* the error callback runs
    (it sees ``enabled`` False), the callback gets the OSError once, no
    back-off, nothing is logged, and no accept() is tried afterwards."""
    h = make_harness(request)
    h.listener.set_error_cb(h.errorcb)
    h.connect()
    h.sock.script.extend([code(name)])
    h.step()
    assert [e.errno for e in h.errors] == [code(name)]
    assert h.enabled_in_errorcb == [False]
    assert h.backing_off_in_errorcb == [False]
    assert not h.listener.enabled
    assert h.delays == []
    h.step()
    assert h.sock.calls == 1
    assert h.accepted == []
    assert listener_records(caplog, logging.ERROR) == []
    assert h.listener.refcount == 1


@pytest.mark.parametrize("name", FATAL)
def test_fatal_errorcb_may_reenable(request: pytest.FixtureRequest, name: str) -> None:
    """The error callback may re-enable the listener after a fatal error; the
    queued connection is then accepted on the next round."""
    h = make_harness(request)

    def errorcb(listener: Listener, error: OSError, arg: Any) -> None:
        h.errors.append(error)
        listener.enable()

    h.listener.set_error_cb(errorcb)
    h.connect()
    h.sock.script.extend([code(name)])
    h.base.loop(nonblock=True)
    assert len(h.errors) == 1
    assert h.listener.enabled
    assert h.accepted == []
    h.base.loop(nonblock=True)
    assert len(h.accepted) == 1


@pytest.mark.allow_error_logs
@pytest.mark.parametrize("name", FATAL)
def test_fatal_error_without_errorcb_is_logged(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """With no error callback a fatal error is logged at ERROR on the
    ``threadlisten`` logger, and the listener is disabled."""
    h = make_harness(request)
    h.connect()
    h.sock.script.extend([code(name)])
    h.step()
    errors = listener_records(caplog, logging.ERROR)
    assert len(errors) == 1
    assert os.strerror(code(name)) in errors[0].getMessage()
    assert not h.listener.enabled


# ------------------------------------------------- exceptions in callbacks


@pytest.mark.allow_error_logs
def test_accept_callback_exception_is_logged_and_batch_goes_on(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Semantics 10: an exception from the accept callback is logged with its
    traceback; the batch goes on (the other queued connections are delivered
    in the same round); the refcount is back to 1 and other threads can take
    the lock (enable/disable from another thread return)."""
    h = make_harness(request, flags=LEV_OPT.CLOSE_ON_FREE | LEV_OPT.THREADSAFE)
    calls: list[int] = []

    def bad_cb(listener: Listener, sock: socket.socket, address: Any, arg: Any) -> None:
        calls.append(listener.refcount)
        sock.close()  # the callback owns the socket, even when it raises
        if len(calls) == 1:
            raise RuntimeError("boom in accept callback")

    h.listener.set_cb(bad_cb)
    h.connect(3)
    h.base.loop(nonblock=True)
    assert calls == [2, 2, 2]
    records = listener_records(caplog, logging.ERROR)
    assert len(records) == 1
    assert records[0].exc_info is not None
    text = logging.Formatter().formatException(records[0].exc_info)
    assert "Traceback" in text
    assert "boom in accept callback" in text
    assert h.listener.refcount == 1
    other_thread(h.listener.disable)
    assert not h.listener.enabled
    other_thread(h.listener.enable)
    assert h.listener.enabled


@pytest.mark.allow_error_logs
def test_error_callback_exception_is_logged(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Semantics 10 for the error callback: on a resource error, the exception
    is logged with its traceback, the back-off still runs and ends normally,
    the refcount is back to 1, and another thread can use the listener."""
    h = make_harness(request, flags=LEV_OPT.CLOSE_ON_FREE | LEV_OPT.THREADSAFE)

    def bad_errorcb(listener: Listener, error: OSError, arg: Any) -> None:
        h.errors.append(error)
        raise ValueError("boom in error callback")

    h.listener.set_error_cb(bad_errorcb)
    h.connect()
    h.sock.script.extend([errno.EMFILE])
    h.step()
    records = listener_records(caplog, logging.ERROR)
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "boom in error callback" in logging.Formatter().formatException(records[0].exc_info)
    assert h.listener.refcount == 1
    assert h.listener.backing_off
    other_thread(h.listener.disable)
    other_thread(h.listener.enable)
    h.advance(BACKOFF_INITIAL)
    h.step()
    assert len(h.accepted) == 1
    assert h.listener.refcount == 1


@pytest.mark.allow_error_logs
def test_fatal_error_callback_exception_is_logged(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from the error callback after a fatal error: logged with
    traceback, the listener stays disabled and consistent (refcount 1), and
    another thread can re-enable it, after which the connection is accepted."""
    h = make_harness(request, flags=LEV_OPT.CLOSE_ON_FREE | LEV_OPT.THREADSAFE)

    def bad_errorcb(listener: Listener, error: OSError, arg: Any) -> None:
        raise KeyError("boom")

    h.listener.set_error_cb(bad_errorcb)
    h.connect()
    h.sock.script.extend([errno.EBADF])
    h.step()
    records = listener_records(caplog, logging.ERROR)
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert h.listener.refcount == 1
    assert not h.listener.enabled
    other_thread(h.listener.enable)
    h.step()
    assert len(h.accepted) == 1


# ------------------------------------------------------- real EMFILE, child


_REAL_EMFILE_CHILD = """
import errno, json, os, resource, socket, threading, time
from threadlisten import LEV_OPT, EventBase, Listener

N = 5
WANT_ERRORS = 6  # 10 + 20 + 40 + 80 + 160 ms of back-off between them
errors = []
accepted = []
enough_errors = threading.Event()
all_accepted = threading.Event()

def acceptcb(listener, sock, address, arg):
    accepted.append(1)
    sock.close()
    if len(accepted) == N:
        all_accepted.set()

def errorcb(listener, error, arg):
    errors.append(error.errno)
    if len(errors) == WANT_ERRORS:
        enough_errors.set()

base = EventBase()
flags = LEV_OPT.CLOSE_ON_FREE | LEV_OPT.THREADSAFE
listener = Listener.bind(base, ("127.0.0.1", 0), acceptcb, flags=flags)
listener.set_error_cb(errorcb)
clients = [socket.create_connection(listener.socket.getsockname(), timeout=10) for _ in range(N)]

probe = os.dup(1)
os.close(probe)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
cpu0, wall0 = time.process_time(), time.monotonic()
base.start_thread()
got_errors = enough_errors.wait(10)
cpu1, wall1 = time.process_time(), time.monotonic()
backing_off = listener.backing_off
accepted_during = len(accepted)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
got_all = all_accepted.wait(10)
base.stop(10)
result = {
    "got_errors": got_errors,
    "errors": errors,
    "backing_off": backing_off,
    "accepted_during": accepted_during,
    "got_all": got_all,
    "accepted": len(accepted),
    "cpu": cpu1 - cpu0,
    "wall": wall1 - wall0,
    "emfile": errno.EMFILE,
}
listener.free()
for c in clients:
    c.close()
base.close()
print(json.dumps(result))
"""


def test_real_emfile_backs_off_then_accepts_everything(
    record_property: Callable[[str, object], None],
) -> None:
    """A real EMFILE (``RLIMIT_NOFILE`` lowered so that no descriptor can be
    made), in a child process: with five connections queued, the listener
    backs off and reports EMFILE to the error callback on each attempt,
    without spinning (the CPU time over the first six attempts is reported,
    not asserted tightly; the error callback is not called hundreds of times);
    once the limit is raised every queued connection is accepted."""
    result = run_child(_REAL_EMFILE_CHILD)
    record_property("emfile_backoff_cpu_seconds", result["cpu"])
    record_property("emfile_backoff_wall_seconds", result["wall"])
    print(
        f"real EMFILE: {len(result['errors'])} error callbacks; over the first six "
        f"attempts {result['cpu']:.4f} s CPU in {result['wall']:.3f} s wall"
    )
    assert result["got_errors"], result
    assert result["backing_off"]
    assert result["accepted_during"] == 0
    assert set(result["errors"]) == {result["emfile"]}
    assert 6 <= len(result["errors"]) < 50  # a back-off, not a busy loop
    assert result["wall"] >= 0.3  # 10+20+40+80+160 ms of pauses between six attempts
    assert result["got_all"], result
    assert result["accepted"] == 5
