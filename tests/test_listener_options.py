"""Listener options and bad input (issue 2, semantics 1, 2 and 3).

The loop always runs in the test thread here (``loop_until``): these tests
check sockets and their options, not threads.
"""

from __future__ import annotations

import enum
import errno
import gc
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import (
    LOCALHOST,
    Collector,
    connect,
    loop_until,
    open_fds,
    tcp_socket,
)

import threadlisten
from threadlisten import LEV_OPT, EventBase, EventBaseClosedError, Listener

WAIT = 5.0
CLOSE = LEV_OPT.CLOSE_ON_FREE
LINUX = sys.platform.startswith("linux")

linux_only = pytest.mark.skipif(not LINUX, reason="reads Linux-specific socket state")


# ------------------------------------------------------------------ helpers


def assert_accepts(base: EventBase, collector: Collector, address: Any) -> None:
    """A client connecting to *address* reaches *collector*, on a working connection."""
    expected = collector.count + 1
    with connect(address) as client:
        loop_until(base, lambda: collector.count == expected)
        server = collector.socks[-1]
        server.setblocking(True)
        server.settimeout(WAIT)
        client.sendall(b"hi")
        assert server.recv(2) == b"hi"


def listen_backlog(sock: socket.socket) -> int:
    """The backlog a listening TCP socket was given (Linux reports it in ``tcpi_sacked``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    sacked: int = struct.unpack_from("=I", info, 28)[0]
    return sacked


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


def is_listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()
ipv6_only = pytest.mark.skipif(not HAS_IPV6, reason="::1 is not available")


@pytest.fixture
def unix_path(tmp_path: Path) -> str:
    path = str(tmp_path / "l.sock")
    if len(os.fsencode(path)) >= 100:
        pytest.skip("tmp_path is too long for an AF_UNIX address")
    return path


# ------------------------------------------------------- semantics 1: backlog


@linux_only
@pytest.mark.parametrize("backlog", [1, 5, 64])
def test_positive_backlog_is_passed_to_listen(
    base: EventBase, collector: Collector, backlog: int
) -> None:
    """backlog > 0: listen(backlog)."""
    with (
        tcp_socket() as sock,
        Listener.from_socket(base, sock, collector, flags=CLOSE, backlog=backlog),
    ):
        assert is_listening(sock)
        assert listen_backlog(sock) == backlog
        assert_accepts(base, collector, sock.getsockname())


@linux_only
def test_positive_backlog_in_bind(base: EventBase, collector: Collector) -> None:
    """bind(..., backlog=3): listen(3)."""
    with Listener.bind(base, LOCALHOST, collector, flags=CLOSE, backlog=3) as lst:
        assert listen_backlog(lst.socket) == 3
        assert_accepts(base, collector, lst.socket.getsockname())


@pytest.mark.parametrize("backlog", [-1, -1000])
@pytest.mark.parametrize("how", ["from_socket", "bind"])
def test_negative_backlog_listens_with_128(
    base: EventBase, collector: Collector, backlog: int, how: str
) -> None:
    """backlog < 0: listen(128), libevent's default; the socket then accepts."""
    with tcp_socket() as sock:
        if how == "from_socket":
            lst = Listener.from_socket(base, sock, collector, flags=CLOSE, backlog=backlog)
        else:
            lst = Listener.bind(base, LOCALHOST, collector, flags=CLOSE, backlog=backlog)
        with lst:
            assert is_listening(lst.socket)
            if LINUX:
                assert listen_backlog(lst.socket) == min(128, somaxconn())
            assert_accepts(base, collector, lst.socket.getsockname())


def test_zero_backlog_takes_an_already_listening_socket(
    base: EventBase, collector: Collector
) -> None:
    """backlog 0 with a listening socket: it is used as is, listen() is not called again."""
    with tcp_socket() as sock:
        sock.listen(7)
        with Listener.from_socket(base, sock, collector, flags=CLOSE, backlog=0):
            if LINUX:
                assert listen_backlog(sock) == 7
            assert_accepts(base, collector, sock.getsockname())


@pytest.mark.parametrize("as_int", [False, True], ids=["socket", "int"])
def test_zero_backlog_refuses_a_socket_that_is_not_listening(base: EventBase, as_int: bool) -> None:
    """backlog 0 with a socket that is not listening: ValueError, the socket (or fd) left open."""
    with tcp_socket() as sock:
        with pytest.raises(ValueError):
            Listener.from_socket(
                base, sock.fileno() if as_int else sock, None, flags=CLOSE, backlog=0
            )
        gc.collect()  # a wrapper left around for an int fd must not close it
        assert sock.fileno() >= 0
        os.fstat(sock.fileno())
        assert not is_listening(sock)


