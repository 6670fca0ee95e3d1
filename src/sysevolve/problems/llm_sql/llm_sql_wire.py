"""Messages between the evaluator and a program process: kind byte, length, JSON payload.

Only JSON ever crosses (spec 3.2): nothing from a program process is unpickled or evaluated.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

HEADER = struct.Struct(">cI")  # kind, payload length
READY, IMPORTED, TABLE, ERROR = b"R", b"I", b"T", b"E"
KINDS = (READY, IMPORTED, TABLE, ERROR)


def encode(kind: bytes, payload) -> bytes:
    """One message: kind, payload length and the payload as JSON."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return HEADER.pack(kind, len(data)) + data


def send(fd: int, kind: bytes, payload) -> None:
    view = memoryview(encode(kind, payload))
    while view:
        view = view[os.write(fd, view):]


class ProtocolError(Exception):
    """The program process sent something that is not a well-formed message."""


class Reader:
    """Reads messages from a pipe with a deadline and a byte budget; arrival times recorded."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def next(self, deadline: float, max_bytes: int) -> tuple[bytes, bytes, float] | None:
        """(kind, raw payload, arrival time) of the next message; None at end of file.

        Raises TimeoutError after `deadline` (a time.perf_counter() value) and ProtocolError
        for an unknown kind or a payload over `max_bytes`."""
        while True:
            if len(self.buffer) >= HEADER.size:
                kind, length = HEADER.unpack_from(self.buffer)
                if kind not in KINDS:
                    raise ProtocolError(f"unknown message kind {kind!r}")
                if length > max_bytes:
                    raise ProtocolError(f"message of {length} bytes, limit {max_bytes}")
                end = HEADER.size + length
                if len(self.buffer) >= end:
                    arrived = time.perf_counter()
                    payload = bytes(self.buffer[HEADER.size:end])
                    del self.buffer[:end]
                    return kind, payload, arrived
            if self.eof:
                if self.buffer:
                    raise ProtocolError("truncated message")
                return None
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 1 << 20)
            if chunk:
                self.buffer += chunk
            else:
                self.eof = True


def decode(payload: bytes):
    """The JSON value of a payload; ProtocolError if it is not JSON."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"payload is not JSON ({type(exc).__name__})") from None
