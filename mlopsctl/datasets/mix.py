"""`mix:` sources: other data added to the rows from the logs (the original training set, a
dataset built before). Each must hold the table's features and its target column; other
columns are left out, and the target is read as the logged outcomes are (see build.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.digest import sha256_file
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.store.blobs import get_blob_bytes

if TYPE_CHECKING:
    import pyarrow as pa

    from mlopsctl.store.base import ObjectStore

# The datasets that ship inside scikit-learn (no download needed), by loader; ingest's
# `sklearn:` reads the same.
BUNDLED = {
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
}


def load_bundled_table(name: str) -> pa.Table:
    import pyarrow as pa
    from sklearn import datasets

    if name not in BUNDLED:
        raise UsageError(
            f"unknown scikit-learn dataset '{name}'", f"bundled: {', '.join(sorted(BUNDLED))}"
        )
    frame = getattr(datasets, BUNDLED[name])(as_frame=True).frame
    return pa.Table.from_pandas(frame, preserve_index=False)


def read_blob_table(store: ObjectStore, digest: str) -> pa.Table:
    """A dataset stored as a Parquet blob, verified by its digest."""
    import io

    import pyarrow.parquet as pq

    try:
        data = get_blob_bytes(store, digest)
    except NotFound:
        raise NotFound(
            f"no dataset {digest} in the store", "build one with: mlopsctl datasets build SPEC"
        ) from None
    return pq.read_table(io.BytesIO(data))


def load_source(
    source: dict[str, Any], root: Path, store: ObjectStore
) -> tuple[pa.Table, dict[str, Any]]:
    """(table, lineage) of one mix source."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if source.get("sklearn"):
        name = str(source["sklearn"])
        table = load_bundled_table(name)
        return table, {"source": f"sklearn:{name}", "rows": table.num_rows}
    if source.get("dataset"):
        digest = str(source["dataset"])
        table = read_blob_table(store, digest)
        return table, {"source": "dataset", "digest": digest, "rows": table.num_rows}
    text = str(source["path"])
    path = Path(text)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise NotFound(f"mix: no data file {text} (looked in {root})")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        table = pq.read_table(path)
    elif name.endswith((".csv", ".csv.gz")):
        table = pacsv.read_csv(path)
    else:
        raise UsageError(f"mix: cannot tell the format of {text}", "give a .csv or .parquet file")
    return table, {"source": text, "digest": sha256_file(path), "rows": table.num_rows}


def conform(
    table: pa.Table, features: list[str], target: str, what: str, target_type: Any
) -> pa.Table:
    """``table`` with exactly ``features`` then ``target``, each cast to the type the logged
    rows have (numbers as float64, anything else as text)."""
    import pyarrow as pa

    missing = [c for c in [*features, target] if c not in table.column_names]
    if missing:
        raise UsageError(
            f"mix source {what} lacks column(s) {', '.join(missing)}",
            "every mixed-in table needs the logged features and the target column",
        )
    columns = []
    for name in features:
        column = table.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        columns.append(column.cast(pa.float64() if numeric else pa.string()))
    columns.append(cast_target(table.column(target), target_type))
    return pa.table(columns, names=[*features, target])


def cast_target(column: Any, target_type: Any) -> Any:
    import pyarrow as pa

    if target_type is None or column.type == target_type:
        return column
    if pa.types.is_string(target_type):
        return _as_text(column)
    return column.cast(target_type)


def _as_text(column: Any) -> Any:
    """Labels as text the way the feedback log writes them: 1.0 and 1 are both "1"."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        whole = pc.equal(pc.floor(column), column)
        as_int = pc.cast(pc.cast(column, pa.int64(), safe=False), pa.string())
        return pc.if_else(whole, as_int, pc.cast(column, pa.string()))
    return pc.cast(column, pa.string())
