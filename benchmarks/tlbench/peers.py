"""The servers measured, and how to start each one.

Every server accepts connections on a socket the harness asked it to make,
closes each at once, and speaks ``servers/proto.py``'s protocol.  A peer is
either a Python module under ``tlbench/servers`` (run by the project's own
interpreter when it needs only the standard library and threadlisten, by the
peers' venv when it needs a third-party package) or a C program from
``csrc/``.

Rows marked ``diagnostic`` are not peers: they split a gap into its causes
(the floor plus one system call, threadlisten with lock debugging, a scratch
copy of the core) and are kept out of the peer ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlbench import cbuild

#: The one-thread C limit, the Python floor and asyncio: every ratio is
#: against these three.
C_LIMIT = "c-epoll"
FLOOR = "selectors"
ASYNCIO = "asyncio"


@dataclass(frozen=True)
class Peer:
    """One server to measure.

    Attributes:
        key: short name used in results and on the command line.
        label: what the table and chart call it.
        module: ``tlbench.servers`` module to run (Python peers).
        program: C program to build and run (C peers).
        args: extra arguments for the server.
        needs: distributions that must be importable (the peers' venv).
        diagnostic: not a peer; kept out of the ratios.
        scratch: runs threadlisten from ``--scratch-core`` instead of the tree.
        note: one line for the results.
    """

    key: str
    label: str
    module: str | None = None
    program: cbuild.CProgram | None = None
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    diagnostic: bool = False
    scratch: bool = False
    note: str = ""

    @property
    def is_c(self) -> bool:
        """Whether this is a C program."""
        return self.program is not None


_TL = "threadlisten_server"

PEERS: tuple[Peer, ...] = (
    Peer(C_LIMIT, "C epoll+accept4", program=cbuild.EPOLL_SERVER, note="the one-thread limit"),
    Peer("c-libevent", "C libevent evconnlistener", program=cbuild.LIBEVENT_SERVER),
    Peer("tl-threadsafe", "threadlisten THREADSAFE", module=_TL),
    Peer("tl-plain", "threadlisten plain", module=_TL, args=("--plain",)),
    Peer(FLOOR, "selectors loop (floor)", module="selectors_floor", note="the Python floor"),
    Peer("tornado", "tornado add_accept_handler", module="tornado_server", needs=("tornado",)),
    Peer(
        "uvloop",
        "uvloop create_server",
        module="asyncio_server",
        args=("--uvloop",),
        needs=("uvloop",),
    ),
    Peer(ASYNCIO, "asyncio create_server", module="asyncio_server"),
    Peer("gevent", "gevent StreamServer", module="gevent_server", needs=("gevent",)),
    Peer("twisted", "Twisted adoptStreamPort", module="twisted_server", needs=("twisted",)),
    Peer("trio", "trio serve_listeners", module="trio_server", needs=("trio",)),
    Peer("socketserver", "socketserver TCPServer", module="socketserver_server"),
    Peer(
        "floor-setblocking",
        "floor + setblocking(False)",
        module="selectors_floor",
        args=("--setblocking",),
        diagnostic=True,
        note="the floor plus the one syscall threadlisten's contract adds",
    ),
    Peer(
        "floor-raw-accept",
        "floor with sock._accept()",
        module="selectors_floor",
        args=("--raw-accept",),
        diagnostic=True,
        note="the floor taking threadlisten's short cut past socket.accept()",
    ),
    Peer(
        "tl-unbounded",
        "threadlisten THREADSAFE, max_accepts=100000",
        module=_TL,
        args=("--max-accepts", "100000"),
        diagnostic=True,
        note="no batch bound, like the floor: what the bound of 64 costs a burst",
    ),
    Peer(
        "tl-debug",
        "threadlisten THREADSAFE, lock debugging",
        module=_TL,
        args=("--debug",),
        diagnostic=True,
        note="debug mode, never production",
    ),
    Peer(
        "tl-scratch",
        "threadlisten THREADSAFE (scratch core)",
        module=_TL,
        diagnostic=True,
        scratch=True,
        note="the proposed optimisations",
    ),
    Peer(
        "tl-scratch-plain",
        "threadlisten plain (scratch core)",
        module=_TL,
        args=("--plain",),
        diagnostic=True,
        scratch=True,
        note="the proposed optimisations",
    ),
)

BY_KEY: dict[str, Peer] = {p.key: p for p in PEERS}

#: What ``--quick`` runs: no third-party peer (CI has no peers' venv) and
#: the rows every ratio needs.
QUICK_KEYS: tuple[str, ...] = (C_LIMIT, "tl-threadsafe", "tl-plain", FLOOR, ASYNCIO)
