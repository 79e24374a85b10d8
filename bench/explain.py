"""One-row explanation latency, in process (goal: p99 under 15 ms): `explain()` on a single-row
DataFrame, the way a server answers `:explain`, for the quickstart's XGBoost model (breast
cancer, 200 trees of depth 4, exact TreeSHAP) and, for reference, a 100-tree random forest and
a logistic regression (scikit-learn), next to a plain one-row predict and a one-row outlier
score. Models are trained, saved and loaded back as `mlopsctl run` does it.

.venv/bin/python bench/explain.py [--calls N] [--warmup N]
"""

from __future__ import annotations

import argparse
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


def _percentiles(call: Any, rows: list[Any], calls: int, warmup: int) -> tuple[float, float]:
    import numpy as np

    for i in range(warmup):
        call(rows[i % len(rows)])
    times = np.empty(calls)
    for i in range(calls):
        row = rows[i % len(rows)]
        start = time.perf_counter()
        call(row)
        times[i] = time.perf_counter() - start
    p50, p99 = np.percentile(times * 1000, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    from mlopsctl.models.explain import explain
    from mlopsctl.models.outliers import outlier_scores

    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    print(f"one-row calls, {args.calls} each after {args.warmup} warm-up calls (milliseconds)")
    print(f"{'model':<22} {'call':<10} {'p50':>8} {'p99':>8}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-explain-") as tmp:
        for label, class_path, params in MODELS:
            model, held_out = _train(Path(tmp) / label.split()[0], class_path, params)
            rows = [held_out.iloc[[i]] for i in range(len(held_out))]
            calls: list[tuple[str, Any]] = [
                ("explain", partial(explain, model)),
                ("predict", model.predict),
                ("outlier", partial(outlier_scores, model)),
            ]
            for name, call in calls:
                p50, p99 = _percentiles(call, rows, args.calls, args.warmup)
                if name == "explain" and class_path.startswith("xgboost"):
                    worst = p99
                print(f"{label:<22} {name:<10} {p50:8.3f} {p99:8.3f}")
    verdict = "met" if worst < 15 else "MISSED"
    print(f"goal: one-row explanation p99 under 15 ms (quickstart): {worst:.2f} ms, {verdict}")


if __name__ == "__main__":
    main()
