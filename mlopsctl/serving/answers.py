"""The shape of an answer: ``(status, headers, body)``, with ASGI-style header pairs (lower-case
names as bytes), and the one JSON error body every refusal uses:
``{"error_code", "message", "error"}`` (MLflow's two keys plus the KServe/Triton one)."""

from __future__ import annotations

import json

Headers = list[tuple[bytes, bytes]]
Result = tuple[int, Headers, bytes]

JSON = (b"content-type", b"application/json")
TEXT = (b"content-type", b"text/plain; charset=utf-8")
CLOSE = (b"connection", b"close")


def error_body(status: int, code: str, message: str, *, close: bool = False) -> Result:
    body = json.dumps({"error_code": code, "message": message, "error": message}).encode()
    headers = [JSON, CLOSE] if close else [JSON]
    return status, headers, body


def raw_error(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for refusals made below
    the application (while parsing, at the connection cap, on a timeout)."""
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    _, _, body = error_body(status, code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body
