"""Ground truth from a file: ``mlopsctl feedback FILE --model NAME`` records the outcome of
earlier predictions by request id, in the same format ``POST /feedback`` writes
(``logs/feedback/<model>/date=YYYY-MM-DD/...parquet``), for monitoring and A/B analysis to join
with the prediction logs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import NotFound, UsageError

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

_CHUNK_ROWS = 100_000


def model_is_classifier(store: ObjectStore, model: str) -> bool | None:
    """True/False from the latest registered version's signature; None when unknown (the
    ``actual`` column is then written as text, which the reader casts)."""
    from mlopsctl.registry import latest_version

    try:
        latest = latest_version(store, model)
        if latest is None:
            return None
        from mlopsctl.registry import get_version

        task = (get_version(store, model, latest).get("signature") or {}).get("task")
    except NotFound:
        return None
    return None if task is None else task == "classification"


def record_feedback_file(
    store: ObjectStore,
    model: str,
    path: Path,
    *,
    id_column: str = "request_id",
    actual_column: str = "actual",
) -> dict[str, Any]:
    """Write the file's (request_id, actual) rows as ground truth; returns counts and keys."""
    import io

    import pyarrow.parquet as pq

    from mlopsctl.models.predict import read_input
    from mlopsctl.registry import check_name
    from mlopsctl.serving.logs import FEEDBACK, feedback_table, partition_key

    check_name(model)
    frame = read_input(path)
    missing = [c for c in (id_column, actual_column) if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{path} lacks column(s) {', '.join(missing)}",
            f"give a table with '{id_column}' and '{actual_column}' columns",
        )
    frame = frame[frame[id_column].notna()]
    if frame.empty:
        raise UsageError(f"{path} has no rows with a request id", "nothing was recorded")
    convert = feedback_table(model_is_classifier(store, model))
    now = int(time.time() * 1000)
    ids = frame[id_column].astype(str).tolist()
    actual = [None if v != v else v for v in frame[actual_column].tolist()]  # NaN -> None
    date = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    keys = []
    for seq, start in enumerate(range(0, len(ids), _CHUNK_ROWS), start=1):
        stop = start + _CHUNK_ROWS
        entries = [(i, now, a) for i, a in zip(ids[start:stop], actual[start:stop], strict=True)]
        (table,) = convert(entries)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        key = partition_key(FEEDBACK, model, date, os.getpid(), seq)
        store.put_if_absent(key, sink.getvalue())
        keys.append(key)
    return {"model": model, "rows": len(ids), "files": keys}
