"""`mlopsctl serve` as a real process on a free loopback port, serving the quickstart model
(trained once per session): every route of both protocols, bad inputs with their status codes
and error bodies, an Open Inference Protocol client library, and the prediction log in the
store after a graceful stop.

The helpers here (`ServerProcess`, `start_server`, `served_project`) are shared by the other
test_serving_* modules."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.func.test_models import MODEL, feature_rows, quickstart_project

READY_TIMEOUT_S = 90.0


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, payload = self.request(method, path, body, **kw)
        return status, json.loads(payload) if payload.strip() else None

    def metric(self, name: str, **labels: str) -> float:
        """The value of one series of /metrics (summed over the series matching `labels`)."""
        _, _, text = self.request("GET", "/metrics")
        total = 0.0
        found = False
        for line in text.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
                found = True
        assert found, f"no series {name} {labels} in /metrics"
        return total

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def output(self) -> str:
        return "\n".join(self.lines)

    def saw(self, *parts: str, timeout: float = 15.0) -> bool:
        """Whether one line of the server's stderr holds every one of `parts`, waiting up to
        `timeout` seconds for it: a line is written after the response it is about."""
        deadline = time.monotonic() + timeout
        while True:
            if any(all(p in line for p in parts) for line in list(self.lines)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def server_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
    env["XDG_CACHE_HOME"] = str(root.parent / "cache")
    env.update(extra)
    return env


def start_server(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    port: int = 0,
    open_files: int | None = None,
) -> ServerProcess:
    """Start `mlopsctl serve ARGS --port PORT` (default 0: a free one) in `root` and wait for its
    ready line; `open_files` lowers its open-file limit (`ulimit -n`)."""

    def limit() -> None:
        import resource

        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    proc = subprocess.Popen(
        [sys.executable, "-m", "mlopsctl", "serve", *args, "--port", str(port)],
        cwd=root,
        env=env or server_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit if open_files is not None else None,
    )
    lines: list[str] = []
    ready = threading.Event()
    port_box: list[int] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith("serving ") and " on http://" in line and not port_box:
                port_box.append(int(line.rsplit(":", 1)[1]))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(READY_TIMEOUT_S) or not port_box:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("server did not get ready:\n" + "\n".join(lines))
    return ServerProcess(proc, port_box[0], lines)


@pytest.fixture
def served_project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    return root


@pytest.fixture
def server(served_project: Path) -> Iterator[ServerProcess]:
    running = start_server(served_project, f"{MODEL}:1", "--log-interval", "60")
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait(timeout=10)


def rows(n: int = 3) -> Any:
    return feature_rows(n)


def split_body(frame: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}


def read_logs(store_root: Path, kind: str = "predictions") -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((store_root / "logs" / kind / MODEL).rglob("*.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files])


# -- MLflow protocol -----------------------------------------------------------------------------
def test_mlflow_formats_give_the_models_predictions(
    server: ServerProcess, served_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.registry import cached_model_dir, get_version
    from mlopsctl.store.local import LocalStore

    frame = rows(4)
    monkeypatch.setenv("XDG_CACHE_HOME", str(served_project.parent / "cache"))
    with LocalStore(served_project / ".mlops") as store:
        model = load_model_dir(cached_model_dir(store, get_version(store, MODEL, 1)))
    expected = model.predict(frame).tolist()
    proba = model.predict_proba(frame).tolist()

    bodies = [
        split_body(frame),
        {"dataframe_records": frame.to_dict("records")},
        {"instances": frame.to_dict("records")},
        {"instances": frame.values.tolist()},
        {"inputs": {c: frame[c].tolist() for c in frame.columns}},
        {"inputs": frame.to_dict("records")},
        # columns in another order are matched by name
        {
            "dataframe_split": {
                "columns": list(frame.columns[::-1]),
                "data": frame[frame.columns[::-1]].values.tolist(),
            }
        },
    ]
    for body in bodies:
        status, headers, payload = server.request("POST", "/invocations", body)
        assert status == 200, payload
        assert json.loads(payload) == {"predictions": expected}
        assert headers["x-model-version"] == "1" and headers["x-arm"] == "1"
        assert headers["content-type"] == "application/json"

    csv_text = frame.to_csv(index=False)
    status, _, payload = server.request(
        "POST", "/invocations", csv_text, {"Content-Type": "text/csv"}
    )
    assert status == 200 and json.loads(payload) == {"predictions": expected}

    status, body = server.json(
        "POST", "/invocations", {**split_body(frame), "params": {"output": "proba"}}
    )
    assert status == 200 and body["predictions"] == proba
    status, body = server.json("POST", "/invocations?output=proba", split_body(frame))
    assert status == 200 and body["predictions"] == proba


def test_request_id_is_honoured_and_returned(server: ServerProcess) -> None:
    status, headers, _ = server.request(
        "POST", "/invocations", split_body(rows(1)), {"X-Request-ID": "order-42"}
    )
    assert status == 200 and headers["x-request-id"] == "order-42"
    status, headers, _ = server.request("POST", "/invocations", split_body(rows(1)))
    assert status == 200 and len(headers["x-request-id"]) >= 16


def test_health_version_and_metrics_routes(server: ServerProcess) -> None:
    for path in ("/ping", "/health"):
        status, _, _ = server.request("GET", path)
        assert status == 200
    status, headers, body = server.request("HEAD", "/v2/health/live")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, version = server.json("GET", "/version")
    assert (
        status == 200
        and version["model"] == MODEL
        and version["arms"] == [{"arm": "1", "version": 1}]
    )
    server.request("POST", "/invocations", split_body(rows(2)))
    server.request("POST", "/invocations", {"dataframe_records": [{"nope": 1}]})
    status, headers, text = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE mlopsctl_request_latency_seconds histogram" in text.decode()
    assert server.metric("mlopsctl_requests_total", version="1", arm="1") == 2
    assert server.metric("mlopsctl_request_errors_total", version="1", arm="1") == 1
    assert server.metric("mlopsctl_request_latency_seconds_count", version="1") == 2
    assert server.metric("mlopsctl_request_latency_seconds_bucket", version="1", le="+Inf") == 2
    assert server.metric("mlopsctl_log_dropped_rows_total") == 0


# -- Open Inference Protocol v2 ------------------------------------------------------------------
def test_oip_routes(server: ServerProcess) -> None:
    status, body = server.json("GET", "/v2")
    assert status == 200 and body["name"] == "mlopsctl"
    assert server.json("GET", "/v2/health/live") == (200, {"live": True})
    assert server.json("GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = server.json("GET", f"/v2/models/{MODEL}")
    assert status == 200 and meta["name"] == MODEL and meta["versions"] == ["1"]
    assert len(meta["inputs"]) == 30 and meta["inputs"][0] == {
        "name": "mean radius",
        "datatype": "FP64",
        "shape": [-1],
    }
    assert [o["name"] for o in meta["outputs"]] == ["predict", "proba"]
    assert server.json("GET", f"/v2/models/{MODEL}/ready") == (200, {"name": MODEL, "ready": True})
    assert server.json("GET", f"/v2/models/{MODEL}/versions/1/ready")[0] == 200
    assert server.json("GET", f"/v2/models/{MODEL}/versions/1")[0] == 200
    assert server.json("GET", f"/v2/models/{MODEL}/versions/9")[0] == 404
    status, body = server.json("GET", "/v2/models/other/ready")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    frame = rows(3)
    one_tensor = {
        "id": "r-1",
        "inputs": [
            {"name": "input-0", "shape": [3, 30], "datatype": "FP64", "data": frame.values.tolist()}
        ],
    }
    per_feature = {
        "inputs": [
            {"name": c, "shape": [3], "datatype": "FP64", "data": frame[c].tolist()}
            for c in frame.columns
        ]
    }
    results = []
    for path in (f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer"):
        for body in (one_tensor, per_feature):
            status, out = server.json("POST", path, body)
            assert status == 200, out
            assert out["model_name"] == MODEL and out["model_version"] == "1"
            results.append(out["outputs"])
    assert all(r == results[0] for r in results)
    predict, proba = results[0]
    assert (
        predict["name"] == "predict" and predict["shape"] == [3] and predict["datatype"] == "INT64"
    )
    assert proba["name"] == "proba" and proba["shape"] == [3, 2] and len(proba["data"]) == 6
    status, out = server.json("POST", f"/v2/models/{MODEL}/infer", one_tensor)
    assert out["id"] == "r-1"
    status, out = server.json("POST", f"/v2/models/{MODEL}/versions/7/infer", one_tensor)
    assert status == 404


def test_an_open_inference_protocol_client_library_works_unchanged(server: ServerProcess) -> None:
    import numpy as np
    import tritonclient.http as triton

    frame = rows(5)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL)
        meta = client.get_model_metadata(MODEL)
        assert meta["name"] == MODEL
        results = []
        for binary in (False, True):
            tensor = triton.InferInput("input-0", [5, 30], "FP64")
            tensor.set_data_from_numpy(frame.to_numpy(dtype="float64"), binary_data=binary)
            result = client.infer(
                MODEL, [tensor], outputs=[triton.InferRequestedOutput("predict", binary_data=False)]
            )
            results.append(result.as_numpy("predict"))
        # one tensor per feature, FP32
        inputs = []
        for column in frame.columns:
            tensor = triton.InferInput(column, [5], "FP64")
            tensor.set_data_from_numpy(frame[column].to_numpy(dtype="float64"), binary_data=False)
            inputs.append(tensor)
        result = client.infer(MODEL, inputs)
        results.append(result.as_numpy("predict"))
        assert result.as_numpy("proba").shape == (5, 2)
        assert result.get_response()["model_version"] == "1"
    finally:
        client.close()
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


# -- bad requests --------------------------------------------------------------------------------
def test_bad_inputs_get_4xx_with_error_bodies(server: ServerProcess) -> None:
    frame = rows(2)
    records = frame.to_dict("records")
    missing = [{k: v for k, v in r.items() if k != "mean radius"} for r in records]
    mistyped = [{**r, "mean area": "big"} for r in records]
    cases: list[tuple[Any, int, str, list[str]]] = [
        (
            {"dataframe_records": missing},
            400,
            "INVALID_PARAMETER_VALUE",
            ["missing", "mean radius"],
        ),
        ({"dataframe_records": mistyped}, 400, "INVALID_PARAMETER_VALUE", ["mean area", "numbers"]),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
            400,
            "INVALID_PARAMETER_VALUE",
            ["missing"],
        ),
        ({"instances": [[1, 2, 3]]}, 400, "INVALID_PARAMETER_VALUE", ["30 values"]),
        ({"something": []}, 400, "INVALID_PARAMETER_VALUE", ["dataframe_split"]),
        ({"dataframe_records": []}, 400, "INVALID_PARAMETER_VALUE", ["no rows"]),
    ]
    for body, status_code, code, words in cases:
        status, payload = server.json("POST", "/invocations", body)
        assert status == status_code, (body, payload)
        assert payload["error_code"] == code
        assert all(w in payload["message"] for w in words), payload["message"]

    status, _, payload = server.request(
        "POST", "/invocations", b"{not json", {"Content-Type": "application/json"}
    )
    assert status == 400 and json.loads(payload)["error_code"] == "MALFORMED_REQUEST"
    status, _, payload = server.request(
        "POST", "/invocations", b"<xml/>", {"Content-Type": "application/xml"}
    )
    assert status == 415 and json.loads(payload)["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    status, _, payload = server.request("GET", "/nowhere")
    assert status == 404 and json.loads(payload)["error_code"] == "ENDPOINT_NOT_FOUND"
    status, headers, payload = server.request("GET", "/invocations")
    assert (
        status == 405
        and headers["allow"] == "POST"
        and json.loads(payload)["error_code"] == "METHOD_NOT_ALLOWED"
    )
    status, headers, _ = server.request("POST", "/ping", b"")
    assert status == 405 and headers["allow"] == "GET"

    # OIP: a numeric feature sent as BYTES, a wrong shape
    bad_type = {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "BYTES", "data": ["x"]} for c in frame.columns
        ]
    }
    status, payload = server.json("POST", f"/v2/models/{MODEL}/infer", bad_type)
    assert status == 400 and "numeric" in payload["message"] and payload["error"]
    bad_shape = {
        "inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": [1.0] * 59}]
    }
    status, payload = server.json("POST", f"/v2/models/{MODEL}/infer", bad_shape)
    assert status == 400 and "shape" in payload["message"]


def test_malformed_requests_are_counted_400s_with_a_request_id(server: ServerProcess) -> None:
    frame = rows(1)
    tensor = {"name": "x", "shape": [1, 30], "datatype": "FP64", "data": frame.values.tolist()}
    raw = frame.to_numpy(dtype="<f8").tobytes()
    head = json.dumps(
        {"inputs": [{**tensor, "data": None, "parameters": {"binary_data_size": "abc"}}]}
    ).encode()
    infer = f"/v2/models/{MODEL}/infer"
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        # an id that would end the X-Request-ID header line and add one of its own
        (
            infer,
            json.dumps({"id": "a\r\nSet-Cookie: s=1", "inputs": [tensor]}).encode(),
            {"Content-Type": "application/json"},
        ),
        (infer, head + raw, {"Inference-Header-Content-Length": str(len(head))}),
        (
            infer,
            json.dumps({"inputs": [{**tensor, "parameters": ["binary_data_size", 8]}]}).encode(),
            {"Content-Type": "application/json"},
        ),
        (
            "/invocations",
            b'{"instances": [[1' + b"0" * 400 + b"]]}",
            {"Content-Type": "application/json"},
        ),
    ]
    assert server.request("POST", "/invocations", split_body(frame))[0] == 200
    before = server.metric("mlopsctl_request_errors_total")
    for path, body, headers in cases:
        status, answer_headers, payload = server.request("POST", path, body, headers)
        assert status == 400, (body[:80], payload)
        answer = json.loads(payload)
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE" and answer["message"]
        assert "set-cookie" not in answer_headers
        assert len(answer_headers["x-request-id"]) >= 16
    assert server.metric("mlopsctl_request_errors_total") == before + len(cases)


def test_an_unexpected_error_is_a_counted_500_with_the_request_id(
    served_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No real request makes the fast path raise; the fault is injected to see the answer."""
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.registry import cached_model_dir, get_version
    from mlopsctl.serving.app import App, Arm, make_router
    from mlopsctl.serving.metrics import Metrics, render
    from mlopsctl.serving.predictor import Predictor
    from mlopsctl.store.local import LocalStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(served_project.parent / "cache"))
    with LocalStore(served_project / ".mlops") as store:
        folder = cached_model_dir(store, get_version(store, MODEL, 1))
    predictor = Predictor(load_model_dir(folder), MODEL, 1)

    def broken(matrix: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(predictor, "predict_matrix", broken)
    metrics = Metrics(tmp_path / "metrics", 0, MODEL, background=False)
    try:
        app = App(
            MODEL, make_router([Arm("1", None, predictor)], [1.0]), metrics, tmp_path / "metrics"
        )
        body = json.dumps(split_body(rows(1))).encode()
        for path in (b"/invocations", f"/v2/models/{MODEL}/infer".encode()):
            payload = (
                body
                if path == b"/invocations"
                else json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "x",
                                "shape": [1, 30],
                                "datatype": "FP64",
                                "data": rows(1).values.tolist(),
                            }
                        ]
                    }
                ).encode()
            )
            status, extra, answer = app.handle(
                b"POST",
                path,
                {b"content-type": b"application/json", b"x-request-id": b"boom-1"},
                payload,
            )
            assert status == 500 and json.loads(answer)["error_code"] == "INTERNAL_ERROR"
            assert (b"x-request-id", b"boom-1") in extra
        text = render(tmp_path / "metrics", MODEL).decode()
        errors = [
            line
            for line in text.splitlines()
            if line.startswith("mlopsctl_request_errors_total{")
            and 'version="1"' in line
            and 'arm="1"' in line
        ]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in errors) == 2
    finally:
        metrics.close()


