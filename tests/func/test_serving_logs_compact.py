"""`mlopsctl logs compact MODEL`: the small Parquet files of each date partition become one file
per schema, every row kept; partitions with one file are left alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlopsctl.serving.logs import PREDICTIONS, BufferedWriter, LogSchema, prediction_table
from mlopsctl.store.local import LocalStore

from .conftest import Invoke

SCHEMA = LogSchema(("x1",), ("numeric",), True, True)
OTHER = LogSchema(("x1", "x2"), ("numeric", "numeric"), True, True)


def _write(store: LocalStore, ts: int, schema: LogSchema, requests: int) -> None:
    writer = BufferedWriter(
        store, PREDICTIONS, "m", prediction_table("m"), batch_rows=1, interval=60
    )
    for i in range(requests):
        width = len(schema.names)
        entry = (
            f"r{ts}-{i}",
            ts,
            1,
            "1",
            0.1,
            np.ones((2, width)),
            np.array([1, 0]),
            np.array([0.9, 0.1]),
            schema,
        )
        writer.append(entry, 2)
        writer.flush()
    writer.close()


def test_logs_compact(cli: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: p\nstore: {url: .mlops}\n"
    )
    day = 1_700_000_000_000  # 2023-11-14
    with LocalStore(root / ".mlops") as store:
        _write(store, day, SCHEMA, 5)
        _write(store, day + 1000, OTHER, 2)
        _write(store, day + 2 * 86_400_000, SCHEMA, 1)  # 2023-11-16: one file
    folder = root / ".mlops" / PREDICTIONS / "m"
    before = sorted(p.name for p in (folder / "date=2023-11-14").iterdir())
    assert len(before) == 7
    result = cli("logs", "compact", "m", "--json", cwd=root)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [p["partition"] for p in report["partitions"]] == ["date=2023-11-14"]
    assert report["partitions"][0]["rows"] == 14 and len(report["partitions"][0]["written"]) == 2
    after = sorted((folder / "date=2023-11-14").iterdir())
    assert len(after) == 2 and all(p.name.startswith("compact-") for p in after)
    tables = [pq.read_table(p) for p in after]
    assert sorted(t.num_rows for t in tables) == [4, 10]
    assert len(list((folder / "date=2023-11-16").iterdir())) == 1
    merged = pa.concat_tables([t.select(["request_id", "row"]) for t in tables])
    assert sorted(merged.column("request_id").to_pylist()).count(f"r{day}-0") == 2
    result = cli("logs", "compact", "m", cwd=root)
    assert result.exit_code == 0 and "nothing to compact" in result.stderr
