"""Routes: MLflow-compatible scoring, the Open Inference Protocol v2, metrics and feedback.

`App.handle` is called by the HTTP protocol once per request, synchronously, on the event loop:
a prediction takes a fraction of a millisecond, less than a hop to a thread pool would. The
served models live in `Arm` objects whose `predictor` is replaced as a whole by the follower
thread; a request reads it once, so a swap never changes the model under a request.

Every answer to a prediction request carries its request id (X-Request-ID) and is counted in
the request metrics, errors included: a bad request is a 400 with ``{error_code, message}``,
and an exception nobody foresaw a 500 in the same shape.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import __version__
from mlopsctl.errors import MlopsError
from mlopsctl.serving import codecs
from mlopsctl.serving.arms import assign, cumulative
from mlopsctl.serving.codecs import BadRequest
from mlopsctl.serving.http import JSON_TYPE, error_body

if TYPE_CHECKING:
    from mlopsctl.serving.logs import BufferedWriter
    from mlopsctl.serving.metrics import Metrics
    from mlopsctl.serving.predictor import Prediction, Predictor

TEXT_TYPE = b"Content-Type: text/plain; charset=utf-8\r\n"
METRICS_TYPE = b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
Result = tuple[int, bytes, bytes]


class Arm:
    """One served alias or version. ``predictor`` is replaced whole on an alias move; ``etag``
    is the alias record's version the follower last saw."""

    def __init__(self, label: str, alias: str | None, predictor: Predictor) -> None:
        self.label = label
        self.alias = alias
        self.predictor = predictor
        self.etag: str | None = None
        self.label_header = b"X-Arm: " + label.encode() + b"\r\n"


@dataclass(frozen=True)
class Router:
    arms: tuple[Arm, ...]
    weighted: tuple[Arm, ...]  # the arms with a weight above 0, in order
    bounds: tuple[float, ...]
    weights: tuple[float, ...]


def make_router(arms: list[Arm], weights: list[float]) -> Router:
    pairs = [(a, w) for a, w in zip(arms, weights, strict=False) if w > 0] or [(arms[0], 1.0)]
    return Router(
        tuple(arms),
        tuple(a for a, _ in pairs),
        cumulative([w for _, w in pairs]),
        tuple(weights),
    )