def test_bind_refuses_zero_backlog(base: EventBase) -> None:
    """bind(..., backlog=0): ValueError (a new socket is never already listening)."""
    before = open_fds()
    with pytest.raises(ValueError):
        Listener.bind(base, LOCALHOST, None, flags=CLOSE, backlog=0)
    assert open_fds() == before


@pytest.mark.parametrize(
    ("backlog", "error"),
    [("5", TypeError), (True, TypeError), (5.0, TypeError), (2**31, ValueError)],
)
def test_bad_backlog(base: EventBase, backlog: Any, error: type[Exception]) -> None:
    """A backlog that is not an int (bool included) or does not fit a C int is refused."""
    with pytest.raises(error):
        Listener.bind(base, LOCALHOST, None, flags=CLOSE, backlog=backlog)
    with tcp_socket() as sock:
        with pytest.raises(error):
            Listener.from_socket(base, sock, None, flags=CLOSE, backlog=backlog)
        assert sock.fileno() >= 0


# ---------------------------------------------------------- semantics 2: bind


def test_bind_makes_a_non_blocking_keepalive_socket(base: EventBase) -> None:
    """bind: a new non-blocking, listening TCP socket with SO_KEEPALIVE and no SO_REUSEADDR."""
    with Listener.bind(base, LOCALHOST, None, flags=CLOSE) as lst:
        sock = lst.socket
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.getblocking() is False
        assert os.get_blocking(sock.fileno()) is False
        assert is_listening(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        assert sock.get_inheritable() is False


def test_reuseable_sets_so_reuseaddr(base: EventBase) -> None:
    """REUSEABLE: SO_REUSEADDR on the new socket."""
    with Listener.bind(base, LOCALHOST, None, flags=CLOSE | LEV_OPT.REUSEABLE) as lst:
        assert lst.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0


@linux_only
def test_reuseable_port_sets_so_reuseport_and_shares_the_port(
    base: EventBase, collector: Collector
) -> None:
    """REUSEABLE_PORT: SO_REUSEPORT, so two listeners bind the same port and both listen."""
    flags = CLOSE | LEV_OPT.REUSEABLE_PORT
    with Listener.bind(base, LOCALHOST, collector, flags=flags) as first:
        address = first.socket.getsockname()
        assert first.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        with Listener.bind(base, address, collector, flags=flags) as second:
            assert second.socket.getsockname() == address
            assert second.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert is_listening(first.socket)
            assert is_listening(second.socket)
            assert_accepts(base, collector, address)
    assert collector.count == 1


def test_without_reuseable_port_a_used_port_is_eaddrinuse(base: EventBase) -> None:
    """Binding a port in use without REUSEABLE: OSError EADDRINUSE, and nothing leaks."""
    with Listener.bind(base, LOCALHOST, None, flags=CLOSE) as first:
        address = first.socket.getsockname()
        before = open_fds()
        with pytest.raises(OSError) as info:
            Listener.bind(base, address, None, flags=CLOSE)
        assert info.value.errno == errno.EADDRINUSE
        assert open_fds() == before


@pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="no TCP_DEFER_ACCEPT")
def test_deferred_accept_sets_tcp_defer_accept(base: EventBase) -> None:
    """DEFERRED_ACCEPT: TCP_DEFER_ACCEPT is set (nonzero) on Linux."""
    with Listener.bind(base, LOCALHOST, None, flags=CLOSE) as plain:
        assert plain.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
    with Listener.bind(base, LOCALHOST, None, flags=CLOSE | LEV_OPT.DEFERRED_ACCEPT) as lst:
        assert lst.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0


@ipv6_only
def test_bind_ipv6only_sets_ipv6_v6only(base: EventBase, collector: Collector) -> None:
    """BIND_IPV6ONLY on ::1: IPV6_V6ONLY is 1 and the listener accepts over IPv6."""
    with Listener.bind(base, ("::1", 0), collector, flags=CLOSE | LEV_OPT.BIND_IPV6ONLY) as lst:
        sock = lst.socket
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert_accepts(base, collector, sock.getsockname())


@ipv6_only
def test_bind_ipv6only_is_set_before_bind(base: EventBase) -> None:
    """BIND_IPV6ONLY is applied before bind(): a v4-mapped address then fails (EINVAL), no leak."""
    before = open_fds()
    with pytest.raises(OSError) as info:
        Listener.bind(base, ("::ffff:127.0.0.1", 0), None, flags=CLOSE | LEV_OPT.BIND_IPV6ONLY)
    assert info.value.errno == errno.EINVAL
    assert open_fds() == before


