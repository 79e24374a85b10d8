"""Run records and experiments: `runs/<id>.json` (immutable, put-if-absent) plus a small
summary under `experiments/<name>/<id>.json` so listing one experiment reads only its runs.

A run in progress also has a live record, `runs/live/<id>.json` (RunLease): status `running`,
its owner (host, PID, PID namespace) and a heartbeat the owner rewrites every few seconds; it is
deleted once the final record is saved. A live record whose owner is gone (same host and its
process ended, or no heartbeat for 3 intervals) reads as `abandoned`. Records written before
live records existed read as they always did.

Below pipeline/ in the layers: the executor writes records through here, and nothing here
imports mlopsctl.pipeline."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl.digest import canonical_json
from mlopsctl.errors import MlopsError, NotFound, UsageError
from mlopsctl.names import flatten
from mlopsctl.records import decode_stored
from mlopsctl.records import live_run as live_run_kind
from mlopsctl.records import run as run_kind
from mlopsctl.timeutil import parse_time, stamp

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mlopsctl.records.experiment import ExperimentSummary
    from mlopsctl.records.live_run import LiveRun
    from mlopsctl.records.run import RunRecord
    from mlopsctl.records.trial import TrialRecord
    from mlopsctl.store.base import ObjectStore

    # What load_run finds under a run id: a finished run, a run in progress (its live record)
    # or a tune trial.
    AnyRun = RunRecord | LiveRun | TrialRecord

RUNS = "runs/"
LIVE = "runs/live/"  # live records of runs in progress (ids start with a digit: no clash)
EXPERIMENTS = "experiments/"
HEARTBEAT_ENV = "MLOPSCTL_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 30.0
_MISSED_BEATS = 3  # a live record this many intervals old has lost its owner
_STAMP_SLACK_S = 1.0  # stamps are whole seconds


def new_run_id() -> str:
    """Sortable by start time to the millisecond, unique without coordination:
    20261126-235959-042-3fa9c1."""
    now = time.time()
    second = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{second}-{int(now * 1000) % 1000:03d}-{secrets.token_hex(3)}"


def now_iso() -> str:
    """A record timestamp for now (mlopsctl.timeutil.stamp), kept under this name for callers."""
    return stamp()


def run_key(run_id: str) -> str:
    return f"{RUNS}{run_id}.json"


def live_key(run_id: str) -> str:
    return f"{LIVE}{run_id}.json"


def summary(record: Mapping[str, Any]) -> ExperimentSummary:
    """The experiment summary of a run, a trial or a run in progress (its live record)."""
    found = {
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
    return cast("ExperimentSummary", found)


def save_run(store: ObjectStore, record: RunRecord | TrialRecord) -> None:
    """Write a run's (or a tune trial's) final record, once, and its experiment summary: the
    one writer of the kind."""
    store.put_if_absent(run_key(record["id"]), canonical_json(record))
    experiment = record.get("experiment")
    if experiment:
        store.put_if_absent(
            f"{EXPERIMENTS}{experiment}/{record['id']}.json", canonical_json(summary(record))
        )


def read_run(store: ObjectStore, run_id: str) -> RunRecord:
    """The final record ``runs/<run_id>.json`` (NotFound without one): the one reader of the
    kind; load_run finds one by prefix, 'latest', or a run still in progress."""
    try:
        return run_kind.from_json(store.get(run_key(run_id)))
    except NotFound:
        raise NotFound(
            f"no run '{run_id}' in the store", "list them with: mlopsctl runs list"
        ) from None


def load_run(store: ObjectStore, run_id: str) -> AnyRun:
    """A run by id, a unique id prefix, or 'latest': its final record, its live record while it
    runs (status running or abandoned, steps with their status alone), or a tune trial's."""
    if run_id == "latest":
        ids = run_ids(store)
        if not ids:
            raise NotFound(
                "there are no runs in this store yet", "run a pipeline first: mlopsctl run SPEC"
            )
        run_id = ids[-1]
    try:
        return read_run(store, run_id)
    except NotFound:
        pass
    live = _read_live(store, live_key(run_id))
    if live is not None:
        return live
    finished = run_ids(store, prefix=run_id, trials=True)
    matches = sorted({*finished, *_live_ids(store, prefix=run_id)})
    if len(matches) == 1:
        if matches[0] in finished:
            return read_run(store, matches[0])
        live = _read_live(store, live_key(matches[0]))
        if live is not None:
            return live
        return read_run(store, matches[0])  # it ended meanwhile
    if len(matches) > 1:
        raise UsageError(
            f"run id prefix '{run_id}' matches {len(matches)} runs",
            "give more characters of the id",
        )
    raise NotFound(f"no run '{run_id}' in the store", "list them with: mlopsctl runs list")


