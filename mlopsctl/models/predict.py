"""Batch prediction with a loaded model: read a CSV or Parquet table, return one row of
predictions per input row (``mlopsctl models predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlopsctl.errors import MlopsError, NotFound, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from mlopsctl.models.artifact import LoadedModel

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".txt")


def read_input(path: Path) -> pd.DataFrame:
    """A table from a CSV (or TSV) or a Parquet file, chosen by the file's suffix."""
    import pandas as pd
    import pyarrow

    if not path.is_file():
        raise NotFound(f"no such data file: {path}", "give a CSV or Parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix in _PARQUET:
            return pd.read_parquet(path)
        if suffix in _CSV:
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise MlopsError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    raise UsageError(
        f"cannot tell the format of {path}",
        f"name it *.csv or *.parquet (known suffixes: {', '.join(_CSV + _PARQUET)})",
    )


def predict_frame(model: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``prediction`` per row and, for a classifier with probabilities, ``proba_<class>`` per
    class, in the input's row order."""
    import pandas as pd

    if frame.empty:
        raise UsageError("the data has no rows to predict", "give a table with at least one row")
    table = {"prediction": model.predict(frame)}
    if model.has_proba and model.classes is not None:
        proba = model.predict_proba(frame)
        for i, label in enumerate(model.classes):
            table[f"proba_{label}"] = proba[:, i]
    return pd.DataFrame(table)


def write_csv(frame: pd.DataFrame, dest: Path) -> None:
    """Write ``frame`` to ``dest`` so that a reader never sees half a file."""
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        frame.to_csv(partial, index=False)
        partial.replace(dest)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise MlopsError(f"cannot write {dest}: {exc.strerror or exc}") from None
