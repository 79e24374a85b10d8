"""Request counters and latency histograms (mlopsctl/serving/metrics.py) as the Prometheus
collector reads them from the worker's files: every request counted under its labels, errors
apart, each latency in its bucket and in the sum, written at once or by the flush."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlopsctl.serving.metrics import BUCKETS, Metrics, render


def _samples(text: bytes) -> dict[str, float]:
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _value(samples: dict[str, float], metric: str, **labels: str) -> float:
    found = [
        v
        for name, v in samples.items()
        if name.split("{")[0] == metric
        and all(re.search(f'{k}="{re.escape(x)}"', name) for k, x in labels.items())
    ]
    assert len(found) == 1, (metric, labels, found)
    return found[0]


@pytest.mark.parametrize("background", [True, False])
def test_requests_errors_and_latencies_are_counted_under_their_labels(
    tmp_path: Path, background: bool
) -> None:
    metrics = Metrics(tmp_path / "m", 0, "churn", background=background)
    try:
        latencies = [0.0001, 0.003, 0.003, 0.2, 7.0, 1e9]  # the last beyond every bucket
        for seconds in latencies:
            metrics.observe("1", "a", "/invocations", 200, seconds)
        metrics.observe("1", "a", "/invocations", 400, 0.002)
        metrics.observe("2", "b", "/invocations", 200, 0.004)
        for code in (200, 200, 503):
            metrics.http("/invocations", code)
        metrics.flush()
        samples = _samples(render(tmp_path / "m"))
    finally:
        metrics.close()
    total = "mlopsctl_requests_total"
    assert _value(samples, total, version="1", arm="a", code="200") == len(latencies)
    assert _value(samples, total, version="1", arm="a", code="400") == 1
    assert _value(samples, total, version="2", arm="b", code="200") == 1
    errors = "mlopsctl_request_errors_total"
    assert _value(samples, errors, version="1", arm="a") == 1
    assert _value(samples, errors, version="2", arm="b") == 0
    latency = "mlopsctl_request_latency_seconds"
    seen = [*latencies, 0.002]
    assert _value(samples, latency + "_sum", version="1", arm="a") == pytest.approx(sum(seen))
    assert _value(samples, latency + "_count", version="1", arm="a") == len(seen)
    checked = 0
    for name, count in samples.items():
        if name.startswith(latency + "_bucket{") and 'version="1"' in name:
            bound = float(re.search(r'le="([^"]+)"', name)[1].replace("+Inf", "inf"))
            assert count == sum(1 for s in seen if s <= bound), bound
            checked += 1
    assert checked == len(BUCKETS) + 1
    http = "mlopsctl_http_requests_total"
    assert _value(samples, http, route="/invocations", code="200") == 2
    assert _value(samples, http, route="/invocations", code="503") == 1