_TRIAL = re.compile(r"-t\d+$")  # tune trials are child runs: <parent id>-t001


def run_ids(store: ObjectStore, prefix: str = "", trials: bool = False) -> list[str]:
    """Ids of the runs that have their final record (not the live ones)."""
    return _final_ids(store.list(RUNS + prefix), trials)


def _final_ids(keys: Any, trials: bool) -> list[str]:
    ids = [
        key[len(RUNS) : -len(".json")]
        for key in keys
        if key.endswith(".json") and "/" not in key[len(RUNS) :]
    ]
    return ids if trials else [i for i in ids if not _TRIAL.search(i)]


def _live_ids(store: ObjectStore, prefix: str = "", keys: Any = None) -> list[str]:
    """Ids of the runs with a live record (`keys`: a listing of runs/ already made)."""
    listed = store.list(LIVE + prefix) if keys is None else keys
    return [
        key[len(LIVE) : -len(".json")]
        for key in listed
        if key.startswith(LIVE) and key.endswith(".json") and "/" not in key[len(LIVE) :]
    ]


def _read_live(store: ObjectStore, key: str) -> LiveRun | None:
    """A live record with its status as it reads now (`abandoned` when its owner is gone);
    None when there is none (never was, or the run has ended since)."""
    try:
        record = live_run_kind.from_json(store.get(key))
    except NotFound:
        return None
    record["status"] = effective_status(record)
    return record


def list_runs(
    store: ObjectStore,
    experiment: str | None = None,
    limit: int | None = None,
    trials: bool = False,
) -> list[ExperimentSummary]:
    """Newest first, runs in progress included (`running`, or `abandoned` when their owner
    died); tune trials (child runs) only when asked. With an experiment, only that experiment's
    summaries are read (and the live records, which are few)."""
    if experiment:
        keys = {
            k.rpartition("/")[2][: -len(".json")]: k
            for k in store.list(f"{EXPERIMENTS}{experiment}/")
            if k.endswith(".json") and (trials or not _TRIAL.search(k[: -len(".json")]))
        }
        live = _live_ids(store)
    else:
        listed = list(store.list(RUNS))
        keys = {rid: run_key(rid) for rid in _final_ids(listed, trials)}
        live = _live_ids(store, keys=listed)
    live = [i for i in live if i not in keys and (trials or not _TRIAL.search(i))]
    running = {r["id"]: r for r in _read_live_all(store, live)}
    if experiment:
        running = {i: r for i, r in running.items() if r.get("experiment") == experiment}
    newest = sorted([*keys, *running], reverse=True)[: limit or None]
    wanted = [i for i in newest if i not in running]
    finals = dict(zip(wanted, _read_all(store, [keys[i] for i in wanted]), strict=True))
    return [summary(running.get(i) or finals[i]) for i in newest]


def _read_all(store: ObjectStore, keys: list[str]) -> list[dict[str, Any]]:
    if not keys:
        return []
    workers = min(16, len(keys), (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda k: decode_stored(k, store.get(k)), keys))


