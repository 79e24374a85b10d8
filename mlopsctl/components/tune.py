"""tune: search hyperparameters, record every trial as a child run, refit the best on train.

Each trial is scored on the `test` input when the step gives one, otherwise by k-fold cross
validation on train (stratified for classifiers); every trial sees the same folds, so they are
compared on equal terms. The winner is refitted on the whole train table and saved in the same
artifact format as train's.

A trial's record is ``runs/<run id>-t<NNN>.json`` (kind "trial", parent = the pipeline run),
written with put-if-absent like every run record, so `mlopsctl runs` lists and compares trials.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl.components import _fit
from mlopsctl.components.metrics import CLASSIFICATION, REGRESSION, direction_of
from mlopsctl.errors import MlopsError
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.components.base import StepContext
    from mlopsctl.records.trial import TrialRecord

NAME = "tune"
DESCRIPTION = "Search hyperparameters (grid or random), one child run per trial; keep the best"
INPUTS = {"train": "the training table (Parquet)"}
OPTIONAL_INPUTS = {"test": "a table to score trials on (default: k-fold CV on train)"}
OUTPUTS = {"model": "dir", "best": "file"}
PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "estimator", "space"],
    "properties": {
        **_fit.FEATURE_PARAMS,
        "estimator": _fit.ESTIMATOR_SCHEMA,
        "search": {"enum": ["grid", "random"], "default": "grid"},
        "space": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": ["array", "object"]},
            "description": "hyperparameter -> [values] or {low, high, log, type}",
        },
        "n_trials": {"type": "integer", "minimum": 1, "default": 10},
        "metric": {"enum": [*CLASSIFICATION, *REGRESSION]},
        "direction": {"enum": ["maximize", "minimize"]},
        "cv": {"type": "integer", "minimum": 2, "default": 3},
    },
}
LIBRARIES = _fit.LIBRARIES
FILE_PARAMS: tuple[str, ...] = ()
CODE_MODULES = (*_fit.CODE_MODULES, "mlopsctl.components.metrics")

_RANGE_KEYS = {"low", "high", "log", "type"}


def check(params: dict[str, Any], project_root: Path) -> list[tuple[tuple[Any, ...], str]]:
    problems = _fit.check_training(params, project_root)
    search = params.get("search", "grid")
    space = params.get("space")
    if not isinstance(space, dict) or not space:
        problems.append((("space",), "space is required: {hyperparameter: [values], ...}"))
        return problems
    for name, values in space.items():
        where = ("space", name)
        if name == "class":
            problems.append((where, "the estimator class cannot be searched"))
        elif isinstance(values, list):
            if not values:
                problems.append((where, f"space.{name} lists no values"))
        elif isinstance(values, dict):
            if search == "grid":
                problems.append(
                    (
                        where,
                        f"grid search needs a list of values for '{name}'; "
                        "ranges need search: random",
                    )
                )
                continue
            problem = _range_problem(values)
            if problem:
                problems.append((where, f"space.{name}: {problem}"))
        else:
            problems.append((where, f"space.{name} must be a list or {{low, high}}"))
    if search == "grid" and "n_trials" in params:
        problems.append((("n_trials",), "n_trials applies to search: random only"))
    return problems


def run(ctx: StepContext) -> None:
    from mlopsctl.components.frames import read_table
    from mlopsctl.models.artifact import prepare_features, save_model

    params = ctx.params
    for path, message in check(params, ctx.project_root):
        raise MlopsError(f"{'.'.join(map(str, path))}: {message}")
    target = str(params["target"])
    seed = int(params.get("seed", 0))
    class_path, fixed = _fit.estimator_spec(params)

    frame = read_table(ctx.inputs["train"], "training data")
    features = _fit.choose_features(
        frame, target, params.get("features"), params.get("categorical"), ctx.log
    )
    frame = _fit.drop_missing_target(frame, target, ctx.log)
    base, _ = _fit.make_estimator(class_path, fixed, seed)
    task = _fit.task_of(base, class_path)
    _check_space_names(base, class_path, params["space"])
    metric = params.get("metric") or ("accuracy" if task == "classification" else "rmse")
    if metric not in (CLASSIFICATION if task == "classification" else REGRESSION):
        raise MlopsError(
            f"metric: '{metric}' does not apply to a {task} model",
            f"use one of {', '.join(CLASSIFICATION if task == 'classification' else REGRESSION)}",
        )
    direction = params.get("direction") or direction_of(metric)

    y, classes = _fit.encode_target(frame[target], task, target)
    X = prepare_features(frame, features)
    holdout = _holdout(ctx, target, features, classes)
    folds = None if holdout else _folds(y, task, int(params.get("cv", 3)), seed)

    problem = _Problem(class_path, seed, features, task, classes, X, y, holdout, folds)
    candidates = _candidates(params, seed)
    settings = [{**fixed, **trial_params} for trial_params in candidates]
    # On a cluster (ctx.parallel: the Ray backend) each trial is a task of its own there;
    # otherwise they run here, one after the other. Either way in the same order, with the
    # same scores.
    outcomes = (
        ctx.parallel(_trial, problem, settings)
        if ctx.parallel is not None
        else (_trial(problem, setting) for setting in settings)
    )
    trials: list[dict[str, Any]] = []
    for number, (trial_params, outcome) in enumerate(
        zip(candidates, outcomes, strict=True), start=1
    ):
        trial_id = f"{ctx.run_id}-t{number:03d}"
        record: dict[str, Any] = {"id": trial_id, "params": trial_params}
        if outcome["error"] is not None:
            record.update(status="failed", metrics={}, error=outcome["error"])
        else:
            record.update(status="succeeded", metrics=outcome["metrics"])
        ctx.log(_describe(number, len(candidates), record, metric))
        _save_trial(ctx, record, class_path, outcome["started"], outcome["seconds"])
        trials.append(record)

    best = _best(trials, metric, direction)
    estimator, used = _fit.make_estimator(class_path, {**fixed, **best["params"]}, seed)
    pipeline = _fit.fit_pipeline(_fit.build_pipeline(estimator, features), X, y, class_path)
    save_model(
        pipeline,
        ctx.outputs["model"],
        estimator_class=class_path,
        params=used,
        task=task,
        target=target,
        features=features,
        classes=classes,
        frame=frame,
    )
    value = best["metrics"][metric]
    result = {
        "params": best["params"],
        "metric": metric,
        "value": value,
        "direction": direction,
        "trial": best["id"],
        "estimator_class": class_path,
        "scored_on": "test" if holdout else f"{len(folds or [])}-fold cv",
    }
    ctx.outputs["best"].parent.mkdir(parents=True, exist_ok=True)
    ctx.outputs["best"].write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    failed = sum(1 for t in trials if t["status"] != "succeeded")
    ctx.metrics.update(
        {
            f"best_{metric}": float(value),
            "trials": float(len(trials)),
            "failed_trials": float(failed),
        }
    )
    ctx.info.update(trials=trials, best=result, task=task, features=[f.as_dict() for f in features])


def _trial(problem: _Problem, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """One trial: its scores, or the one-line reason it failed; when it started and how long
    it took. A module-level function, so that a cluster's worker can run it too."""
    started, clock = stamp(), time.perf_counter()
    try:
        scores, error = problem.score(hyperparameters), None
    except MlopsError as exc:
        scores, error = {}, exc.one_line()
    return {
        "metrics": scores,
        "error": error,
        "started": started,
        "seconds": time.perf_counter() - clock,
    }


