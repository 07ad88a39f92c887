"""Incremental line splitting for streamed bodies.

Line ends are CR, LF or CRLF (the SSE and JSON-lines rules), and a CRLF may be split across two chunks. We never use
``StreamReader.readline``: it caps lines at its own limit and cannot say which byte broke the cap.
"""

from __future__ import annotations

from aioagents._exceptions import EventTooLargeError

__all__ = ["LineSplitter"]


class LineSplitter:
    """Feed chunks, get complete lines (without their line ends). Raises when one line passes ``max_line``."""

    __slots__ = ("_buf", "_cr", "_held", "_held_size", "max_line")

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self.max_line = max_line
        self._buf = b""
        self._cr = False  # the last chunk ended in CR: a leading LF of the next one belongs to it
        # Chunks with no line end at all (a long line arriving piece by piece), kept as a list: joining them to the
        # buffer one by one would copy a 16 MB line a few hundred times.
        self._held: list[bytes] = []
        self._held_size = 0

    def hold(self, chunk: bytes) -> None:
        """Keep a chunk that has no line end; raise when the unfinished line passes the cap."""
        self._held.append(chunk)
        self._held_size += len(chunk)
        size = len(self._buf) + self._held_size
        if size > self.max_line:
            self._buf, self._held, self._held_size = b"", [], 0
            raise EventTooLargeError(f"a line passed the cap of {self.max_line} bytes ({size}+ bytes)")

    def take(self, chunk: bytes) -> bytes:
        """Everything buffered, followed by ``chunk``; the buffer is left empty."""
        if self._held:
            chunk = b"".join([self._buf, *self._held, chunk])
            self._held, self._held_size = [], 0
        elif self._buf:
            chunk = self._buf + chunk
        self._buf = b""
        return chunk

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []  # an empty chunk must not clear a pending CR: its LF may still come
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        elif b"\n" not in chunk and b"\r" not in chunk:
            self.hold(chunk)
            return []
        chunk = self.take(chunk)
        if not chunk:
            return []
        # bytes.splitlines splits on exactly CR, LF and CRLF (unlike str.splitlines).
        lines = chunk.splitlines()
        last = chunk[-1]
        if last == 13:  # b"\r"
            self._cr = True
        elif last != 10:  # b"\n": the final piece is not a whole line yet
            self._buf = lines.pop()
            if len(self._buf) > self.max_line:
                size = len(self._buf)
                self._buf = b""
                raise EventTooLargeError(f"a line passed the cap of {self.max_line} bytes ({size}+ bytes)")
        if len(chunk) > self.max_line:
            for line in lines:
                if len(line) > self.max_line:
                    raise EventTooLargeError(f"a line of {len(line)} bytes passed the cap of {self.max_line} bytes")
        return lines

    def flush(self) -> list[bytes]:
        """The unterminated last line, at end of body."""
        rest = self.take(b"")
        self._cr = False
        return [rest] if rest else []