def _read_live_all(store: ObjectStore, ids: list[str]) -> list[LiveRun]:
    """The live records of `ids` that are still there (a run may end while we list)."""
    if not ids:
        return []
    workers = min(16, len(ids), (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda i: _read_live(store, live_key(i)), ids)
        return [record for record in found if record is not None]


# -- runs in progress -----------------------------------------------------------------------
def heartbeat_interval() -> float:
    """Seconds between a running run's heartbeats: MLOPSCTL_HEARTBEAT_S, default 30."""
    text = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not text:
        return DEFAULT_HEARTBEAT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86400:
        raise UsageError(
            f"{HEARTBEAT_ENV}={text!r} is not a number of seconds",
            f"set it to a positive number, like {HEARTBEAT_ENV}=30, or unset it",
        )
    return max(value, 0.05)


def owner() -> dict[str, Any]:
    """Who holds a run in progress: this host and process, and its PID namespace, so that a
    process in a container that shares the host's name is never judged by PIDs it cannot see."""
    try:
        namespace: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_ns": namespace}


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists here and has not finished (a zombie has)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    except (OSError, OverflowError):
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True  # no /proc here: kill(0) said it exists
    return not fields or fields[0] not in ("Z", "X")


def effective_status(record: Mapping[str, Any], now: float | None = None) -> str:
    """A record's status as it reads now: a live record's `running` becomes `abandoned` when
    its owner is gone: on this host (and PID namespace) its process has ended, or anywhere its
    heartbeat is older than 3 intervals. Records without a heartbeat keep their status."""
    status = str(record.get("status") or "?")
    if status != "running" or "heartbeat" not in record:
        return status
    here = owner()
    pid = record.get("pid")
    if (
        record.get("host") == here["host"]
        and record.get("pid_ns") == here["pid_ns"]
        and isinstance(pid, int)
        and not pid_alive(pid)
    ):
        return "abandoned"
    try:
        beat = parse_time(str(record["heartbeat"])).timestamp()
        every = float(record.get("heartbeat_s") or DEFAULT_HEARTBEAT_S)
    except (TypeError, ValueError):
        return status
    age = (time.time() if now is None else now) - beat
    return "abandoned" if age > _MISSED_BEATS * every + _STAMP_SLACK_S else status


class RunLease:
    """The live record of a run in progress (`runs/live/<id>.json`): written when the run
    starts, rewritten with a fresh heartbeat every `every_s` seconds by a daemon thread, and
    deleted by `end()` once the run's final record is saved. Only its owner writes it, so a
    plain put replaces it; the final record stays put-if-absent.

    `snapshot()` gives the record's content (at least `id`); the lease adds `status: running`,
    the owner (host, pid, pid_ns), `heartbeat` and `heartbeat_s` where the snapshot has none.
    `on_beat` runs before each heartbeat (the executor keeps its work folders fresh there).
    A failed heartbeat write is retried at the next beat; it never stops the run."""

    def __init__(
        self,
        store: ObjectStore,
        snapshot: Callable[[], dict[str, Any]],
        every_s: float | None = None,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.snapshot = snapshot
        self.every_s = heartbeat_interval() if every_s is None else every_s
        self.on_beat = on_beat
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._key: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Write the live record (a store error propagates: the run could not be recorded)
        and start the heartbeat."""
        self._write()
        self._thread = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        record: dict[str, Any] = {
            "status": "running",
            **owner(),
            "heartbeat": stamp(),
            "heartbeat_s": self.every_s,
            **self.snapshot(),
        }
        self._key = live_key(str(record["id"]))
        self.store.put(self._key, canonical_json(record))

    def _beat(self) -> None:
        while not self._ended.wait(self.every_s):
            with self._lock:
                if self._ended.is_set():
                    return
                try:
                    if self.on_beat is not None:
                        self.on_beat()
                    self._write()
                except (MlopsError, OSError, ValueError):
                    pass  # the next beat tries again; readers allow 3 missed beats

    def end(self) -> None:
        """Stop the heartbeat and delete the live record (after the final record is saved;
        a record left behind by a failed delete is hidden by the final one)."""
        self._ended.set()
        with self._lock:  # no heartbeat write can follow the delete
            if self._key is not None:
                try:
                    self.store.delete(self._key)
                except (MlopsError, OSError):
                    pass
        if self._thread is not None:
            self._thread.join(timeout=5)


def compare_runs(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
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