class App:
    def __init__(
        self,
        model: str,
        router: Router,
        metrics: Metrics,
        metrics_dir: Path,
        *,
        key: str | None = None,
        log: BufferedWriter | None = None,
        feedback: BufferedWriter | None = None,
        log_sample: float = 1.0,
        classification: bool | None = None,
    ) -> None:
        self.model = model
        self.router = router
        self.metrics = metrics
        self.metrics_dir = metrics_dir
        self.key = key
        self.log = log
        self.feedback = feedback
        self.log_sample = log_sample
        # The task the feedback log's ``actual`` column is typed for (None: not known).
        self.classification = classification
        self.ready = True
        self._model_bytes = model.encode()
        self._get: dict[bytes, Callable[[dict[bytes, bytes]], Result]] = {
            b"/ping": self._ping,
            b"/health": self._ping,
            b"/version": self._version,
            b"/metrics": self._metrics,
            b"/v2": self._v2,
            b"/v2/health/live": self._live,
            b"/v2/health/ready": self._ready,
        }
        self._post: dict[bytes, Callable[[dict[bytes, bytes], bytes, bytes], Result]] = {
            b"/invocations": self._invocations,
            b"/feedback": self._feedback,
        }

    # -- dispatch -------------------------------------------------------------------------
    def handle(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> Result:
        try:
            return self._dispatch(method, target, headers, body)
        except Exception as exc:  # noqa: BLE001 - a route's bug must still answer in shape
            # The prediction routes answer their own failures; this is the net for the rest.
            self.metrics.observe("", "", 0.0, True)
            status, extra, payload = _internal(exc)
            request_id = _request_id(headers)
            return status, extra + b"X-Request-ID: " + request_id.encode() + b"\r\n", payload

    def _dispatch(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> Result:
        path, _, query = target.partition(b"?")
        if method == b"POST":
            post = self._post.get(path)
            if post is not None:
                return post(headers, body, query)
            if path.startswith(b"/v2/models/") and path.endswith(b"/infer"):
                return self._infer(path, headers, body)
        elif method in (b"GET", b"HEAD"):
            get = self._get.get(path)
            if get is not None:
                return get(headers)
            if path.startswith(b"/v2/models/"):
                return self._model_info(path)
        known = path in self._get or path in self._post or path.startswith(b"/v2/models/")
        if known:
            allowed = "POST" if (path in self._post or path.endswith(b"/infer")) else "GET"
            status, extra, payload = error_body(
                405,
                "METHOD_NOT_ALLOWED",
                f"{method.decode(errors='replace')} is not allowed on "
                f"{path.decode(errors='replace')}; use {allowed}",
            )
            return status, extra + b"Allow: " + allowed.encode() + b"\r\n", payload
        return error_body(
            404,
            "ENDPOINT_NOT_FOUND",
            f"no route {path.decode(errors='replace')}; see /invocations, /v2/models/"
            f"{self.model}/infer, /ping, /metrics",
        )

    # -- simple routes --------------------------------------------------------------------
    def _ping(self, headers: dict[bytes, bytes]) -> Result:
        return 200, TEXT_TYPE, b"\n"

    def _version(self, headers: dict[bytes, bytes]) -> Result:
        versions = [{"arm": a.label, "version": a.predictor.version} for a in self.router.arms]
        return _json(200, {"mlopsctl": __version__, "model": self.model, "arms": versions})

    def _metrics(self, headers: dict[bytes, bytes]) -> Result:
        from mlopsctl.serving.metrics import render

        return 200, METRICS_TYPE, render(self.metrics_dir, self.model)

    def _v2(self, headers: dict[bytes, bytes]) -> Result:
        return _json(
            200, {"name": "mlopsctl", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    def _live(self, headers: dict[bytes, bytes]) -> Result:
        return _json(200, {"live": True})

    def _ready(self, headers: dict[bytes, bytes]) -> Result:
        return _json(200 if self.ready else 503, {"ready": self.ready})

    def _model_info(self, path: bytes) -> Result:
        parts = path.decode(errors="replace").split("/")[3:]  # after /v2/models/
        name = parts[0] if parts else ""
        rest = parts[1:]
        version: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        if name != self.model:
            return self._unknown_model(name)
        arm = self._arm_for_version(version) if version is not None else self.router.weighted[0]
        if arm is None:
            return self._unknown_version(version)
        if rest == ["ready"]:
            return _json(200, {"name": name, "ready": self.ready})
        if rest:
            return error_body(
                404, "ENDPOINT_NOT_FOUND", f"no route {path.decode(errors='replace')}"
            )
        predictor = arm.predictor
        inputs = [
            {"name": f.name, "datatype": "FP64" if f.kind == "numeric" else "BYTES", "shape": [-1]}
            for f in predictor.features
        ]
        outputs: list[dict[str, Any]] = [
            {"name": "predict", "datatype": _label_datatype(predictor), "shape": [-1]}
        ]
        if predictor.has_proba and predictor.classes is not None:
            outputs.append(
                {"name": "proba", "datatype": "FP64", "shape": [-1, len(predictor.classes)]}
            )
        versions = sorted({str(a.predictor.version) for a in self.router.arms}, key=int)
        return _json(
            200,
            {
                "name": name,
                "versions": versions,
                "platform": f"mlopsctl-{predictor.flavor}",
                "inputs": inputs,
                "outputs": outputs,
                "parameters": {"task": predictor.task, "served_version": str(predictor.version)},
            },
        )

    def _unknown_model(self, name: str) -> Result:
        return error_body(
            404,
            "RESOURCE_DOES_NOT_EXIST",
            f"model {name!r} is not served here; this server serves {self.model!r}",
        )

    def _unknown_version(self, version: str | None) -> Result:
        served = ", ".join(sorted({str(a.predictor.version) for a in self.router.arms}))
        return error_body(
            404,
            "RESOURCE_DOES_NOT_EXIST",
            f"version {version} of {self.model} is not served here (served: {served})",
        )

    def _arm_for_version(self, version: str) -> Arm | None:
        for arm in self.router.arms:
            if str(arm.predictor.version) == version:
                return arm
        return None

    # -- predictions ----------------------------------------------------------------------
    def _choose(self, key_value: str | None, request_id: str) -> Arm:
        router = self.router
        if len(router.weighted) == 1:
            return router.weighted[0]
        return router.weighted[
            assign(key_value if key_value is not None else request_id, router.bounds)
        ]

    def _invocations(self, headers: dict[bytes, bytes], body: bytes, query: bytes) -> Result:
        start = time.perf_counter()
        request_id = _request_id(headers)
        arm: Arm | None = None
        try:
            content_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
            if content_type == b"application/json":
                table, params = codecs.mlflow_table(codecs.parse_json(body))
            elif content_type == b"text/csv":
                table, params = codecs.csv_table(body), {}
            else:
                raise BadRequest(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"content type {content_type.decode(errors='replace') or '(none)'!r} is not "
                    "supported; send application/json or text/csv",
                )
            arm = self._choose(table.key_value(self.key), request_id)
            predictor = arm.predictor
            inputs = codecs.to_inputs(table, predictor, self.key)
            prediction = _predict(predictor, inputs)
            output = params.get("output") or _query_value(query, b"output")
            if output == "proba":
                if prediction.proba is None:
                    raise codecs.invalid(
                        f"{self.model}:{predictor.version} gives no class probabilities"
                    )
                predictions: Any = prediction.proba.tolist()
            elif output not in (None, "", "predict"):
                raise codecs.invalid(f"unknown output {output!r}; use 'predict' or 'proba'")
            else:
                predictions = prediction.labels.tolist()
            payload = json.dumps({"predictions": predictions}).encode()
        except Exception as exc:  # noqa: BLE001 - every failure is answered, counted, with the id
            return self._failed(arm, start, request_id, _error_answer(exc))
        elapsed = time.perf_counter() - start
        self._record(request_id, arm, predictor, inputs, prediction, elapsed)
        return 200, _answer_headers(request_id, predictor, arm), payload

    def _failed(self, arm: Arm | None, start: float, request_id: str, result: Result) -> Result:
        elapsed = time.perf_counter() - start
        if arm is not None:
            self.metrics.observe(str(arm.predictor.version), arm.label, elapsed, True)
        else:
            self.metrics.observe("", "", elapsed, True)
        status, extra, payload = result
        return status, extra + b"X-Request-ID: " + request_id.encode() + b"\r\n", payload

    def _record(
        self,
        request_id: str,
        arm: Arm,
        predictor: Predictor,
        inputs: codecs.Inputs,
        prediction: Prediction,
        elapsed: float,
    ) -> None:
        self.metrics.observe(str(predictor.version), arm.label, elapsed, False)
        log = self.log
        if log is None or (self.log_sample < 1.0 and random.random() >= self.log_sample):
            return
        features = inputs.matrix if inputs.matrix is not None else inputs.columns
        log.append(
            (
                request_id,
                int(time.time() * 1000),
                predictor.version,
                arm.label,
                elapsed * 1000.0,
                features,
                prediction.labels,
                prediction.score,
                predictor.log_schema,
            ),
            inputs.rows,
        )

    def _infer(self, path: bytes, headers: dict[bytes, bytes], body: bytes) -> Result:
        start = time.perf_counter()
        parts = path.decode(errors="replace").split("/")[3:-1]  # name[/versions/v]
        name = parts[0] if parts else ""
        version = parts[2] if len(parts) == 3 and parts[1] == "versions" else None
        if name != self.model or (len(parts) not in (1, 3)):
            return self._unknown_model(name)
        arm: Arm | None = None
        request_id = _request_id(headers)
        try:
            content_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
            header_length = headers.get(b"inference-header-content-length")
            if header_length is None and content_type not in (b"application/json", b""):
                raise BadRequest(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"content type {content_type.decode(errors='replace')!r} is not supported; "
                    "send application/json (or the binary tensor extension)",
                )
            if header_length is not None and not header_length.isdigit():
                raise codecs.malformed("invalid Inference-Header-Content-Length")
            request = codecs.oip_request(body, int(header_length) if header_length else None)
            if request.id is not None and b"x-request-id" not in headers:
                request_id = request.id
            if version is not None:
                arm = self._arm_for_version(version)
                if arm is None:
                    return self._unknown_version(version)
                table = codecs.oip_table(request, arm.predictor)
            else:
                first = self.router.weighted[0].predictor
                table = codecs.oip_table(request, first)
                arm = self._choose(table.key_value(self.key), request_id)
                if arm.predictor is not first:
                    table = codecs.oip_table(request, arm.predictor)
            predictor = arm.predictor
            inputs = codecs.to_inputs(table, predictor, self.key)
            prediction = _predict(predictor, inputs)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, counted, with the id
            return self._failed(arm, start, request_id, _error_answer(exc))
        try:
            return self._infer_answer(
                request, request_id, arm, predictor, inputs, prediction, start
            )
        except Exception as exc:  # noqa: BLE001 - answered 500, counted, with the request id
            return self._failed(arm, start, request_id, _internal(exc))

    def _infer_answer(
        self,
        request: codecs.OipRequest,
        request_id: str,
        arm: Arm,
        predictor: Predictor,
        inputs: codecs.Inputs,
        prediction: Prediction,
        start: float,
    ) -> Result:
        labels = prediction.labels
        outputs = [
            {
                "name": "predict",
                "shape": [len(labels)],
                "datatype": codecs.oip_datatype(labels),
                "data": labels.tolist() if labels.dtype.kind != "O" else [str(v) for v in labels],
            }
        ]
        if prediction.proba is not None:
            outputs.append(
                {
                    "name": "proba",
                    "shape": list(prediction.proba.shape),
                    "datatype": "FP64",
                    "data": prediction.proba.ravel().tolist(),
                }
            )
        if request.outputs:
            outputs = [o for o in outputs if o["name"] in request.outputs]
        elapsed = time.perf_counter() - start
        self._record(request_id, arm, predictor, inputs, prediction, elapsed)
        payload = json.dumps(
            {
                "model_name": self.model,
                "model_version": str(predictor.version),
                "id": request_id,
                "parameters": {"arm": arm.label},
                "outputs": outputs,
            }
        ).encode()
        return 200, _answer_headers(request_id, predictor, arm), payload

    # -- ground truth -------------------------------------------------------------------------
    def _feedback(self, headers: dict[bytes, bytes], body: bytes, query: bytes) -> Result:
        if self.feedback is None:
            return error_body(
                503, "TEMPORARILY_UNAVAILABLE", "this server has no store to record feedback in"
            )
        content_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if content_type != b"application/json":
            return error_body(415, "UNSUPPORTED_MEDIA_TYPE", "send feedback as application/json")
        try:
            payload = codecs.parse_json(body)
        except BadRequest as exc:
            return error_body(exc.status, exc.error_code, exc.message)
        items = payload if isinstance(payload, list) else [payload]
        now = int(time.time() * 1000)
        entries = []
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("request_id"), str)
                or not item["request_id"]
                or "actual" not in item
                or isinstance(item["actual"], (list, dict))
            ):
                return error_body(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    'feedback is {"request_id": "...", "actual": VALUE} or a list of them',
                )
            actual = item["actual"]
            if self.classification is False and not _is_number(actual):
                # The regression log's actual column is float64: a text value could not be
                # written there and would cost the whole batch its place in the store.
                return error_body(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"{self.model} is a regression model: 'actual' must be a number or null, "
                    f"not {json.dumps(actual)[:40]}",
                )
            entries.append((item["request_id"], now, actual))
        for entry in entries:
            self.feedback.append(entry, 1)
        self.metrics.add("feedback_rows", len(entries))
        return _json(202, {"recorded": len(entries)})


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, float):
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return False
        return True
    return False


def _error_answer(exc: Exception) -> Result:
    """A failed prediction's answer: the request's own fault (400/4xx with its error code), or
    ours (500)."""
    if isinstance(exc, BadRequest):
        return error_body(exc.status, exc.error_code, exc.message)
    if isinstance(exc, MlopsError):
        return error_body(400, "INVALID_PARAMETER_VALUE", exc.one_line())
    return _internal(exc)


def _internal(exc: Exception) -> Result:
    return error_body(500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")


def _predict(predictor: Predictor, inputs: codecs.Inputs) -> Prediction:
    if inputs.matrix is not None:
        return predictor.predict_matrix(inputs.matrix)
    return predictor.predict_frame(inputs.frame(predictor.names))


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-ID when it may be echoed (`codecs.valid_request_id`), else a
    fresh random one."""
    given = headers.get(b"x-request-id")
    if given and len(given) <= codecs.MAX_REQUEST_ID and given.isascii():
        text = given.decode()
        if text.isprintable():
            return text
    return os.urandom(12).hex()


def _query_value(query: bytes, name: bytes) -> str | None:
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return value.decode(errors="replace")
    return None


def _label_datatype(predictor: Predictor) -> str:
    if predictor.classes is None:
        return "FP64"
    return codecs.oip_datatype(predictor.classes)


def _json(status: int, data: Any) -> Result:
    return status, JSON_TYPE, json.dumps(data).encode()


def _answer_headers(request_id: str, predictor: Predictor, arm: Arm) -> bytes:
    """The headers of a prediction: JSON, the request id, the version and the arm."""
    return b"".join(
        (
            JSON_TYPE,
            b"X-Request-ID: ",
            request_id.encode(),
            b"\r\nX-Model-Version: %d\r\n" % predictor.version,
            arm.label_header,
        )
    )
