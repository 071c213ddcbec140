"""threadlisten.compat: libevent's names, each a thin alias of one Python call.

Every name the issue lists exists, documents its C prototype, and does what
the Python call does: on a real listener, with real loopback clients, the
(cb, ptr) pair reaches the callback, the error reaches the error callback
with its errno, and C's error returns are exceptions.
"""

from __future__ import annotations

import errno
import inspect
import socket
import threading
from typing import Any

import pytest

import threadlisten
from threadlisten import EventBase, Listener, ListenerFreedError, compat
from threadlisten.compat import (
    LEV_OPT_CLOSE_ON_FREE,
    LEV_OPT_DISABLED,
    LEV_OPT_REUSEABLE,
    LEV_OPT_THREADSAFE,
    evconnlistener_disable,
    evconnlistener_enable,
    evconnlistener_free,
    evconnlistener_get_base,
    evconnlistener_get_fd,
    evconnlistener_new,
    evconnlistener_new_bind,
    evconnlistener_set_cb,
    evconnlistener_set_error_cb,
    event_base_dispatch,
    event_base_loopbreak,
    event_base_loopexit,
    event_base_new,
)

BOUND = 10.0

NAMES = (
    "evconnlistener_new",
    "evconnlistener_new_bind",
    "evconnlistener_free",
    "evconnlistener_enable",
    "evconnlistener_disable",
    "evconnlistener_set_cb",
    "evconnlistener_set_error_cb",
    "evconnlistener_get_fd",
    "evconnlistener_get_base",
    "event_base_new",
    "event_base_dispatch",
    "event_base_loopexit",
    "event_base_loopbreak",
)


@pytest.mark.parametrize("name", NAMES)
def test_every_name_is_there_with_its_prototype_and_python_call(name: str) -> None:
    fn = getattr(compat, name)
    assert name in compat.__all__
    doc = inspect.getdoc(fn) or ""
    assert f"{name}(" in doc.splitlines()[0], "the first line is the C prototype"
    assert "Python:" in doc
    assert "Thread-safety:" in doc


def test_constants_are_threadlisten_s() -> None:
    for name in compat.__all__:
        if name.startswith(("LEV_OPT", "EV_")):
            assert getattr(compat, name) is getattr(threadlisten, name)


class Collect:
    """An accept callback that records what it receives and closes the socket."""

    def __init__(self) -> None:
        self.calls: list[tuple[Listener, socket.socket, Any, Any]] = []
        self.got = threading.Event()

    def __call__(self, lev: Listener, sock: socket.socket, address: Any, ptr: Any) -> None:
        self.calls.append((lev, sock, address, ptr))
        sock.close()
        self.got.set()


def test_new_bind_passes_cb_and_ptr_and_the_getters_work() -> None:
    cb = Collect()
    ptr = {"the": "void *"}
    base = event_base_new()
    assert isinstance(base, EventBase)
    flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_THREADSAFE
    lev = evconnlistener_new_bind(base, cb, ptr, flags, -1, ("127.0.0.1", 0))
    try:
        assert evconnlistener_get_base(lev) is base
        assert evconnlistener_get_fd(lev) == lev.socket.fileno()
        base.start_thread()
        with socket.create_connection(lev.socket.getsockname(), timeout=BOUND) as client:
            assert cb.got.wait(BOUND)
            (got_lev, sock, address, got_ptr) = cb.calls[0]
            assert got_lev is lev and got_ptr is ptr
            assert address == client.getsockname()  # the decoded sockaddr
            assert sock.fileno() == -1  # it was the callback's, and it closed it
    finally:
        base.stop(BOUND)
        evconnlistener_free(lev)
        base.close()
    with pytest.raises(ListenerFreedError):
        evconnlistener_free(lev)
    with pytest.raises(ListenerFreedError):
        evconnlistener_get_fd(lev)


def test_new_bind_has_no_socklen_and_raises_instead_of_null() -> None:
    with EventBase() as base:
        with pytest.raises(TypeError):
            evconnlistener_new_bind(base, None, None, 0, -1, ("127.0.0.1", 0), 16)  # type: ignore[call-arg]
        with pytest.raises(ValueError):
            evconnlistener_new_bind(base, None, None, 0, 0, ("127.0.0.1", 0))  # backlog 0
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            with pytest.raises(OSError) as info:
                evconnlistener_new_bind(base, None, None, 0, -1, busy.getsockname())
            assert info.value.errno == errno.EADDRINUSE


def test_new_on_a_descriptor_enable_disable_and_set_cb() -> None:
    first, second = Collect(), Collect()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = sock.getsockname()
        with EventBase() as base:
            flags = LEV_OPT_THREADSAFE | LEV_OPT_DISABLED
            lev = evconnlistener_new(base, first, "one", flags, -1, sock.fileno())
            try:
                assert not lev.enabled
                evconnlistener_enable(lev)
                assert lev.enabled
                base.start_thread()
                with socket.create_connection(address, timeout=BOUND):
                    assert first.got.wait(BOUND)
                evconnlistener_disable(lev)
                assert not lev.enabled
                evconnlistener_set_cb(lev, second, "two")
                evconnlistener_enable(lev)
                with socket.create_connection(address, timeout=BOUND):
                    assert second.got.wait(BOUND)
                assert [c[3] for c in first.calls] == ["one"]
                assert [c[3] for c in second.calls] == ["two"]
            finally:
                evconnlistener_free(lev)
        # Without CLOSE_ON_FREE the int descriptor is the caller's again.
        assert sock.fileno() != -1


def test_set_error_cb_gets_the_errno_and_ptr() -> None:
    seen: list[tuple[int | None, Any]] = []
    got = threading.Event()

    def errorcb(lev: Listener, error: OSError, ptr: Any) -> None:
        seen.append((error.errno, ptr))
        got.set()

    with EventBase() as base:
        flags = LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED
        lev = evconnlistener_new_bind(base, Collect(), "ptr", flags, -1, ("127.0.0.1", 0))
        try:
            evconnlistener_set_error_cb(lev, errorcb)
            # On Linux, shutdown(SHUT_RD) makes a listening socket readable
            # and accept() fail with EINVAL (as tests/test_libevent_ports.py).
            lev.socket.shutdown(socket.SHUT_RD)
            evconnlistener_enable(lev)
            base.start_thread()
            assert got.wait(BOUND)
        finally:
            base.stop(BOUND)
            evconnlistener_free(lev)
    assert seen == [(errno.EINVAL, "ptr")]


def test_dispatch_loopexit_and_loopbreak() -> None:
    base = event_base_new()
    try:
        event_base_loopexit(base, None)
        assert event_base_dispatch(base) is None  # type: ignore[func-returns-value]
        event_base_loopexit(base, 0.01)
        event_base_dispatch(base)  # returns after 10 ms
        done = threading.Event()

        def breaker() -> None:
            event_base_loopbreak(base)
            done.set()

        base.call_soon_threadsafe(breaker)
        event_base_dispatch(base)
        assert done.is_set()
        with pytest.raises(ValueError):
            event_base_loopexit(base, -1)
    finally:
        base.close()
