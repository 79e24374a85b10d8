"""The `release ab` HTML report in a real headless browser (Debian's chromium): the rendered
DOM holds the decision, both arms, every metric and the interval-over-time chart, and the
screenshot is a real, non-blank picture."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlopsctl.release import ab
from mlopsctl.release.report import ab_html
from mlopsctl.store.local import LocalStore

from .test_monitor_report_browser import CHROMIUM, _chromium, _png_pixels

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.geteuid() != 0,
    reason="needs Debian's chromium (apt-get install chromium, as root; scripts/test.sh does it)",
)

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _experiment(store: LocalStore) -> None:
    """3,000 customers over 10 days, one request each; the treatment converts at 14% against
    10%, revenue when converted, outcomes a day later; a pre-period spend column for CUPED."""
    rng = np.random.default_rng(5)
    n = 3000
    first = rng.uniform(0, 10 * 86400, n)
    version = np.where(rng.uniform(size=n) < 0.5, 1, 2)
    spend = rng.gamma(2.0, 10.0, n)
    for day in range(10):
        pick = (first >= day * 86400) & (first < (day + 1) * 86400)
        ms = (START.timestamp() + first[pick]) * 1000
        table = pa.table(
            {
                "request_id": [f"r{i}" for i in np.nonzero(pick)[0]],
                "row": pa.array(np.zeros(int(pick.sum()), dtype="int32")),
                "ts": pa.array(ms.astype("int64"), pa.timestamp("ms", tz="UTC")),
                "version": pa.array(version[pick], pa.int64()),
                "customer": [f"c{i}" for i in np.nonzero(pick)[0]],
                "spend": spend[pick],
            }
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        store.put(f"logs/predictions/m/date=2026-11-{day + 1:02d}/p.parquet", sink.getvalue())
    bought = rng.uniform(size=n) < np.where(version == 2, 0.14, 0.10)
    value = np.where(bought, rng.lognormal(3, 0.6, n) + 0.1 * spend, 0.0)
    ms = (START.timestamp() + first + 86400) * 1000
    table = pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": pa.array(ms.astype("int64"), pa.timestamp("ms", tz="UTC")),
            "actual": value,
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    store.put("logs/feedback/m/date=2026-11-05/f.parquet", sink.getvalue())


def test_ab_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "store") as store:
        _experiment(store)
        cfg = ab.config_of(
            {
                "name": "checkout",
                "unit": "customer",
                "weights": {"control": 50, "treatment": 50},
                "cuped": "spend",
                "mde": 0.02,
                "primary": {"name": "conversion", "metric": "proportion"},
                "guardrails": [
                    {"name": "revenue", "metric": "mean", "winsorize": 0.99, "max_regression": 2},
                    {"name": "per-request", "metric": "ratio", "max_regression": 2},
                ],
            }
        )
        result = ab.analyze(
            store, "m", cfg, control=1, treatment=2, since=START, until=START + timedelta(days=12)
        )
    assert len(result["looks"]) == 12
    event = {
        "id": "x",
        "time": "2026-11-13T00:00:00Z",
        "at": "2026-11-13T00:00:00Z",
        "actor": "ci",
        "release": "checkout",
        "spec": "release.yaml",
        "model": "m",
        "version": 2,
        "decision": result["decision"],
        "gates": [result],
    }
    page = tmp_path / "ab.html"
    page.write_text(ab_html(event), encoding="utf-8")

    dom = _chromium("--dump-dom", page.as_uri(), user_dir=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert f'data-decision="{result["decision"]}"' in html and 'id="summary"' in html
    assert 'data-gate="checkout"' in html
    assert 'data-arm="control"' in html and 'data-arm="treatment"' in html
    for name in ("conversion", "revenue", "per-request"):
        assert f'data-metric="{name}"' in html
    assert 'data-srm="ok"' in html and "CUPED cut the variance" in html
    assert html.count('data-chart="interval"') == 1 and html.count("data-look=") == 12
    assert "units needed for mde 0.02" in html

    shot = tmp_path / "ab.png"
    taken = _chromium(
        f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri(), user_dir=tmp_path / "p2"
    )
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    width, height, channels, raw = _png_pixels(shot)
    assert (width, height) == (1280, 1400)
    stride = 1 + width * channels
    lines = {raw[i : i + stride] for i in range(0, len(raw), stride)}
    assert len(lines) > 150  # text, tables, badges and the chart: not a blank page
    assert len(set(raw)) > 50
