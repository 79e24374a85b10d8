"""ingest: load a table (CSV or Parquet, local or s3://), a dataset bundled with scikit-learn,
a dataset built from production (``dataset: sha256:...``, by `mlopsctl datasets build` or a
Trigger's run: section), or build one from the serving logs here (``from_logs:``).

Writes it as Parquet for the next steps. A CSV gets row ids 0..n-1 (its index); a Parquet file
keeps the index it was written with when that index is unique, so row ids can be business keys.

``dataset``, when not empty, is read instead of ``path``/``sklearn``: a pipeline can take
``dataset: ${params.dataset}`` (default "") from a trigger and fall back to its usual data when
run by hand. Its digest is in the step's params, so the step cache keys it by content.

``from_logs`` (with an optional ``mix``) joins the model's prediction logs with its outcomes as
`mlopsctl datasets build` does (mlopsctl/datasets), storing the table and its lineage record
(dataset ``<model>-logs``). The step cache keys a step by its ``with:``, not by what the logs
hold then, so ``from_logs`` needs a fixed ``until`` (``${params.until}``; a Trigger's run:
section fills ``${window.until}``), and mixes in content-addressed data only (a bundled set or
a dataset digest). Outcomes that arrive later for a window already built are read by a new
``until``, ``--no-cache``, or a dataset built by `datasets build`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.datasets import BUNDLED, FROM_LOGS_SCHEMA, MIX_SCHEMA
from mlopsctl.errors import MlopsError, NotFound
from mlopsctl.store.blobs import get_blob_file

if TYPE_CHECKING:
    import pandas as pd

    from mlopsctl.components.base import StepContext
    from mlopsctl.store.base import ObjectStore

NAME = "ingest"
DESCRIPTION = (
    "Load a CSV/Parquet file (local or s3://), a bundled scikit-learn dataset, a dataset built "
    "from production, or build one from the serving logs"
)
INPUTS: dict[str, str] = {}
OUTPUTS = {"dataset": "file"}
PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "data file relative to the project root, or s3://bucket/key",
        },
        "format": {
            "enum": ["csv", "tsv", "parquet"],
            "description": "file format when the file name does not tell",
        },
        "sklearn": {
            "type": "string",
            "description": "a dataset bundled with scikit-learn, e.g. breast_cancer",
        },
        "dataset": {
            "type": "string",
            "pattern": "^(sha256:[0-9a-f]{64})?$",
            "description": "a dataset built before (sha256:...), read instead of path/sklearn "
            "when not empty",
        },
        "from_logs": FROM_LOGS_SCHEMA,
        "features": {
            "type": "object",
            "required": ["sets"],
            "additionalProperties": False,
            "description": "join feature sets (kind: FeatureSet) point-in-time: each row gets "
            "every set's values as of its time (mlopsctl features training-set)",
            "properties": {
                "sets": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "FeatureSet spec files, relative to the project root",
                },
                "timestamp": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the rows' time column (default event_timestamp)",
                },
                "keep_keys": {
                    "type": "boolean",
                    "description": "keep the entity keys and the time column (default false)",
                },
            },
        },
        "mix": MIX_SCHEMA,
        "columns": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "uniqueItems": True,
            "description": "keep only these columns",
        },
    },
}
LIBRARIES = ("pandas", "pyarrow", "scikit-learn")
FILE_PARAMS = ("path",)
CODE_MODULES = ("mlopsctl.components.frames",)

# BUNDLED (from mlopsctl.datasets): loaders of the datasets that ship inside scikit-learn.
# scikit-learn datasets fetched from the internet: named here to explain why they are refused.
DOWNLOADED = (
    "california_housing",
    "covtype",
    "kddcup99",
    "lfw_pairs",
    "lfw_people",
    "olivetti_faces",
    "rcv1",
    "species_distributions",
    "20newsgroups",
    "20newsgroups_vectorized",
)
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")


def check(params: dict[str, Any], project_root: Path) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    for index, spec in enumerate((params.get("features") or {}).get("sets") or []):
        if not _local(str(spec), project_root).is_file():
            problems.append(
                (("features", "sets", index), f"feature set spec {spec} does not exist")
            )
    if params.get("from_logs") is not None:
        return problems + _check_from_logs(params)
    if params.get("mix") is not None:
        problems.append((("mix",), "'mix' applies to 'from_logs' only"))
    if params.get("dataset"):
        if params.get("format") is not None:
            problems.append((("format",), "'format' applies to 'path' only"))
        return problems
    path, dataset = params.get("path"), params.get("sklearn")
    if (path is None) == (dataset is None):
        problems.append(((), "give exactly one of 'path' (a data file) or 'sklearn' (a dataset)"))
        return problems
    if dataset is not None:
        problem = _dataset_problem(str(dataset))
        if problem:
            problems.append((("sklearn",), problem))
        if params.get("format") is not None:
            problems.append((("format",), "'format' applies to 'path' only"))
        return problems
    path = str(path)
    if _format_of(path, params.get("format")) is None:
        problems.append(
            (("path",), f"cannot tell the format of {path}; set format: csv, tsv or parquet")
        )
    if not path.startswith("s3://") and not _local(path, project_root).is_file():
        problems.append((("path",), f"data file {path} does not exist"))
    return problems


def _check_from_logs(params: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    others = [k for k in ("path", "sklearn", "format") if params.get(k) is not None]
    if params.get("dataset"):
        others.append("dataset")
    if others:
        listed = ", ".join(f"'{k}'" for k in others)
        problems.append(((), f"'from_logs' builds the data: drop {listed}"))
    from_logs = params["from_logs"]
    if isinstance(from_logs, dict) and not from_logs.get("until"):
        problems.append(
            (
                ("from_logs",),
                "from_logs needs 'until' in a pipeline (like ${params.until}): the step cache "
                "keys the step by its with:, so an open window would be served stale; a "
                "Trigger's run: section can pass ${window.until}",
            )
        )
    mix = params.get("mix")
    for index, source in enumerate(mix if isinstance(mix, list) else [mix] if mix else []):
        if isinstance(source, dict) and source.get("path") is not None:
            where: tuple[Any, ...] = ("mix", index) if isinstance(mix, list) else ("mix",)
            problems.append(
                (
                    (*where, "path"),
                    "mix a bundled set or a dataset digest here: a file would not enter the "
                    "step's cache key (build it with mlopsctl datasets build)",
                )
            )
    return problems


def run(ctx: StepContext) -> None:
    params = ctx.params
    for path, message in check(params, ctx.project_root):
        where = ".".join(str(p) for p in path)
        raise MlopsError(f"{where}: {message}" if where else message)

    from mlopsctl.models.artifact import file_digest

    if params.get("from_logs") is not None:
        frame, digest, source = _from_logs(ctx)
    elif params.get("dataset"):
        frame, digest, source = _stored_dataset(ctx, str(params["dataset"]))
    elif params.get("sklearn") is not None:
        name = str(params["sklearn"])
        frame = _load_bundled(name)
        digest = _frame_digest(frame)
        source = f"sklearn:{name}"
    else:
        source = str(params["path"])
        file = _download(source, ctx.workdir) if source.startswith("s3://") else None
        file = file or _local(source, ctx.project_root)
        fmt = _format_of(source, params.get("format"))
        assert fmt is not None  # check() refused unknown formats
        digest = file_digest(file)
        frame = _read(file, fmt, source)

    columns = params.get("columns")
    if columns:
        from mlopsctl.components.frames import require_columns

        require_columns(frame, list(columns), "data", "columns")
        frame = frame[list(columns)]
    if not frame.index.is_unique:
        ctx.log(f"ingest: the index of {source} has duplicates; rows are numbered 0..n-1")
        frame = frame.reset_index(drop=True)
    if params.get("features") is not None:
        frame = _with_features(ctx, frame)

    from mlopsctl.components.frames import write_table

    write_table(frame, ctx.outputs["dataset"])
    ctx.info.update(
        source=source,
        source_digest=digest,
        rows=len(frame),
        columns=int(frame.shape[1]),
        dtypes={str(c): str(t) for c, t in frame.dtypes.items()},
    )


def _local(path: str, project_root: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else project_root / candidate


def _format_of(path: str, given: Any) -> str | None:
    if given:
        return str(given)
    name = path.lower()
    for suffix in _COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _SUFFIX_FORMATS.get(os.path.splitext(name)[1])


def _dataset_problem(name: str) -> str | None:
    bundled = ", ".join(sorted(BUNDLED))
    if name in BUNDLED:
        return None
    if name in DOWNLOADED:
        return (
            f"scikit-learn dataset '{name}' is downloaded from the internet; "
            f"ingest loads only the bundled ones: {bundled}"
        )
    import difflib

    close = difflib.get_close_matches(name, list(BUNDLED), n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown scikit-learn dataset '{name}'; {guess}bundled: {bundled}"


def _from_logs(ctx: StepContext) -> tuple[pd.DataFrame, str, str]:
    """Build the window here (mlopsctl.datasets), storing the table and its record."""
    import pandas as pd

    if ctx.store is None:
        raise MlopsError("from_logs reads the serving logs in the store, and this step has none")
    from mlopsctl.datasets import build  # DuckDB and the store's records: only when it runs

    params = ctx.params
    model = str(params["from_logs"]["model"])
    folder = ctx.workdir / "from-logs"
    folder.mkdir(parents=True, exist_ok=True)
    built = build(
        ctx.store,
        {"from_logs": params["from_logs"], "mix": params.get("mix")},
        name=f"{model}-logs",
        root=ctx.project_root,
        workdir=folder,
    )
    assert built.path is not None
    frame = pd.read_parquet(built.path)
    ctx.info["dataset"] = built.summary()
    counts = built.record["counts"]
    ctx.log(
        f"ingest: {counts.get('labelled_rows', 0)} labelled row(s) of {model} "
        f"({counts.get('unlabelled_rows', 0)} unlabelled dropped), "
        f"{counts.get('mixed_rows', 0)} mixed in: dataset {built.digest}"
    )
    return frame, built.digest, f"dataset:{built.record['name']}"


def _stored_dataset(ctx: StepContext, digest: str) -> tuple[pd.DataFrame, str, str]:
    """A dataset built before, from the store by its digest (verified)."""
    import pandas as pd

    if ctx.store is None:
        raise MlopsError(f"dataset {digest} is in the store, and this step has none")
    dest = ctx.workdir / "dataset.parquet"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        get_blob_file(ctx.store, digest, dest)
    except NotFound:
        raise NotFound(
            f"dataset {digest} is not in the store",
            "build it with: mlopsctl datasets build SPEC (it prints the digest)",
        ) from None
    hex_digest = digest.removeprefix("sha256:")
    records = [k for k in ctx.store.list("datasets/") if k.endswith(f"/{hex_digest}.json")]
    if records:
        ctx.info["dataset"] = {"digest": digest, "record": records[0]}
    return pd.read_parquet(dest), digest, digest


def _load_bundled(name: str) -> pd.DataFrame:
    from sklearn import datasets

    bunch = getattr(datasets, BUNDLED[name])(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame


def _read(file: Path, fmt: str, source: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow

    try:
        if fmt == "parquet":
            return pd.read_parquet(file)
        return pd.read_csv(file, sep="\t" if fmt == "tsv" else ",")
    except (
        OSError,
        ValueError,
        UnicodeDecodeError,
        pd.errors.ParserError,
        pyarrow.ArrowException,
    ) as exc:
        detail = " ".join(str(exc).split())
        raise MlopsError(
            f"cannot read {source} as {fmt}: {detail}",
            "check the file, or set 'format' if its name misleads",
        ) from None


def _download(url: str, workdir: Path) -> Path:
    """Fetch s3://bucket/key with the standard AWS credential chain (and AWS_ENDPOINT_URL)."""
    import boto3
    import botocore.exceptions as bex

    from mlopsctl.errors import NotFound, StoreUnauthorized, StoreUnreachable

    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise MlopsError(f"path: {url} is not an s3://bucket/key address")
    dest = workdir / f"source-{os.path.basename(key)}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    try:
        client.download_file(bucket, key, str(dest))
    except bex.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise NotFound(f"data file {url} does not exist") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StoreUnauthorized(
                f"not allowed to read {url} ({code})", "check the AWS credentials"
            ) from None
        raise StoreUnreachable(f"cannot read {url}: {code or exc}") from None
    except bex.NoCredentialsError:
        raise StoreUnauthorized(
            f"no AWS credentials to read {url}",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
        ) from None
    except bex.BotoCoreError as exc:
        raise StoreUnreachable(f"cannot read {url}: {exc}", "check AWS_ENDPOINT_URL") from None
    return dest


