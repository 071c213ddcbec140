"""Making and checking the listening socket: address parsing, ``bind`` options,
adopting a caller's socket for ``from_socket``.

Everything here validates *before* it opens anything, and closes what it
opened when a later step fails, re-raising the original ``OSError`` so that
its errno reaches the caller (libevent's PR #1269 keeps errno the same way).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

from threadlisten._flags import LEV_OPT

__all__ = [
    "DEFAULT_BACKLOG",
    "TCP_KEEPALIVE_IDLE",
    "adopt_socket",
    "check_backlog",
    "make_bound_socket",
    "resolve_address",
    "start_listening",
]

#: ``listen()`` backlog used for a negative *backlog*: libevent's default.
DEFAULT_BACKLOG = 128

#: libevent's ``evconnlistener_new_bind`` turns keep-alive on for TCP
#: listeners with a 300 s idle time, 100 s probe interval and 3 probes
#: (evutil_set_tcp_keepalive(fd, 1, 300)); accepted sockets inherit them.
TCP_KEEPALIVE_IDLE = 300

_INT_MAX = 2**31 - 1
#: sin6_flowinfo carries a 20-bit flow label; sin6_scope_id is 32 bits.
#: socket.bind() on 3.11 truncates larger values silently.
_FLOWINFO_MAX = 2**20 - 1
_SCOPE_ID_MAX = 2**32 - 1

Address = tuple[Any, ...] | str | bytes


def check_backlog(backlog: object, *, allow_zero: bool) -> int:
    """Return *backlog* as an int, or raise TypeError/ValueError.

    0 means "already listening" and is only allowed for ``from_socket``;
    negative means ``DEFAULT_BACKLOG``; the kernel clamps large values to its
    own maximum (``net.core.somaxconn``), so only values beyond a C int fail.
    """
    if isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int, not {type(backlog).__name__}")
    if backlog == 0 and not allow_zero:
        raise ValueError("backlog=0 means 'already listening', which a new socket is not")
    if not -_INT_MAX - 1 <= backlog <= _INT_MAX:
        raise ValueError(f"backlog {backlog} does not fit in a C int")
    return backlog


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def resolve_address(address: object) -> tuple[socket.AddressFamily, Any]:
    """Return ``(family, sockaddr)`` for a ``Listener.bind`` address.

    ``(host, port)`` picks IPv4 or IPv6 from the host (an IPv6 literal, or the
    first address ``getaddrinfo`` gives for a name); ``(host, port, flowinfo,
    scope_id)`` is IPv6; a ``str``/``bytes``/path-like is an AF_UNIX path.

    Raises:
        TypeError: the address, host or port has the wrong type.
        ValueError: the port is out of range or the path is empty.
        OSError: ``socket.gaierror`` when the host does not resolve.
    """
    if isinstance(address, str | bytes | os.PathLike):
        if not hasattr(socket, "AF_UNIX"):
            raise ValueError("AF_UNIX is not available on this platform")
        path = os.fspath(address)
        if not path:
            raise ValueError("an AF_UNIX path must not be empty")
        return socket.AF_UNIX, path
    if not isinstance(address, tuple):
        raise TypeError(
            "address must be (host, port), (host, port, flowinfo, scope_id) or a "
            f"Unix socket path, not {type(address).__name__}"
        )
    if len(address) not in (2, 4):
        raise ValueError(f"address tuple must have 2 or 4 items, not {len(address)}")
    host, port = address[0], _check_port(address[1])
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if len(address) == 4:
        flowinfo, scope_id = address[2], address[3]
        for name, value in (("flowinfo", flowinfo), ("scope_id", scope_id)):
            limit = _FLOWINFO_MAX if name == "flowinfo" else _SCOPE_ID_MAX
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise ValueError(f"{name} must be an int in 0..{limit}, not {value!r}")
        family = socket.AF_INET6
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
    infos = socket.getaddrinfo(host or None, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    fam, _, _, _, resolved = infos[0]
    sockaddr: tuple[Any, ...] = tuple(resolved)
    if fam not in (socket.AF_INET, socket.AF_INET6):
        raise OSError(errno.EAFNOSUPPORT, f"{host!r} resolved to an unsupported family")
    if len(address) == 4:
        sockaddr = (sockaddr[0], port, address[2], address[3])
    return socket.AddressFamily(fam), sockaddr


def _reuseport_option() -> int | None:
    # As libevent: only where SO_REUSEPORT load-balances (Linux, or FreeBSD's
    # SO_REUSEPORT_LB).  macOS and the other BSDs have an SO_REUSEPORT that
    # does not spread connections, which would silently starve all but one
    # listener, so there it is an error.
    lb = getattr(socket, "SO_REUSEPORT_LB", None)
    if lb is not None:
        return int(lb)
    if sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        return int(socket.SO_REUSEPORT)
    return None


def check_bind_flags(family: socket.AddressFamily, flags: LEV_OPT) -> None:
    """Raise ValueError/OSError for flags that cannot apply to *family*."""
    v6flags = flags & (LEV_OPT.BIND_IPV6ONLY | LEV_OPT.BIND_IPV4_AND_IPV6)
    if v6flags == LEV_OPT.BIND_IPV6ONLY | LEV_OPT.BIND_IPV4_AND_IPV6:
        raise ValueError("BIND_IPV6ONLY and BIND_IPV4_AND_IPV6 contradict each other")
    if v6flags and family != socket.AF_INET6:
        raise ValueError(f"{v6flags!r} applies to IPv6 addresses only")
    if family == getattr(socket, "AF_UNIX", None) and flags & (
        LEV_OPT.REUSEABLE | LEV_OPT.REUSEABLE_PORT
    ):
        raise ValueError("REUSEABLE and REUSEABLE_PORT do not apply to Unix sockets")
    if flags & LEV_OPT.REUSEABLE_PORT and _reuseport_option() is None:
        raise OSError(
            errno.ENOPROTOOPT, "REUSEABLE_PORT: no load-balancing SO_REUSEPORT on this platform"
        )


def make_bound_socket(family: socket.AddressFamily, sockaddr: Any, flags: LEV_OPT) -> socket.socket:
    """Return a new non-blocking stream socket bound to *sockaddr* (not yet listening).

    Raises:
        OSError: a system call failed; the new socket is closed first and the
            error keeps its errno.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family != getattr(socket, "AF_UNIX", None):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, TCP_KEEPALIVE_IDLE)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, TCP_KEEPALIVE_IDLE // 3)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            if flags & LEV_OPT.REUSEABLE:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if flags & LEV_OPT.REUSEABLE_PORT:
                option = _reuseport_option()
                assert option is not None  # check_bind_flags ran first
                sock.setsockopt(socket.SOL_SOCKET, option, 1)
            if flags & LEV_OPT.DEFERRED_ACCEPT and hasattr(socket, "TCP_DEFER_ACCEPT"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        if flags & LEV_OPT.BIND_IPV6ONLY:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        elif flags & LEV_OPT.BIND_IPV4_AND_IPV6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def adopt_socket(sock: object) -> tuple[socket.socket, bool]:
    """Return ``(socket_object, wrapped)`` for ``from_socket``'s *sock* argument.

    ``wrapped`` is True when *sock* was an int descriptor that this call
    wrapped in a new ``socket.socket``; the caller must ``detach()`` that
    wrapper rather than close it when the descriptor is not ours to close.

    Raises:
        TypeError: *sock* is neither a ``socket.socket`` nor an int.
        ValueError: the socket is closed, not SOCK_STREAM, or of an
            unsupported family.
        OSError: the descriptor is not a socket (``ENOTSOCK``) or not open
            (``EBADF``).
    """
    if isinstance(sock, socket.socket):
        if sock.fileno() < 0:
            raise ValueError("the socket is closed")
        wrapped = False
        obj = sock
    elif isinstance(sock, int) and not isinstance(sock, bool):
        # socket.socket(fileno=...) truncates to a C int: 2**32 + fd would
        # silently adopt (and CLOSE_ON_FREE close) descriptor fd.
        if not 0 <= sock <= _INT_MAX:
            raise ValueError(f"invalid file descriptor {sock}")
        obj = socket.socket(fileno=sock)
        wrapped = True
    else:
        raise TypeError(f"sock must be a socket.socket or an int, not {type(sock).__name__}")
    try:
        if obj.type != socket.SOCK_STREAM:
            raise ValueError(f"a listener needs a SOCK_STREAM socket, not {obj.type!r}")
        families = {socket.AF_INET, socket.AF_INET6, getattr(socket, "AF_UNIX", None)}
        if obj.family not in families:
            raise ValueError(f"unsupported address family {obj.family!r}")
    except BaseException:
        if wrapped:
            obj.detach()
        raise
    return obj, wrapped


def start_listening(sock: socket.socket, backlog: int) -> None:
    """Apply libevent's backlog rule to *sock* and make it non-blocking.

    ``backlog > 0``: ``listen(backlog)``; ``< 0``: ``listen(DEFAULT_BACKLOG)``;
    ``0``: the socket must already be listening.

    Raises:
        ValueError: backlog is 0 and the socket is not listening.
        OSError: ``listen()`` failed.
    """
    if backlog == 0:
        acceptconn = getattr(socket, "SO_ACCEPTCONN", None)
        if acceptconn is not None and not sock.getsockopt(socket.SOL_SOCKET, acceptconn):
            raise ValueError("backlog=0 needs a socket that is already listening")
    else:
        sock.listen(backlog if backlog > 0 else DEFAULT_BACKLOG)
    # libevent's book: a blocking listening socket breaks the loop (accept
    # would block the loop thread when a connection vanished after readiness).
    sock.setblocking(False)
