"""Run records and experiments: `runs/<id>.json` (immutable, put-if-absent) plus a small
summary under `experiments/<name>/<id>.json` so listing one experiment reads only its runs.

Below pipeline/ in the layers: the executor writes records through here, and nothing here
imports mlopsctl.pipeline."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mlopsctl.digest import canonical_json
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

RUNS = "runs/"
EXPERIMENTS = "experiments/"


def new_run_id() -> str:
    """Sortable by start time to the millisecond, unique without coordination:
    20261126-235959-042-3fa9c1."""
    now = time.time()
    second = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{second}-{int(now * 1000) % 1000:03d}-{secrets.token_hex(3)}"


def now_iso() -> str:
    """A record timestamp for now (mlopsctl.timeutil.stamp), kept under this name for callers."""
    return stamp()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 4}} -> {'model.depth': 4}; lists and scalars are leaves. (Run
    comparison and pipeline parameter overrides name parameters by these dotted paths.)"""
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data} if prefix else {}


def run_key(run_id: str) -> str:
    return f"{RUNS}{run_id}.json"


def summary(record: dict[str, Any]) -> dict[str, Any]:
    return {
        key: record.get(key)
        for key in (
            "id",
            "experiment",
            "pipeline",
            "status",
            "started",
            "duration_s",
            "metrics",
            "user",
            "parent",
        )
    }


def save_run(store: ObjectStore, record: dict[str, Any]) -> None:
    store.put_if_absent(run_key(record["id"]), canonical_json(record))
    experiment = record.get("experiment")
    if experiment:
        store.put_if_absent(
            f"{EXPERIMENTS}{experiment}/{record['id']}.json", canonical_json(summary(record))
        )


def load_run(store: ObjectStore, run_id: str) -> dict[str, Any]:
    """A run by id, a unique id prefix, or 'latest'."""
    if run_id == "latest":
        ids = run_ids(store)
        if not ids:
            raise NotFound(
                "there are no runs in this store yet", "run a pipeline first: mlopsctl run SPEC"
            )
        run_id = ids[-1]
    try:
        return dict(json.loads(store.get(run_key(run_id))))
    except NotFound:
        pass
    matches = run_ids(store, prefix=run_id, trials=True)
    if len(matches) == 1:
        return dict(json.loads(store.get(run_key(matches[0]))))
    if len(matches) > 1:
        raise UsageError(
            f"run id prefix '{run_id}' matches {len(matches)} runs",
            "give more characters of the id",
        )
    raise NotFound(f"no run '{run_id}' in the store", "list them with: mlopsctl runs list")


_TRIAL = re.compile(r"-t\d+$")  # tune trials are child runs: <parent id>-t001


def run_ids(store: ObjectStore, prefix: str = "", trials: bool = False) -> list[str]:
    ids = [
        key[len(RUNS) : -len(".json")]
        for key in store.list(RUNS + prefix)
        if key.endswith(".json") and "/" not in key[len(RUNS) :]
    ]
    return ids if trials else [i for i in ids if not _TRIAL.search(i)]


def list_runs(
    store: ObjectStore,
    experiment: str | None = None,
    limit: int | None = None,
    trials: bool = False,
) -> list[dict[str, Any]]:
    """Newest first; tune trials (child runs) only when asked. With an experiment, only that
    experiment's summaries are read."""
    if experiment:
        keys = [
            k
            for k in store.list(f"{EXPERIMENTS}{experiment}/")
            if k.endswith(".json") and (trials or not _TRIAL.search(k[: -len(".json")]))
        ]
    else:
        keys = [run_key(rid) for rid in run_ids(store, trials=trials)]
    keys = sorted(keys, reverse=True)[: limit or None]
    workers = min(16, max(1, len(keys)), (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        records = list(pool.map(lambda k: json.loads(store.get(k)), keys))
    return [summary(r) for r in records]


def compare_runs(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Params and metrics side by side; `differs` marks the rows whose values are not all equal."""

    def table(kind: str) -> dict[str, list[Any]]:
        flat = [flatten(r.get(kind) or {}) for r in records]
        keys = sorted({k for f in flat for k in f})
        return {k: [f.get(k) for f in flat] for k in keys}

    params, metrics = table("params"), table("metrics")
    differs = {
        f"{kind}.{k}": len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
        for kind, rows in (("params", params), ("metrics", metrics))
        for k, values in rows.items()
    }
    return {
        "runs": [r["id"] for r in records],
        "params": params,
        "metrics": metrics,
        "differs": differs,
    }


def plot_metrics(comparison: dict[str, Any], dest: str) -> None:
    """A grouped bar chart: one group per metric, one bar per run."""
    try:
        import matplotlib
    except ImportError:
        from mlopsctl.errors import MlopsError

        raise MlopsError("--plot needs matplotlib", "pip install 'mlopsctl[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(comparison["metrics"])
    if not names:
        raise UsageError("these runs recorded no metrics to plot", "compare runs that have metrics")
    runs = comparison["runs"]
    values = np.array(
        [[float(v) if v is not None else np.nan for v in comparison["metrics"][m]] for m in names]
    )
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) * max(1, len(runs)) / 2), 4.5))
    x = np.arange(len(names))
    for i, run in enumerate(runs):
        ax.bar(x + i * width - 0.4 + width / 2, values[:, i], width, label=run)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_title("metrics by run")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    plt.close(fig)