@ipv6_only
def test_bind_ipv4_and_ipv6_clears_ipv6_v6only(base: EventBase, collector: Collector) -> None:
    """BIND_IPV4_AND_IPV6: IPV6_V6ONLY is 0, and an IPv4 client reaches the IPv6 listener.

    Bound on the v4-mapped loopback: Linux forces IPV6_V6ONLY to 1 when a socket
    binds a plain IPv6 address such as ::1, whatever was set before.
    """
    flags = CLOSE | LEV_OPT.BIND_IPV4_AND_IPV6
    with Listener.bind(base, ("::ffff:127.0.0.1", 0), collector, flags=flags) as lst:
        sock = lst.socket
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert_accepts(base, collector, ("127.0.0.1", sock.getsockname()[1]))
        assert collector.addresses[0][0] == "::ffff:127.0.0.1"


@ipv6_only
def test_ipv6_four_tuple_address(base: EventBase, collector: Collector) -> None:
    """(host, port, flowinfo, scope_id) binds an IPv6 listener."""
    with Listener.bind(base, ("::1", 0, 0, 0), collector, flags=CLOSE) as lst:
        assert lst.socket.family == socket.AF_INET6
        assert_accepts(base, collector, lst.socket.getsockname())


BOTH_V6 = LEV_OPT.BIND_IPV6ONLY | LEV_OPT.BIND_IPV4_AND_IPV6


@pytest.mark.parametrize(
    ("where", "flags"),
    [
        ("ipv4", LEV_OPT.BIND_IPV6ONLY),
        ("ipv4", LEV_OPT.BIND_IPV4_AND_IPV6),
        ("unix", LEV_OPT.BIND_IPV6ONLY),
        ("unix", LEV_OPT.BIND_IPV4_AND_IPV6),
        ("ipv6", BOTH_V6),
        ("ipv4", BOTH_V6),
        ("unix", LEV_OPT.REUSEABLE),
        ("unix", LEV_OPT.REUSEABLE_PORT),
    ],
)
def test_bind_refuses_flags_that_do_not_apply(
    base: EventBase, unix_path: str, where: str, flags: LEV_OPT
) -> None:
    """IPv6 flags off IPv6, both IPv6 flags, REUSEABLE(_PORT) on AF_UNIX: ValueError, no leak."""
    address: Any = {"ipv4": LOCALHOST, "ipv6": ("::1", 0), "unix": unix_path}[where]
    before = open_fds()
    with pytest.raises(ValueError):
        Listener.bind(base, address, None, flags=CLOSE | flags)
    assert open_fds() == before
    assert not os.path.exists(unix_path)


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_unix_listener_accepts(
    base: EventBase, collector: Collector, unix_path: str, as_bytes: bool
) -> None:
    """bind on an AF_UNIX path (str or bytes) makes a listener that accepts a connection."""
    address = os.fsencode(unix_path) if as_bytes else unix_path
    with Listener.bind(base, address, collector, flags=CLOSE) as lst:
        sock = lst.socket
        assert sock.family == socket.AF_UNIX
        assert sock.getblocking() is False
        assert is_listening(sock)
        assert_accepts(base, collector, unix_path)


@pytest.mark.parametrize(
    ("address", "error"),
    [
        (("127.0.0.1", 65536), ValueError),
        (("127.0.0.1", -1), ValueError),
        (("127.0.0.1", True), TypeError),
        (("127.0.0.1", "80"), TypeError),
        ((2130706433, 0), TypeError),
        (("127.0.0.1", 0, 0), ValueError),
        (["127.0.0.1", 0], TypeError),
        (8080, TypeError),
        ("", ValueError),
    ],
)
def test_bind_refuses_bad_addresses(base: EventBase, address: Any, error: type[Exception]) -> None:
    """A port out of range, a bool port, a non-str host or a malformed address is refused."""
    before = open_fds()
    with pytest.raises(error):
        Listener.bind(base, address, None, flags=CLOSE)
    assert open_fds() == before


def test_bind_unresolvable_host_is_oserror(base: EventBase) -> None:
    """A host that does not resolve raises OSError (socket.gaierror) and leaks nothing."""
    before = open_fds()
    with pytest.raises(OSError):
        Listener.bind(base, ("no-such-host.invalid", 0), None, flags=CLOSE)
    assert open_fds() == before


# --------------------------------------------------- semantics 2: from_socket


