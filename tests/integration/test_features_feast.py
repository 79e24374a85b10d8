"""Point-in-time joins agree with Feast's: the same feature rows and labels through
`mlopsctl.features.training_set` and through Feast 0.67's local provider
(get_historical_features, offline store duckdb), compared value by value.

Feast is 585 MB and takes seconds to import, so it lives in its own virtualenv,
.bench/feast-venv (`bash scripts/peers.sh feast`; scripts/test.sh installs it in the background
while the other tiers run), which bench/features.py uses as well; without it this test skips,
saying so, and fails instead under MLOPSCTL_REQUIRE_PEERS=1 (CI). The data draw the edges on
purpose: labels at exactly a feature row's time, exactly at time + TTL and one microsecond past
it, entities without rows, NULL values, a set without TTL, and rows of one entity and time told
apart by their created time (Feast's own tie rule; with equal created times Feast's choice is
arbitrary, so those are not drawn here).
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlopsctl.features import featureset_from_data, materialize_offline, training_set
from mlopsctl.store.local import LocalStore

from .peers import WAITS_FOR_PEER, peer_python

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)

pytestmark = [pytest.mark.slow, WAITS_FOR_PEER]


@pytest.fixture(scope="module")
def feast_python() -> Path:
    """.bench/feast-venv's python (the oracle tests in tests/unit/test_features_pit.py run
    without it)."""
    return peer_python("feast")


def _bench(feast_python: Path) -> object:
    spec = importlib.util.spec_from_file_location("bench_features", ROOT / "bench" / "features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.FEAST_PYTHON = feast_python  # type: ignore[attr-defined]  # run_feast's interpreter
    return module


def _rows(rng: np.random.Generator, name: str, n: int, entities: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "cid": rng.integers(0, entities, n),
            "ts": [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 3 * 24 * 60, n)],
            "created": [T0 + timedelta(seconds=int(s)) for s in range(n)],  # all distinct
            f"{name}_x": rng.normal(size=n).round(3),
            f"{name}_n": rng.integers(0, 100, n),
        }
    )
    dup = frame.sample(n // 5, random_state=3).copy()
    dup["created"] = dup["created"] + pd.to_timedelta(rng.choice([-1, 1], len(dup)), unit="D")
    dup[f"{name}_x"] = rng.normal(size=len(dup)).round(3)
    frame = pd.concat([frame, dup]).sample(frac=1.0, random_state=4).reset_index(drop=True)
    frame.loc[frame.sample(frac=0.05, random_state=5).index, f"{name}_x"] = np.nan
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["created"] = pd.to_datetime(frame["created"], utc=True)
    return frame


@pytest.mark.parametrize("seed", [11, 12])
def test_training_sets_agree_with_feast(tmp_path: Path, seed: int, feast_python: Path) -> None:
    bench = _bench(feast_python)
    rng = np.random.default_rng(seed)
    store = LocalStore(tmp_path / "store")
    sets, jobs = [], []
    for name, ttl in (("a", "2h"), ("b", "0")):
        frame = _rows(rng, name, 500, 30)
        frame.to_parquet(tmp_path / f"{name}.parquet")
        fs = featureset_from_data(
            {
                "name": name,
                "entities": [{"name": "cid", "type": "int64"}],
                "timestamp": "ts",
                "created_timestamp": "created",
                "source": {"path": f"{name}.parquet"},
                "features": [
                    {"name": f"{name}_x", "type": "float64"},
                    {"name": f"{name}_n", "type": "int64"},
                ],
                "ttl": ttl,
            }
        )
        materialize_offline(store, fs, tmp_path)
        sets.append(fs)
        jobs.append(
            bench.feast_job(
                tmp_path, fs, tmp_path / f"{name}.parquet", tmp_path / "labels.parquet"
            )["sets"][0]
        )
        if name == "a":
            base = frame
    n = 800
    picks = base.sample(n, replace=True, random_state=seed)
    offsets = rng.choice(
        [
            timedelta(0),
            timedelta(hours=2),
            timedelta(hours=2, microseconds=1),
            timedelta(minutes=9),
        ],
        n,
    )
    keys = picks["cid"].to_numpy(copy=True)
    keys[rng.random(n) < 0.05] = 999
    labels = pd.DataFrame(
        {
            "cid": keys,
            "event_timestamp": pd.to_datetime(
                [t + o for t, o in zip(picks["ts"], offsets, strict=True)], utc=True
            ),
            "__row": np.arange(n),
        }
    )
    labels.to_parquet(tmp_path / "labels.parquet")
    ours = training_set(store, sets, labels).table.to_pandas()
    bench.run_feast(tmp_path, {"labels": str(tmp_path / "labels.parquet"), "sets": jobs})
    feast = pd.read_parquet(tmp_path / "feast.parquet")
    features = [f for fs in sets for f in fs.feature_names]
    assert bench.compare_with_feast(ours, feast, features) == 0
    # The data did reach the edges: matches, misses by TTL, and unknown entities.
    assert (
        0 < ours["a_x"].notna().sum() < n and ours["b_n"].notna().sum() > ours["a_n"].notna().sum()
    )
