"""A small HTTP/1.1 server on asyncio's Protocol API: no framework between the socket and the
handler, because at a few hundred microseconds per prediction the framework would be most of
the cost.

Requests are parsed with bytes operations only: request line, headers, then a body of
``Content-Length`` bytes. Keep-alive is the default; pipelined requests are answered in order
(the handler is synchronous, so a connection's responses cannot overtake each other). Chunked
request bodies are refused with 411 (every client that matters sends a length for a JSON body),
``Expect: 100-continue`` is answered before the body is read, and an oversized body gets 413
before it is read at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

MAX_HEADER_BYTES = 64 << 10
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
        "_timer",
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
        self.busy = True
        try:
            self._process()
        finally:
            self.busy = False
        if self.want_close and not self.buffer and self.transport is not None:
            self.transport.close()

    def _fail(self, status: int, code: str, message: str) -> None:
        _, extra, body = error_body(status, code, message)
        if self.transport is not None:
            self.transport.write(response(status, body, extra, close=True))
            self.transport.close()
        self.buffer.clear()

    def _process(self) -> None:
        buffer = self.buffer
        while buffer and self.transport is not None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self._fail(
                        431, "REQUEST_HEADERS_TOO_LARGE", "the request headers are too large"
                    )
                return
            head = bytes(buffer[:end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._fail(400, "MALFORMED_REQUEST", "malformed HTTP request line")
                return
            method, target, version = parts
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name[-1:] in (b" ", b"\t"):
                    self._fail(400, "MALFORMED_REQUEST", "malformed HTTP header line")
                    return
                headers[name.lower()] = value.strip()
            if b"transfer-encoding" in headers:
                self._fail(
                    411,
                    "LENGTH_REQUIRED",
                    "chunked request bodies are not supported; send Content-Length",
                )
                return
            length_text = headers.get(b"content-length", b"0")
            if not length_text.isdigit():
                self._fail(400, "MALFORMED_REQUEST", "invalid Content-Length")
                return
            length = int(length_text)
            if length > self.server.max_body:
                self._fail(
                    413,
                    "REQUEST_TOO_LARGE",
                    f"the body has {length} bytes; this server accepts at most "
                    f"{self.server.max_body} (--max-body)",
                )
                return
            start = end + 4
            if len(buffer) - start < length:
                if not self._continued and headers.get(b"expect", b"").lower() == b"100-continue":
                    self._continued = True
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
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
            if close:
                self.transport.close()
                buffer.clear()
                return