@pytest.mark.parametrize("backlog", [-1, 0])
def test_from_socket_makes_a_blocking_socket_non_blocking(
    base: EventBase, collector: Collector, backlog: int
) -> None:
    """from_socket: a blocking socket (listening already or not) is made non-blocking."""
    with tcp_socket() as sock:
        if backlog == 0:
            sock.listen()
        sock.setblocking(True)
        with Listener.from_socket(base, sock, collector, flags=CLOSE, backlog=backlog):
            assert sock.getblocking() is False
            assert os.get_blocking(sock.fileno()) is False
            assert_accepts(base, collector, sock.getsockname())


def test_from_socket_takes_an_int_descriptor(base: EventBase, collector: Collector) -> None:
    """from_socket with an int fd: it listens on that fd, non-blocking; CLOSE_ON_FREE closes it."""
    sock = tcp_socket()
    address = sock.getsockname()
    fd = sock.detach()
    try:
        lst = Listener.from_socket(base, fd, collector, flags=CLOSE)
    except BaseException:
        os.close(fd)
        raise
    with lst:
        assert lst.fd == fd
        assert lst.socket.fileno() == fd
        assert os.get_blocking(fd) is False
        assert_accepts(base, collector, address)
    with pytest.raises(OSError):
        os.fstat(fd)


def test_close_on_exec_makes_the_socket_non_inheritable(base: EventBase) -> None:
    """CLOSE_ON_EXEC: an inheritable socket passed in becomes non-inheritable."""
    with tcp_socket() as sock:
        sock.set_inheritable(True)
        with Listener.from_socket(base, sock, None, flags=CLOSE | LEV_OPT.CLOSE_ON_EXEC):
            assert sock.get_inheritable() is False


def test_without_close_on_exec_the_socket_stays_non_inheritable(base: EventBase) -> None:
    """Without CLOSE_ON_EXEC a (PEP 446) non-inheritable socket is not made inheritable."""
    with tcp_socket() as sock:
        assert sock.get_inheritable() is False
        with Listener.from_socket(base, sock, None, flags=CLOSE):
            assert sock.get_inheritable() is False


def test_from_socket_refuses_a_closed_socket(base: EventBase) -> None:
    """A closed socket object: ValueError."""
    sock = tcp_socket()
    sock.close()
    with pytest.raises(ValueError):
        Listener.from_socket(base, sock, None, flags=CLOSE)


@pytest.mark.parametrize("as_int", [False, True], ids=["socket", "int"])
def test_from_socket_refuses_a_udp_socket_and_leaves_it_open(base: EventBase, as_int: bool) -> None:
    """A UDP socket (object or int fd): ValueError, and the socket is left open."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(LOCALHOST)
        with pytest.raises(ValueError):
            Listener.from_socket(base, udp.fileno() if as_int else udp, None, flags=CLOSE)
        assert udp.fileno() >= 0
        os.fstat(udp.fileno())
        assert udp.getsockname()[0] == "127.0.0.1"


def test_from_socket_refuses_a_pipe_and_leaves_it_open(base: EventBase) -> None:
    """An int fd that is not a socket (a pipe): OSError ENOTSOCK, the pipe left open."""
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            Listener.from_socket(base, r, None, flags=CLOSE)
        assert info.value.errno == errno.ENOTSOCK
        os.write(w, b"x")
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("bad", ["3", 3.0, None, True, b"\x03", object()])
def test_from_socket_refuses_wrong_socket_types(base: EventBase, bad: Any) -> None:
    """sock must be a socket.socket or an int (not bool): TypeError."""
    with pytest.raises(TypeError):
        Listener.from_socket(base, bad, None, flags=CLOSE)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": object()},
        {"base": None},
        {"cb": 42},
        {"cb": "callback"},
        {"flags": "2"},
        {"flags": True},
        {"flags": 2.0},
    ],
    ids=["base-object", "base-none", "cb-int", "cb-str", "flags-str", "flags-bool", "flags-float"],
)
def test_wrong_argument_types_raise_type_error(base: EventBase, kwargs: dict[str, Any]) -> None:
    """A non-EventBase base, a non-callable cb or non-int flags: TypeError; the socket untouched."""
    args: dict[str, Any] = {"base": base, "cb": None, "flags": CLOSE, **kwargs}
    before = open_fds()
    with pytest.raises(TypeError):
        Listener.bind(args["base"], LOCALHOST, args["cb"], flags=args["flags"])
    assert open_fds() == before
    with tcp_socket() as sock:
        with pytest.raises(TypeError):
            Listener.from_socket(args["base"], sock, args["cb"], flags=args["flags"])
        assert sock.fileno() >= 0
        assert not is_listening(sock)


@pytest.mark.parametrize("flags", [1 << 10, 1 << 31, -1, 0xFFFF])
def test_unknown_flag_bits_raise_value_error(base: EventBase, flags: int) -> None:
    """A flag word with bits libevent does not define: ValueError."""
    before = open_fds()
    with pytest.raises(ValueError):
        Listener.bind(base, LOCALHOST, None, flags=flags)
    assert open_fds() == before
    with tcp_socket() as sock:
        with pytest.raises(ValueError):
            Listener.from_socket(base, sock, None, flags=flags)
        assert sock.fileno() >= 0


def test_plain_int_flags_are_accepted(base: EventBase) -> None:
    """flags may be a plain int with libevent's values; the listener reports an LEV_OPT."""
    with Listener.bind(base, LOCALHOST, None, flags=int(CLOSE | LEV_OPT.THREADSAFE)) as lst:
        assert lst.flags == CLOSE | LEV_OPT.THREADSAFE
        assert isinstance(lst.flags, LEV_OPT)


