"""Monitor checks on small frames and files: data quality, overrides, chunked reading of CSV and
Parquet (the same result as in memory), time windows over date= partitions, and the report."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.errors import NotFound, UsageError
from mlopsctl.models.profile import profile_frame
from mlopsctl.monitor import check_against_profile, data, profile_data
from mlopsctl.monitor.report import render_html, table


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40 + shift, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "plan": rng.choice(["basic", "pro", "team"], p=[0.5, 0.3, 0.2], size=n),
        }
    )


KINDS = [("age", "numeric"), ("income", "numeric"), ("plan", "categorical")]


@pytest.fixture
def profile() -> dict[str, Any]:
    frame = _frame(3000, 1)
    return {"rows": len(frame), "features": profile_frame(frame, KINDS)}


def _quality(result: dict[str, Any], test: str) -> dict[str, Any]:
    return next(q for q in result["quality"] if q["test"] == test)


def test_unshifted_data_passes_every_check(profile: dict[str, Any]):
    result = check_against_profile(profile, _frame(2000, 2))
    assert result["failed"] is False
    assert result["rows"] == 2000
    assert not any(q["failed"] for q in result["quality"])
    assert {f["test"] for f in result["features"]} == {"wasserstein", "jensenshannon"}


def test_missing_values_rise_fails_quality(profile: dict[str, Any]):
    frame = _frame(2000, 2)
    frame.loc[frame.index[:300], "income"] = np.nan
    frame.loc[frame.index[:300], "plan"] = None
    result = check_against_profile(profile, frame)
    check = _quality(result, "missing_increase")
    assert check["failed"] is True
    assert {f["name"] for f in check["features"]} == {"income", "plan"}
    assert result["failed"] is True
    relaxed = check_against_profile(profile, frame, spec={"quality": {"missing_increase": 0.2}})
    assert _quality(relaxed, "missing_increase")["failed"] is False


def test_out_of_range_and_unseen_categories(profile: dict[str, Any]):
    frame = _frame(2000, 2)
    frame.loc[frame.index[:200], "age"] = 500.0
    frame.loc[frame.index[:150], "plan"] = "enterprise"
    result = check_against_profile(profile, frame)
    outside = _quality(result, "out_of_range")
    assert [f["name"] for f in outside["features"]] == ["age"]
    assert outside["features"][0]["share"] == pytest.approx(0.1)
    unseen = _quality(result, "unseen_categories")
    assert [f["name"] for f in unseen["features"]] == ["plan"]
    assert unseen["features"][0]["share"] == pytest.approx(0.075)
    plan = next(f for f in result["features"] if f["name"] == "plan")
    assert "enterprise" in plan["chart"]["labels"]
    only_report = check_against_profile(
        profile,
        _frame(2000, 2).assign(age=lambda f: f["age"].where(f.index >= 200, 500.0)),
        spec={"quality": {"fail": False}},
    )
    assert _quality(only_report, "out_of_range")["failed"] is True
    assert only_report["failed"] is False


def test_schema_mismatch_missing_column_and_wrong_type(profile: dict[str, Any]):
    frame = _frame(500, 2).drop(columns="income").assign(age="forty", extra=1)
    result = check_against_profile(profile, frame)
    schema = _quality(result, "schema")
    assert schema["failed"] is True
    assert schema["missing_columns"] == ["income"]
    assert schema["wrong_types"] == ["age"]
    assert schema["extra_columns"] == ["extra"]
    assert result["failed"] is True
    skipped = {f["name"]: f for f in result["features"] if f["statistic"] is None}
    assert set(skipped) == {"age", "income"}


def test_overrides_ignore_and_share(profile: dict[str, Any]):
    shifted = _frame(2000, 2, shift=8.0)
    result = check_against_profile(
        profile,
        shifted,
        spec={"features": {"age": {"test": "psi", "threshold": 0.2}}, "drift_share": 0.3},
    )
    age = next(f for f in result["features"] if f["name"] == "age")
    assert (age["test"], age["threshold"], age["drifted"]) == ("psi", 0.2, True)
    assert result["drift"] is True  # 1 of 3 >= 0.3
    ignored = check_against_profile(profile, shifted, spec={"features": {"age": {"ignore": True}}})
    assert [f["name"] for f in ignored["features"]] == ["income", "plan"]
    assert ignored["failed"] is False
    with pytest.raises(UsageError, match="not in the baseline"):
        check_against_profile(profile, shifted, spec={"features": {"agge": {"ignore": True}}})
    with pytest.raises(UsageError, match="does not apply to categorical feature 'plan'"):
        check_against_profile(profile, shifted, spec={"features": {"plan": {"test": "ks"}}})


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_files_in_small_batches_equal_in_memory(
    profile: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
):
    frame = _frame(3000, 3, shift=4.0)
    frame.loc[frame.index[::50], "income"] = np.nan
    folder = tmp_path / "current"
    folder.mkdir()
    for i, part in enumerate((frame.iloc[:1000], frame.iloc[1000:2000], frame.iloc[2000:])):
        target = folder / f"part-{i}.{suffix}"
        if suffix == "csv":
            part.to_csv(target, index=False)
        else:
            part.to_parquet(target, index=False)
    monkeypatch.setattr(data, "BATCH_ROWS", 128)
    from_files = check_against_profile(profile, folder)
    in_memory = check_against_profile(profile, frame)
    assert from_files["rows"] == in_memory["rows"] == 3000
    for a, b in zip(from_files["features"], in_memory["features"], strict=True):
        assert a["name"] == b["name"]
        assert a["statistic"] == pytest.approx(b["statistic"], abs=1e-12)
        assert a["missing"] == b["missing"]
    assert from_files["drifted_features"] == in_memory["drifted_features"] == ["age"]


def test_csv_numeric_column_with_text_is_a_type_mismatch(profile: dict[str, Any], tmp_path: Path):
    frame = _frame(100, 2).astype({"age": str})
    frame.loc[:, "age"] = "unknown"
    path = tmp_path / "current.csv"
    frame.to_csv(path, index=False)
    result = check_against_profile(profile, path)
    assert _quality(result, "schema")["wrong_types"] == ["age"]


def test_window_reads_recent_partitions_and_rows(profile: dict[str, Any], tmp_path: Path):
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(days=30), now - timedelta(hours=2)
    for when, shift in ((old, 20.0), (recent, 0.0)):
        part = tmp_path / "logs" / f"date={when:%Y-%m-%d}"
        part.mkdir(parents=True)
        frame = _frame(400, 5, shift=shift).assign(ts=pd.Timestamp(when).floor("ms"))
        frame.to_parquet(part / "000000-1-0.parquet", index=False)
    since = data.window_start("7d")
    files = list(data.iter_files(str(tmp_path / "logs"), root=tmp_path, store=None, since=since))
    assert [f.parent.name for f in files] == [f"date={recent:%Y-%m-%d}"]
    with pytest.raises(UsageError, match="duration"):
        data.parse_window("7 days")
    with pytest.raises(NotFound):
        list(data.iter_files("nowhere", root=tmp_path, store=None))


def test_profile_data_infers_kinds(tmp_path: Path):
    path = tmp_path / "ref.parquet"
    _frame(500, 1).to_parquet(path, index=False)
    from mlopsctl.config import project_from_data

    project = project_from_data({}, tmp_path, None)
    result = profile_data(str(path), project=project, store=None)
    assert result["rows"] == 500
    assert {k: v["kind"] for k, v in result["features"].items()} == {
        "age": "numeric",
        "income": "numeric",
        "plan": "categorical",
    }
    assert len(result["features"]["age"]["sketch"]["edges"]) == 101


def test_report_is_self_contained_and_orders_drift_first(profile: dict[str, Any]):
    result = check_against_profile(profile, _frame(2000, 2, shift=8.0), spec={"drift_share": 0.3})
    page = render_html(result)
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("<script", "http://", "https://", "<link", "@import", "src="):
        assert forbidden not in page
    assert page.index('data-feature="age"') < page.index('data-feature="income"')
    assert page.count("<svg") == 3
    assert "FAILED" in page
    lines = table(result)
    assert lines[0].split() == ["feature", "type", "test", "statistic", "threshold", "verdict"]
    assert lines[1].startswith("age") and "DRIFT" in lines[1]


def test_float_values_reads_slices_chunks_and_nulls():
    import pyarrow as pa

    from mlopsctl.monitor.checks import float_values

    array = pa.array([1.0, None, 3.0, 4.0, None, 6.0], pa.float64()).slice(1, 4)
    assert np.array_equal(float_values(array), [np.nan, 3.0, 4.0, np.nan], equal_nan=True)
    chunked = pa.chunked_array([pa.array([1.5, 2.5]), pa.array([3.5])])
    assert float_values(chunked).tolist() == [1.5, 2.5, 3.5]
    assert float_values(pa.array([], pa.float64())).size == 0


@pytest.mark.parametrize(
    "values",
    [
        [True, False, True, None],  # profile: 'True'/'False'; Arrow's cast would say 'true'
        [1.0, 2.0, np.nan, 1.0],  # profile: '1.0'; Arrow's cast would say '1'
        [3, 4, 3, None],
    ],
)
def test_non_text_categories_match_the_training_profile(values: list[Any], tmp_path: Path):
    """A categorical feature stored as bool, float or int (Parquet, a DataFrame) is compared as
    the training profile wrote it (pandas' astype(str)), not as Arrow spells it."""
    rng = np.random.default_rng(4)
    base = pd.DataFrame({"flag": pd.Series(rng.choice(values, 3000), dtype=object)})
    if all(isinstance(v, float) for v in values if v is not None):
        base["flag"] = base["flag"].astype("float64")
    elif all(isinstance(v, bool) or v is None for v in values):
        base["flag"] = base["flag"].astype("boolean")
    profile = {"rows": len(base), "features": profile_frame(base, [("flag", "categorical")])}
    current = base.sample(frac=0.5, random_state=1)
    current.to_parquet(tmp_path / "current.parquet")
    for data_in in (current, tmp_path / "current.parquet"):
        result = check_against_profile(profile, data_in)
        assert result["failed"] is False, result["quality"]
        unseen = _quality(result, "unseen_categories")
        assert unseen["failed"] is False and unseen["features"] == []
