"""A request body into checked model inputs, as one function of plain values, so that it can run
in this process or in a helper process.

Parsing a large JSON body (``json.loads``, then the lists into a float matrix) holds the
interpreter lock for the whole parse: about a second for an 8 MiB body of numbers. Run in a
thread, that would still stall the event loop (health checks included) for as long. So bodies
above asgi.py's ``PROCESS_BYTES`` are decoded by `decode_elsewhere` in a small pool of helper
processes, which return the float matrix (or the columns) ready to predict; the server process
only predicts, answers and logs.

The kinds of request: ``mlflow`` (/invocations and /explain: MLflow JSON or CSV), ``v1``
(KServe v1 ``instances``) and ``oip`` (Open Inference Protocol v2, JSON or binary tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlopsctl.process import die_with_parent
from mlopsctl.serving import codecs
from mlopsctl.serving.codecs import BadRequest, Features, Signature


@dataclass
class OipMeta:
    id: str | None
    outputs: list[str] | None
    parameters: dict[str, Any]


@dataclass
class Decoded:
    inputs: codecs.Inputs
    key_value: str | None
    signature: Signature
    params: dict[str, Any] = field(default_factory=dict)
    oip: OipMeta | None = None


def signature_of(features: Features) -> Signature:
    """The features as a `Signature` (a Predictor keeps its own, built once)."""
    made = getattr(features, "signature", None)
    if isinstance(made, Signature):
        return made
    return Signature(features.name, features.version, list(features.names), dict(features.kinds))


def decode(
    kind: str,
    content_type: bytes,
    header_length: bytes | None,
    body: bytes,
    features: Features,
    key: str | None,
    strict: bool,
    max_rows: int,
) -> Decoded:
    """The body as inputs for ``features``; raises `BadRequest`."""
    params: dict[str, Any] = {}
    oip = None
    if kind == "mlflow":
        if content_type == b"application/json":
            table, params = codecs.mlflow_table(codecs.parse_json(body))
        elif content_type == b"text/csv":
            table = codecs.csv_table(body)
        else:
            raise BadRequest(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"content type {content_type.decode(errors='replace') or '(none)'!r} is not "
                "supported; send application/json or text/csv",
            )
    elif kind == "v1":
        payload = codecs.parse_json(body)
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if instances is None and isinstance(payload, dict):
            instances = payload.get("inputs")
        if not isinstance(instances, list):
            raise codecs.invalid('a KServe v1 request is {"instances": [row, ...]}')
        if instances and all(isinstance(r, dict) for r in instances):
            table = codecs.Table("records", instances)
        else:
            table = codecs.Table("positional", instances)
    else:
        if header_length is None and content_type not in (b"application/json", b""):
            raise BadRequest(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"content type {content_type.decode(errors='replace')!r} is not supported; "
                "send application/json (or the binary tensor extension)",
            )
        if header_length is not None and (
            not header_length.isdigit() or len(header_length) > codecs.MAX_LENGTH_DIGITS
        ):
            raise codecs.malformed(
                "invalid Inference-Header-Content-Length: a byte count of at most "
                f"{codecs.MAX_LENGTH_DIGITS} digits"
            )
        request = codecs.oip_request(body, int(header_length) if header_length else None)
        table = codecs.oip_table(request, features)
        oip = OipMeta(request.id, request.outputs, request.parameters)
    rows = len(table)
    if rows > max_rows:
        raise BadRequest(
            413,
            "REQUEST_TOO_LARGE",
            f"the request has {rows} rows; this server predicts at most {max_rows} per request "
            "(--max-rows): split it",
        )
    key_value = table.key_value(key)
    inputs = codecs.to_inputs(table, features, key, strict=strict)
    return Decoded(inputs, key_value, signature_of(features), params, oip)


def decode_elsewhere(*args: Any) -> tuple[str, Any]:
    """`decode` in a helper process: ``("ok", Decoded)`` or ``("error", (status, code,
    message))`` (exceptions with their own constructors do not cross processes)."""
    from mlopsctl.errors import MlopsError

    try:
        return "ok", decode(*args)
    except BadRequest as exc:
        return "error", (exc.status, exc.error_code, exc.message)
    except MlopsError as exc:
        return "error", (400, "INVALID_PARAMETER_VALUE", exc.one_line())
    except Exception as exc:  # noqa: BLE001 - answered 500 by the server, with the request id
        return "error", (500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")


def start_helper(worker: int | None = None) -> None:
    """A helper process's start: it dies with its worker (`worker`: the worker's pid; a
    worker killed with SIGKILL would otherwise leave it running forever), a lower CPU priority
    than the server's (its event loop must win the CPU over a long parse), and the imports it
    needs, before the first request."""
    import os

    import numpy  # noqa: F401

    die_with_parent(worker)

    try:
        os.nice(HELPER_NICENESS)
    except OSError:
        pass


def warm() -> bool:
    return True


HELPER_NICENESS = 10
