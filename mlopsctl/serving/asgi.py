"""The ASGI application uvicorn runs: no framework, one coroutine per request.

It reads the request body within its limits, decodes it, and hands the request to `App.handle`
(routes and predictions):

- **Body size.** A declared Content-Length over ``max_body`` is refused with 413 before any of
  the body is read; a chunked body is counted as it arrives and refused the same way once it
  passes the limit. Either way the connection is closed after the answer.
- **Bodies in flight.** All requests of a worker together may hold at most ``body_budget``
  bytes of request bodies (declared lengths are reserved before reading, chunked bodies as
  they arrive, decompressed bodies when inflated); a request that does not fit is answered 503
  with ``Retry-After`` and its connection closed, so that many slow uploads cannot grow the
  server's memory.
- **Content-Encoding.** ``gzip``, ``x-gzip`` and ``deflate`` (zlib or raw) bodies are inflated,
  at most to ``max_body`` bytes: a body that inflates past it (a "zip bomb") is a 413 with no
  more than ``max_body`` bytes ever held. Other encodings are a 415.
- **Where predictions run.** Requests with small bodies (at most ``inline_bytes``, a few rows)
  are answered on the event loop, where a prediction costs less than a hop to a thread would
  (and most of them by the protocol itself, as soon as they have arrived: `answer_inline`);
  larger ones run in a thread pool sized to the CPUs; and the bodies of large prediction
  requests (over ``process_bytes``) are first decoded in helper processes (decode.py), because
  parsing them holds the interpreter lock for up to a second. So health checks and small
  requests are answered while big batches are parsed and predicted.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlopsctl.serving.answers import Headers, Result, error_body
from mlopsctl.serving.app import route_of

if TYPE_CHECKING:
    from mlopsctl.serving.app import App

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

INLINE_BYTES = 16 << 10
PROCESS_BYTES = 256 << 10
_DECODINGS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": 0}


class BodyBudget:
    """Bytes of request bodies a worker holds at once. Used on the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used = max(0, self.used - size)


@dataclass
class _Refusal(Exception):
    result: Result


