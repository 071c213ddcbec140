"""Shared test fixtures: every test is checked for leaked descriptors, leaked
threads and swallowed errors.

* Descriptors: the entries of /proc/self/fd (or /dev/fd) are counted before
  and after each test, after a garbage collection.
* Threads: every thread a test started must have ended by the end of the test
  (each is given a bounded join first).
* Swallowed errors: threadlisten logs an exception raised by a callback on the
  ``threadlisten`` logger instead of raising it in the loop thread, so a failed
  ``assert`` inside a test's callback would pass unnoticed.  Any ERROR record on
  that logger fails the test unless the test is marked ``allow_error_logs``.

It also holds the fixtures several files share (event bases, an acceptor
thread, a collecting accept callback, clients, a socket pair); the shared
helpers that are not fixtures are in ``_support.py``.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

# The whole suite runs lock-checked, as libevent's regress suite runs with
# debug locks; THREADLISTEN_LOCK_DEBUG=0 turns it off for a timing comparison.
os.environ.setdefault("THREADLISTEN_LOCK_DEBUG", "1")
from _support import WAIT, Clients, Collector, open_fds

import threadlisten.debug  # installs the checker before any base exists
from threadlisten import EventBase
from threadlisten._runtime import Runtime

#: How long a finished test's threads get to end before they count as leaked.
THREAD_JOIN_TIMEOUT = 10.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_error_logs: the test expects ERROR records on the threadlisten logger"
    )
    config.addinivalue_line("markers", "allow_fd_leak: the test's descriptors are checked by hand")


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaks a descriptor or a thread, or logs an error."""
    gc.collect()
    threadlisten.debug.clear_errors()
    fds_before = open_fds()
    threads_before = set(threading.enumerate())
    handler = _ErrorRecords()
    logger = logging.getLogger("threadlisten")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    new_threads = [t for t in threading.enumerate() if t not in threads_before]
    for thread in new_threads:
        thread.join(THREAD_JOIN_TIMEOUT)
    alive = [t.name for t in new_threads if t.is_alive()]
    assert not alive, f"threads leaked by the test: {alive}"
    gc.collect()
    leaked = open_fds() - fds_before
    if not request.node.get_closest_marker("allow_fd_leak"):
        assert not leaked, f"descriptors leaked by the test: {sorted(leaked)}"
    if not request.node.get_closest_marker("allow_error_logs"):
        messages = [
            r.getMessage()
            + (f"\n{logging.Formatter().formatException(r.exc_info)}" if r.exc_info else "")
            for r in handler.records
        ]
        assert not messages, "errors logged on 'threadlisten':\n" + "\n".join(messages)
    found = threadlisten.debug.errors()
    assert not found, "lock checker:\n" + "\n".join(f"[{e.check}] {e}" for e in found)


# ------------------------------------------------------------ shared fixtures


@pytest.fixture
def make_base() -> Iterator[Callable[..., EventBase]]:
    """Make event bases, on *runtime* if given, with an acceptor thread if
    *thread*; each is stopped (bounded) and closed at the end of the test."""
    bases: list[EventBase] = []

    def make(*, thread: bool = False, runtime: Runtime | None = None) -> EventBase:
        base = EventBase(runtime=runtime)
        bases.append(base)
        if thread:
            base.start_thread()
        return base

    try:
        yield make
    finally:
        for base in bases:
            base.stop(timeout=WAIT)
            base.close()


@pytest.fixture
def base(make_base: Callable[..., EventBase]) -> EventBase:
    """An idle base: the test runs its loop in its own thread (stopped and closed at the end)."""
    return make_base()


@pytest.fixture
def acceptor(make_base: Callable[..., EventBase]) -> EventBase:
    """A base whose loop an acceptor thread runs (stopped and closed at the end)."""
    return make_base(thread=True)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """An accept callback keeping what it receives; the sockets are closed at the end."""
    c = Collector()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Client connections, closed at the end of the test."""
    c = Clients()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair, closed at the end of the test."""
    a, b = socket.socketpair()
    with a, b:
        yield a, b