def _raw(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def test_http_edge_cases(served_project: Path) -> None:
    running = start_server(served_project, f"{MODEL}:1", "--max-body", "4096", "--no-log")
    try:
        port = running.port
        # 413 before the body is read: only the headers are sent
        reply = _raw(
            port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 413 ") and b"REQUEST_TOO_LARGE" in reply
        # a chunked body is read (here: not JSON, so a 400 from the route, not a 411)
        reply = _raw(
            port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 400 ") and b"MALFORMED_REQUEST" in reply
        # a malformed request line
        assert _raw(port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        # a Content-Length int() cannot take is answered, not a dropped connection
        reply = _raw(
            port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n" % (b"9" * 5000),
        )
        assert reply.startswith(b"HTTP/1.1 413 ") and b"REQUEST_TOO_LARGE" in reply
        reply = _raw(port, b"POST /invocations HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        # empty lines before a request line are ignored (RFC 9112 section 2.2)
        reply = _raw(port, b"\r\n\r\nGET /ping HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 OK")
        # Expect: 100-continue, then the body
        body = json.dumps(split_body(rows(1))).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(body)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        # pipelining: three requests in one write, three answers in order, keep-alive
        one = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: r%d\r\nContent-Length: %d\r\n\r\n"
        batch = (
            b"".join(one % (i, len(body)) + body for i in range(3))
            + b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        reply = _raw(port, batch)
        assert reply.count(b"HTTP/1.1 200 OK") == 4
        assert (
            reply.index(b"x-request-id: r0")
            < reply.index(b"x-request-id: r1")
            < reply.index(b"x-request-id: r2")
        )
    finally:
        assert running.stop() == 0


def test_small_requests_answered_by_the_protocol_match_the_asgi_answers(
    served_project: Path,
) -> None:
    """Small plain requests are answered by the protocol without an ASGI cycle; chunked and
    gzip ones go through the ASGI app. The same request gets the same bytes either way, for a
    prediction, a refusal and an unknown route, with a query string, and for an absolute-form
    target; HTTP/1.0 gets its connection closed; a body given up half way gives its share of
    --max-inflight back; a stop while a body is half sent answers it, then closes."""
    running = start_server(
        served_project, f"{MODEL}:1", "--no-log", "--max-body", "4096", "--max-inflight", "4096"
    )
    try:
        port = running.port
        head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: same\r\nConnection: close\r\n"

        def three_ways(path: bytes, body: bytes) -> list[bytes]:
            plain = _raw(port, head % path + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            chunked = _raw(
                port,
                head % path
                + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
            )
            packed = gzip.compress(body)
            zipped = _raw(
                port,
                head % path
                + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
                + packed,
            )
            return [plain, chunked, zipped]

        good = json.dumps(split_body(rows(2))).encode()
        for path, body, status in (
            (b"/invocations", good, b"200"),
            (b"/invocations", b"{not json", b"400"),
            (b"/nowhere", good, b"404"),
        ):
            answers = three_ways(path, body)
            assert answers[0].startswith(b"HTTP/1.1 " + status), answers[0][:200]
            assert answers[0] == answers[1] == answers[2]
            assert b"connection: close\r\n" in answers[0].lower()

        reply = _raw(port, b"GET /ping HTTP/1.0\r\n\r\n")  # read until the server closes
        assert reply.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in reply.lower()

        # A query string is read by either path; an absolute-form target (parsed by uvicorn)
        # goes through the ASGI app and gets the same answer.
        answers = [
            _raw(port, head % target + b"Content-Length: %d\r\n\r\n" % len(good) + good)
            for target in (b"/invocations?output=proba", b"http://x/invocations?output=proba")
        ]
        assert answers[0] == answers[1] and answers[0].startswith(b"HTTP/1.1 200 ")
        probabilities = json.loads(answers[0].partition(b"\r\n\r\n")[2])["predictions"]
        assert len(probabilities) == 2 and all(abs(sum(p) - 1) < 1e-9 for p in probabilities)

        # Ten bodies of 3000 bytes given up half way: had they kept their budget, the next one
        # would be refused (30,000 bytes held against 4096).
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n"
                    + b" " * 100
                )
        time.sleep(0.5)
        body = json.dumps(split_body(rows(2))).encode().ljust(3000)
        reply = _raw(
            port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:300]

        # A stop while a small body is half sent: the request is answered, then the
        # connection closed, and the server exits 0.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(good), good[:10])
            )
            time.sleep(0.3)
            running.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(good[10:])
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in got.lower(), got
    finally:
        assert running.stop() == 0


# -- logging -------------------------------------------------------------------------------------
def test_logs_hold_every_request_after_a_graceful_stop(served_project: Path) -> None:
    running = start_server(served_project, f"{MODEL}:1", "--log-interval", "60", "--log-batch", "7")
    frame = rows(3)
    ids = []
    for i in range(10):
        status, headers, _ = running.request(
            "POST", "/invocations", split_body(frame), {"X-Request-ID": f"req-{i}"}
        )
        assert status == 200
        ids.append(headers["x-request-id"])
    status, _, _ = running.request(
        "POST",
        f"/v2/models/{MODEL}/infer",
        {
            "inputs": [
                {"name": "x", "shape": [3, 30], "datatype": "FP64", "data": frame.values.tolist()}
            ]
        },
    )
    assert status == 200
    status, _, _ = running.request("POST", "/invocations", {"dataframe_records": [{"bad": 1}]})
    assert status == 400
    status, body = running.json(
        "POST",
        "/feedback",
        [{"request_id": "req-0", "actual": 1}, {"request_id": "req-1", "actual": 0}],
    )
    assert status == 202 and body == {"recorded": 2}
    assert running.stop() == 0, running.output()

    table = read_logs(served_project / ".mlops")
    assert (
        table is not None and table.num_rows == 33
    )  # 11 good requests x 3 rows; the bad one is not logged
    names = table.column_names
    assert names[:7] == ["request_id", "row", "ts", "model", "version", "arm", "latency_ms"]
    assert names[7:37] == list(frame.columns) and names[37:39] == ["prediction", "score"]
    if names[39:]:  # a model that keeps its outlier tables: each row's score, in [0, 1]
        assert names[39:] == ["outlier_score"]
        assert all(0.0 <= v <= 1.0 for v in table.column("outlier_score").to_pylist())
    assert str(table.schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("prediction").type) == "int64"  # as the model returns it
    data = table.to_pydict()
    assert set(ids) < set(data["request_id"]) and len(set(data["request_id"])) == 11
    assert data["request_id"].count("req-4") == 3 and set(data["version"]) == {1}
    assert data["mean radius"][:3] == frame["mean radius"].tolist()
    files = list((served_project / ".mlops/logs/predictions" / MODEL).rglob("*.parquet"))
    assert (
        all(f.parent.name.startswith("date=") for f in files) and len(files) >= 2
    )  # flushed by size too
    feedback = read_logs(served_project / ".mlops", "feedback")
    assert feedback is not None and feedback.to_pydict()["actual"] == ["1", "0"]


def test_log_sampling_and_no_log(served_project: Path) -> None:
    running = start_server(served_project, f"{MODEL}:1", "--log-sample", "0")
    for _ in range(5):
        assert running.request("POST", "/invocations", split_body(rows(1)))[0] == 200
    assert running.stop() == 0
    assert read_logs(served_project / ".mlops") is None


def test_an_unreachable_store_still_serves_and_counts_drops(served_project: Path) -> None:
    store = served_project / ".mlops"
    running = start_server(
        served_project,
        f"{MODEL}:1",
        "--log-interval",
        "0.2",
        "--log-batch",
        "5",
        "--log-buffer",
        "20",
    )
    try:
        # The store's logs/ folder becomes a file: every log write now fails, as with a store
        # that went away, while the model (already loaded) keeps serving.
        (store / "logs").mkdir(exist_ok=True)
        blocked = store / "logs" / "predictions"
        blocked.write_text("not a folder")
        for i in range(40):
            status, _, _ = running.request(
                "POST", "/invocations", split_body(rows(1)), {"X-Request-ID": f"u-{i}"}
            )
            assert status == 200
        deadline = time.monotonic() + 20
        while (
            running.metric("mlopsctl_log_dropped_rows_total") < 20 and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert running.metric("mlopsctl_log_dropped_rows_total") == 20
        assert running.metric("mlopsctl_log_write_failures_total") >= 1
        assert running.saw("warning", "buffer full"), running.output()
        # The store comes back: the rows still buffered are written at the stop.
        blocked.unlink()
    finally:
        assert running.stop() == 0
    table = read_logs(store)
    assert table is not None and table.num_rows == 20


def test_model_dir_serves_without_a_store(served_project: Path, tmp_path: Path) -> None:
    from mlopsctl.registry import download
    from mlopsctl.store.local import LocalStore

    with LocalStore(served_project / ".mlops") as store:
        _, folder = download(store, f"{MODEL}:1", tmp_path / "model")
    elsewhere = tmp_path / "bare"
    elsewhere.mkdir()
    (elsewhere / ".git").mkdir()  # no mlops.yaml up to here
    running = start_server(elsewhere, f"{MODEL}:1", "--model-dir", str(folder))
    try:
        status, body = running.json("POST", "/invocations", split_body(rows(2)))
        assert status == 200 and len(body["predictions"]) == 2
        assert "request logging is off" in running.output()
    finally:
        assert running.stop() == 0


def test_a_stop_under_load_loses_no_answered_request(served_project: Path) -> None:
    """SIGTERM while four keep-alive clients send requests: every request that got an answer
    is in the log, and the server exits 0."""
    running = start_server(served_project, f"{MODEL}:1", "--log-interval", "60")
    body = json.dumps(split_body(rows(1)))
    answered: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
        try:
            for i in range(100_000):
                request_id = f"c{n}-{i}"
                conn.request(
                    "POST",
                    "/invocations",
                    body,
                    {"Content-Type": "application/json", "X-Request-ID": request_id},
                )
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    with lock:
                        answered.append(request_id)
                if response.getheader("Connection") == "close":
                    return
        except (OSError, http.client.HTTPException):
            return  # the server has stopped
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(answered) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.stop() == 0, running.output()
    for thread in threads:
        thread.join(timeout=30)
    table = read_logs(served_project / ".mlops")
    assert table is not None
    logged = set(table.column("request_id").to_pylist())
    assert len(answered) >= 200 and set(answered) <= logged
    assert len(logged) - len(answered) <= 4  # at most one unread answer per client


def test_share_port_lets_a_second_server_take_over_the_port(served_project: Path) -> None:
    """The handover `mlopsctl deploy` relies on: with --share-port a second server binds the
    port the first still serves on, and answers alone once the first stops; without it the
    port is refused in one line."""
    first = start_server(served_project, f"{MODEL}:1", "--no-log", "--share-port")
    second = None
    try:
        second = start_server(
            served_project, f"{MODEL}:1", "--no-log", "--share-port", port=first.port
        )
        assert second.port == first.port
        refused = subprocess.run(
            [sys.executable, "-m", "mlopsctl", "serve", f"{MODEL}:1", "--no-log"]
            + ["--port", str(first.port)],
            cwd=served_project,
            env=server_env(served_project),
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT_S,
        )
        assert refused.returncode != 0
        assert f"cannot listen on 127.0.0.1:{first.port}" in refused.stderr
        assert first.stop() == 0
        for _ in range(5):  # every new connection now reaches the second server
            status, body = second.json("POST", "/invocations", split_body(rows(1)))
            assert status == 200 and len(body["predictions"]) == 1
    finally:
        for running in (first, second):
            if running is not None and running.proc.poll() is None:
                running.stop()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_does_not_read_cannot_grow_the_servers_buffers(
    served_project: Path,
) -> None:
    """Pipelined requests from a client that reads no answer: the server stops reading and
    answering once its write buffer is full instead of buffering 60 MB of answers; a client
    that then reads gets every answer in order; one that never reads is cut off after the
    write timeout."""
    running = start_server(served_project, f"{MODEL}:1", "--no-log", "--request-timeout", "4")
    count = 20_000
    path = f"/v2/models/{MODEL}".encode()
    requests = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for _ in range(count))
    try:
        status, _, one = running.request("GET", path.decode())
        assert status == 200 and len(one) > 2000  # 20,000 answers: over 40 MB
        before = rss_bytes(running.proc.pid)
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as client:
            sender = threading.Thread(target=client.sendall, args=(requests,), daemon=True)
            sender.start()
            time.sleep(1.5)  # nobody reads
            grown = rss_bytes(running.proc.pid) - before
            assert grown < 24 << 20, grown
            received = bytearray()
            deadline = time.monotonic() + 60
            while received.count(b"HTTP/1.1 200 OK") < count and time.monotonic() < deadline:
                chunk = client.recv(1 << 20)
                if not chunk:
                    break
                received += chunk
            sender.join(10)
        assert received.count(b"HTTP/1.1 200 OK") == count

        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as client:
            threading.Thread(target=client.sendall, args=(requests,), daemon=True).start()
            time.sleep(7)  # past the 4 s write timeout
            got = 0
            ended = False
            try:
                while True:
                    chunk = client.recv(1 << 20)
                    if not chunk:
                        ended = True
                        break
                    got += len(chunk)
            except (ConnectionResetError, TimeoutError):
                ended = True
            assert ended and got < count * len(one)
        assert running.request("GET", "/ping")[0] == 200  # the server itself is fine
    finally:
        assert running.stop() == 0
