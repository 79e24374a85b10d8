"""The latency gate's parts without a model: the load replayed against a small HTTP server on
loopback (warm-up not measured, bounded in count and time, failures counted), the bootstrap
interval of a percentile, the verdict against max_ms, the cost per 1,000 predictions and the
hardware table."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.release import latency
from mlopsctl.release.report import hardware_table


class _Handler(BaseHTTPRequestHandler):
    delay = 0.0
    fail_every = 0
    seen: list[dict[str, Any]] = []  # noqa: RUF012 - shared on purpose: the test reads it
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        time.sleep(self.delay)
        number = len(type(self).seen)
        status = 500 if self.fail_every and number % self.fail_every == 0 else 200
        payload = json.dumps({"predictions": [0] * len(body["dataframe_split"]["data"])}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"seen": [], "delay": 0.002, "fail_every": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


FRAME = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": ["x", "y", "z"], "y": [0, 1, 0]})


def test_bodies_cycle_the_rows_in_batches_with_nulls_for_missing() -> None:
    bodies = latency.request_bodies(FRAME, ["a", "b"], 2)
    first = json.loads(bodies[0])["dataframe_split"]
    assert first == {"columns": ["a", "b"], "data": [[1.0, "x"], [2.0, "y"]]}
    second = json.loads(bodies[1])["dataframe_split"]
    assert second["data"] == [[None, "z"], [1.0, "x"]]


def test_replay_measures_after_the_warm_up_and_counts_failures(
    server: tuple[str, type[_Handler]],
) -> None:
    url, handler = server
    bodies = latency.request_bodies(FRAME, ["a", "b"], 3)
    run = latency.replay(
        url, bodies, batch_size=3, concurrency=4, warmup=5, requests=40, max_seconds=30
    )
    assert len(handler.seen) == 45
    assert len(run.latencies_ms) == 40 and run.failed == 0 and run.rows == 120
    assert run.latencies_ms.min() >= 2.0 and run.throughput > 0
    handler.fail_every = 10
    failing = latency.replay(
        url, bodies, batch_size=3, concurrency=1, warmup=0, requests=20, max_seconds=30
    )
    assert failing.failed == 2 and "HTTP 500" in str(failing.first_error)


def test_replay_stops_at_max_seconds(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.delay = 0.05
    started = time.perf_counter()
    run = latency.replay(
        url,
        latency.request_bodies(FRAME, ["a"], 1),
        batch_size=1,
        concurrency=2,
        warmup=1,
        requests=10_000,
        max_seconds=0.5,
    )
    assert time.perf_counter() - started < 5
    assert 4 <= len(run.latencies_ms) < 100


def test_bootstrap_interval_holds_the_percentile() -> None:
    rng = np.random.default_rng(0)
    values = rng.exponential(10.0, 2000)
    low, high = latency.bootstrap_percentile(values, 95, level=0.95, resamples=500)
    assert low < float(np.percentile(values, 95)) < high
    assert high - low < 5.0
    assert latency.bootstrap_percentile(values, 95, seed=1) != latency.bootstrap_percentile(
        values, 95, seed=2
    )


def _run(ms: list[float], failed: int = 0) -> latency.Run:
    run = latency.Run("local", 1, 1, latencies_ms=np.asarray(ms), failed=failed)
    run.seconds, run.rows = 2.0, len(ms)
    return run


def test_verdicts_against_max_ms_and_the_cost_per_1000() -> None:
    rng = np.random.default_rng(1)
    ms = list(rng.normal(5.0, 0.5, 400))
    assert latency.judge(_run(ms), {"max_ms": 50}, None, 0)["verdict"] == "pass"
    impossible = latency.judge(_run(ms), {"max_ms": 0.0001}, None, 0)
    assert impossible["verdict"] == "fail" and impossible["ci"][0] > 0.0001
    straddles = latency.judge(
        _run(ms), {"max_ms": float(np.percentile(ms, 95)), "percentile": 95}, None, 0
    )
    assert straddles["verdict"] == "inconclusive"
    assert latency.judge(_run(ms, failed=1), {"max_ms": 50}, None, 0)["verdict"] == "fail"
    priced = latency.judge(_run(ms), {"max_ms": 50}, 3.6, 0)
    # 400 predictions in 2 s = 200/s = 720,000 an hour; 3.6 an hour -> 0.005 per 1,000
    assert priced["cost_per_1000"] == pytest.approx(0.005)
    assert latency.verdict_of([priced, impossible]) == "fail"
    assert latency.verdict_of([priced, straddles]) == "inconclusive"


def test_hardware_table_puts_hosts_side_by_side() -> None:
    rng = np.random.default_rng(2)
    rows = [
        {**latency.judge(_run(list(rng.normal(5, 1, 300))), {"max_ms": 50}, 1.0, 0), "host": "cpu"},
        {
            **latency.judge(_run(list(rng.normal(2, 1, 300))), {"max_ms": 50}, None, 0),
            "host": "gpu",
        },
    ]
    lines = hardware_table(rows)
    assert lines[0].split()[:3] == ["host", "batch", "conc"]
    assert lines[1].startswith("cpu") and lines[2].startswith("gpu")
    assert lines[1].split()[-1] == "PASS" and lines[2].split()[-2] == "-"  # no price, no cost


def test_hosts_come_from_the_option_the_list_or_the_single_host() -> None:
    assert latency.hosts_of({"host": "a"}, ["b", "c", "b"]) == ["b", "c"]
    assert latency.hosts_of({"hosts": ["x", "y"]}, None) == ["x", "y"]
    assert latency.hosts_of({"host": "gpu"}, None) == ["gpu"]
    assert latency.hosts_of({}, None) == ["local"]
