"""The checked echo payload a stress client sends and expects back.

A request is a 26-byte header, ``!4sQQHI`` = (``REQUEST_MAGIC``, the run's
nonce, connection id, body length, CRC-32 of the body), then the body.  The
worker checks the magic, the CRC (a torn or misrouted stream fails it) and
the nonce, then answers with the same bytes under ``RESPONSE_MAGIC`` and
closes; the client checks the answer byte for byte and that the server then
closes.  The server closing first puts TIME_WAIT on the server's side, so
hundreds of thousands of short client connections do not exhaust the
client's ephemeral ports.

Why a nonce and two magics: a freed listener's port goes back to the
kernel, and a client still holding the stale address may reach whatever
binds that port next, or the kernel may pick the stale port as the client's
own ephemeral port and connect the socket to itself (TCP self-connect).  A
request from another run (another ``python -m stress`` on the same machine)
carries a foreign nonce: the worker closes it unanswered and counts it.  A
self-connected socket reads back its own request, ``REQUEST_MAGIC`` and all,
which can never be mistaken for an answer.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import zlib

__all__ = [
    "HEADER",
    "MAX_BODY",
    "REQUEST_MAGIC",
    "RESPONSE_MAGIC",
    "ProtocolError",
    "make_request",
    "new_run_nonce",
    "parse_header",
    "recv_exactly",
    "response_for",
]

HEADER = struct.Struct("!4sQQHI")
REQUEST_MAGIC = b"TLq1"
RESPONSE_MAGIC = b"TLr1"

#: Largest body in bytes.  Small enough that the answer fits the socket
#: buffers (no worker ever blocks on a slow reader), large enough to span segments.
MAX_BODY = 1024


class ProtocolError(Exception):
    """The bytes on a connection are not a well-formed request or answer."""


def new_run_nonce() -> int:
    """Return a random 64-bit nonce for one run (not seeded: runs must differ)."""
    return int.from_bytes(os.urandom(8), "big")


def make_request(run: int, conn_id: int, rng: random.Random) -> bytes:
    """Return a request of run *run* for connection *conn_id*, with 1..MAX_BODY random bytes."""
    body = rng.randbytes(rng.randint(1, MAX_BODY))
    return HEADER.pack(REQUEST_MAGIC, run, conn_id, len(body), zlib.crc32(body)) + body


def response_for(request: bytes) -> bytes:
    """Return the answer a worker sends for *request*."""
    return RESPONSE_MAGIC + request[len(REQUEST_MAGIC) :]


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """Return ``(run, conn_id, length, crc)`` from a request header.

    Raises:
        ProtocolError: wrong magic, or a length of 0 or above ``MAX_BODY``.
    """
    magic, run, conn_id, length, crc = HEADER.unpack(data)
    if magic != REQUEST_MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if not 1 <= length <= MAX_BODY:
        raise ProtocolError(f"bad body length {length}")
    return run, conn_id, length, crc


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly *n* bytes from a blocking socket (its timeout applies per recv).

    Returns fewer bytes only when the peer closed first (the caller decides
    what a short read means).  Raises ``OSError``/``TimeoutError`` as ``recv`` does.
    """
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
