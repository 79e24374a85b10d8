"""ingest: local CSV/Parquet files, bundled scikit-learn datasets, S3 objects, static checks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlopsctl.components import ingest
from mlopsctl.components.base import StepContext
from mlopsctl.errors import MlopsError


def run_ingest(root: Path, params: dict[str, Any]) -> tuple[StepContext, pd.DataFrame]:
    ctx = StepContext(
        step="ingest",
        run_id="r1",
        params=params,
        inputs={},
        outputs={"dataset": root / "out" / "dataset.parquet"},
        workdir=root / "work",
        project_root=root,
    )
    ingest.run(ctx)
    return ctx, pd.read_parquet(ctx.outputs["dataset"])


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "churn.csv"
    path.parent.mkdir()
    path.write_text("tenure,plan,charges,churned\n3,basic,70.5,yes\n40,pro,,no\n12,,55.0,no\n")
    return path


def test_csv_relative_to_project_root(tmp_path: Path, csv_file: Path) -> None:
    ctx, frame = run_ingest(tmp_path, {"path": "data/churn.csv"})
    assert list(frame.columns) == ["tenure", "plan", "charges", "churned"]
    assert list(frame.index) == [0, 1, 2]
    assert frame["charges"].isna().sum() == 1 and frame["plan"].isna().sum() == 1
    digest = hashlib.sha256(csv_file.read_bytes()).hexdigest()
    assert ctx.info["source_digest"] == f"sha256:{digest}"
    assert ctx.info["rows"] == 3 and ctx.info["columns"] == 4
    assert ctx.info["dtypes"]["tenure"] == "int64"
    assert ctx.metrics == {}  # row and column counts are facts (info), not metrics


def test_columns_are_kept_in_the_order_given(tmp_path: Path, csv_file: Path) -> None:
    _, frame = run_ingest(tmp_path, {"path": "data/churn.csv", "columns": ["churned", "tenure"]})
    assert list(frame.columns) == ["churned", "tenure"]


def test_unknown_column_suggests_the_closest(tmp_path: Path, csv_file: Path) -> None:
    with pytest.raises(MlopsError, match="column 'tenur' is not in the data") as info:
        run_ingest(tmp_path, {"path": "data/churn.csv", "columns": ["tenur"]})
    assert info.value.hint == "did you mean 'tenure'?"


def test_parquet_keeps_a_unique_index_and_format_overrides_the_name(tmp_path: Path) -> None:
    source = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index([10, 20], name="customer"))
    source.to_parquet(tmp_path / "table.bin")
    _, frame = run_ingest(tmp_path, {"path": "table.bin", "format": "parquet"})
    assert list(frame.index) == [10, 20] and frame.index.name == "customer"


def test_bundled_sklearn_dataset(tmp_path: Path) -> None:
    ctx, frame = run_ingest(tmp_path, {"sklearn": "breast_cancer"})
    assert frame.shape == (569, 31) and "target" in frame.columns
    assert ctx.info["source"] == "sklearn:breast_cancer"
    assert ctx.info["source_digest"].startswith("sha256:")
    again, _ = run_ingest(tmp_path / "again", {"sklearn": "breast_cancer"})
    assert again.info["source_digest"] == ctx.info["source_digest"]


@pytest.mark.parametrize(
    ("params", "path", "message"),
    [
        ({"path": "data/churn.csv"}, ("path",), "data file data/churn.csv does not exist"),
        ({}, (), "give exactly one of 'path' (a data file) or 'sklearn' (a dataset)"),
        (
            {"path": "a.csv", "sklearn": "iris"},
            (),
            "give exactly one of 'path' (a data file) or 'sklearn' (a dataset)",
        ),
        (
            {"sklearn": "california_housing"},
            ("sklearn",),
            "scikit-learn dataset 'california_housing' is downloaded from the internet; "
            "ingest loads only the bundled ones: breast_cancer, diabetes, digits, iris, wine",
        ),
        (
            {"sklearn": "iriss"},
            ("sklearn",),
            "unknown scikit-learn dataset 'iriss'; did you mean 'iris'? "
            "bundled: breast_cancer, diabetes, digits, iris, wine",
        ),
        (
            {"path": "s3://bucket/data.json"},
            ("path",),
            "cannot tell the format of s3://bucket/data.json; set format: csv, tsv or parquet",
        ),
    ],
)
def test_check_messages(
    tmp_path: Path, params: dict[str, Any], path: tuple[str, ...], message: str
) -> None:
    assert (path, message) in ingest.check(params, tmp_path)


def test_check_accepts_existing_and_remote_files(tmp_path: Path, csv_file: Path) -> None:
    assert ingest.check({"path": "data/churn.csv"}, tmp_path) == []
    assert ingest.check({"path": "s3://bucket/data/churn.csv.gz"}, tmp_path) == []
    assert ingest.check({"sklearn": "wine"}, tmp_path) == []


def test_unreadable_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(MlopsError, match=r"cannot read broken.parquet as parquet"):
        run_ingest(tmp_path, {"path": "broken.parquet"})


@pytest.mark.s3
def test_reads_s3_object_through_the_aws_chain(
    tmp_path: Path, s3_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"a,b\n1,x\n2,y\n"
    key = f"ingest/{tmp_path.name}/data.csv"
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=body)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    ctx, frame = run_ingest(tmp_path, {"path": f"s3://{s3_env.bucket}/{key}"})
    assert frame["b"].tolist() == ["x", "y"]
    assert ctx.info["source_digest"] == f"sha256:{hashlib.sha256(body).hexdigest()}"
    with pytest.raises(MlopsError, match="does not exist"):
        run_ingest(tmp_path, {"path": f"s3://{s3_env.bucket}/{key}.missing.csv"})
