"""`mlopsctl models` on a project that really trained and registered the quickstart pipeline:
full provenance in `show`, registering by hand, aliases (set, promote, --expect, history,
rollback), download and predict.

The quickstart is trained once per test session (about 10 s) and each test gets a copy of
that project, store included; `quickstart_project` is shared with the other registry tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.store.local import LocalStore

from .conftest import Invoke, git

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast-cancer"


def quickstart_project(tmp_path_factory: pytest.TempPathFactory, dest: Path) -> dict[str, Any]:
    """Copy a committed project that ran specs/examples/quickstart.yaml (20 trees) to `dest`;
    returns the run record. The training happens on the first call of the session only."""
    base = tmp_path_factory.getbasetemp() / "quickstart-trained"
    record_file = base / "run.json"
    if not record_file.exists():
        shutil.rmtree(base, ignore_errors=True)
        root = base / "demo"
        (root / "pipelines").mkdir(parents=True)
        (root / "mlops.yaml").write_text(
            "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\nstore: {url: .mlops}\n"
        )
        (root / ".gitignore").write_text(".mlops/\n")
        shutil.copy(REPO / "specs/examples/quickstart.yaml", root / "pipelines/quickstart.yaml")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "quickstart"]):
            assert git(root, *args).returncode == 0
        env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
        proc = subprocess.run(
            [sys.executable, "-m", "mlopsctl", "run", "pipelines/quickstart.yaml"]
            + ["-p", "model.n_estimators=20", "--json"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        record_file.write_text(proc.stdout)
    shutil.copytree(base / "demo", dest, symlinks=True)
    return dict(json.loads(record_file.read_text()))


def feature_rows(n: int = 8) -> Any:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame.drop(columns="target").iloc[::40].head(n)


@dataclass
class Trained:
    root: Path
    run: dict[str, Any]

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.root / ".mlops")


@pytest.fixture
def trained(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Trained:
    # A fresh model cache per test: a model loaded by one test must not hide another's store.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    return Trained(root, quickstart_project(tmp_path_factory, root))


def show_json(cli: Invoke, trained: Trained, ref: str) -> dict[str, Any]:
    result = cli("models", "show", ref, "--json", cwd=trained.root)
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


# -- provenance ---------------------------------------------------------------------------------
def test_pipeline_registration_records_full_provenance(cli: Invoke, trained: Trained) -> None:
    run, steps = trained.run, trained.run["steps"]
    assert run["registered"] == {"model": MODEL, "version": 1, "new": True}
    version = show_json(cli, trained, f"{MODEL}:1")

    model_ref = steps["train"]["outputs"]["model"]
    assert version["artifact"]["digest"] == model_ref["digest"]
    assert version["artifact"]["flavor"] == "xgboost"
    blob = trained.store.root / "blobs/sha256" / model_ref["digest"][7:9] / model_ref["digest"][7:]
    with tarfile.open(blob) as tar:
        member = tar.extractfile("model.json")
        assert member is not None
        model_json = member.read()
    assert version["artifact"]["model_json"] == "sha256:" + hashlib.sha256(model_json).hexdigest()

    assert version["run"] == {"id": run["id"], "experiment": "quickstart"}
    assert version["pipeline"] == {"name": "quickstart", "spec": run["spec"], "step": "train"}
    assert len(version["git"]["commit"]) == 40 and version["git"] == run["git"]
    assert version["git"]["dirty"] is False
    assert version["params"] == run["params"] and version["params"]["model"]["n_estimators"] == 20
    assert version["estimator"]["class"] == "xgboost.XGBClassifier"
    assert version["metrics"] == steps["evaluate"]["metrics"]
    assert version["data"]["training"] == {
        "train": {"digest": steps["split"]["outputs"]["train"]["digest"], "rows": 426}
    }
    assert version["evaluation"]["data"] == {
        "test": {"digest": steps["split"]["outputs"]["test"]["digest"], "rows": 143}
    }
    assert version["evaluation"]["outputs"] == steps["evaluate"]["outputs"]
    assert version["trained_by"] == run["user"] and version["trained_at"] == run["started"]
    assert version["trained_on"] == run["where"]
    assert version["who"]["name"] and version["where"]["host"]
    assert version["environment"]["libraries"]["xgboost"]
    assert [f["name"] for f in version["signature"]["features"]][:2] == [
        "mean radius",
        "mean texture",
    ]


def _assert_shows_everything(text: str, version: dict[str, Any]) -> None:
    """Every provenance fact the record holds appears in the human rendering."""
    git_info = version.get("git") or {}
    expected = [
        f"{version['name']}:{version['version']}",
        version["created"],
        version["artifact"]["digest"],
        (version.get("who") or {}).get("name"),
        (version.get("where") or {}).get("host"),
        (version.get("run") or {}).get("id"),
        (version.get("pipeline") or {}).get("name"),
        ((version.get("pipeline") or {}).get("spec") or {}).get("digest"),
        git_info.get("commit"),
        json.dumps(version.get("params"), sort_keys=True),
        (version.get("estimator") or {}).get("class"),
        ((version.get("trained_on") or {}).get("host")),
        version.get("note"),
    ]
    expected += [d["digest"] for d in (version.get("data") or {}).get("training", {}).values()]
    expected += [
        d["digest"] for d in ((version.get("evaluation") or {}).get("data") or {}).values()
    ]
    expected += [f"metric     {name} = " for name in version.get("metrics") or {}]
    for fact in expected:
        if fact:
            assert str(fact) in text, f"{fact!r} missing from:\n{text}"


def test_show_prints_full_provenance_of_any_version(cli: Invoke, trained: Trained) -> None:
    from mlopsctl.registry import register_version

    by_hand = cli(
        "models", "register", "bc-by-hand", "--run", trained.run["id"][:22],
        "--output", "train.model", "--metrics", "evaluate.metrics", "--note", "checked by Ana",
        cwd=trained.root,
    )  # fmt: skip
    assert by_hand.exit_code == 0, by_hand.stderr
    assert by_hand.stdout.strip() == "registered bc-by-hand:1"
    # A bare record (made through the Python API) must render too, not crash on what it lacks.
    digest = trained.run["steps"]["train"]["outputs"]["model"]["digest"]
    register_version(trained.store, "bare", {"artifact": {"digest": digest, "kind": "dir"}})

    for ref in (f"{MODEL}:1", f"{MODEL}", "bc-by-hand:1", "bare:1"):
        version = show_json(cli, trained, ref)
        shown = cli("models", "show", ref, cwd=trained.root)
        assert shown.exit_code == 0, shown.stderr
        _assert_shows_everything(shown.stdout, version)
    hand = show_json(cli, trained, "bc-by-hand:1")
    assert hand["note"] == "checked by Ana"
    assert hand["metrics"] == show_json(cli, trained, f"{MODEL}:1")["metrics"]
    assert (
        "image      (ran locally, no image)"
        in cli("models", "show", "bare:1", cwd=trained.root).stdout
    )


def test_same_artifact_again_is_the_existing_version(cli: Invoke, trained: Trained) -> None:
    again = cli(
        "models", "register", MODEL, "--run", "latest", "--output", "train.model",
        cwd=trained.root,
    )  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == f"already registered as {MODEL}:1"


def test_a_copied_record_gets_its_own_version_number(cli: Invoke, trained: Trained) -> None:
    from mlopsctl.registry import register_version

    first = show_json(cli, trained, f"{MODEL}:1")
    copy = register_version(trained.store, MODEL, {**first, "note": "re-registered"})
    assert copy["version"] == 2
    stored = show_json(cli, trained, f"{MODEL}:2")
    assert (stored["name"], stored["version"], stored["note"]) == (MODEL, 2, "re-registered")
    assert show_json(cli, trained, MODEL)["version"] == 2


def test_latest_needs_no_listing_and_survives_a_bad_hint(
    cli: Invoke, trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlopsctl.registry import latest_version, register_version

    store = trained.store
    first = show_json(cli, trained, f"{MODEL}:1")
    for n in (2, 3):
        register_version(store, MODEL, {**first, "note": f"copy {n}"})
    hint = f"models/{MODEL}/latest.json"
    assert json.loads(store.get(hint)) == {"version": 3}

    listed: list[str] = []
    real_list = store.list

    def counting_list(prefix: str = "") -> Any:
        listed.append(prefix)
        return real_list(prefix)

    monkeypatch.setattr(store, "list", counting_list)
    assert latest_version(store, MODEL) == 3
    assert listed == []  # the hint and two existence checks, whatever the number of versions

    store.put(hint, b'{"version": 1}')  # behind: a registration died before moving it
    assert latest_version(store, MODEL) == 3 and listed == []
    for bogus in (b'{"version": 99}', b"not json", b'["version"]', b'{"version": "3"}'):
        store.put(hint, bogus)  # a hint naming no version is never trusted
        assert latest_version(store, MODEL) == 3
    assert listed == [f"models/{MODEL}/versions/"] * 4
    store.delete(hint)  # a store from before hints
    assert show_json(cli, trained, MODEL)["version"] == 3
    assert register_version(store, MODEL, {**first, "note": "copy 4"})["version"] == 4
    assert json.loads(store.get(hint)) == {"version": 4}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--output", "split.train"], 2, "output 'split.train' of run"),
        (["--output", "train.modle"], 6, "has no output 'train.modle'; outputs: evaluate.metrics"),
        (
            ["--output", "train.model", "--metrics", "evaluate.metricz"],
            6,
            "has no output 'evaluate.metricz'",
        ),
        (["--output", "train.model", "--run", "19990101"], 6, "no run '19990101'"),
    ],
    ids=["not-a-model", "unknown-output", "unknown-metrics", "unknown-run"],
)
def test_register_refuses_what_is_not_a_model(
    cli: Invoke, trained: Trained, args: list[str], code: int, message: str
) -> None:
    run = [] if "--run" in args else ["--run", "latest"]
    result = cli("models", "register", "other", *run, *args, cwd=trained.root)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (trained.store.root / "models/other").exists()


def test_register_finds_model_json_anywhere_in_the_folder(cli: Invoke, trained: Trained) -> None:
    from mlopsctl.runs import new_run_id, save_run
    from mlopsctl.store.artifacts import store_output

    def run_with_model(folder: Path) -> str:
        artifact = store_output(trained.store, folder, trained.root.parent)
        steps = {**trained.run["steps"]}
        steps["train"] = {**steps["train"], "outputs": {"model": artifact}}
        run_id = new_run_id()
        save_run(trained.store, {**trained.run, "id": run_id, "steps": steps})
        return run_id

    folder = trained.root.parent / "unpacked"
    assert cli("models", "download", MODEL, str(folder), cwd=trained.root).exit_code == 0
    # model.json is read from the head of the blob when it is the first member; a file that
    # sorts before it sends registration down the slow path, with the same result.
    (folder / "a-readme.txt").write_text("sorts before model.json\n")
    run_id = run_with_model(folder)
    registered = cli(
        "models", "register", "slow-path", "--run", run_id, "--output", "train.model",
        cwd=trained.root,
    )  # fmt: skip
    assert registered.exit_code == 0, registered.stderr
    version = show_json(cli, trained, "slow-path:1")
    model_json = (folder / "model.json").read_bytes()
    assert version["artifact"]["model_json"] == "sha256:" + hashlib.sha256(model_json).hexdigest()
    from mlopsctl.registry.fetch import _head_model_json

    assert _head_model_json(trained.store, version["artifact"]["digest"]) is None
    quick = trained.run["steps"]["train"]["outputs"]["model"]["digest"]
    assert _head_model_json(trained.store, quick) == model_json
    assert version["artifact"]["flavor"] == "xgboost"
    feature_rows().to_csv(trained.root / "rows.csv", index=False)
    assert cli("models", "predict", "slow-path:1", "rows.csv", cwd=trained.root).exit_code == 0

    (folder / "model.json").unlink()
    missing = cli(
        "models", "register", "slow-path", "--run", run_with_model(folder),
        "--output", "train.model", cwd=trained.root,
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "has no model.json; register the model output of a train" in missing.stderr


# -- aliases ------------------------------------------------------------------------------------
def test_alias_set_promote_expect_history_and_rollback(cli: Invoke, trained: Trained) -> None:
    from mlopsctl.registry import register_version

    first = show_json(cli, trained, f"{MODEL}:1")
    for n in (2, 3):
        register_version(trained.store, MODEL, {**first, "note": f"copy {n}"})

    def ok(*args: str) -> str:
        result = cli(*args, cwd=trained.root)
        assert result.exit_code == 0, result.stderr
        return str(result.stdout.strip())

    assert ok("models", "alias", "set", MODEL, "production", "1", "-m", "first") == (
        f"{MODEL}@production: (none) -> 1"
    )
    assert ok("models", "alias", "set", MODEL, "staging", "2") == f"{MODEL}@staging: (none) -> 2"
    assert ok("models", "promote", f"{MODEL}@staging", "production", "--expect", "1") == (
        f"{MODEL}@production: 1 -> 2"
    )
    stale = cli("models", "alias", "set", MODEL, "production", "3", "--expect", "1")
    assert stale.exit_code == 7
    assert f"{MODEL}@production points at version 2, not 1" in stale.stderr
    assert ok("models", "alias", "set", MODEL, "production", "3", "--expect", "2") == (
        f"{MODEL}@production: 2 -> 3"
    )
    assert show_json(cli, trained, f"{MODEL}@production")["version"] == 3

    # Rolling back twice goes two moves back, not back and forth between the last two.
    assert ok("models", "rollback", MODEL, "production") == f"{MODEL}@production: 3 -> 2"
    assert ok("models", "rollback", MODEL, "production", "-m", "2 is bad too") == (
        f"{MODEL}@production: 2 -> 1"
    )
    nothing = cli("models", "rollback", MODEL, "production")
    assert nothing.exit_code == 6
    assert "has no earlier version to roll back to" in nothing.stderr

    history = json.loads(ok("models", "alias", "history", MODEL, "production", "--json"))
    assert [(m["seq"], m["previous"], m["version"], m["action"]) for m in history] == [
        (1, None, 1, "set"),
        (2, 1, 2, "promote"),
        (3, 2, 3, "set"),
        (4, 3, 2, "rollback"),
        (5, 2, 1, "rollback"),
    ]
    assert history[-1]["reason"] == "2 is bad too"
    assert history[3]["reason"] == "rollback from version 3"
    text = ok("models", "alias", "history", MODEL, "production").splitlines()
    assert len(text) == 5 and "rollback" in text[-1] and "2 is bad too" in text[-1]

    listed = ok("models", "list")
    assert listed.split()[:6] == [MODEL, "latest", "3", "versions", "3", "production=1,"]
    assert "staging=2" in listed

    for bad, code in (
        (["models", "alias", "set", MODEL, "Production", "1"], 2),
        (["models", "alias", "set", MODEL, "production", "9"], 6),
        (["models", "alias", "set", "Breast", "production", "1"], 2),
        (["models", "show", f"{MODEL}@canary"], 6),
        (["models", "show", f"{MODEL}:0"], 2),
    ):
        result = cli(*bad, cwd=trained.root)
        assert result.exit_code == code, (bad, result.stderr)
        assert result.stderr.startswith("mlopsctl: error: ")


# -- download and predict -----------------------------------------------------------------------
def test_download_verifies_and_never_overwrites(cli: Invoke, trained: Trained) -> None:
    dest = trained.root.parent / "model"
    got = cli("models", "download", MODEL, str(dest), cwd=trained.root)
    assert got.exit_code == 0, got.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["model.json", "model.ubj", "preprocess.skops"]
    meta = json.loads((dest / "model.json").read_text())
    for name, digest in meta["files"].items():
        assert digest == "sha256:" + hashlib.sha256((dest / name).read_bytes()).hexdigest()
    again = cli("models", "download", MODEL, str(dest), cwd=trained.root)
    assert again.exit_code == 7 and "already exists" in again.stderr
    assert sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(".model")) == []


def test_predict_csv_and_parquet(cli: Invoke, trained: Trained) -> None:
    import io

    import pandas as pd

    from mlopsctl.registry import load_model

    rows = feature_rows()
    rows.to_csv(trained.root / "rows.csv", index=False)
    rows.to_parquet(trained.root / "rows.parquet")
    model = load_model(f"{MODEL}:1", store=trained.store)
    expected = pd.DataFrame({"prediction": model.predict(rows)})
    proba = model.predict_proba(rows)
    expected["proba_0"], expected["proba_1"] = proba[:, 0], proba[:, 1]

    to_stdout = cli("models", "predict", f"{MODEL}:1", "rows.csv", cwd=trained.root)
    assert to_stdout.exit_code == 0, to_stdout.stderr
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(to_stdout.stdout)), expected)

    to_file = cli("models", "predict", MODEL, "rows.parquet", "-o", "out.csv", cwd=trained.root)
    assert to_file.exit_code == 0, to_file.stderr
    assert to_file.stdout == ""
    pd.testing.assert_frame_equal(pd.read_csv(trained.root / "out.csv"), expected)

    rows.drop(columns="mean radius").to_csv(trained.root / "short.csv", index=False)
    (trained.root / "rows.json").write_text("{}")
    for data, code, message in (
        ("short.csv", 1, "input lacks feature column(s) mean radius"),
        ("rows.json", 2, "cannot tell the format of rows.json"),
        ("nope.csv", 6, "no such data file: nope.csv"),
    ):
        result = cli("models", "predict", MODEL, data, cwd=trained.root)
        assert result.exit_code == code, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