def _range_problem(spec: dict[str, Any]) -> str | None:
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown:
        return f"unknown key(s) {', '.join(unknown)}; a range takes low, high, log, type"
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers:
        return "a range needs numeric 'low' and 'high'"
    assert isinstance(low, (int, float)) and isinstance(high, (int, float))
    if low >= high:
        return f"low ({low}) must be below high ({high})"
    if spec.get("log") and low <= 0:
        return "a log range needs low > 0"
    if spec.get("type", "float") not in ("int", "float"):
        return f"type must be int or float, not {spec.get('type')!r}"
    return None


def _check_space_names(estimator: Any, class_path: str, space: dict[str, Any]) -> None:
    import difflib

    accepted = estimator.get_params()
    for name in space:
        if name not in accepted:
            close = difflib.get_close_matches(name, list(accepted), n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise MlopsError(f"space: {class_path} has no hyperparameter '{name}'", hint)


def _candidates(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The trials' hyperparameters: the grid's product, or n_trials random draws."""
    import itertools

    import numpy as np

    space: dict[str, Any] = params["space"]
    names = list(space)
    if params.get("search", "grid") == "grid":
        return [
            dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.values())
        ]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(int(params.get("n_trials", 10))):
        draw: dict[str, Any] = {}
        for name, spec in space.items():
            if isinstance(spec, list):
                draw[name] = spec[int(rng.integers(len(spec)))]
            else:
                draw[name] = _draw(rng, spec)
        draws.append(draw)
    return draws


def _draw(rng: np.random.Generator, spec: dict[str, Any]) -> int | float:
    low, high = float(spec["low"]), float(spec["high"])
    integer = spec.get("type") == "int" or (
        "type" not in spec and isinstance(spec["low"], int) and isinstance(spec["high"], int)
    )
    if integer:
        # Draw over [low, high + 1) and floor, so that every integer of the range, high included,
        # is equally likely (or log-uniform).
        top = high + 1
        if spec.get("log"):
            value = math.exp(rng.uniform(math.log(low), math.log(top)))
        else:
            value = rng.uniform(low, top)
        return int(min(math.floor(value), high))
    if spec.get("log"):
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def _holdout(
    ctx: StepContext, target: str, features: list[Any], classes: list[Any] | None
) -> tuple[pd.DataFrame, np.ndarray] | None:
    """(features, encoded target) of the optional test table."""
    import pandas as pd

    from mlopsctl.components.frames import read_table, require_columns
    from mlopsctl.models.artifact import prepare_features

    path = ctx.inputs.get("test")
    if path is None:
        return None
    test = read_table(path, "test data")
    require_columns(test, [target], "test data", "target")
    test = test[test[target].notna()]
    if len(test) == 0:
        raise MlopsError(f"the test data has no rows with a value for '{target}'")
    if classes is not None:
        y = pd.Index(classes).get_indexer(pd.Index(test[target].to_numpy()))
    else:
        y = test[target].astype("float64").to_numpy()
    return prepare_features(test, features), y


def _folds(y: np.ndarray, task: str, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter: Any = (
        StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        if task == "classification"
        else KFold(n_splits=cv, shuffle=True, random_state=seed)
    )
    try:
        return list(splitter.split(np.zeros(len(y)), y))
    except ValueError as exc:
        raise MlopsError(
            f"cannot make {cv} cross-validation folds: {' '.join(str(exc).split())}",
            "lower 'cv', or give the step a 'test' input",
        ) from None


@dataclass
class _Problem:
    """Everything a trial is fitted and scored on; only the hyperparameters change."""

    class_path: str
    seed: int
    features: list[Any]
    task: str
    classes: list[Any] | None
    X: pd.DataFrame
    y: np.ndarray
    holdout: tuple[pd.DataFrame, np.ndarray] | None
    folds: list[tuple[np.ndarray, np.ndarray]] | None

    def score(self, hyperparameters: dict[str, Any]) -> dict[str, float]:
        """The trial's metrics: on the holdout, or averaged over the folds."""
        X, y = self.X, self.y
        if self.holdout is not None:
            splits = [(X, y, *self.holdout)]
        else:
            assert self.folds is not None
            splits = [(X.iloc[a], y[a], X.iloc[b], y[b]) for a, b in self.folds]
        per_split = []
        for X_fit, y_fit, X_val, y_val in splits:
            estimator, _ = _fit.make_estimator(self.class_path, hyperparameters, self.seed)
            pipeline = _fit.build_pipeline(estimator, self.features)
            _fit.fit_pipeline(pipeline, X_fit, y_fit, self.class_path)
            per_split.append(_score(pipeline, X_val, y_val, self.task, self.classes))
        # A metric undefined on one fold (roc_auc on a one-class fold) is left out altogether.
        shared = set.intersection(*(set(s) for s in per_split))
        return {name: sum(s[name] for s in per_split) / len(per_split) for name in sorted(shared)}


def _score(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, task: str, classes: list[Any] | None
) -> dict[str, float]:
    import numpy as np

    from mlopsctl.components import metrics as _metrics
    from mlopsctl.models.artifact import normalised_proba

    predicted = np.asarray(pipeline.predict(X))
    if task != "classification" or classes is None:
        return _metrics.regression_metrics(y, predicted.astype("float64"))
    proba = pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else None
    scores, _ = _metrics.classification_metrics(
        y,
        predicted.astype("int64"),
        None if proba is None else normalised_proba(proba),
        len(classes),
    )
    return scores


def _best(trials: list[dict[str, Any]], metric: str, direction: str) -> dict[str, Any]:
    scored = [t for t in trials if metric in t["metrics"] and math.isfinite(t["metrics"][metric])]
    if not scored:
        failed = next((t for t in trials if t["status"] == "failed"), None)
        reason = f"; first failure: {failed['error']}" if failed else ""
        raise MlopsError(f"no trial produced a {metric} score{reason}")
    sign = 1.0 if direction == "maximize" else -1.0
    # max() keeps the first of equal scores: the earlier trial wins a tie.
    return max(scored, key=lambda t: sign * t["metrics"][metric])


def _save_trial(
    ctx: StepContext, record: dict[str, Any], class_path: str, started: str, seconds: float
) -> None:
    if ctx.store is None:
        return
    from mlopsctl.runs import save_run

    full = {
        **record,
        "parent": ctx.run_id,
        "step": ctx.step,
        "kind": "trial",
        "experiment": ctx.experiment,
        "estimator_class": class_path,
        "started": started,
        "duration_s": round(seconds, 4),
    }
    save_run(ctx.store, cast("TrialRecord", full))


def _describe(number: int, total: int, record: dict[str, Any], metric: str) -> str:
    if record["status"] != "succeeded":
        return f"trial {number}/{total} {record['params']}: failed: {record['error']}"
    value = record["metrics"].get(metric)
    shown = f"{metric}={value:.6g}" if value is not None else f"{metric} undefined"
    return f"trial {number}/{total} {record['params']}: {shown}"
