"""The monitoring report in a real headless browser (Debian's chromium): the rendered DOM holds
the summary, the outlier and attribution sections and every feature section, and the screenshot
is a real, non-blank picture."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlopsctl.models.artifact import Feature
from mlopsctl.models.outliers import outlier_baseline
from mlopsctl.models.profile import profile_frame
from mlopsctl.monitor import check_against_profile
from mlopsctl.monitor.report import write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.geteuid() != 0,
    reason="needs Debian's chromium (apt-get install chromium, as root; scripts/test.sh does it)",
)


def _chromium(*args: str, user_dir: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is missing: apt-get install -y chromium"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={user_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _png_pixels(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw scanlines) of a non-interlaced 8-bit RGB(A) PNG,
    read with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, width, height, channels = 8, b"", 0, 0, 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            assert body[8] == 8, "expected 8 bits per channel"
            channels = {2: 3, 6: 4}[body[9]]
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    return width, height, channels, zlib.decompress(idat)


def test_report_renders_in_headless_chromium(tmp_path: Path):
    rng = np.random.default_rng(3)

    def frame(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "age": rng.normal(40 + shift, 10, n),
                "income": rng.lognormal(10, 0.5, n),
                "plan": rng.choice(["basic", "pro", "team"], p=[0.5, 0.3, 0.2], size=n),
            }
        )

    def explained(rows: pd.DataFrame) -> pd.DataFrame:
        """Contributions as a model with these weights would log them (contrib.<feature>)."""
        return rows.assign(
            **{
                "contrib.age": (rows["age"] - 40) / 10,
                "contrib.income": (np.log(rows["income"]) - 10) * 2,
                "contrib.plan": rows["plan"].map({"basic": -0.5, "pro": 0.5, "team": 1.0}),
                "contrib.bias": 0.2,
            }
        )

    kinds = [("age", "numeric"), ("income", "numeric"), ("plan", "categorical")]
    baseline = frame(3000, 0.0)
    trained = explained(baseline)
    profile = {
        "rows": len(baseline),
        "features": profile_frame(baseline, kinds),
        "outliers": outlier_baseline(baseline, [Feature(n, "", k) for n, k in kinds]),
        "explain": {"mean_abs": {n: float(trained[f"contrib.{n}"].abs().mean()) for n, _ in kinds}},
    }
    current = frame(2000, 12.0)
    current.loc[:99, "age"] = 200.0  # 5% of the rows far outside anything seen
    result = check_against_profile(profile, explained(current), spec={"drift_share": 0.3})
    assert result["drifted_features"] == ["age"]
    assert result["outliers"]["failed"] is True and result["outliers"]["share"] > 0.05
    assert result["attribution"]["drifted_features"][0] == "age"
    page = tmp_path / "report.html"
    write_html(result, page)

    dom = _chromium("--dump-dom", page.as_uri(), user_dir=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="summary"' in html and 'id="verdict"' in html and ">FAILED<" in html
    assert 'id="quality"' in html and 'id="features"' in html
    assert 'id="outliers"' in html and 'data-outlier-feature="age"' in html
    assert 'id="attribution"' in html
    for name in ("age", "income", "plan"):
        assert f'data-attribution="{name}"' in html
    order = [html.index(f'id="{part}"') for part in ("summary", "outliers", "attribution")]
    assert order == sorted(order) and order[-1] < html.index('id="quality"')
    for name in ("age", "income", "plan"):
        assert f'data-feature="{name}"' in html
    assert html.index('data-feature="age"') < html.index('data-feature="income"')
    assert html.count("<svg") == 3

    shot = tmp_path / "report.png"
    taken = _chromium(
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.as_uri(),
        user_dir=tmp_path / "profile-shot",
    )
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    width, height, channels, raw = _png_pixels(shot)
    assert (width, height) == (1280, 2000)
    # A blank page decodes to one repeated scanline; the report has text, badges and bars.
    stride = 1 + width * channels
    rows = {raw[i : i + stride] for i in range(0, len(raw), stride)}
    assert len(rows) > 200
    assert len(set(raw)) > 50
