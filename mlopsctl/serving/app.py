"""Routes: MLflow-compatible scoring, the Open Inference Protocol v2, KServe's v1 protocol,
explanations, metrics and feedback.

`App.handle(method, target, headers, body)` answers one request whose body has been read whole
(asgi.py reads it, bounded, and decides whether the call runs on the event loop or in the
prediction thread pool). It returns ``(status, headers, body)``. The served models live in
`Arm` objects whose `predictor` is replaced as a whole by the follower thread; a request reads
it once, so a swap never changes the model under a request.

Every answer to a prediction request carries its request id (X-Request-ID) and is counted in
the request metrics under the arm that answered (or would have: a request whose body cannot be
read is routed by its request id, as any request without a key is), errors included: a bad
request is a 4xx with ``{error_code, message}``, and an exception nobody foresaw a 500 in the
same shape.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import __version__
from mlopsctl.errors import MlopsError
from mlopsctl.serving import codecs
from mlopsctl.serving.answers import JSON, TEXT, Headers, Result, error_body
from mlopsctl.serving.arms import assign, cumulative
from mlopsctl.serving.codecs import BadRequest
from mlopsctl.serving.decode import Decoded, OipMeta, decode, signature_of
from mlopsctl.serving.logs import Contributions, contrib_sampled

if TYPE_CHECKING:
    from mlopsctl.serving.logs import BufferedWriter
    from mlopsctl.serving.metrics import Metrics
    from mlopsctl.serving.predictor import Prediction, Predictor

METRICS_TYPE = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
IGNORED_HEADER = b"x-ignored-columns"
# How many ignored column names the X-Ignored-Columns header lists before "...".
_IGNORED_SHOWN = 20
_NOTE_EVERY_S = 60.0

Post = Callable[[dict[bytes, bytes], bytes, bytes], Result]


class Arm:
    """One served alias or version. ``predictor`` is replaced whole on an alias move; ``etag``
    is the alias record's version the follower last saw."""

    def __init__(self, label: str, alias: str | None, predictor: Predictor) -> None:
        self.label = label
        self.alias = alias
        self.predictor = predictor
        self.etag: str | None = None
        self.label_header = (b"x-arm", label.encode())


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


_FIXED_ROUTES = {
    b"/ping": "/ping",
    b"/health": "/health",
    b"/version": "/version",
    b"/metrics": "/metrics",
    b"/invocations": "/invocations",
    b"/feedback": "/feedback",
    b"/explain": "/explain",
    b"/v2": "/v2",
    b"/v2/health/live": "/v2/health/live",
    b"/v2/health/ready": "/v2/health/ready",
    b"/v1/models": "/v1/models",
}


