"""Datasets from production (mlopsctl/datasets): the join's rules on hand-made serving logs in a
local store (keys, duplicates, late and missing labels, features logged as feature.<name>),
the content address and lineage of a build, mixed-in data, and the one definition of the spec
keys shared by the Dataset, Trigger and ingest schemas."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlopsctl import datasets
from mlopsctl.datasets import logs as dlogs
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.store import open_store
from mlopsctl.store.base import ObjectStore

DAY = datetime(2026, 5, 2, tzinfo=timezone.utc)
NOW = datetime(2026, 5, 3, 12, tzinfo=timezone.utc)
WINDOW = {"model": "m", "window": "1d", "until": "2026-05-03"}


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def put(store: ObjectStore, key: str, table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    store.put(key, sink.getvalue())
    return sink.getvalue()


def predictions(rows: list[tuple[str, int | None, datetime, float]], **extra: Any) -> pa.Table:
    """Prediction log rows (request id, row, time, x1) with the fixed columns serving writes."""
    n = len(rows)
    columns: dict[str, Any] = {
        "request_id": [r[0] for r in rows],
        "row": pa.array([r[1] for r in rows], pa.int32()),
        "ts": pa.array([r[2] for r in rows], pa.timestamp("ms", tz="UTC")),
        "model": ["m"] * n,
        "version": pa.array(extra.pop("version", [1] * n), pa.int64()),
        "arm": ["default"] * n,
        "latency_ms": [1.0] * n,
        "x1": [r[3] for r in rows],
        "feature.ts": [r[3] * 10 for r in rows],  # a feature named ts, as serving logs it
        "prediction": [0] * n,
        "score": [0.5] * n,
    }
    columns.update(extra)
    return pa.table(columns)


def feedback(
    rows: list[tuple[str, datetime, str | None]], row: list[int] | None = None
) -> pa.Table:
    columns: dict[str, Any] = {
        "request_id": [r[0] for r in rows],
        "ts": pa.array([r[1] for r in rows], pa.timestamp("ms", tz="UTC")),
        "actual": pa.array([r[2] for r in rows], pa.string()),
    }
    if row is not None:
        columns["row"] = pa.array(row, pa.int32())
    return pa.table(columns)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_store(str(tmp_path / "store"))


@pytest.fixture
def logged(store: ObjectStore) -> dict[str, bytes]:
    """a: two outcomes (the later wins); b: its outcome came after the window closed (late);
    c: no outcome; d: logged twice, its latest outcome null; e: outside the window; f: row 1
    of a batch; zz: an outcome for nothing logged; g: an outcome recorded after the build."""
    pred = predictions(
        [
            ("a", 0, at(10), 1.0),
            ("b", 0, at(11), 2.0),
            ("c", 0, at(12), 3.0),
            ("d", 0, at(13), 4.0),
            ("d", 0, at(13), 4.0),
            ("f", 1, at(14), 6.0),
            ("g", 0, at(15), 7.0),
        ]
    )
    early = predictions([("e", 0, at(-2), 5.0)])
    fb = feedback(
        [
            ("a", at(10.5), "0"),
            ("a", at(11.5), "1"),
            ("b", at(33), "1"),  # 2026-05-03T09:00, after the window's end
            ("d", at(13.2), "1"),
            ("d", at(13.4), None),
            ("zz", at(12), "1"),
            ("f", at(14.5), "0"),
            ("g", at(40), "1"),  # 2026-05-03T16:00, after NOW
        ],
        row=[0, 0, 0, 0, 0, 0, 1, 0],
    )
    return {
        "pred": put(store, "logs/predictions/m/date=2026-05-02/100000-1-000001.parquet", pred),
        "early": put(store, "logs/predictions/m/date=2026-05-01/220000-1-000001.parquet", early),
        "feed": put(store, "logs/feedback/m/date=2026-05-02/100000-1-000001.parquet", fb),
    }


def build(store: ObjectStore, tmp_path: Path, **kw: Any) -> datasets.Built:
    body = {"from_logs": dict(kw.pop("from_logs", WINDOW)), "mix": kw.pop("mix", None)}
    return datasets.build(store, body, name="w", root=tmp_path, now=kw.pop("now", NOW), **kw)


def table_of(store: ObjectStore, digest: str) -> pa.Table:
    return datasets.read_blob_table(store, digest)


def test_the_rules_of_the_join(store: ObjectStore, tmp_path: Path, logged: Any) -> None:
    built = build(store, tmp_path)
    table = table_of(store, built.digest)
    # Features by their names (feature.ts is the feature ts), then the target; ordered by time.
    assert table.column_names == ["x1", "ts", "target"]
    assert table.to_pydict() == {
        "x1": [1.0, 2.0, 6.0],
        "ts": [10.0, 20.0, 60.0],
        "target": [1, 1, 0],
    }
    counts = built.record["counts"]
    assert counts == {
        "logged_rows": 7,
        "duplicate_rows": 1,
        "labelled_rows": 3,
        "unlabelled_rows": 3,  # c, d (latest outcome null), g (its outcome came after NOW)
        "late_labels": 1,  # b
        "feedback_rows": 7,  # g's is not counted: recorded after the build's moment
        "duplicate_feedback": 2,
        "unmatched_feedback": 1,  # zz
        "mixed_rows": 0,
    }
    assert built.record["labels_through"] == "2026-05-03T09:00:00Z"
    assert built.record["window"] == {
        "since": "2026-05-02T00:00:00Z",
        "until": "2026-05-03T00:00:00Z",
        "labels_until": "2026-05-03T12:00:00Z",
    }


def test_a_label_arriving_later_counts_when_built_later(
    store: ObjectStore, tmp_path: Path, logged: Any
) -> None:
    later = build(store, tmp_path, now=NOW + timedelta(hours=6))
    assert later.record["counts"]["labelled_rows"] == 4  # g's outcome is in now
    assert later.digest != build(store, tmp_path).digest


def test_content_addressed_with_lineage(store: ObjectStore, tmp_path: Path, logged: Any) -> None:
    first = build(store, tmp_path)
    assert first.key == f"datasets/w/{first.digest.removeprefix('sha256:')}.json"
    assert not first.existing and first.record["built"] == "2026-05-03T12:00:00Z"
    blob = store.get(f"blobs/sha256/{first.digest[7:9]}/{first.digest[7:]}")
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == first.digest
    sources = first.record["sources"]
    assert [f["key"] for f in sources["predictions"]["files"]] == [
        "logs/predictions/m/date=2026-05-02/100000-1-000001.parquet"
    ]  # the 2026-05-01 partition cannot hold rows of the window: not even read
    assert sources["predictions"]["files"][0]["digest"] == (
        "sha256:" + hashlib.sha256(logged["pred"]).hexdigest()
    )
    assert sources["feedback"]["files"][0]["digest"] == (
        "sha256:" + hashlib.sha256(logged["feed"]).hexdigest()
    )
    again = build(store, tmp_path, now=NOW + timedelta(minutes=5))
    assert again.digest == first.digest and again.existing
    assert again.record["built"] == "2026-05-03T12:00:00Z"  # the first build's record stays
    assert [r["digest"] for r in datasets.list_datasets(store, "w")] == [first.digest]
    assert datasets.get_dataset(store, "w")["digest"] == first.digest
    assert datasets.get_dataset(store, f"w@{first.digest[7:15]}")["digest"] == first.digest
    with pytest.raises(NotFound):
        datasets.get_dataset(store, "w@0000")
    unsaved = build(store, tmp_path, save=False)
    assert unsaved.digest == first.digest and unsaved.key is None


def test_new_labels_are_counted_after_a_time(
    store: ObjectStore, tmp_path: Path, logged: Any
) -> None:
    built = build(store, tmp_path, new_after=at(12))
    assert built.record["counts"]["new_labels"] == 2  # f (14:30) and the late b


def test_version_filter_and_features(store: ObjectStore, tmp_path: Path) -> None:
    put(
        store,
        "logs/predictions/m/date=2026-05-02/1.parquet",
        predictions([("a", None, at(1), 1.0), ("b", None, at(2), 2.0)], version=[1, 2]),
    )
    put(
        store,
        "logs/feedback/m/date=2026-05-02/1.parquet",
        feedback([("a", at(3), "x"), ("b", at(3), "y")]),
    )
    only = build(store, tmp_path, from_logs={**WINDOW, "version": 2, "features": ["x1"]})
    assert table_of(store, only.digest).to_pydict() == {"x1": [2.0], "target": ["y"]}
    with pytest.raises(UsageError, match="no feature"):
        build(store, tmp_path, from_logs={**WINDOW, "features": ["nope"]})
    with pytest.raises(UsageError, match="also a logged feature"):
        build(store, tmp_path, from_logs={**WINDOW, "target": "x1"})


def test_a_key_logged_twice_keeps_its_latest_row(store: ObjectStore, tmp_path: Path) -> None:
    """Copies of one key: the latest row; at the same moment, the later file, later in it."""
    put(
        store,
        "logs/predictions/m/date=2026-05-02/1.parquet",
        predictions(
            [
                ("a", 0, at(2), 1.0),
                ("a", 0, at(1), 2.0),  # older
                ("b", 0, at(3), 3.0),
                ("b", 0, at(3), 4.0),  # same moment, later in the file
                ("c", 0, at(4), 9.0),
            ]
        ),
    )
    # c again at the same moment in a later file, with smaller features: the later file wins.
    put(store, "logs/predictions/m/date=2026-05-02/2.parquet", predictions([("c", 0, at(4), 5.0)]))
    put(
        store,
        "logs/feedback/m/date=2026-05-02/1.parquet",
        feedback([("a", at(5), "1"), ("b", at(5), "0"), ("c", at(5), "1")]),
    )
    built = build(store, tmp_path)
    assert table_of(store, built.digest).to_pydict() == {
        "x1": [1.0, 4.0, 5.0],
        "ts": [10.0, 40.0, 50.0],
        "target": [1, 0, 1],
    }
    counts = built.record["counts"]
    assert (counts["logged_rows"], counts["duplicate_rows"], counts["labelled_rows"]) == (6, 3, 3)


def test_nothing_labelled_and_nothing_mixed_is_not_found(
    store: ObjectStore, tmp_path: Path
) -> None:
    put(store, "logs/predictions/m/date=2026-05-02/1.parquet", predictions([("a", 0, at(1), 1.0)]))
    with pytest.raises(
        NotFound, match=r"no labelled rows of m .* \(1 logged, 1 without an outcome\)"
    ):
        build(store, tmp_path)
    with pytest.raises(NotFound, match="0 logged"):
        build(store, tmp_path, from_logs={**WINDOW, "model": "other"})


def test_mix_adds_the_original_set(store: ObjectStore, tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    rows = frame.iloc[:3]
    served = {**{c: rows[c].tolist() for c in features}}
    pred = predictions([(f"r{i}", 0, at(i), 0.0) for i in range(3)])
    pred = pred.drop_columns(["x1", "feature.ts"])
    for name in features:
        pred = pred.append_column(name, pa.array(served[name], pa.float64()))
    put(store, "logs/predictions/m/date=2026-05-02/1.parquet", pred)
    put(
        store,
        "logs/feedback/m/date=2026-05-02/1.parquet",
        feedback([(f"r{i}", at(5), "1") for i in range(3)]),
    )
    built = build(store, tmp_path, mix={"sklearn": "breast_cancer"})
    table = table_of(store, built.digest)
    assert table.num_rows == 3 + len(frame)
    assert table.column_names == [*features, "target"]
    assert table.column("target").type == pa.int64()
    assert built.record["counts"]["mixed_rows"] == len(frame)
    assert built.record["sources"]["mix"] == [
        {"source": "sklearn:breast_cancer", "rows": len(frame)}
    ]
    # A file, by path, with its digest; a missing column is refused.
    frame.iloc[:10].to_csv(tmp_path / "original.csv", index=False)
    from_file = build(store, tmp_path, mix=[{"path": "original.csv"}])
    assert from_file.record["sources"]["mix"][0]["digest"].startswith("sha256:")
    frame.iloc[:10].drop(columns="mean radius").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(UsageError, match="lacks column\\(s\\) mean radius"):
        build(store, tmp_path, mix={"path": "short.csv"})
    # A dataset built before, by digest.
    twice = build(store, tmp_path, mix={"dataset": built.digest})
    assert table_of(store, twice.digest).num_rows == 3 + table.num_rows


def test_outcome_types() -> None:
    assert datasets.outcome_type(pa.array(["0", "1", None])) == pa.int64()
    assert datasets.outcome_type(pa.array(["0.5", "1"])) == pa.float64()
    assert datasets.outcome_type(pa.array(["yes", "no"])) == pa.string()
    assert datasets.outcome_type(pa.array([1.5, 2.0])) == pa.float64()


def test_windows() -> None:
    now = datetime(2026, 5, 3, 12, 30, tzinfo=timezone.utc)
    window = datasets.resolve_window({"model": "m", "window": "12h"}, now)
    assert (window.since, window.until) == (now - timedelta(hours=12), now)
    window = datasets.resolve_window(
        {"model": "m", "since": "2026-05-01", "until": "2026-05-02T06:00:00+02:00"}, now
    )
    assert window.as_dict() == {"since": "2026-05-01T00:00:00Z", "until": "2026-05-02T04:00:00Z"}
    with pytest.raises(UsageError, match="is empty"):
        datasets.resolve_window({"model": "m", "since": "2026-05-04"}, now)
    with pytest.raises(UsageError, match="not a time"):
        datasets.parse_moment("yesterday", "until")


def test_the_log_layout_is_serving_s() -> None:
    """The server writes and the readers read one layout (mlopsctl/logformat.py): a feature
    named like a fixed column is logged, and found again, under feature.<name>."""
    from mlopsctl import logformat

    assert logformat.log_names(("a", "ts")) == ["a", "feature.ts"]
    assert logformat.log_names(("ts", "feature.ts", "row")) == [
        "feature.feature.ts",
        "feature.ts",
        "feature.row",
    ]
    columns = ["request_id", "ts", "feature.ts", "a"]
    assert dlogs.feature_names(columns, ["ts", "a"]) == {"feature.ts": "ts", "a": "a"}


def test_one_definition_of_the_spec_keys() -> None:
    from mlopsctl.components import ingest
    from mlopsctl.spec import schema_for

    dataset = schema_for("Dataset")
    assert dataset["properties"]["from_logs"] == datasets.FROM_LOGS_SCHEMA
    assert dataset["properties"]["mix"] == datasets.MIX_SCHEMA
    inline = schema_for("Trigger")["properties"]["run"]["properties"]["dataset"]["oneOf"][1]
    assert inline["properties"]["from_logs"] == datasets.FROM_LOGS_SCHEMA
    assert inline["properties"]["mix"] == datasets.MIX_SCHEMA
    assert ingest.PARAMS["properties"]["from_logs"] is datasets.FROM_LOGS_SCHEMA
    assert json.loads(json.dumps(datasets.FROM_LOGS_SCHEMA)) == datasets.FROM_LOGS_SCHEMA


# -- ingest ------------------------------------------------------------------------------------
def run_ingest(root: Path, store: ObjectStore, params: dict[str, Any]) -> Any:
    from mlopsctl.components import ingest
    from mlopsctl.components.base import StepContext

    ctx = StepContext(
        step="ingest",
        run_id="r1",
        params=params,
        inputs={},
        outputs={"dataset": root / "out" / "dataset.parquet"},
        workdir=root / "work",
        project_root=root,
        store=store,
    )
    ingest.run(ctx)
    return ctx


def test_ingest_reads_a_dataset_by_digest_or_builds_one(
    store: ObjectStore, tmp_path: Path, logged: Any
) -> None:
    import pandas as pd

    from mlopsctl.components import ingest

    built = build(store, tmp_path)
    ctx = run_ingest(tmp_path, store, {"dataset": built.digest, "sklearn": "iris"})
    assert pd.read_parquet(ctx.outputs["dataset"])["x1"].tolist() == [1.0, 2.0, 6.0]
    assert ctx.info["source"] == built.digest and ctx.info["dataset"]["record"] == built.key
    # An empty dataset falls back to the usual source.
    assert ingest.check({"dataset": "", "sklearn": "iris"}, tmp_path) == []
    # from_logs needs a fixed end, and mixes only content-addressed data.
    problems = ingest.check(
        {"from_logs": {"model": "m", "window": "1d"}, "mix": {"path": "a.csv"}}, tmp_path
    )
    assert [p[0] for p in problems] == [("from_logs",), ("mix", "path")]
    assert "needs 'until'" in problems[0][1]
    assert ingest.check({"from_logs": WINDOW, "sklearn": "iris"}, tmp_path)[0][1] == (
        "'from_logs' builds the data: drop 'sklearn'"
    )
    ctx = run_ingest(tmp_path / "logs", store, {"from_logs": WINDOW})
    summary = ctx.info["dataset"]
    assert summary["name"] == "m-logs" and summary["counts"]["labelled_rows"] >= 3
    assert store.exists(summary["record"])
