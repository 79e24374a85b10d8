"""split: reproducible random splits, stratification, time order, kept row ids, checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.components import split
from mlopsctl.components.base import StepContext
from mlopsctl.errors import MlopsError


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return path


def run_split(
    tmp_path: Path, dataset: Path, params: dict[str, Any], name: str = "out"
) -> tuple[StepContext, pd.DataFrame, pd.DataFrame]:
    out = tmp_path / name
    ctx = StepContext(
        step="split",
        run_id="r1",
        params=params,
        inputs={"dataset": dataset},
        outputs={"train": out / "train.parquet", "test": out / "test.parquet"},
        workdir=tmp_path / "work",
        project_root=tmp_path,
    )
    split.run(ctx)
    return ctx, pd.read_parquet(ctx.outputs["train"]), pd.read_parquet(ctx.outputs["test"])


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "label": np.where(rng.random(n) < 0.2, "rare", "common"),
            "day": rng.integers(0, 50, n),
        }
    )
    return write(frame, tmp_path / "dataset.parquet")


def test_same_seed_same_split_and_rows_keep_their_ids(tmp_path: Path, dataset: Path) -> None:
    ctx, train, test = run_split(tmp_path, dataset, {"seed": 7}, "a")
    _, train2, test2 = run_split(tmp_path, dataset, {"seed": 7}, "b")
    _, _, test3 = run_split(tmp_path, dataset, {"seed": 8}, "c")
    assert list(test.index) == list(test2.index) and list(train.index) == list(train2.index)
    assert set(test.index) != set(test3.index)
    assert len(test) == 40 and len(train) == 160
    assert set(train.index).isdisjoint(test.index)
    assert set(train.index) | set(test.index) == set(range(200))
    original = pd.read_parquet(dataset)
    pd.testing.assert_frame_equal(test, original.loc[test.index])
    assert ctx.metrics == {}
    assert (ctx.info["train_rows"], ctx.info["test_rows"]) == (160, 40)


def test_stratified_split_keeps_class_proportions(tmp_path: Path, dataset: Path) -> None:
    original = pd.read_parquet(dataset)
    _, train, test = run_split(tmp_path, dataset, {"stratify": "label", "test_size": 0.25})
    rare = (original["label"] == "rare").sum()
    assert abs((test["label"] == "rare").sum() - rare * 0.25) <= 1
    assert abs((train["label"] == "rare").sum() - rare * 0.75) <= 1


def test_time_split_puts_the_latest_rows_in_test(tmp_path: Path, dataset: Path) -> None:
    ctx, train, test = run_split(tmp_path, dataset, {"time_column": "day", "test_size": 0.2})
    assert train["day"].max() < test["day"].min()
    # Rows sharing the boundary day all go to test, so test is at least the asked share.
    assert len(test) >= 40
    assert ctx.info["strategy"] == "time"
    assert ctx.info["cutoff"] == str(test["day"].min())


def test_time_split_parses_date_strings(tmp_path: Path) -> None:
    dates = pd.date_range("2024-01-01", periods=10, freq="D").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"when": list(reversed(dates)), "y": range(10)})
    _, train, test = run_split(
        tmp_path,
        write(frame, tmp_path / "d.parquet"),
        {
            "time_column": "when",
            "test_size": 0.3,
        },
    )
    assert sorted(test["when"]) == ["2024-01-08", "2024-01-09", "2024-01-10"]
    assert len(train) == 7


def test_time_split_refuses_an_empty_train(tmp_path: Path) -> None:
    frame = pd.DataFrame({"t": [1, 1, 1, 1], "y": [0, 1, 0, 1]})
    with pytest.raises(MlopsError, match="train would be empty"):
        run_split(tmp_path, write(frame, tmp_path / "d.parquet"), {"time_column": "t"})


def test_stratify_column_with_missing_values_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"y": ["a", None, "b", "a", "b", "a"]})
    with pytest.raises(MlopsError, match="stratify: column 'y' has 1 missing value"):
        run_split(tmp_path, write(frame, tmp_path / "d.parquet"), {"stratify": "y"})


def test_unknown_column_suggests_the_closest(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(MlopsError, match="column 'lable' is not in the dataset") as info:
        run_split(tmp_path, dataset, {"stratify": "lable"})
    assert info.value.hint == "did you mean 'label'?"


def test_check_messages(tmp_path: Path) -> None:
    assert split.check({"stratify": "y", "time_column": "t"}, tmp_path) == [
        (("time_column",), "time_column and stratify exclude each other; keep one")
    ]
    assert split.check({"test_size": 1.5}, tmp_path) == [
        (("test_size",), "test_size must be between 0 and 1, got 1.5")
    ]
    assert split.check({"test_size": 0.3, "seed": 3, "stratify": "y"}, tmp_path) == []