def route_of(path: bytes) -> str:
    """The route label of a request path, for metrics: a fixed path, or a pattern (the model
    name and version left out), or ``other``."""
    fixed = _FIXED_ROUTES.get(path)
    if fixed is not None:
        return fixed
    if path.startswith(b"/v2/models/"):
        if path.endswith(b"/infer"):
            return "/v2/models/{model}/infer"
        if path.endswith(b"/ready"):
            return "/v2/models/{model}/ready"
        return "/v2/models/{model}"
    if path.startswith(b"/v1/models/"):
        if path.endswith(b":predict"):
            return "/v1/models/{model}:predict"
        if path.endswith(b":explain"):
            return "/v1/models/{model}:explain"
        return "/v1/models/{model}"
    return "other"


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
        log_contributions: float = 0.0,
        classification: bool | None = None,
        strict: bool = False,
        max_rows: int = 100_000,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        self.router = router
        self.metrics = metrics
        self.metrics_dir = metrics_dir
        self.key = key
        self.log = log
        self.feedback = feedback
        # Requests answered with an error, for the error share per arm (logs.error_table).
        self.errors: BufferedWriter | None = None
        self.log_sample = log_sample
        # Share of logged requests whose rows' contributions are logged too (logs.Contributions).
        self.log_contributions = log_contributions
        # Per served predictor: when its model can be explained, the one (empty) Contributions
        # its unsampled requests share (its names are the model's features); else None.
        self._explainable: dict[int, tuple[Predictor, Contributions | None]] = {}
        # The task the feedback log's ``actual`` column is typed for (None: not known).
        self.classification = classification
        # Refuse extra columns (400) instead of ignoring them (MLflow's default).
        self.strict = strict
        self.max_rows = max_rows
        self.say = say or (lambda _text: None)
        self.ready = True
        self._last_note = -1e9
        self._get: dict[bytes, Callable[[dict[bytes, bytes]], Result]] = {
            b"/ping": self._ping,
            b"/health": self._ping,
            b"/version": self._version,
            b"/metrics": self._metrics,
            b"/v2": self._v2,
            b"/v2/health/live": self._live,
            b"/v2/health/ready": self._ready,
            b"/v1/models": self._v1_models,
        }
        self._post: dict[bytes, Post] = {
            b"/invocations": self._invocations,
            b"/feedback": self._feedback,
            b"/explain": self._explain_route,
        }

    # -- dispatch -------------------------------------------------------------------------
    def handle(
        self,
        method: bytes,
        target: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        decoded: Decoded | BadRequest | None = None,
    ) -> Result:
        """Answer one request; ``decoded`` is its body as decoded by a helper process (or the
        refusal it found), for the prediction routes."""
        try:
            return self._dispatch(method, target, headers, body, decoded)
        except Exception as exc:  # noqa: BLE001 - a route's bug must still answer in shape
            # The prediction routes answer their own failures; this is the net for the rest.
            request_id = _request_id(headers)
            status, extra, payload = _internal(exc)
            return status, [*extra, (b"x-request-id", request_id.encode())], payload

    def _dispatch(
        self,
        method: bytes,
        target: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        decoded: Decoded | BadRequest | None,
    ) -> Result:
        path, _, query = target.partition(b"?")
        if method == b"POST":
            if path == b"/invocations":
                return self._invocations(headers, body, query, decoded)
            if path == b"/explain":
                return self._explain_route(headers, body, query, decoded)
            post = self._post.get(path)
            if post is not None:
                return post(headers, body, query)
            if path.startswith(b"/v2/models/") and path.endswith(b"/infer"):
                return self._infer(path, headers, body, decoded)
            if path.startswith(b"/v1/models/") and path.endswith((b":predict", b":explain")):
                return self._v1_predict(path, headers, body, decoded)
        elif method in (b"GET", b"HEAD"):
            get = self._get.get(path)
            if get is not None:
                return get(headers)
            if path.startswith(b"/v2/models/"):
                return self._model_info(path)
            if path.startswith(b"/v1/models/") and b":" not in path:
                return self._v1_model(path)
        known = (
            path in self._get
            or path in self._post
            or path.startswith((b"/v2/models/", b"/v1/models/"))
        )
        if known:
            allowed = (
                "POST"
                if (path in self._post or path.endswith((b"/infer", b":predict", b":explain")))
                else "GET"
            )
            status, extra, payload = error_body(
                405,
                "METHOD_NOT_ALLOWED",
                f"{method.decode(errors='replace')} is not allowed on "
                f"{path.decode(errors='replace')}; use {allowed}",
            )
            return status, [*extra, (b"allow", allowed.encode())], payload
        return error_body(
            404,
            "ENDPOINT_NOT_FOUND",
            f"no route {path.decode(errors='replace')}; see /invocations, /v2/models/"
            f"{self.model}/infer, /v1/models/{self.model}:predict, /ping, /metrics",
        )

    # -- simple routes --------------------------------------------------------------------
    def _ping(self, headers: dict[bytes, bytes]) -> Result:
        return 200, [TEXT], b"\n"

    def _version(self, headers: dict[bytes, bytes]) -> Result:
        versions = [{"arm": a.label, "version": a.predictor.version} for a in self.router.arms]
        return _json(200, {"mlopsctl": __version__, "model": self.model, "arms": versions})

    def _metrics(self, headers: dict[bytes, bytes]) -> Result:
        from mlopsctl.serving.metrics import render

        self.metrics.check_folder()
        self.metrics.update_process()
        self.metrics.flush()  # this worker's counts as of now; the others' within WRITE_EVERY_S
        return 200, [METRICS_TYPE], render(self.metrics_dir, self.model)

    def _v2(self, headers: dict[bytes, bytes]) -> Result:
        return _json(
            200, {"name": "mlopsctl", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    def _live(self, headers: dict[bytes, bytes]) -> Result:
        return _json(200, {"live": True})

    def _ready(self, headers: dict[bytes, bytes]) -> Result:
        return _json(200 if self.ready else 503, {"ready": self.ready})

    def _v1_models(self, headers: dict[bytes, bytes]) -> Result:
        return _json(200, {"models": [self.model]})

    def _v1_model(self, path: bytes) -> Result:
        name = path[len(b"/v1/models/") :].decode(errors="replace")
        if name != self.model:
            return self._unknown_model(name)
        return _json(200, {"name": name, "ready": self.ready})

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

    def _decode(
        self,
        kind: str,
        headers: dict[bytes, bytes],
        body: bytes,
        features: codecs.Features,
        given: Decoded | BadRequest | None,
    ) -> Decoded:
        """The body as inputs for ``features``: what a helper process decoded already when it
        fits these features, else decoded here. Raises `BadRequest`."""
        if isinstance(given, BadRequest):
            raise given
        if given is not None and given.signature.same_features(features):
            return given
        return decode(
            kind,
            headers.get(b"content-type", b"").partition(b";")[0].strip().lower(),
            headers.get(b"inference-header-content-length"),
            body,
            features,
            self.key,
            self.strict,
            self.max_rows,
        )

    def decode_plan(self, path: bytes, headers: dict[bytes, bytes]) -> tuple[Any, ...] | None:
        """The arguments of `decode.decode` for a prediction request, for a helper process to
        decode its (large) body; None for other routes."""
        if path in (b"/invocations", b"/explain"):
            kind = "mlflow"
        elif path.startswith(b"/v1/models/") and path.endswith((b":predict", b":explain")):
            kind = "v1"
        elif path.startswith(b"/v2/models/") and path.endswith(b"/infer"):
            kind = "oip"
        else:
            return None
        features: codecs.Features = self.router.weighted[0].predictor
        parts = path.split(b"/")
        if kind == "oip" and len(parts) == 7 and parts[4] == b"versions":
            arm = self._arm_for_version(parts[5].decode(errors="replace"))
            if arm is None:
                return None
            features = arm.predictor
        return (
            kind,
            headers.get(b"content-type", b"").partition(b";")[0].strip().lower(),
            headers.get(b"inference-header-content-length"),
            None,  # the body, filled in by the caller
            signature_of(features),
            self.key,
            self.strict,
            self.max_rows,
        )

    def _note_ignored(self, inputs: codecs.Inputs, predictor: Predictor) -> None:
        if not inputs.ignored:
            return
        self.metrics.add("extra_columns")
        now = time.monotonic()
        if now - self._last_note >= _NOTE_EVERY_S:
            self._last_note = now
            self.say(
                f"note: ignored column(s) {', '.join(inputs.ignored[:_IGNORED_SHOWN])} that "
                f"{self.model}:{predictor.version} does not take (as MLflow does; "
                "--strict refuses them); said at most once a minute"
            )

    def _routed(
        self,
        kind: str,
        headers: dict[bytes, bytes],
        body: bytes,
        request_id: str,
        given: Decoded | BadRequest | None,
    ) -> tuple[Arm, Decoded]:
        """Decode, choose the arm (by the key column's value, else the request id) and make
        sure the inputs fit that arm's model."""
        first = self.router.weighted[0].predictor
        decoded = self._decode(kind, headers, body, first, given)
        arm = self._choose(decoded.key_value, request_id)
        if arm.predictor is not first:
            decoded = self._decode(kind, headers, body, arm.predictor, decoded)
        self._note_ignored(decoded.inputs, arm.predictor)
        return arm, decoded

    def _invocations(
        self,
        headers: dict[bytes, bytes],
        body: bytes,
        query: bytes,
        given: Decoded | BadRequest | None = None,
    ) -> Result:
        start = time.perf_counter()
        request_id = _request_id(headers)
        arm = self._choose(None, request_id)
        try:
            arm, decoded = self._routed("mlflow", headers, body, request_id, given)
            predictor = arm.predictor
            inputs = decoded.inputs
            prediction = _predict(predictor, inputs)
            output = decoded.params.get("output") or _query_value(query, b"output")
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
            return self._failed(arm, "/invocations", start, request_id, _error_answer(exc))
        elapsed = time.perf_counter() - start
        route, key = "/invocations", decoded.key_value
        self._record(request_id, arm, predictor, inputs, prediction, elapsed, route, key)
        return 200, _answer_headers(request_id, predictor, arm, inputs), payload

    def _v1_predict(
        self,
        path: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        given: Decoded | BadRequest | None = None,
    ) -> Result:
        """KServe v1: ``{"instances": [...]}`` (rows as lists in signature order, or as objects)
        to ``{"predictions": [...]}``; ``:explain`` adds ``explanations``."""
        start = time.perf_counter()
        explain = path.endswith(b":explain")
        route = "/v1/models/{model}:explain" if explain else "/v1/models/{model}:predict"
        name = path[len(b"/v1/models/") : path.rindex(b":")].decode(errors="replace")
        if name != self.model:
            return self._unknown_model(name)
        request_id = _request_id(headers)
        arm = self._choose(None, request_id)
        try:
            arm, decoded = self._routed("v1", headers, body, request_id, given)
            predictor = arm.predictor
            inputs = decoded.inputs
            prediction = _predict(predictor, inputs)
            answer: dict[str, Any] = {"predictions": prediction.labels.tolist()}
            values = None
            if explain:
                values, names = _contributions(predictor, inputs)
                answer["explanations"] = _explanation_rows(values, names)
            data = json.dumps(answer).encode()
        except Exception as exc:  # noqa: BLE001 - every failure is answered, counted, with the id
            return self._failed(arm, route, start, request_id, _error_answer(exc))
        elapsed = time.perf_counter() - start
        self._record(
            request_id,
            arm,
            predictor,
            inputs,
            prediction,
            elapsed,
            route,
            decoded.key_value,
            values,
        )
        return 200, _answer_headers(request_id, predictor, arm, inputs), data

    def _explain_route(
        self,
        headers: dict[bytes, bytes],
        body: bytes,
        query: bytes,
        given: Decoded | BadRequest | None = None,
    ) -> Result:
        """``POST /explain``: an MLflow scoring body; the predictions and, per row, each
        feature's contribution (and the bias)."""
        start = time.perf_counter()
        request_id = _request_id(headers)
        arm = self._choose(None, request_id)
        try:
            arm, decoded = self._routed("mlflow", headers, body, request_id, given)
            predictor = arm.predictor
            inputs = decoded.inputs
            prediction = _predict(predictor, inputs)
            values, names = _contributions(predictor, inputs)
            payload = json.dumps(
                {
                    "predictions": prediction.labels.tolist(),
                    "explanations": _explanation_rows(values, names),
                }
            ).encode()
        except Exception as exc:  # noqa: BLE001 - every failure is answered, counted, with the id
            return self._failed(arm, "/explain", start, request_id, _error_answer(exc))
        elapsed = time.perf_counter() - start
        route = "/explain"
        key = decoded.key_value
        self._record(request_id, arm, predictor, inputs, prediction, elapsed, route, key, values)
        return 200, _answer_headers(request_id, predictor, arm, inputs), payload

    def _failed(
        self, arm: Arm, route: str, start: float, request_id: str, result: Result
    ) -> Result:
        elapsed = time.perf_counter() - start
        status, extra, payload = result
        self.metrics.observe(str(arm.predictor.version), arm.label, route, status, elapsed)
        errors = self.errors
        if errors is not None and (self.log_sample >= 1.0 or random.random() < self.log_sample):
            version, ms = arm.predictor.version, elapsed * 1000.0
            now = int(time.time() * 1000)
            errors.append((request_id, now, version, arm.label, ms, status, route), 1)
        return status, [*extra, (b"x-request-id", request_id.encode())], payload

    def _record(
        self,
        request_id: str,
        arm: Arm,
        predictor: Predictor,
        inputs: codecs.Inputs,
        prediction: Prediction,
        elapsed: float,
        route: str,
        key_value: str | None = None,
        contributions: Any = None,
    ) -> None:
        """Count the answered request and log it (when sampled); ``contributions``: the rows'
        contributions when the request asked for them (logged whatever --log-contributions)."""
        self.metrics.observe(str(predictor.version), arm.label, route, 200, elapsed)
        log = self.log
        if log is None or (self.log_sample < 1.0 and random.random() >= self.log_sample):
            return
        # Numeric rows are held as their bytes: an array kept until the log stages it would
        # cost each request an allocation numpy's cache of small arrays otherwise saves.
        matrix = inputs.matrix
        features = matrix.tobytes() if matrix is not None else inputs.columns
        contrib = None
        if self.log_contributions > 0.0 or contributions is not None:
            unsampled = self._unsampled(predictor)
            if unsampled is None:
                pass
            elif contributions is not None:
                contrib = Contributions(unsampled.names, values=contributions)
            elif contrib_sampled(request_id, self.log_contributions):
                # Explained by the log writer, in a batch, off the request path.
                contrib = Contributions(unsampled.names, model=predictor.model, inputs=inputs)
            elif self.log_contributions > 0.0:
                contrib = unsampled  # not sampled: null columns
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
                predictor.outliers,
                # The sticky key's value that chose the arm, logged under the key's name (the
                # unit of an A/B analysis, mlopsctl/release/ab.py).
                (self.key, key_value) if self.key and key_value is not None else None,
                contrib,
            ),
            inputs.rows,
            heavy=contrib is not None and contrib.model is not None,
        )

    def contribution_names(self, predictor: Predictor) -> tuple[str, ...] | None:
        """The features of ``predictor``'s model when it can be explained (the log's
        ``contrib.<name>`` columns), else None; worked out once per predictor (the server
        asks for every served one at start-up, so no request pays for the first time)."""
        unsampled = self._unsampled(predictor)
        return unsampled.names if unsampled is not None else None

    def _unsampled(self, predictor: Predictor) -> Contributions | None:
        known = self._explainable.get(id(predictor))
        if known is not None and known[0] is predictor:
            return known[1]
        unsampled: Contributions | None
        try:
            from mlopsctl.models.explain import method_of

            method_of(predictor.model)
            unsampled = Contributions(tuple(f.name for f in predictor.features))
        except Exception:  # noqa: BLE001 - not explainable: its rows are logged without them
            unsampled = None
        if len(self._explainable) > 64:  # predictors swapped out long ago
            self._explainable.clear()
        self._explainable[id(predictor)] = (predictor, unsampled)
        return unsampled

    def _infer(
        self,
        path: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        given: Decoded | BadRequest | None = None,
    ) -> Result:
        start = time.perf_counter()
        route = "/v2/models/{model}/infer"
        parts = path.decode(errors="replace").split("/")[3:-1]  # name[/versions/v]
        name = parts[0] if parts else ""
        version = parts[2] if len(parts) == 3 and parts[1] == "versions" else None
        if name != self.model or (len(parts) not in (1, 3)):
            return self._unknown_model(name)
        request_id = _request_id(headers)
        arm = self._choose(None, request_id)
        if version is not None:
            found = self._arm_for_version(version)
            if found is None:
                return self._unknown_version(version)
            arm = found
        try:
            decoded = self._decode("oip", headers, body, arm.predictor, given)
            meta = decoded.oip or OipMeta(None, None, {})
            if meta.id is not None and b"x-request-id" not in headers:
                request_id = meta.id
            if version is None:
                arm = self._choose(decoded.key_value, request_id)
                decoded = self._decode("oip", headers, body, arm.predictor, decoded)
            self._note_ignored(decoded.inputs, arm.predictor)
            predictor = arm.predictor
            inputs = decoded.inputs
            prediction = _predict(predictor, inputs)
            contributions = None
            if _truthy(meta.parameters.get("explain")):
                contributions = _contributions(predictor, inputs)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, counted, with the id
            return self._failed(arm, route, start, request_id, _error_answer(exc))
        try:
            return self._infer_answer(
                meta,
                request_id,
                arm,
                predictor,
                inputs,
                prediction,
                start,
                contributions,
                decoded.key_value,
            )
        except Exception as exc:  # noqa: BLE001 - answered 500, counted, with the request id
            return self._failed(arm, route, start, request_id, _internal(exc))

    def _infer_answer(
        self,
        request: OipMeta,
        request_id: str,
        arm: Arm,
        predictor: Predictor,
        inputs: codecs.Inputs,
        prediction: Prediction,
        start: float,
        contributions: tuple[Any, list[str]] | None,
        key_value: str | None = None,
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
        if contributions is not None:
            values, names = contributions
            outputs.append(
                {
                    "name": "contributions",
                    "shape": list(values.shape),
                    "datatype": "FP64",
                    "data": values.ravel().tolist(),
                    "parameters": {"names": names},
                }
            )
        if request.outputs:
            outputs = [o for o in outputs if o["name"] in request.outputs]
        elapsed = time.perf_counter() - start
        route = "/v2/models/{model}/infer"
        values = contributions[0] if contributions is not None else None
        self._record(
            request_id, arm, predictor, inputs, prediction, elapsed, route, key_value, values
        )
        payload = json.dumps(
            {
                "model_name": self.model,
                "model_version": str(predictor.version),
                "id": request_id,
                "parameters": {"arm": arm.label},
                "outputs": outputs,
            }
        ).encode()
        return 200, _answer_headers(request_id, predictor, arm, inputs), payload

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
                    'feedback is {"request_id": "...", "row": N (optional), "actual": VALUE} '
                    "or a list of them",
                )
            row = item.get("row")
            if row is not None and (
                not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < 2**31
            ):
                return error_body(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    "'row' is the row's index within its request: a whole number from 0",
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
            entries.append((item["request_id"], now, actual, row))
        for entry in entries:
            self.feedback.append(entry, 1)
        self.metrics.add("feedback_rows", len(entries))
        return _json(202, {"recorded": len(entries)})


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "yes"))


