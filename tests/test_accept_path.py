"""The two ways the accept loop takes a connection (docs/performance.md).

For a socket whose class has the stock ``socket.socket.accept`` the listener
calls the C-level ``_accept()`` and builds the connection's ``socket.socket``
itself from the family, type and protocol it cached at construction; any
other class (``ssl.SSLSocket``, a test's error-injecting subclass) has its own
``accept()`` called as it is.  Both must hand the callback the same thing: a
``socket.socket`` of the listener's family, in the blocking mode the flags
ask for, with the peer's address, and must lose no descriptor on the way.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import threadlisten.listener as listener_module
from threadlisten import LEV_OPT, EventBase, Listener

WAIT = 5.0
CLOSE = LEV_OPT.CLOSE_ON_FREE


class Delivered:
    """Collects what the accept callback was given, and wakes the test."""

    def __init__(self) -> None:
        self.items: list[tuple[socket.socket, Any]] = []
        self.ready = threading.Event()

    def __call__(self, lst: Listener, conn: socket.socket, addr: Any, arg: object) -> None:
        self.items.append((conn, addr))
        self.ready.set()

    def close(self) -> None:
        for conn, _ in self.items:
            conn.close()


def _accept_one(base: EventBase, lst: Listener, got: Delivered) -> None:
    for _ in range(100):  # bounded: the connection is already queued
        base.loop(nonblock=True)
        if got.ready.is_set():
            return
    raise AssertionError("the queued connection was not delivered")


@pytest.mark.parametrize("family", ["inet", "inet6", "unix"])
@pytest.mark.parametrize("blocking", [False, True])
def test_stock_socket_connection_is_complete(family: str, blocking: bool, tmp_path: Path) -> None:
    if family == "inet6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    address: Any = {
        "inet": ("127.0.0.1", 0),
        "inet6": ("::1", 0),
        "unix": str(tmp_path / "s.sock"),
    }[family]
    flags = CLOSE | (LEV_OPT.LEAVE_SOCKETS_BLOCKING if blocking else LEV_OPT(0))
    got = Delivered()
    with EventBase() as base:
        lst = Listener.bind(base, address, got, None, flags=flags)
        try:
            expected_family = lst.socket.family
            with socket.socket(expected_family, socket.SOCK_STREAM) as client:
                client.connect(lst.socket.getsockname())
                _accept_one(base, lst, got)
                ((conn, addr),) = got.items
                assert type(conn) is socket.socket
                assert conn.family == expected_family
                assert conn.type == socket.SOCK_STREAM
                assert conn.gettimeout() == (None if blocking else 0.0)
                if family != "unix":
                    assert addr == client.getsockname()
                # It is a working connection to that client.
                client.sendall(b"ping")
                conn.settimeout(WAIT)
                assert conn.recv(4) == b"ping"
        finally:
            got.close()
            lst.free()


def test_socket_class_with_own_accept_is_called() -> None:
    calls: list[int] = []

    class CountingSocket(socket.socket):
        def accept(self) -> tuple[socket.socket, Any]:
            calls.append(1)
            return super().accept()

    sock = CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    got = Delivered()
    with EventBase() as base:
        lst = Listener.from_socket(base, sock, got, None, flags=CLOSE)
        try:
            with socket.create_connection(sock.getsockname(), timeout=WAIT):
                _accept_one(base, lst, got)
            assert calls, "the subclass's accept() was bypassed"
            assert len(got.items) == 1
        finally:
            got.close()
            lst.free()


@pytest.mark.allow_error_logs
def test_failure_building_the_socket_closes_the_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The descriptor from _accept() belongs to nobody until a socket object
    # owns it: if building that object fails, the listener must close it.
    # (The no_leaks fixture checks the process's descriptors after the test.)
    built: list[int] = []

    def failing_socket(*args: Any, fileno: int | None = None) -> socket.socket:
        assert fileno is not None
        built.append(fileno)
        raise MemoryError("simulated")

    monkeypatch.setattr(listener_module, "_new_socket", failing_socket)
    got = Delivered()
    with EventBase() as base:
        lst = Listener.bind(base, ("127.0.0.1", 0), got, None, flags=CLOSE)
        try:
            with socket.create_connection(lst.socket.getsockname(), timeout=WAIT) as client:
                for _ in range(100):  # bounded: one readiness round is enough
                    base.loop(nonblock=True)  # logs the callback's MemoryError
                    if built:
                        break
                assert len(built) == 1
                assert not got.items
                # The server side was closed: the client sees end of file.
                client.settimeout(WAIT)
                assert client.recv(1) == b""
        finally:
            lst.free()