def _frame_digest(frame: pd.DataFrame) -> str:
    """Content digest of a dataset that has no source file: column names and row hashes."""
    import pandas as pd

    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def store_digests(params: dict[str, Any], root: Path, store: ObjectStore) -> dict[str, str]:
    """What this step reads from the store by itself, for its step cache key (the executor
    asks): with ``features:``, each set's current offline materialisation, named by its
    manifest's digest, so that new values materialised since make the step run again rather
    than serve the old join from the cache. Nothing for any other ingest."""
    options = params.get("features")
    if not isinstance(options, dict) or not options.get("sets"):
        return {}
    from mlopsctl.features import load_featuresets
    from mlopsctl.features.offline import current_key

    found = {}
    for fs in load_featuresets([_local(str(p), root) for p in options["sets"]]):
        try:
            manifest = str(json.loads(store.get(current_key(fs.name)))["manifest"])
        except NotFound:
            manifest = "none"  # the step itself says to materialise it
        found[f"featureset:{fs.name}"] = f"manifest:{manifest}"
    return found


def _with_features(ctx: StepContext, frame: pd.DataFrame) -> pd.DataFrame:
    """``features:``: the rows joined point-in-time with the feature sets' offline data (the
    keys and time column dropped unless keep_keys); the sets and their content digests go
    into the step's info, and from there into the version a model of this run becomes."""
    from mlopsctl.features import DEFAULT_TIMESTAMP, load_featuresets, training_set

    options = ctx.params["features"]
    if ctx.store is None:
        raise MlopsError("features: joining feature sets needs the project store")
    sets = load_featuresets([_local(str(p), ctx.project_root) for p in options["sets"]])
    timestamp = str(options.get("timestamp") or DEFAULT_TIMESTAMP)
    result = training_set(ctx.store, sets, frame.reset_index(drop=True), timestamp=timestamp)
    assert result.table is not None
    joined = result.table.to_pandas()
    joined.index = frame.index
    if not options.get("keep_keys"):
        drop = {timestamp, *(k for fs in sets for k in fs.keys)}
        joined = joined.drop(columns=[c for c in joined.columns if c in drop])
    ctx.info.update(feature_sets=result.sets, feature_rows_matched=result.matched)
    for name, matched in result.matched.items():
        ctx.log(f"ingest: feature set {name}: values for {matched} of {result.rows} rows")
    return joined
