"""The model registry at scale, on a real SeaweedFS server: with 1,000 versions of one model,
the median time of

  mlopsctl models show NAME@production      a CLI process (alias, then one version record)
  mlopsctl models list                      a CLI process (one listing of models/)
  mlopsctl models list NAME                 a CLI process reading every version record (shown,
                                            no goal: it prints all 1,000)
  register one more version, CLI            `mlopsctl models register NAME --run RUN
                                            --output train.model`, each from a new run whose
                                            distinct model blob the run already stored
  register one more version, Python API     mlopsctl.registry.register_version with a distinct
                                            record, blob already stored

against the floors of `python -c pass`, `mlopsctl --version` and importing boto3 and making an
S3 client (what every S3 command pays before its first request), and the upload of a model
blob for reference. Every
registration makes a real new version (a re-register of the latest artifact would only return
the existing one). Goals: show < 0.3 s, list < 2 s, register < 0.5 s beyond the upload.

    .venv/bin/python bench/registry.py [--versions 1000] [--runs 9] [--threads 2]

Seeding is CPU-bound in botocore (about 2.5 ms of CPU per request, seven requests per
registration): on two cores two threads seed fastest, and more threads only add collisions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlopsctl.registry import (  # noqa: E402
    register_from_run,
    register_version,
    set_alias,
    version_numbers,
)
from mlopsctl.runs import new_run_id, now_iso, save_run  # noqa: E402
from mlopsctl.store.artifacts import store_output  # noqa: E402
from mlopsctl.store.base import ObjectStore  # noqa: E402
from mlopsctl.store.s3 import S3Store  # noqa: E402
from mlopsctl.testing.seaweed import start_seaweed  # noqa: E402

BUCKET = "bench-registry"
NAME = "churn"
GOALS = {"show": 0.3, "list": 2.0, "register": 0.5}


def train_model(folder: Path) -> None:
    """A real model artifact: a random forest on the breast-cancer data (about 1 MB)."""
    from sklearn.datasets import load_breast_cancer

    from mlopsctl.components import _fit
    from mlopsctl.models.artifact import Feature, prepare_features, save_model

    frame = load_breast_cancer(as_frame=True).frame
    features = [Feature(str(c), "float64", "numeric") for c in frame.columns if c != "target"]
    class_path = "sklearn.ensemble.RandomForestClassifier"
    estimator, params = _fit.make_estimator(class_path, {"n_estimators": 50}, seed=0)
    y, classes = _fit.encode_target(frame["target"], "classification", "target")
    pipeline = _fit.build_pipeline(estimator, features)
    pipeline.fit(prepare_features(frame, features), y)
    save_model(
        pipeline,
        folder,
        estimator_class=class_path,
        params=params,
        task="classification",
        target="target",
        features=features,
        classes=classes,
        frame=frame,
    )


def variant(model: Path, dest: Path, tag: str) -> Path:
    """The same model with a marker in model.json: another artifact, another digest."""
    shutil.copytree(model, dest)
    meta = json.loads((dest / "model.json").read_text())
    meta["bench_copy"] = tag
    (dest / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dest


def fake_run(store: ObjectStore, artifact: dict[str, Any], commit: str) -> str:
    """A succeeded training run whose train.model output is `artifact`."""
    run_id = new_run_id()
    save_run(
        store,
        {
            "id": run_id,
            "kind": "pipeline",
            "pipeline": "bench",
            "experiment": "registry-bench",
            "status": "succeeded",
            "spec": {"path": "pipelines/train.yaml", "digest": "sha256:" + "0" * 64},
            "params": {"model": {"n_estimators": 50}},
            "started": now_iso(),
            "git": {"commit": commit, "branch": "main", "dirty": False, "remote": None},
            "user": {"name": "bench@example.com", "source": "git"},
            "where": {"host": "bench", "platform": "Linux", "python": "3.11", "ci": False},
            "environment": {"mlopsctl": "bench"},
            "steps": {
                "train": {
                    "status": "executed",
                    "inputs": {"train": "sha256:" + "1" * 64},
                    "outputs": {"model": artifact},
                    "metrics": {"fit_seconds": 1.0},
                }
            },
        },
    )
    return run_id


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2, help="seeding threads")
    parser.add_argument("--workdir", help="where the server data and files go (default: temp)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mlopsctl-bench-registry-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"starting SeaweedFS in {workdir} ...", flush=True)
    server = start_seaweed(workdir / "seaweedfs")
    try:
        os.environ.update(
            AWS_ACCESS_KEY_ID=server.access_key,
            AWS_SECRET_ACCESS_KEY=server.secret_key,
            AWS_DEFAULT_REGION=server.region,
            AWS_EC2_METADATA_DISABLED="true",
            XDG_CACHE_HOME=str(workdir / "cache"),
        )
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MLOPSCTL_STORE"):
            os.environ.pop(name, None)
        server.create_bucket(BUCKET)
        url = f"s3://{BUCKET}/registry"
        project = workdir / "project"
        project.mkdir(exist_ok=True)
        (project / "mlops.yaml").write_text(
            "apiVersion: mlopsctl/v1\nkind: Project\nname: bench\n"
            f"store:\n  url: {url}\n  s3: {{endpoint_url: '{server.endpoint}'}}\n"
        )
        store = S3Store(url, endpoint_url=server.endpoint)

        print("training a model artifact ...", flush=True)
        model = workdir / "model"
        shutil.rmtree(model, ignore_errors=True)
        train_model(model)
        started = time.perf_counter()
        artifact = store_output(store, model, workdir)
        upload_s = time.perf_counter() - started
        base = register_from_run(store, {**_run(store, artifact)}, NAME, "train.model")
        record = {k: v for k, v in base.items() if k not in ("name", "version", "created")}
        print(
            f"model blob {artifact['size'] / 1e6:.2f} MB stored in {upload_s:.3f} s; "
            f"seeding {args.versions} versions with {args.threads} threads ...",
            flush=True,
        )

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(
                pool.map(
                    lambda i: register_version(store, NAME, {**record, "note": f"seed {i}"}),
                    range(args.versions - 1),
                )
            )
        seeded = version_numbers(store, NAME)
        assert seeded == list(range(1, args.versions + 1)), "seeding lost or skipped a version"
        print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
        for version in (args.versions // 2, args.versions - 1, args.versions // 2):
            set_alias(store, NAME, "production", version, reason="bench")

        # Runs whose model the CLI registers, one per timed registration, prepared up front.
        cli_runs = []
        for i in range(args.runs):
            copy = variant(model, workdir / f"model-{i}", f"cli-{i}")
            cli_runs.append(fake_run(store, store_output(store, copy, workdir), f"{i:040d}"))

        exe = Path(sys.executable).with_name("mlopsctl")
        cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlopsctl"]

        def run_cli(*cli_args: str) -> None:
            proc = subprocess.run(
                [*cli, *cli_args], cwd=project, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                sys.exit(f"mlopsctl {' '.join(cli_args)} exited {proc.returncode}: {proc.stderr}")

        for _ in range(2):  # warm the page cache, .pyc files and the server
            run_cli("models", "show", f"{NAME}@production")
            run_cli("models", "list")

        boto_floor = (
            "import boto3; boto3.session.Session().client('s3', endpoint_url="
            f"{server.endpoint!r}, region_name='us-east-1')"
        )
        results: dict[str, list[float]] = {
            "python -c pass": [],
            "mlopsctl --version (CLI floor)": [],
            "python: import boto3 + S3 client (floor)": [],
            "mlopsctl models show NAME@production": [],
            "mlopsctl models list": [],
            "mlopsctl models list NAME": [],
            "register, CLI (models register --run)": [],
            "register, Python API (register_version)": [],
        }
        for i in range(args.runs):
            results["python -c pass"].append(
                timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
            )
            results["mlopsctl --version (CLI floor)"].append(timed(lambda: run_cli("--version")))
            results["python: import boto3 + S3 client (floor)"].append(
                timed(lambda: subprocess.run([sys.executable, "-c", boto_floor], check=True))
            )
            results["mlopsctl models show NAME@production"].append(
                timed(lambda: run_cli("models", "show", f"{NAME}@production"))
            )
            results["mlopsctl models list"].append(timed(lambda: run_cli("models", "list")))
            results["mlopsctl models list NAME"].append(
                timed(lambda: run_cli("models", "list", NAME))
            )
            run_id = cli_runs[i]
            results["register, CLI (models register --run)"].append(
                timed(
                    lambda run_id=run_id: run_cli(
                        "models", "register", NAME, "--run", run_id, "--output", "train.model"
                    )
                )
            )
            results["register, Python API (register_version)"].append(
                timed(lambda i=i: register_version(store, NAME, {**record, "note": f"api {i}"}))
            )
        final = version_numbers(store, NAME)
        assert final == list(range(1, args.versions + 2 * args.runs + 1)), "a version was lost"

        medians = {k: median_of(v) for k, v in results.items()}
        print(f"\n{args.versions} versions of one model on SeaweedFS, {args.runs} runs; medians:")
        for name, value in medians.items():
            print(f"  {name:42s} {value:7.3f} s")
        print(f"  {'(upload of the model blob, once)':42s} {upload_s:7.3f} s")
        verdicts = [
            ("show", medians["mlopsctl models show NAME@production"]),
            ("list", medians["mlopsctl models list"]),
            ("register", medians["register, CLI (models register --run)"]),
            ("register", medians["register, Python API (register_version)"]),
        ]
        labels = ["models show NAME@production", "models list", "register (CLI)", "register (API)"]
        print()
        for label, (goal, value) in zip(labels, verdicts, strict=True):
            verdict = "met" if value < GOALS[goal] else "MISSED"
            print(f"  {label:30s} {value:6.3f} s  goal < {GOALS[goal]:.1f} s  {verdict}")
        store.close()
        return 0
    finally:
        server.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(store: ObjectStore, artifact: dict[str, Any]) -> dict[str, Any]:
    run_id = fake_run(store, artifact, hashlib.sha1(b"bench").hexdigest())
    return dict(json.loads(store.get(f"runs/{run_id}.json")))


if __name__ == "__main__":
    raise SystemExit(main())