@pytest.mark.parametrize("how", ["bind", "from_socket", "from_socket-int"])
def test_closed_base_raises_and_leaks_nothing(how: str) -> None:
    """A closed base: EventBaseClosedError; nothing leaks, a caller's socket stays open."""
    base = EventBase()
    base.close()
    with tcp_socket() as sock:
        before = open_fds()
        with pytest.raises(EventBaseClosedError):
            if how == "bind":
                Listener.bind(base, LOCALHOST, None, flags=CLOSE)
            elif how == "from_socket":
                Listener.from_socket(base, sock, None, flags=CLOSE)
            else:
                Listener.from_socket(base, sock.fileno(), None, flags=CLOSE)
        assert open_fds() == before
        assert sock.fileno() >= 0
        os.fstat(sock.fileno())


# ----------------------------------------------- semantics 3: accepted sockets


@pytest.mark.parametrize(
    ("flags", "blocking"),
    [
        (LEV_OPT(0), False),
        (LEV_OPT.LEAVE_SOCKETS_BLOCKING, True),
        (LEV_OPT.CLOSE_ON_EXEC, False),
        (LEV_OPT.THREADSAFE | LEV_OPT.LEAVE_SOCKETS_BLOCKING, True),
    ],
    ids=["default", "leave-blocking", "close-on-exec", "threadsafe-leave-blocking"],
)
@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_accepted_sockets_mode(
    base: EventBase,
    collector: Collector,
    unix_path: str,
    family: str,
    flags: LEV_OPT,
    blocking: bool,
) -> None:
    """Accepted sockets are non-blocking unless LEAVE_SOCKETS_BLOCKING, never inheritable."""
    if family == "tcp":
        sock = tcp_socket()
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(unix_path)
    with sock:
        # Even an inheritable listening socket gives non-inheritable connections.
        sock.set_inheritable(True)
        sock.setblocking(True)
        with (
            Listener.from_socket(base, sock, collector, flags=CLOSE | flags),
            connect(sock.getsockname()),
        ):
            loop_until(base, lambda: collector.count == 1)
            accepted = collector.socks[0]
            assert accepted.getblocking() is blocking
            assert os.get_blocking(accepted.fileno()) is blocking
            assert accepted.get_inheritable() is False


# ---------------------------------------------------------------- the flags


LIBEVENT_BITS = {
    "LEAVE_SOCKETS_BLOCKING": 0,
    "CLOSE_ON_FREE": 1,
    "CLOSE_ON_EXEC": 2,
    "REUSEABLE": 3,
    "THREADSAFE": 4,
    "DISABLED": 5,
    "DEFERRED_ACCEPT": 6,
    "REUSEABLE_PORT": 7,
    "BIND_IPV6ONLY": 8,
    "BIND_IPV4_AND_IPV6": 9,
}


def test_lev_opt_is_an_int_flag_with_exactly_libevents_members() -> None:
    """LEV_OPT is an IntFlag whose members are libevent's ten LEV_OPT_* flags."""
    assert issubclass(LEV_OPT, enum.IntFlag)
    assert {member.name for member in LEV_OPT} == set(LIBEVENT_BITS)


@pytest.mark.parametrize(("name", "bit"), sorted(LIBEVENT_BITS.items()))
def test_lev_opt_values_equal_libevents(name: str, bit: int) -> None:
    """LEV_OPT.<name> and threadlisten.LEV_OPT_<name> both equal libevent's 1 << bit."""
    assert LEV_OPT[name] == 1 << bit
    constant = getattr(threadlisten, f"LEV_OPT_{name}")
    assert constant == 1 << bit
    assert constant is LEV_OPT[name]
    assert f"LEV_OPT_{name}" in threadlisten.__all__
