"""The bytes of one docker exec: demultiplexing the engine's stream, capping what is kept, and
the trailer line the in-container wrapper prints after the command (its exit code and the
container's OOM and pids counters around it).

Pure functions over a socket's frames; `execution.py` drives them.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# What the in-container wrapper prints after the command (execution.py's _WRAPPER).
_TRAILER_MARK = b"@@selfcode-exec@@ "
_TRAILER = re.compile(
    rb"@@selfcode-exec@@ rc=(\d+) oom=([0-9-]+),([0-9-]+) pids=([0-9-]+),([0-9-]+)\n\Z"
)


@dataclass
class ExecRun:
    exit_code: int | None
    stdout: Capture
    stderr: Capture
    duration: float
    watchdog_fired: bool = False


@dataclass(frozen=True)
class Trailer:
    rc: int
    oom_before: int | None
    oom_after: int | None
    pids_before: int | None
    pids_after: int | None


class Capture:
    """The first `limit` bytes of a stream (and, optionally, its last `tail` bytes)."""

    def __init__(self, limit: int, tail: int = 0) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self._tail_keep = tail
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
        if self._tail_keep:
            self.tail += data
            if len(self.tail) > 2 * self._tail_keep:
                del self.tail[: -self._tail_keep]

    def value(self) -> bytes:
        return bytes(self.head)


def split_trailer(capture: Capture) -> tuple[bytes, Trailer | None, int]:
    """The stream without selfcode's trailer line, the trailer, and the stream's real length."""
    tail = bytes(capture.tail)
    index = tail.rfind(_TRAILER_MARK)
    match = _TRAILER.match(tail, index) if index >= 0 else None
    if match is None:
        return capture.value(), None, capture.total
    end = capture.total - (len(tail) - index)  # the stream's length without the trailer
    trailer = Trailer(
        rc=int(match.group(1)),
        oom_before=parse_int(match.group(2)),
        oom_after=parse_int(match.group(3)),
        pids_before=parse_int(match.group(4)),
        pids_after=parse_int(match.group(5)),
    )
    return bytes(capture.head[: min(end, capture.limit)]), trailer, end


def frames(sock: Any) -> Iterator[tuple[int, bytes]]:
    """Demultiplex docker's attach stream: 8-byte header (stream, size), then the payload."""
    reader = buffered_reader(sock)
    while True:
        header = read_exactly(reader, 8)
        if header is None:
            return
        stream, size = struct.unpack(">BxxxL", header)
        while size > 0:
            chunk = reader(min(size, 1 << 20))
            if not chunk:
                return
            size -= len(chunk)
            yield stream, chunk


def buffered_reader(sock: Any) -> Any:
    """`read1` of the HTTP response's buffered reader (bytes it read past the headers included)."""
    response = getattr(sock, "_response", None)
    fp = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    if fp is not None and hasattr(fp, "read1"):
        return fp.read1
    if hasattr(sock, "recv"):
        return sock.recv
    return sock.read


def read_exactly(read: Any, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def close_socket(sock: Any) -> None:
    with contextlib.suppress(Exception):
        sock.close()
    response = getattr(sock, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


def parse_int(text: bytes | str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def grew(before: int | None, after: int | None) -> bool | None:
    if before is None or after is None:
        return None
    return after > before


def delta(before: int | None, after: int | None) -> int:
    if before is None or after is None:
        return 0
    return max(after - before, 0)
