"""A damaged or hostile model is refused before any deserialiser runs.

- A corrupted or truncated model blob, on the local store and on a real SeaweedFS server:
  `models download` and `models predict` (the load path) exit non-zero with one line naming
  the corrupt blob; the deserialisers, replaced by spies, are never called. The same commands
  on the intact blob do reach them, so the spies would have seen a call.
- A locally altered cached copy is fetched again from the store rather than used.
- A pickle is refused without --trust (a malicious one never runs); with --trust a benign one
  loads, but only after its digest is checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.errors import IntegrityError
from mlopsctl.models.artifact import UnsafeModel
from mlopsctl.store.base import ObjectStore
from mlopsctl.store.blobs import blob_key

from .conftest import Invoke
from .test_models import MODEL, feature_rows, quickstart_project

CORRUPT = f"mlopsctl: error: the artifact of {MODEL}:1 is damaged: "


@dataclass
class Spies:
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Spies:
    """Every deserialiser a model load can reach, wrapped to record that it was called."""
    import skops.io
    import xgboost

    from mlopsctl.models import artifact

    found = Spies()

    def spy(owner: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            found.calls.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("_load_skops", "_load_xgboost", "_load_pickle"):
        spy(artifact, name)
    spy(skops.io, "loads")
    spy(xgboost.XGBModel, "load_model")
    spy(pickle, "loads")
    return found


@dataclass
class Project:
    root: Path
    store: ObjectStore

    def __post_init__(self) -> None:
        feature_rows().to_csv(self.root / "rows.csv", index=False)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def project(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Project]:
    """The trained quickstart project; for S3, its model version moved into a SeaweedFS store
    that the project's mlops.yaml points at."""
    from mlopsctl.store.local import LocalStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    local = LocalStore(root / ".mlops")
    if request.param == "local":
        yield Project(root, local)
        return
    s3_url = request.getfixturevalue("s3_url")
    store = request.getfixturevalue("make_s3_store")()
    record = local.get(f"models/{MODEL}/versions/1.json")
    digest = json.loads(record)["artifact"]["digest"]
    store.put_file(blob_key(digest), local.root / blob_key(digest))
    store.put_if_absent(f"models/{MODEL}/versions/1.json", record)
    endpoint = request.getfixturevalue("s3_env").endpoint
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\n"
        f"store:\n  url: {s3_url}\n  s3: {{endpoint_url: '{endpoint}'}}\n"
    )
    yield Project(root, store)


def model_blob(project: Project, ref: str = f"{MODEL}:1") -> str:
    from mlopsctl.registry import resolve

    return blob_key(resolve(project.store, ref)["artifact"]["digest"])


def one_line_error(result: Any, code: int, starts: str) -> str:
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]
    return str(lines[0])


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated"])
def test_damaged_blob_is_refused_before_any_deserialiser(
    cli: Invoke, project: Project, spies: Spies, damage: str
) -> None:
    key = model_blob(project)
    intact = project.store.get(key)
    if damage == "truncated":
        damaged = intact[: len(intact) // 2]
    else:
        middle = len(intact) // 2
        damaged = intact[:middle] + bytes([intact[middle] ^ 0xFF]) + intact[middle + 1 :]
    project.store.put(key, damaged)

    dest = project.root.parent / "downloaded"
    download = cli("models", "download", f"{MODEL}:1", str(dest), cwd=project.root)
    line = one_line_error(download, 1, CORRUPT)
    assert f"{key} " in line and "is corrupt: its sha256 is" in line
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".downloaded")] == []

    predict = cli("models", "predict", f"{MODEL}:1", "rows.csv", cwd=project.root)
    one_line_error(predict, 1, CORRUPT)
    assert predict.stdout == ""
    from mlopsctl.registry import load_model

    with pytest.raises(IntegrityError, match="is corrupt"):
        load_model(f"{MODEL}:1", store=project.store)
    assert not list((project.root.parent / "cache/mlopsctl/models").iterdir())
    assert spies.calls == []

    # The control: with the blob intact the same commands load the model through the spies.
    project.store.put(key, intact)
    assert cli("models", "download", MODEL, str(dest), cwd=project.root).exit_code == 0
    assert cli("models", "predict", MODEL, "rows.csv", cwd=project.root).exit_code == 0
    assert {"mlopsctl.models.artifact._load_xgboost", "skops.io.loads"} <= set(spies.calls)


def test_altered_cached_copy_is_fetched_again(
    cli: Invoke, project: Project, spies: Spies, tmp_path: Path
) -> None:
    first = cli("models", "predict", MODEL, "rows.csv", cwd=project.root)
    assert first.exit_code == 0, first.stderr
    (cached,) = (tmp_path / "cache/mlopsctl/models").iterdir()
    good = (cached / "model.ubj").read_bytes()
    (cached / "model.ubj").write_bytes(good[:-10] + b"0123456789")
    spies.calls.clear()

    again = cli("models", "predict", MODEL, "rows.csv", cwd=project.root)
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    assert (cached / "model.ubj").read_bytes() == good

    # Altered in the cache and corrupt in the store: nothing left to trust.
    (cached / "model.ubj").write_bytes(b"not a model")
    key = model_blob(project)
    project.store.put(key, project.store.get(key)[:-1])
    spies.calls.clear()
    refused = cli("models", "predict", MODEL, "rows.csv", cwd=project.root)
    one_line_error(refused, 1, CORRUPT)
    assert spies.calls == []


