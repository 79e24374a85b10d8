"""One-row explanation latency, in process (goal: p99 under 15 ms): `explain()` on a single-row
DataFrame, the way a server answers `:explain`, for the quickstart's XGBoost model (breast
cancer, 200 trees of depth 4, exact TreeSHAP) and, for reference, a 100-tree random forest and
a logistic regression (scikit-learn), next to a plain one-row predict and a one-row outlier
score, and the explanation alone of a row already through the preprocessing (``explain*``, what
a server with a compiled preprocessing pays). Models are trained, saved and loaded back as
`mlopsctl run` does it.

Wall-clock percentiles are the goal's measure; the calling thread's CPU time per call is printed
next to them, since on a machine whose cores are busy with other work the wall clock mostly
measures the wait for a core (the load average is printed first).

.venv/bin/python bench/explain.py [--calls N] [--warmup N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

MODELS = (
    ("xgboost (quickstart)", "xgboost.XGBClassifier", {"n_estimators": 200, "max_depth": 4}),
    ("random forest", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100}),
    ("logistic regression", "sklearn.linear_model.LogisticRegression", {"max_iter": 5000}),
)


def _train(folder: Path, class_path: str, params: dict[str, Any]) -> Any:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from mlopsctl.components import _fit
    from mlopsctl.models.artifact import load_model_dir, prepare_features, save_model

    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=0.25, random_state=42, stratify=frame["target"])
    features = _fit.choose_features(train, "target", None, None)
    estimator, used = _fit.make_estimator(class_path, params, 0)
    y, classes = _fit.encode_target(train["target"], "classification", "target")
    pipeline = _fit.build_pipeline(estimator, features)
    pipeline.fit(prepare_features(train, features), y)
    save_model(
        pipeline,
        folder,
        estimator_class=class_path,
        params=used,
        task="classification",
        target="target",
        features=features,
        classes=classes,
        frame=train,
    )
    return load_model_dir(folder), test.drop(columns="target")


def _percentiles(call: Any, rows: list[Any], calls: int, warmup: int) -> list[float]:
    """[wall p50, wall p99, CPU p50, CPU p99] in milliseconds."""
    import numpy as np

    for i in range(warmup):
        call(rows[i % len(rows)])
    wall, cpu = np.empty(calls), np.empty(calls)
    for i in range(calls):
        row = rows[i % len(rows)]
        start, start_cpu = time.perf_counter(), time.thread_time()
        call(row)
        wall[i], cpu[i] = time.perf_counter() - start, time.thread_time() - start_cpu
    table = np.percentile(np.stack([wall, cpu]) * 1000, [50, 99], axis=1).T
    return [float(v) for v in table.ravel()]


def _explain_transformed(model: Any, matrix: Any) -> Any:
    from mlopsctl.models.explain import explain

    return explain(model, None, transformed=matrix)


def main() -> None:
    from mlopsctl.models.explain import explain
    from mlopsctl.models.outliers import outlier_scores

    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"one-row calls, {args.calls} each after {args.warmup} warm-up calls (milliseconds)")
    print(f"load average {load} on {os.cpu_count()} CPUs")
    heads = ("wall p50", "wall p99", "cpu p50", "cpu p99")
    print(f"{'model':<22} {'call':<8} " + " ".join(f"{h:>9}" for h in heads))
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-explain-") as tmp:
        for label, class_path, params in MODELS:
            model, held_out = _train(Path(tmp) / label.split()[0], class_path, params)
            rows = [held_out.iloc[[i]] for i in range(len(held_out))]
            # The same rows through the model's preprocessing beforehand, as a server's compiled
            # fast path hands them over (explain(..., transformed=)): the explanation alone.
            prepared = [model.transform(row) for row in rows]
            calls: list[tuple[str, Any, list[Any]]] = [
                ("explain", partial(explain, model), rows),
                ("explain*", partial(_explain_transformed, model), prepared),
                ("predict", model.predict, rows),
                ("outlier", partial(outlier_scores, model), rows),
            ]
            for name, call, inputs in calls:
                p50, p99, cpu50, cpu99 = _percentiles(call, inputs, args.calls, args.warmup)
                if name == "explain" and class_path.startswith("xgboost"):
                    worst = p99
                print(f"{label:<22} {name:<8} {p50:9.3f} {p99:9.3f} {cpu50:9.3f} {cpu99:9.3f}")
    print("explain*: after the preprocessing (the rows handed over already transformed)")
    verdict = "met" if worst < 15 else "MISSED"
    print(f"goal: one-row explanation p99 under 15 ms (quickstart): {worst:.2f} ms, {verdict}")


if __name__ == "__main__":
    main()
