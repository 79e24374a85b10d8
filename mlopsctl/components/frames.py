"""Reading and writing the Parquet tables that components pass to each other.

Parquet keeps the pandas index, and the components rely on that: split keeps each row's original
index, so evaluate's per-row predictions carry a row id that lines up across models.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlopsctl.errors import MlopsError

if TYPE_CHECKING:
    import pandas as pd


def read_table(path: Path, what: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow

    try:
        return pd.read_parquet(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise MlopsError(
            f"cannot read {what} {path} as Parquet: {exc}",
            "components pass tables as Parquet files; check the step that wrote it",
        ) from None


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, engine="pyarrow")


def require_columns(frame: pd.DataFrame, columns: list[str], what: str, param: str) -> None:
    """MlopsError naming the first missing column, with a did-you-mean."""
    import difflib

    present = [str(c) for c in frame.columns]
    for column in columns:
        if column not in frame.columns:
            close = difflib.get_close_matches(column, present, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"columns: {_listing(present)}"
            raise MlopsError(f"{param}: column '{column}' is not in the {what}", hint)


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