# -- pickle -------------------------------------------------------------------------------------
class Hostile:
    """Unpickling this runs a shell command: what a tampered bucket could hand a reader."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.sentinel}",))


def register_pickle(
    store: ObjectStore, tmp: Path, name: str, payload: bytes, recorded: bytes | None = None
) -> None:
    """A pickle-flavor model version; `recorded` is what model.json claims model.pkl holds."""
    from mlopsctl.models.artifact import FORMAT
    from mlopsctl.registry import register_version
    from mlopsctl.store.artifacts import store_output

    folder = tmp / f"artifact-{name}"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(payload)
    digest = hashlib.sha256(recorded if recorded is not None else payload).hexdigest()
    meta = {
        "format": FORMAT,
        "flavor": "pickle",
        "files": {"model.pkl": f"sha256:{digest}"},
        "task": "classification",
        "target": "y",
        "classes": ["no", "yes"],
        "features": [{"name": "x", "dtype": "float64", "kind": "numeric"}],
    }
    (folder / "model.json").write_text(json.dumps(meta))
    artifact = store_output(store, folder, tmp)
    artifact["model_json"] = (
        "sha256:" + hashlib.sha256((folder / "model.json").read_bytes()).hexdigest()
    )
    register_version(store, name, {"artifact": {**artifact, "flavor": "pickle"}})


def benign_pipeline() -> tuple[Any, Any]:
    """A fitted scikit-learn Pipeline on one numeric feature, and rows to score."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.linspace(-3, 3, 60)
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    pipeline.fit(pd.DataFrame({"x": x}), (x > 0.4).astype(int))
    return pipeline, pd.DataFrame({"x": [-2.0, 0.0, 0.5, 2.5]})


@pytest.fixture
def local_project(cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    from mlopsctl.store.local import LocalStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "picky"
    root.mkdir()
    (root / "mlops.yaml").write_text("apiVersion: mlopsctl/v1\nkind: Project\nname: p\n")
    return Project(root, LocalStore(root / ".mlops"))


def test_malicious_pickle_is_refused_without_trust(
    cli: Invoke,
    local_project: Project,
    spies: Spies,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sentinel = tmp_path / "pwned"
    register_pickle(local_project.store, tmp_path, "evil", pickle.dumps(Hostile(sentinel)))
    _, rows = benign_pipeline()
    rows.to_csv(local_project.root / "x.csv", index=False)

    result = cli("models", "predict", "evil:1", "x.csv", cwd=local_project.root)
    line = one_line_error(result, 1, "mlopsctl: error: model ")
    assert line.endswith(
        "is a pickle; loading it can run arbitrary code; "
        "pass --trust (trust_pickle=True) only for artifacts you made"
    )
    from mlopsctl import load_model

    monkeypatch.chdir(local_project.root)  # the Python API finds the project from here
    with pytest.raises(UnsafeModel, match="is a pickle"):
        load_model("evil:1")
    assert not sentinel.exists()
    assert spies.calls == []


def test_trusted_pickle_loads_only_after_its_digest_is_checked(
    cli: Invoke, local_project: Project, spies: Spies, tmp_path: Path
) -> None:
    pipeline, rows = benign_pipeline()
    payload = pickle.dumps(pipeline)
    register_pickle(local_project.store, tmp_path, "handmade", payload)
    rows.to_csv(local_project.root / "x.csv", index=False)

    refused = cli("models", "predict", "handmade:1", "x.csv", cwd=local_project.root)
    one_line_error(refused, 1, "mlopsctl: error: model ")
    assert spies.calls == []

    trusted = cli("models", "predict", "handmade:1", "x.csv", "--trust", cwd=local_project.root)
    assert trusted.exit_code == 0, trusted.stderr
    lines = trusted.stdout.strip().splitlines()
    assert lines[0] == "prediction,proba_no,proba_yes"
    labels = ["no", "yes"]
    assert [line.split(",")[0] for line in lines[1:]] == [labels[i] for i in pipeline.predict(rows)]
    assert "mlopsctl.models.artifact._load_pickle" in spies.calls

    # model.json vouches for other bytes than model.pkl holds: refused before unpickling.
    register_pickle(local_project.store, tmp_path, "swapped", payload, recorded=b"other bytes")
    spies.calls.clear()
    swapped = cli("models", "predict", "swapped:1", "x.csv", "--trust", cwd=local_project.root)
    line = one_line_error(swapped, 1, "mlopsctl: error: model file ")
    assert "model.pkl does not match its sha256 in model.json" in line
    assert spies.calls == []
