"""uvicorn's httptools protocol with the limits a server on an open port needs.

uvicorn parses HTTP/1.1 with llhttp (httptools), which already refuses duplicate or malformed
Content-Length, a Content-Length beside chunked Transfer-Encoding, folded header lines and
bad header names. What this subclass adds:

- **A connection cap.** Beyond ``max_connections`` open connections, the oldest idle keep-alive
  connection is closed to make room; when none is idle, the new connection's first request is
  answered 503 (``Retry-After: 1``) and the connection closed. The cap is kept below the
  process's open-file limit, so the listening socket, the store and the logs always have file
  descriptors left.
- **Timeouts that end connections.** A new connection must start a request within the
  keep-alive timeout; a request's head and body must arrive within ``request_timeout`` (else
  408 and close: a request only notes its deadline, and one sweep of the connections every
  ``SWEEP_S`` answers those past it, instead of a timer armed and cancelled per request);
  answers the client reads nothing of for ``write_timeout`` abort the connection (a client
  that pipelines requests and never reads cannot hold a connection past it; a slow reader
  can). Between requests, the keep-alive timeout is such a deadline too (uvicorn arms and
  cancels a timer per answer for it), and an idle connection past it is closed.
- **A header size limit** (``max_header_bytes``, 431), over the request line and header
  fields, whether they come in one write or many: the bytes received while a head is
  incomplete are counted as they arrive (a head still open past the limit and 64 KiB more is
  refused at once), and a head that may be over the limit is measured exactly when it ends.
- Parser errors answered in the server's JSON error shape, with no log line per bad request
  (only counted): an oversized Content-Length is a 413, anything else a 400.
- **Small requests answered without an ASGI cycle.** A GET, or a POST with a small plain body
  (`AsgiApp.inline_length`), that is not queued behind another request is answered by the
  app's handler as soon as its last byte is parsed, and the answer written straight to the
  transport: the task, the event and the four ASGI messages uvicorn makes per request were a
  sixth of the server's time per one-row prediction (measured). Such a request gets no ASGI
  scope or cycle object at all (their making, the target's parsing and the events cost 2.8 of
  the 10.4 µs the protocol spent per request, measured in process). Everything else, any
  request pipelined behind one being answered, any target not in origin form
  (``http://host/path``), and any request that arrives while the client is not reading its
  answers (the write buffer is full) goes through uvicorn's ASGI cycle as before; the limits
  above apply to both.

Answers made here are counted in ``mlopsctl_http_requests_total`` under route ``(http)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mlopsctl.serving.answers import CLOSE, error_body, raw_error

if TYPE_CHECKING:
    from mlopsctl.serving.asgi import AsgiApp


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000
    keep_alive_s: float = 15.0
    request_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    max_header_bytes: int = 64 << 10


# Pipelined requests parsed ahead of the one being answered, at most; the rest of what the
# client sent waits unparsed (and reading stops) until they are answered.
MAX_PIPELINED = 32
FEED_SLICE = 16 << 10
# How often the connections are checked for requests past their deadline.
SWEEP_S = 0.25


class _Refused(Exception):
    """Raised inside a parser callback once the request has been answered here."""


@dataclass
class _Lean:
    """A request answered without an ASGI cycle, while its body arrives: its method, the body
    budget it holds, whether its connection is kept, and its body so far."""

    method: bytes
    held: int
    keep: bool
    body: bytearray = field(default_factory=bytearray)


def protocol_class(
    limits: Limits, count: Callable[[int], None], inline: AsgiApp | None = None
) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, bound to ``limits``; ``count(status)``
    is told about every answer made here; ``inline``: the app whose small requests are answered
    without an ASGI cycle (None: all go through the ASGI app)."""
    sweeper: list[asyncio.TimerHandle | None] = [None]  # the one pending sweep, if any

    def sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = loop.time()
        for connection in list(connections):
            deadline = getattr(connection, "_deadline", None)
            if deadline is not None and deadline <= now:
                connection._on_request_timeout()
        sweeper[0] = loop.call_later(SWEEP_S, sweep, loop, connections) if connections else None

    class HardenedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None  # a new connection's idle timer
            self._deadline: float | None = None  # loop time the request must arrive by
            self._write_timer: asyncio.TimerHandle | None = None
            self._write_mark = 0  # answer bytes waiting when the write timer was armed
            # Bytes received while the head of the request being read is incomplete, short of
            # the piece it began in (at most FEED_SLICE bytes).
            self._raw_head = 0
            self._in_head = False
            self._reading = False  # between a request's first byte and its end
            self._refused = False  # over the cap: the first request gets a 503
            self._answered = False  # answered here; the connection is closing
            self._held = bytearray()  # received, not parsed yet (too many requests queued)
            # The request being read that is answered without an ASGI cycle, if any.
            self._lean: _Lean | None = None

        # -- connections --------------------------------------------------------------
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections and not self._evict_idle():
                self._refused = True
            self._arm(limits.keep_alive_s, self._on_idle)
            if sweeper[0] is None:
                sweeper[0] = self.loop.call_later(SWEEP_S, sweep, self.loop, self.connections)

        def _evict_idle(self) -> bool:
            """Close the connection that has been idle longest, if any is idle."""
            idle = [
                c
                for c in self.connections
                if isinstance(c, HardenedProtocol)
                and c is not self
                and not c._reading
                and (c.cycle is None or c.cycle.response_complete)
                and not c.pipeline
                and c.transport is not None
                and not c.transport.is_closing()
            ]
            if not idle:
                return False
            idle[0].transport.close()
            idle[0].connections.discard(idle[0])
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            if self._lean is not None and inline is not None:
                inline.release(self._lean.held)
            self._lean = None
            self._deadline = None
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

        # -- timers -------------------------------------------------------------------
        def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, callback)

        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _on_idle(self) -> None:
            self._timer = None
            if not self._reading and self.transport is not None:
                self.transport.close()

        def _on_request_timeout(self) -> None:
            self._deadline = None
            if self.transport is None or self.transport.is_closing():
                return
            if not self._reading:
                # Idle after an answer for the keep-alive timeout: closed, as uvicorn does.
                if self.cycle is None or self.cycle.response_complete:
                    self.transport.close()
                return
            if self.cycle is not None and not self.cycle.response_complete and self.pipeline:
                # An earlier request is still being answered; reading waits for it.
                self._deadline = self.loop.time() + limits.request_timeout_s
                return
            self._answer(
                408,
                "REQUEST_TIMEOUT",
                f"the request did not arrive whole within {limits.request_timeout_s:g} s",
            )

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._write_mark = self.transport.get_write_buffer_size()
                self._write_timer = self.loop.call_later(
                    limits.write_timeout_s, self._on_write_timeout
                )

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _on_write_timeout(self) -> None:
            self._write_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            size = self.transport.get_write_buffer_size()
            if size < self._write_mark:
                # The client reads, slowly: it has until the next timeout to read more.
                self._write_mark = size
                self._write_timer = self.loop.call_later(
                    limits.write_timeout_s, self._on_write_timeout
                )
                return
            self.transport.abort()

        # -- parsing ------------------------------------------------------------------
        def data_received(self, data: bytes) -> None:
            if self._answered:
                return
            self._unset_keepalive_if_required()
            if self._held:
                # Requests are queued already: keep the bytes, read no more for now.
                self._held += data
                self.flow.pause_reading()
                return
            self._feed(data)

        def _feed(self, data: bytes) -> None:
            """Parse ``data`` a slice at a time, holding the rest once enough pipelined
            requests wait: a client that sends thousands of requests in one write gets them
            parsed as they are answered, not all at once."""
            offset = 0
            while offset < len(data):
                if len(self.pipeline) >= MAX_PIPELINED:
                    self._held = bytearray(data[offset:])
                    self.flow.pause_reading()
                    return
                piece = (
                    data[offset : offset + FEED_SLICE] if offset or len(data) > FEED_SLICE else data
                )
                offset += len(piece)
                if self._in_head:
                    self._raw_head += len(piece)
                try:
                    self.parser.feed_data(piece)
                except httptools.HttpParserUpgrade:
                    pass  # no protocol upgrades here: the request was answered as plain HTTP
                except httptools.HttpParserError as exc:
                    if not self._answered:
                        self._parse_error(str(exc))
                    return
                if self._answered:
                    return
                if self._in_head and self._raw_head > limits.max_header_bytes + (64 << 10):
                    # Still no end of the headers: the bytes held are already too many.
                    self._too_large_head()
                    return

        def _parse_error(self, text: str) -> None:
            if "overflow" in text.lower():
                self._answer(
                    413,
                    "REQUEST_TOO_LARGE",
                    "the Content-Length is too large for any body this server accepts (--max-body)",
                )
            else:
                self._answer(400, "MALFORMED_REQUEST", f"malformed HTTP request: {text}")

        def on_response_complete(self) -> None:
            # uvicorn's, except that the keep-alive timeout is a deadline the sweep checks: a
            # timer armed per answer and cancelled by the next request cost more than a
            # microsecond of each.
            self.server_state.total_requests += 1
            if self.transport is None or self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            elif not self._reading:
                self._deadline = self.loop.time() + limits.keep_alive_s  # idle from now
            if self._held and len(self.pipeline) < MAX_PIPELINED:
                held, self._held = bytes(self._held), bytearray()
                self._feed(held)
            if self._held or len(self.pipeline) >= MAX_PIPELINED:
                self.flow.pause_reading()

        def send_400_response(self, msg: str) -> None:
            if not self._answered:
                self._answer(400, "MALFORMED_REQUEST", "malformed HTTP request")

        def _answer(self, status: int, code: str, message: str) -> None:
            self._answered = True
            self._cancel()
            self._deadline = None
            count(status)
            if self.transport is not None and not self.transport.is_closing():
                extra = b"retry-after: 1\r\n" if status == 503 else b""
                response = raw_error(status, code, message)
                if extra:
                    head, sep, rest = response.partition(b"\r\n")
                    response = head + sep + extra + rest
                self.transport.write(response)
                self.transport.close()

        def _head_size(self) -> int:
            """The request line's target and the header fields (name, value, separators), as
            received; counted only for a head that may be over the limit, so that a request
            pays no Python call per header for the check."""
            return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

        def _too_large_head(self) -> None:
            self._answer(
                431,
                "REQUEST_HEADERS_TOO_LARGE",
                f"the request line and headers are larger than {limits.max_header_bytes} bytes",
            )

        def on_message_begin(self) -> None:
            # uvicorn's, less its ASGI scope: made once the head is read (`_make_scope`), for
            # the requests that go through the ASGI app only.
            self.url = b""
            self.expect_100_continue = False
            self.headers = []
            self._reading = True
            self._in_head = True
            self._raw_head = 0
            self._unset_keepalive_if_required()
            self._cancel()  # the idle timer of a connection's first request, if armed
            self._deadline = self.loop.time() + limits.request_timeout_s

        def _make_scope(self) -> None:
            """uvicorn's scope for the request whose head was just read: its own
            ``on_message_begin``, keeping what the parser gave since."""
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()
            self.url, self.headers, self.expect_100_continue = url, headers, expect
            self.scope["headers"] = headers

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._raw_head + FEED_SLICE > limits.max_header_bytes and (
                self._head_size() > limits.max_header_bytes
            ):
                self._too_large_head()
                raise _Refused
            if self._refused:
                self._answer(
                    503,
                    "TEMPORARILY_UNAVAILABLE",
                    f"this server holds its most connections ({limits.max_connections}); "
                    "retry shortly",
                )
                raise _Refused
            if inline is not None and self._may_answer_here():
                return
            self._make_scope()
            super().on_headers_complete()

        def _may_answer_here(self) -> bool:
            """Whether the request whose head was just read is answered by `_answer_here`
            once its body is in (then `_lean` holds it; its body budget is taken)."""
            assert inline is not None
            if (
                self.flow.write_paused  # a client that does not read its answers: the ASGI
                # cycle waits for the write buffer to drain before answering
                or self.pipeline
                or not (self.cycle is None or self.cycle.response_complete)
                or self.url[:1] != b"/"  # origin-form targets only (what parse_url gives)
                or b"#" in self.url
                or self.parser.should_upgrade()
            ):
                return False
            method = self.parser.get_method()
            held = inline.inline_length(method, self.headers)
            if held < 0:
                return False
            keep = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            self._lean = _Lean(method, held, keep)
            return True

        def on_body(self, body: bytes) -> None:
            if self._lean is not None:
                self._lean.body += body  # at most its declared length, a few KiB
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._reading = False
            self._deadline = None
            lean = self._lean
            if lean is None:
                super().on_message_complete()
                return
            self._lean = None
            self._answer_here(lean)

        def shutdown(self) -> None:
            if self._lean is not None:
                self._lean.keep = False  # answered, then closed
                return
            super().shutdown()

        def _answer_here(self, lean: _Lean) -> None:
            """Answer the request ``lean`` holds through the app's handler and write the
            response as uvicorn's ASGI cycle would (its default headers, a Content-Length,
            ``connection: close`` when the connection is not kept)."""
            assert inline is not None
            inline.release(lean.held)
            try:
                status, headers, body = inline.answer_inline(
                    lean.method, self.url, dict(self.headers), bytes(lean.body)
                )
            except Exception as exc:  # the handler answers its own failures: this is a net
                self.logger.error("Exception in the request handler", exc_info=exc)
                status, headers, body = error_body(
                    500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", close=True
                )
            keep = lean.keep and CLOSE not in headers
            parts = [STATUS_LINE[status]]
            for name, value in (*self.server_state.default_headers, *headers):
                parts += (name, b": ", value, b"\r\n")
            parts.append(b"content-length: %d\r\n" % len(body))
            if not keep and CLOSE not in headers:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", body)
            self.transport.write(b"".join(parts))
            if not keep:
                self.transport.close()
            self.on_response_complete()

    return HardenedProtocol