def _contributions(predictor: Predictor, inputs: codecs.Inputs) -> tuple[Any, list[str]]:
    """Per-row feature contributions (bias last), from mlopsctl.models.explain."""
    try:
        from mlopsctl.models.explain import contributions
    except ImportError:
        raise BadRequest(
            501, "NOT_IMPLEMENTED", "explanations are not available in this mlopsctl"
        ) from None
    try:
        features = [f.name for f in predictor.features]  # filled in by a lookup, if any
        values, names = contributions(predictor.model, inputs.frame(features))
    except MlopsError as exc:
        raise BadRequest(400, "INVALID_PARAMETER_VALUE", exc.one_line()) from None
    return values, list(names)


def _explanation_rows(values: Any, names: list[str]) -> list[dict[str, float]]:
    return [dict(zip(names, map(float, row), strict=True)) for row in values]


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
    if predictor.lookup is not None:  # fills `inputs` with the looked-up features, then predicts
        prediction: Prediction = predictor.lookup.predict(predictor, inputs)
        return prediction
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
    try:
        return next(_fresh_ids)
    except StopIteration:
        return _refill_ids()


# Fresh request ids (96 random bits each), drawn from the OS 256 at a time: one getrandom call
# per 256 requests instead of one each. next() on the list's iterator is one step under the
# interpreter lock, so threads never get the same id; a forked child starts a new block.
_IDS_AT_ONCE = 256
_fresh_ids: Iterator[str] = iter(())


def _refill_ids() -> str:
    global _fresh_ids
    block = os.urandom(12 * _IDS_AT_ONCE).hex()
    ids = [block[i : i + 24] for i in range(0, len(block), 24)]
    _fresh_ids = iter(ids[1:])
    return ids[0]


def _forget_ids() -> None:
    global _fresh_ids
    _fresh_ids = iter(())


os.register_at_fork(after_in_child=_forget_ids)


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
    return status, [JSON], json.dumps(data).encode()


def _answer_headers(
    request_id: str, predictor: Predictor, arm: Arm, inputs: codecs.Inputs
) -> Headers:
    """The headers of a prediction: JSON, the request id, the version and the arm, and the
    columns that were ignored, if any."""
    headers = [
        JSON,
        (b"x-request-id", request_id.encode()),
        (b"x-model-version", b"%d" % predictor.version),
        arm.label_header,
    ]
    if inputs.ignored:
        shown = ",".join(inputs.ignored[:_IGNORED_SHOWN])
        if len(inputs.ignored) > _IGNORED_SHOWN:
            shown += ",..."
        safe = "".join(c if " " <= c <= "~" else "?" for c in shown)
        headers.append((IGNORED_HEADER, safe.encode()))
    return headers
