"""What a triggered run is given (a Trigger's `run:` section), and whether there is anything new
to give it.

- `run.dataset`: a Dataset spec (a path) or the same keys inline (`from_logs`, `mix`, `name`;
  the name defaults to the trigger's). When a condition fires, the check builds it at its
  `now` (mlopsctl.datasets: the model's prediction logs joined with its outcomes over the
  window; nothing is stored yet) and judges the labels in it: retraining is due only when at
  least `min_new_labels` (default 1) labelled rows got their outcome after the newest outcome
  the last trained-on dataset used (`labels_through` of the last triggered run's dataset, or
  of the dataset named in the champion's reason, whichever is later; neither: every labelled
  row counts). A window that only slid, or new predictions that nobody labelled, fire
  nothing. With `--run`, the very table judged is stored and its digest handed to the run.
- `run.params`: pipeline params for the run (over the trigger's `params`); a string value may
  hold `${dataset.digest}`, `${dataset.name}`, `${dataset.rows}`, `${window.since}` or
  `${window.until}`, filled in from the dataset built (a lone placeholder gives the value
  itself: a number stays a number).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from mlopsctl.ct.context import TriggerContext, project_path
from mlopsctl.datasets import Built, build
from mlopsctl.digest import sha256_file
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.spec import load_spec
from mlopsctl.timeutil import parse_time, stamp

DEFAULT_MIN_NEW_LABELS = 1
PLACEHOLDER = re.compile(r"\$\{\s*(dataset|window)\.([a-z_]+)\s*\}")
PLACEHOLDERS = {
    "dataset": ("digest", "name", "rows"),
    "window": ("since", "until"),
}


class _Data(TypedDict):
    dataset: str  # its name
    enough: bool  # new labelled data enough for a run
    why: str


class DataResult(_Data, total=False):
    """What `run.dataset` holds at the check, as the check reports it."""

    digest: str
    rows: int
    window: dict[str, str]
    labelled_rows: int
    new_labels: int
    labels_through: str | None
    since: str  # labels after this counted as new (absent: never trained on logged outcomes)
    min_new_labels: int


class Prepared:
    """The dataset a check built for its run (kept in a scratch folder until the run has
    stored it or the check is done)."""

    def __init__(self, built: Built | None, folder: Path) -> None:
        self.built = built
        self.folder = folder

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def definition(ctx: TriggerContext) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(name, {from_logs, mix}, {path, digest} of its spec or None) of `run.dataset`."""
    given = (ctx.spec.get("run") or {}).get("dataset")
    if isinstance(given, dict):
        name = str(given.get("name") or ctx.name)
        return name, {"from_logs": given["from_logs"], "mix": given.get("mix")}, None
    path = project_path(ctx.project, str(given), "run.dataset")
    spec = load_spec(path, kind="Dataset")
    shown = str(given)
    return (
        str(spec["name"]),
        {"from_logs": spec["from_logs"], "mix": spec.get("mix")},
        {"path": shown, "digest": sha256_file(path)},
    )


def trained_through(ctx: TriggerContext) -> tuple[datetime | None, str | None]:
    """The newest outcome the last trained-on dataset used, and whose dataset that was."""
    found: list[tuple[datetime, str]] = []
    last = ctx.last_run or {}
    through = (last.get("dataset") or {}).get("labels_through")
    if through:
        found.append((parse_time(through), f"the last triggered run's data ({last.get('firing')})"))
    champion = ctx.champion or {}
    through = ((champion.get("reason") or {}).get("dataset") or {}).get("labels_through")
    if through:
        who = f"the data of {ctx.model}@{ctx.alias} (v{champion.get('version')})"
        found.append((parse_time(through), who))
    if not found:
        return None, None
    return max(found)


def check_data(ctx: TriggerContext) -> tuple[DataResult, Prepared]:
    """Build `run.dataset` at the check's `now` (not stored) and judge its new labels."""
    name, body, spec = definition(ctx)
    minimum = int((ctx.spec.get("run") or {}).get("min_new_labels") or DEFAULT_MIN_NEW_LABELS)
    after, whose = trained_through(ctx)
    folder = Path(tempfile.mkdtemp(prefix="mlopsctl-ct-data-"))
    try:
        built = build(
            ctx.store,
            body,
            name=name,
            root=ctx.project.root,
            now=ctx.now,
            spec=spec,
            save=False,
            new_after=after,
            workdir=folder,
        )
    except NotFound as exc:
        why = exc.message
        return {"dataset": name, "enough": False, "why": why}, Prepared(None, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    record = built.record
    counts = record["counts"]
    labelled = int(counts.get("labelled_rows", 0))
    new = int(counts["new_labels"]) if after is not None else labelled
    window = record["window"]
    span = f"[{window['since']}, {window['until']})"
    enough = new >= minimum
    if after is None:
        said = f"{labelled} labelled row(s) in {span}, none trained on before"
    else:
        said = (
            f"{new} label(s) newer than {whose} (through {stamp(after)}), "
            f"{labelled} labelled row(s) in {span}"
        )
    if enough:
        why = said
    elif new == 0:
        why = f"no new labelled data: {said}"
    else:
        why = f"{said}: fewer than min_new_labels {minimum}"
    result: DataResult = {
        "dataset": name,
        "digest": built.digest,
        "rows": built.rows,
        "window": {"since": window["since"], "until": window["until"]},
        "labelled_rows": labelled,
        "new_labels": new,
        "labels_through": record.get("labels_through"),
        "min_new_labels": minimum,
        "enough": enough,
        "why": why,
    }
    if after is not None:
        result["since"] = stamp(after)
    return result, Prepared(built, folder)


def run_params(ctx: TriggerContext, dataset: dict[str, Any] | None) -> dict[str, Any]:
    """`run.params` with the placeholders filled from `dataset` (the stored dataset's
    summary: name, digest, rows, window)."""
    given = (ctx.spec.get("run") or {}).get("params") or {}

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return lookup(whole.group(1), whole.group(2))
        return PLACEHOLDER.sub(lambda m: str(lookup(m.group(1), m.group(2))), value)

    def lookup(kind: str, key: str) -> Any:
        if key not in PLACEHOLDERS[kind]:
            known = ", ".join(f"${{{kind}.{k}}}" for k in PLACEHOLDERS[kind])
            raise UsageError(f"run.params: unknown placeholder ${{{kind}.{key}}}", f"use {known}")
        if dataset is None:
            raise UsageError(
                f"run.params uses ${{{kind}.{key}}}, but the trigger has no run.dataset",
                "add run.dataset (a Dataset spec), or drop the placeholder",
            )
        if kind == "window":
            return dataset["window"][key]
        return dataset[key]

    return dict(fill(dict(given)))


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Nested params `over` laid on `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
