"""A small HTTP/1.1 server on asyncio's Protocol API: no framework between the socket and the
handler, because at a few hundred microseconds per prediction the framework would be most of
the cost.

Requests are parsed with bytes operations only: request line, headers, then a body of
``Content-Length`` bytes. Keep-alive is the default; pipelined requests are answered in order
(the handler is synchronous, so a connection's responses cannot overtake each other). Chunked
request bodies are refused with 411 (every client that matters sends a length for a JSON body),
``Expect: 100-continue`` is answered before the body is read, and an oversized body gets 413
before it is read at all. Empty lines before a request line are ignored (RFC 9112 section 2.2).

Flow control: a client that pipelines requests without reading the answers must not make the
server buffer them without bound. When the transport's write buffer passes its high-water mark
(``pause_writing``), no further buffered request is handled and reading stops; both resume at
``resume_writing``. At most ``MAX_REQUESTS_PER_TURN`` requests are handled per turn of the
event loop (the rest wait, with reading paused, for the next turn), so one connection's backlog
cannot starve the others. The unparsed input is thereby bounded by one request (headers up to
``MAX_HEADER_BYTES``, body up to ``max_body``) plus one read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

MAX_HEADER_BYTES = 64 << 10
MAX_REQUESTS_PER_TURN = 32
# Content-Length values longer than this are refused before int() sees them: no body this
# server accepts needs more digits, and int() of thousands of digits raises (or takes time).
MAX_LENGTH_DIGITS = 18
# A connection with no complete request for this long is closed: idle keep-alive connections
# and clients that never finish their headers must not hold a server's sockets forever.
IDLE_TIMEOUT_S = 75.0
REASONS = {
    200: b"OK",
    202: b"Accepted",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in REASONS.items()}
JSON_TYPE = b"Content-Type: application/json\r\n"
_CR_LF = (13, 10)

# handler(method, target, headers, body) -> (status, extra header bytes, body bytes)
Handler = Callable[[bytes, bytes, dict[bytes, bytes], bytes], tuple[int, bytes, bytes]]


def response(status: int, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    return b"".join(
        (
            STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status,
            extra,
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n" if close else b"\r\n",
            body,
        )
    )


def error_body(status: int, code: str, message: str) -> tuple[int, bytes, bytes]:
    body = json.dumps({"error_code": code, "message": message, "error": message}).encode()
    return status, JSON_TYPE, body


class Server:
    """Connection bookkeeping shared by every protocol instance: the open connections (to close
    idle ones on shutdown) and the number of requests being handled."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.connections: set[HttpProtocol] = set()
        self.closing = False

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    def close_idle(self) -> None:
        for conn in list(self.connections):
            conn.close_when_idle()


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_continued",
        "_last",
        "_read_paused",
        "_scheduled",
        "_timer",
        "_write_paused",
        "buffer",
        "busy",
        "server",
        "transport",
        "want_close",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: Any = None
        self.busy = False
        self.want_close = False
        # Whether a 100 Continue was already sent for the request at the head of the buffer.
        self._continued = False
        self._last = 0.0
        self._timer: Any = None
        self._write_paused = False  # the transport's write buffer is above its high-water mark
        self._read_paused = False
        self._scheduled = False  # a _resume is queued for the next turn of the loop

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._timer = loop.call_later(IDLE_TIMEOUT_S, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_idle(self) -> None:
        # One timer per connection, re-armed from the last request: cheaper than resetting a
        # timer on every request.
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last
        if idle >= IDLE_TIMEOUT_S:
            self.transport.close()
            return
        self._timer = loop.call_later(IDLE_TIMEOUT_S - idle, self._check_idle)

    def close_when_idle(self) -> None:
        self.want_close = True
        if not self.buffer and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self._write_paused or self._scheduled:
            # Requests are waiting already; they are handled in order when the writer drains.
            self._pause_reading()
            return
        self._run()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._scheduled:
            self._run()

    def _run(self) -> None:
        self.busy = True
        try:
            more = self._process()
        finally:
            self.busy = False
        transport = self.transport
        if transport is None:
            return
        if more:
            self._pause_reading()
            if not self._write_paused and not self._scheduled:
                # Over the per-turn limit: the rest after the other connections' turn.
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._resume)
            return
        if self.want_close and not self.buffer:
            transport.close()
            return
        if self._read_paused and not self._write_paused:
            self._read_paused = False
            transport.resume_reading()

    def _resume(self) -> None:
        self._scheduled = False
        if self.transport is not None and not self._write_paused:
            self._run()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _fail(self, status: int, code: str, message: str) -> None:
        _, extra, body = error_body(status, code, message)
        if self.transport is not None:
            self.transport.write(response(status, body, extra, close=True))
            self.transport.close()
        self.buffer.clear()

    def _process(self) -> bool:
        """Handle the complete requests in the buffer; True when some may be left because the
        writer paused or the per-turn limit was reached."""
        buffer = self.buffer
        handled = 0
        while buffer and self.transport is not None:
            if self._write_paused or handled >= MAX_REQUESTS_PER_TURN:
                return True
            if buffer[0] in _CR_LF:
                # Empty lines before a request line are ignored (RFC 9112 section 2.2).
                del buffer[: len(buffer) - len(buffer.lstrip(b"\r\n"))]
                if not buffer:
                    return False
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self._fail(
                        431, "REQUEST_HEADERS_TOO_LARGE", "the request headers are too large"
                    )
                return False
            head = bytes(buffer[:end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._fail(400, "MALFORMED_REQUEST", "malformed HTTP request line")
                return False
            method, target, version = parts
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name[-1:] in (b" ", b"\t"):
                    self._fail(400, "MALFORMED_REQUEST", "malformed HTTP header line")
                    return False
                headers[name.lower()] = value.strip()
            if b"transfer-encoding" in headers:
                self._fail(
                    411,
                    "LENGTH_REQUIRED",
                    "chunked request bodies are not supported; send Content-Length",
                )
                return False
            length_text = headers.get(b"content-length", b"0")
            if not length_text.isdigit():
                self._fail(400, "MALFORMED_REQUEST", "invalid Content-Length")
                return False
            length = int(length_text) if len(length_text) <= MAX_LENGTH_DIGITS else -1
            if length < 0 or length > self.server.max_body:
                size = f"{length} bytes" if length >= 0 else f"a {len(length_text)}-digit size"
                self._fail(
                    413,
                    "REQUEST_TOO_LARGE",
                    f"the body has {size}; this server accepts at most "
                    f"{self.server.max_body} bytes (--max-body)",
                )
                return False
            start = end + 4
            if len(buffer) - start < length:
                if not self._continued and headers.get(b"expect", b"").lower() == b"100-continue":
                    self._continued = True
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return False
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            self._continued = False
            self._last = asyncio.get_running_loop().time()
            connection = headers.get(b"connection", b"").lower()
            close = (
                connection == b"close"
                or (version == b"HTTP/1.0" and connection != b"keep-alive")
                or self.server.closing
            )
            try:
                status, extra, payload = self.server.handler(method, target, headers, body)
            except Exception as exc:  # noqa: BLE001 - one bad request must not end the server
                status, extra, payload = error_body(
                    500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"
                )
            if method == b"HEAD":
                # The headers a GET would get, Content-Length included, and no body.
                self.transport.write(
                    response(status, payload, extra, close)[: -len(payload) or None]
                )
            else:
                self.transport.write(response(status, payload, extra, close))
            handled += 1
            if close:
                self.transport.close()
                buffer.clear()
                return False
        return False
