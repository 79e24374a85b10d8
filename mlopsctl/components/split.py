"""split: divide a dataset into train and test tables.

Random (optionally stratified by a column) and reproducible for a seed, or time-ordered: the
latest ``test_size`` share of rows by ``time_column`` is the test set, and rows sharing the
boundary timestamp all go to test so that no moment is split between the two.

Both outputs keep each row's original index (Parquet stores it), which evaluate reports as the
row id of every prediction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.components.base import StepContext

NAME = "split"
DESCRIPTION = "Split a dataset into train and test (random, stratified or time-ordered)"
INPUTS = {"dataset": "the table to split (Parquet)"}
OUTPUTS = {"train": "file", "test": "file"}
PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "test_size": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.2,
            "description": "share of rows that go to test",
        },
        "seed": {"type": "integer", "default": 0, "description": "random seed"},
        "stratify": {
            "type": "string",
            "description": "column whose class proportions both sides keep",
        },
        "time_column": {
            "type": "string",
            "description": "split by time: the latest rows by this column go to test",
        },
    },
}
LIBRARIES = ("pandas", "pyarrow", "numpy", "scikit-learn")
FILE_PARAMS: tuple[str, ...] = ()
CODE_MODULES = ("mlopsctl.components.frames",)


def check(params: dict[str, Any], project_root: Path) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    test_size = params.get("test_size", 0.2)
    if (
        not isinstance(test_size, (int, float))
        or isinstance(test_size, bool)
        or not 0 < test_size < 1
    ):
        problems.append((("test_size",), f"test_size must be between 0 and 1, got {test_size!r}"))
    if params.get("stratify") is not None and params.get("time_column") is not None:
        problems.append((("time_column",), "time_column and stratify exclude each other; keep one"))
    return problems


def run(ctx: StepContext) -> None:
    from mlopsctl.components.frames import read_table, require_columns, write_table

    for path, message in check(ctx.params, ctx.project_root):
        raise MlopsError(f"{'.'.join(map(str, path))}: {message}")
    test_size = float(ctx.params.get("test_size", 0.2))
    seed = int(ctx.params.get("seed", 0))
    stratify = ctx.params.get("stratify")
    time_column = ctx.params.get("time_column")

    frame = read_table(ctx.inputs["dataset"], "dataset")
    if len(frame) < 2:
        raise MlopsError(f"cannot split {len(frame)} row(s) into train and test")
    if time_column is not None:
        require_columns(frame, [time_column], "dataset", "time_column")
        is_test, cutoff = _by_time(frame[time_column], test_size)
        ctx.info.update(strategy="time", time_column=time_column, cutoff=str(cutoff))
    else:
        if stratify is not None:
            require_columns(frame, [stratify], "dataset", "stratify")
        is_test = _at_random(frame, test_size, seed, stratify)
        ctx.info.update(strategy="stratified" if stratify else "random", seed=seed)

    train, test = frame[~is_test], frame[is_test]
    write_table(train, ctx.outputs["train"])
    write_table(test, ctx.outputs["test"])
    # Row counts are facts about the data, not model quality: info, not metrics.
    ctx.info.update(test_size=test_size, train_rows=len(train), test_rows=len(test))


def _at_random(
    frame: pd.DataFrame, test_size: float, seed: int, stratify: str | None
) -> np.ndarray:
    import numpy as np
    from sklearn.model_selection import train_test_split

    labels = None
    if stratify is not None:
        column = frame[stratify]
        if column.isna().any():
            raise MlopsError(
                f"stratify: column '{stratify}' has {int(column.isna().sum())} missing value(s)",
                "fill or drop them before splitting",
            )
        labels = column.to_numpy()
    positions = np.arange(len(frame))
    try:
        _, test_positions = train_test_split(
            positions, test_size=test_size, random_state=seed, stratify=labels
        )
    except ValueError as exc:
        raise MlopsError(
            f"cannot split {len(frame)} rows with test_size {test_size}: {exc}",
            "use more rows, another test_size, or drop 'stratify'",
        ) from None
    is_test = np.zeros(len(frame), dtype=bool)
    is_test[test_positions] = True
    return is_test


def _by_time(column: pd.Series, test_size: float) -> tuple[np.ndarray, Any]:
    import pandas as pd

    name = column.name
    if pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column):
        try:
            column = pd.to_datetime(column)
        except (ValueError, TypeError) as exc:
            raise MlopsError(
                f"time_column: column '{name}' holds neither times nor numbers ({exc})",
                "use a datetime or numeric column",
            ) from None
    if column.isna().any():
        raise MlopsError(
            f"time_column: column '{name}' has {int(column.isna().sum())} missing value(s)",
            "rows without a time cannot be ordered; fill or drop them",
        )
    n_test = math.ceil(len(column) * test_size)
    cutoff = column.sort_values(kind="stable").iloc[len(column) - n_test]
    is_test = (column >= cutoff).to_numpy()
    if is_test.all():
        raise MlopsError(
            f"time_column: every row is at or after the cutoff {cutoff}, so train would be empty",
            "use a smaller test_size or a finer time column",
        )
    return is_test, cutoff
