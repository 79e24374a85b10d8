"""A feature set's raw rows as a DuckDB view: its source read (a file or folder here, an
s3:// or store: prefix fetched into a work folder, or a pipeline step's output), transformed
(DuckDB SQL over the view ``source``, or a Python function of a DataFrame) and typed (entity
keys and features cast to their declared types, the event time to a UTC timestamp)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError, NotFound, StoreUnreachable, UsageError
from mlopsctl.features.spec import DUCKDB_TYPES, KEY_TYPES, FeatureSet

if TYPE_CHECKING:
    import duckdb

    from mlopsctl.store.base import ObjectStore

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".tsv")


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose session time zone is UTC (naive times are UTC)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def source_files(
    fs: FeatureSet, project_root: Path, store: ObjectStore | None, workdir: Path
) -> tuple[list[Path], str]:
    """The local files of the source and their format (parquet or csv)."""
    source = fs.source
    if "pipeline" in source:
        if store is None:
            raise UsageError(f"feature set '{fs.name}' reads a pipeline output: it needs a store")
        files = [_pipeline_output(store, str(source["pipeline"]), str(source["output"]), workdir)]
        if files[0].is_dir():
            files = _walk(files[0])
    else:
        location = str(source["path"])
        if location.startswith("s3://"):
            files = _fetch_s3(location, workdir)
        elif location.startswith("store:"):
            if store is None:
                raise UsageError(f"{location} is in the project store: open one first")
            files = _fetch_store(store, location[len("store:") :], workdir)
        else:
            local = Path(location)
            local = local if local.is_absolute() else project_root / local
            if local.is_dir():
                files = _walk(local)
            elif local.is_file():
                files = [local]
            else:
                raise NotFound(
                    f"source of feature set '{fs.name}': {location} does not exist",
                    "check source.path (relative to the project root)",
                )
    fmt = source.get("format") or _format_of(files, fs.name)
    files = [f for f in files if _format_of([f], fs.name, quiet=True) in (fmt, None)]
    if not files:
        raise NotFound(f"source of feature set '{fs.name}' holds no {fmt} file")
    return sorted(files), str(fmt)


def _walk(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name.lower().endswith(_PARQUET + _CSV) and not p.name.startswith(".")
    )


def _format_of(files: list[Path], name: str, quiet: bool = False) -> str | None:
    formats = set()
    for f in files:
        lower = f.name.lower()
        if lower.endswith(_PARQUET):
            formats.add("parquet")
        elif lower.endswith(_CSV):
            formats.add("csv")
    if len(formats) == 1:
        return formats.pop()
    if quiet:
        return None
    if not formats:
        raise UsageError(
            f"cannot tell the format of the source of feature set '{name}'",
            "set source.format: parquet or csv",
        )
    raise UsageError(
        f"the source of feature set '{name}' mixes Parquet and CSV files",
        "set source.format to read one kind",
    )


def _fetch_store(store: ObjectStore, prefix: str, workdir: Path) -> list[Path]:
    keys = [k for k in store.list(prefix) if k.lower().endswith(_PARQUET + _CSV)]
    if not keys:
        raise NotFound(f"no Parquet or CSV object under store:{prefix}")
    out = []
    for i, key in enumerate(sorted(keys)):
        dest = workdir / "store" / f"{i:06d}-{os.path.basename(key)}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, dest)
        out.append(dest)
    return out


def _fetch_s3(url: str, workdir: Path) -> list[Path]:
    """Every Parquet/CSV object under s3://bucket/prefix (the standard AWS credential chain and
    AWS_ENDPOINT_URL)."""
    import boto3
    import botocore.exceptions as bex

    bucket, _, prefix = url[len("s3://") :].partition("/")
    client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    out: list[Path] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = sorted(
            o["Key"]
            for page in pages
            for o in page.get("Contents", [])
            if o["Key"].lower().endswith(_PARQUET + _CSV)
        )
        for i, key in enumerate(keys):
            dest = workdir / "s3" / f"{i:06d}-{os.path.basename(key)}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(dest))
            out.append(dest)
    except (bex.ClientError, bex.BotoCoreError) as exc:
        raise StoreUnreachable(f"cannot read {url}: {exc}") from None
    if not out:
        raise NotFound(f"no Parquet or CSV object under {url}")
    return out


def _pipeline_output(store: ObjectStore, pipeline: str, output: str, workdir: Path) -> Path:
    """The artifact `output` (step.output) of the latest succeeded run of `pipeline`."""

    from mlopsctl.runs import read_run, run_ids
    from mlopsctl.store.blobs import get_blob_file

    step, _, name = output.partition(".")
    for run_id in sorted(run_ids(store), reverse=True):
        try:
            run = read_run(store, run_id)
        except NotFound:
            continue
        if run.get("pipeline") != pipeline or run.get("status") != "succeeded":
            continue
        found = (run.get("steps") or {}).get(step)
        ref = (found.get("outputs") or {}).get(name) if found else None
        if not ref:
            continue
        dest = workdir / "pipeline" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if ref.get("kind") == "dir":
            from mlopsctl.store.artifacts import fetch_artifact

            fetch_artifact(store, ref, dest)
            return dest
        return get_blob_file(store, ref["digest"], dest.with_suffix(".parquet"))
    raise NotFound(
        f"no succeeded run of pipeline '{pipeline}' has an output {output}",
        "run the pipeline first (mlopsctl run), or check source.output",
    )


def typed_view(
    con: duckdb.DuckDBPyConnection,
    fs: FeatureSet,
    files: list[Path],
    fmt: str,
    project_root: Path,
) -> str:
    """Create the views ``source`` (the files), ``transformed`` and ``typed`` (keys, the
    event time as a UTC TIMESTAMP, the created time if any, the features cast to their types,
    in that order); return "typed"."""
    listing = "[" + ", ".join(literal(str(f)) for f in files) + "]"
    if fmt == "parquet":
        con.execute(
            f"CREATE VIEW source AS SELECT * FROM read_parquet({listing}, union_by_name=true)"
        )
    else:
        con.execute(
            f"CREATE VIEW source AS SELECT * FROM read_csv({listing}, union_by_name=true, "
            "header=true)"
        )
    transform = fs.transform
    if "sql" in transform:
        try:
            con.execute(f"CREATE VIEW transformed AS {transform['sql']}")
        except Exception as exc:  # noqa: BLE001 - DuckDB's errors are many classes; all are the user's SQL
            raise UsageError(
                f"transform.sql of feature set '{fs.name}' failed: {_one_line(exc)}",
                "the query reads the view `source`",
            ) from None
    elif "python" in transform:
        frame = con.execute("SELECT * FROM source").df()
        function = _python_function(str(transform["python"]), project_root)
        result = function(frame)
        import pandas as pd

        if not isinstance(result, pd.DataFrame):
            raise UsageError(
                f"transform.python of feature set '{fs.name}' returned "
                f"{type(result).__name__}, not a pandas DataFrame"
            )
        con.register("transformed_frame", result)
        con.execute("CREATE VIEW transformed AS SELECT * FROM transformed_frame")
    else:
        con.execute("CREATE VIEW transformed AS SELECT * FROM source")

    types = {str(row[0]): str(row[1]) for row in con.execute("DESCRIBE transformed").fetchall()}
    needed = [*fs.keys, fs.timestamp, *([fs.created_timestamp] if fs.created_timestamp else [])]
    needed += fs.feature_names
    missing = [c for c in needed if c not in types]
    if missing:
        have = ", ".join(types) or "none"
        raise UsageError(
            f"feature set '{fs.name}': the {'transformed ' if transform else ''}source has no "
            f"column(s) {', '.join(missing)} (it has: {have})",
            "check the spec's entities, timestamp and features (or its transform)",
        )
    parts = [f"CAST({quote(k)} AS {KEY_TYPES[t]}) AS {quote(k)}" for k, t in fs.entities]
    parts.append(f"{_utc(fs.timestamp, types[fs.timestamp], fs.name)} AS {quote(fs.timestamp)}")
    if fs.created_timestamp:
        created = fs.created_timestamp
        parts.append(f"{_utc(created, types[created], fs.name)} AS {quote(created)}")
    parts += [
        f"CAST({quote(f.name)} AS {DUCKDB_TYPES[f.type]}) AS {quote(f.name)}" for f in fs.features
    ]
    con.execute(f"CREATE VIEW typed AS SELECT {', '.join(parts)} FROM transformed")
    return "typed"


def _utc(column: str, kind: str, name: str) -> str:
    """A time column as a naive UTC TIMESTAMP (the session time zone is UTC)."""
    kind = kind.upper()
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return f"CAST({quote(column)} AS TIMESTAMP)"
    if kind == "VARCHAR":
        return f"CAST(CAST({quote(column)} AS TIMESTAMPTZ) AS TIMESTAMP)"
    raise UsageError(
        f"feature set '{name}': column '{column}' is {kind}, not a time",
        "give a timestamp, a date or ISO 8601 text",
    )


def _python_function(target: str, project_root: Path) -> Any:
    """FILE.py:function (relative to the project root) or module:function."""
    where, _, name = target.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        path = path if path.is_absolute() else project_root / path
        if not path.is_file():
            raise NotFound(f"transform.python: {where} does not exist")
        spec = importlib.util.spec_from_file_location(f"mlopsctl_features_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(project_root))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UsageError(f"transform.python: cannot import {where}: {exc}") from None
        finally:
            sys.path.remove(str(project_root))
    function = getattr(module, name, None)
    if not callable(function):
        raise UsageError(f"transform.python: {where} has no function {name}")
    return function


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]


def check_loaded(con: Any, view: str, fs: FeatureSet) -> None:
    """Fail with the column's name when a cast of the typed view fails (DuckDB reports it
    only when rows are read)."""
    try:
        con.execute(f"SELECT count(*) FROM {view}").fetchall()
    except Exception as exc:  # noqa: BLE001 - a conversion error, whatever its class
        raise MlopsError(
            f"feature set '{fs.name}': cannot read the source as declared: {_one_line(exc)}",
            "check the features' types (and the entity key types) against the data",
        ) from None