class AsgiApp:
    def __init__(
        self,
        app: App,
        *,
        max_body: int,
        body_budget: int,
        pool: Executor,
        processes: Executor | None = None,
        inline_bytes: int = INLINE_BYTES,
        process_bytes: int = PROCESS_BYTES,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.budget = BodyBudget(body_budget)
        self.pool = pool
        self.processes = processes
        self.inline_bytes = inline_bytes
        self.process_bytes = process_bytes
        self.say = say or (lambda _text: None)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"].encode()
        path: bytes = scope["raw_path"]
        query: bytes = scope["query_string"]
        headers = dict(scope["headers"])
        held = 0
        try:
            try:
                body, held = await self._body(headers, receive)
            except _Refusal as refusal:
                await _send(send, refusal.result)
                self.app.metrics.http(route_of(path), refusal.result[0])
                return
            if body is None:  # the client went away
                return
            target = path + b"?" + query if query else path
            if len(body) <= self.inline_bytes:
                result = self.app.handle(method, target, headers, body)
            else:
                decoded = None
                if len(body) > self.process_bytes and method == b"POST":
                    decoded = await self._decode_elsewhere(path, headers, body)
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self.pool, self.app.handle, method, target, headers, body, decoded
                )
        finally:
            if held:
                self.budget.give(held)
        await _send(send, result)
        self.app.metrics.http(route_of(path), result[0])

    # -- requests the protocol answers itself (protocol.py) ----------------------------------
    def inline_length(self, method: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        """The body length of a request the protocol may answer as soon as it has arrived,
        without an ASGI cycle; -1 when it goes through `__call__`. Such a request is a GET, or
        a POST whose declared body is at most ``inline_bytes`` (so it is predicted on the event
        loop either way) and neither chunked, encoded nor waiting for a 100-continue. Its
        length is taken from the body budget here; `release` gives it back."""
        if method != b"POST" and method != b"GET":
            return -1
        length = 0
        for name, value in headers:
            if name == b"content-length":
                length = int(value)  # llhttp has checked it: one, a number, in 64 bits
            elif name == b"transfer-encoding" or name == b"content-encoding" or name == b"expect":
                return -1
        if length > self.inline_bytes or not self.budget.take(length):
            return -1
        return length

    def release(self, held: int) -> None:
        self.budget.give(held)

    def answer_inline(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> Result:
        """What `__call__` answers to a request `inline_length` accepted, without the ASGI
        messages; counted the same way. ``target``: its origin-form path and query."""
        result = self.app.handle(method, target, headers, body)
        self.app.metrics.http(route_of(target.partition(b"?")[0]), result[0])
        return result

    async def _decode_elsewhere(self, path: bytes, headers: dict[bytes, bytes], body: bytes) -> Any:
        """The body decoded by a helper process (a `Decoded`, or the `BadRequest` it found);
        None when the route takes no model inputs or no helper answered (then the request is
        decoded in a thread, as smaller ones are)."""
        from mlopsctl.serving.codecs import BadRequest
        from mlopsctl.serving.decode import decode_elsewhere

        if self.processes is None:
            return None
        plan = self.app.decode_plan(path, headers)
        if plan is None:
            return None
        args = list(plan)
        args[3] = body
        loop = asyncio.get_running_loop()
        try:
            status, value = await loop.run_in_executor(self.processes, decode_elsewhere, *args)
        except Exception as exc:  # noqa: BLE001 - e.g. a helper died: decode here instead
            self.say(
                f"warning: a body-decoding helper process failed ({type(exc).__name__}: {exc}); "
                "large bodies are decoded in the server process from now on"
            )
            self.processes = None
            return None
        if status == "ok":
            return value
        return BadRequest(*value)

    async def _body(
        self, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[bytes | None, int]:
        """The whole (decoded) body and the budget it holds; raises `_Refusal`."""
        length_text = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if length_text is None and not chunked:
            return b"", 0
        held = 0
        if length_text is not None:
            # llhttp has checked that it is a number that fits in 64 bits.
            length = int(length_text)
            if length > self.max_body:
                raise _Refusal(self._too_large(f"the body has {length} bytes"))
            if length == 0:
                return b"", 0
            if not self.budget.take(length):
                raise _Refusal(_busy())
            held = length
        try:
            message = await receive()
            if message["type"] != "http.request":
                return None, held
            body: bytes | bytearray = message.get("body", b"")
            if message.get("more_body", False):
                buffer = bytearray(body)
                while True:
                    if chunked:
                        grow = len(buffer) - held
                        if len(buffer) > self.max_body:
                            raise _Refusal(self._too_large("the chunked body passed the limit"))
                        if grow > 0:
                            if not self.budget.take(grow):
                                raise _Refusal(_busy())
                            held += grow
                    message = await receive()
                    if message["type"] != "http.request":
                        return None, held
                    buffer += message.get("body", b"")
                    if not message.get("more_body", False):
                        break
                body = buffer
            if chunked and len(body) > self.max_body:
                raise _Refusal(self._too_large("the chunked body passed the limit"))
            encoding = headers.get(b"content-encoding", b"identity").strip().lower()
            if encoding not in (b"identity", b""):
                decoded = self._decode(bytes(body), encoding)
                if not self.budget.take(len(decoded)):
                    raise _Refusal(_busy())
                held += len(decoded)
                return decoded, held
            return bytes(body), held
        except _Refusal:
            self.budget.give(held)
            raise
        except BaseException:
            self.budget.give(held)
            raise

    def _decode(self, body: bytes, encoding: bytes) -> bytes:
        wbits = _DECODINGS.get(encoding)
        if wbits is None:
            raise _Refusal(
                error_body(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported; "
                    "send gzip, deflate or an unencoded body",
                    close=True,
                )
            )
        attempts = [wbits] if wbits else [zlib.MAX_WBITS, -zlib.MAX_WBITS]  # zlib, then raw
        for bits in attempts:
            inflater = zlib.decompressobj(bits)
            try:
                out = inflater.decompress(body, self.max_body + 1)
            except zlib.error:
                continue
            if len(out) > self.max_body or inflater.unconsumed_tail:
                raise _Refusal(
                    self._too_large(
                        f"the body inflates past {self.max_body} bytes "
                        f"({encoding.decode()} of {len(body)} bytes)"
                    )
                )
            if not inflater.eof:
                break
            return out
        raise _Refusal(
            error_body(
                400,
                "MALFORMED_REQUEST",
                f"the body is not valid {encoding.decode(errors='replace')} data",
                close=True,
            )
        )

    def _too_large(self, what: str) -> Result:
        return error_body(
            413,
            "REQUEST_TOO_LARGE",
            f"{what}; this server accepts at most {self.max_body} bytes (--max-body)",
            close=True,
        )


def _busy() -> Result:
    status, headers, body = error_body(
        503,
        "TEMPORARILY_UNAVAILABLE",
        "the server holds as many request bodies as it may (--max-inflight); retry shortly",
        close=True,
    )
    return status, [*headers, (b"retry-after", b"1")], body


async def _send(send: Send, result: Result) -> None:
    status, headers, body = result
    out: Headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
