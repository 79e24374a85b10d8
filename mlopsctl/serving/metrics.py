"""Prometheus metrics that stay right with several worker processes.

Each worker keeps its counters in its own memory-mapped file (``w<N>.bin``, float64 slots) with
a small index of which slot holds which (version, arm) series (``w<N>.json``, rewritten by
rename when a series is added, which happens once per model version). ``/metrics`` on any
worker reads every worker's files and adds them up, so a scrape that lands on one worker still
sees the whole server, with no lock and no message passing on the request path. Counters only
ever grow and each is written by one process, so a reader sees, at worst, a value one request
old. Within a process, the request series are written by the event loop thread alone; the
scalar counters are also added to by the log flusher and follower threads, so `add` holds a
lock (a read-add-write of a slot is not atomic); it is off the hot path.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import threading
from pathlib import Path
from typing import Any

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCALARS = (
    ("log_dropped", "mlopsctl_log_dropped_rows_total", "Prediction log rows dropped"),
    ("log_written", "mlopsctl_log_written_rows_total", "Prediction log rows written to the store"),
    ("log_failures", "mlopsctl_log_write_failures_total", "Failed writes of prediction log files"),
    ("feedback_rows", "mlopsctl_feedback_rows_total", "Ground-truth rows received"),
    ("swaps", "mlopsctl_model_swaps_total", "Model versions swapped in without a restart"),
    ("refused", "mlopsctl_model_refused_total", "New model versions refused by the smoke load"),
)
_SCALAR_INDEX = {name: i for i, (name, _, _) in enumerate(SCALARS)}
_HEAD = 16  # room for scalars
_SLOT = 3 + len(BUCKETS) + 1  # requests, errors, latency sum, bucket counts (+Inf last)
_CAPACITY = 256


class Metrics:
    def __init__(self, folder: Path, worker: int, model: str) -> None:
        import numpy as np

        self.folder = folder
        self.worker = worker
        self.model = model
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / f"w{worker}.bin"
        size = (_HEAD + _CAPACITY * _SLOT) * 8
        with open(self._path, "wb") as f:
            f.truncate(size)
        self._file = open(self._path, "r+b")  # noqa: SIM115 - lives as long as the server
        self._map = mmap.mmap(self._file.fileno(), size)
        self.values = np.ndarray((_HEAD + _CAPACITY * _SLOT,), dtype="float64", buffer=self._map)
        self._slots: dict[tuple[str, str], int] = {}
        self._labels: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _slot(self, version: str, arm: str) -> int:
        key = (version, arm)
        slot = self._slots.get(key)
        if slot is None:
            if len(self._labels) >= _CAPACITY:
                key = ("other", "other")
                slot = self._slots.get(key)
            if slot is None:
                slot = len(self._labels)
                self._labels.append(key)
                self._slots[key] = slot
                index = self.folder / f"w{self.worker}.json"
                partial = index.with_suffix(".json.partial")
                partial.write_text(json.dumps(self._labels))
                os.replace(partial, index)
        return _HEAD + slot * _SLOT

    def observe(self, version: str, arm: str, seconds: float, error: bool) -> None:
        base = self._slot(version, arm)
        values = self.values
        values[base] += 1
        if error:
            values[base + 1] += 1
        values[base + 2] += seconds
        values[base + 3 + bisect.bisect_left(BUCKETS, seconds)] += 1

    def add(self, name: str, amount: float = 1) -> None:
        index = _SCALAR_INDEX[name]
        with self._lock:
            self.values[index] += amount

    def get(self, name: str) -> float:
        return float(self.values[_SCALAR_INDEX[name]])

    def close(self) -> None:
        del self.values
        self._map.close()
        self._file.close()


def render(folder: Path, model: str) -> bytes:
    """Every worker's counters, summed, in the Prometheus text format (version 0.0.4)."""
    import numpy as np

    scalars = np.zeros(_HEAD)
    series: dict[tuple[Any, ...], Any] = {}
    for index in sorted(folder.glob("w*.json")):
        data = folder / (index.stem + ".bin")
        try:
            keys = [tuple(x) for x in json.loads(index.read_text())]
            raw = np.fromfile(data, dtype="float64")
        except (OSError, ValueError):
            continue
        scalars += raw[:_HEAD]
        for i, key in enumerate(keys):
            base = _HEAD + i * _SLOT
            chunk = raw[base : base + _SLOT]
            series[key] = series[key] + chunk if key in series else chunk.copy()
    for data in sorted(folder.glob("w*.bin")):
        if not (folder / (data.stem + ".json")).exists():  # a worker with no series yet
            scalars += np.fromfile(data, dtype="float64")[:_HEAD]

    lines: list[str] = []
    model_label = _escape(model)
    for name, metric, text in SCALARS:
        lines += [f"# HELP {metric} {text}.", f"# TYPE {metric} counter"]
        lines.append(f'{metric}{{model="{model_label}"}} {_num(scalars[_SCALAR_INDEX[name]])}')
    families = (
        ("mlopsctl_requests_total", "Prediction requests", 0),
        ("mlopsctl_request_errors_total", "Prediction requests answered with an error", 1),
    )
    for metric, text, column in families:
        lines += [f"# HELP {metric} {text}.", f"# TYPE {metric} counter"]
        for (version, arm), chunk in sorted(series.items()):
            labels = _labels(model_label, version, arm)
            lines.append(f"{metric}{{{labels}}} {_num(chunk[column])}")
    metric = "mlopsctl_request_latency_seconds"
    lines += [f"# HELP {metric} Prediction request latency.", f"# TYPE {metric} histogram"]
    for (version, arm), chunk in sorted(series.items()):
        labels = _labels(model_label, version, arm)
        cumulative = np.cumsum(chunk[3:])
        for bound, count in zip(BUCKETS, cumulative[:-1], strict=False):
            lines.append(f'{metric}_bucket{{{labels},le="{bound}"}} {_num(count)}')
        lines.append(f'{metric}_bucket{{{labels},le="+Inf"}} {_num(cumulative[-1])}')
        lines.append(f"{metric}_sum{{{labels}}} {float(chunk[2])!r}")
        lines.append(f"{metric}_count{{{labels}}} {_num(cumulative[-1])}")
    return ("\n".join(lines) + "\n").encode()


def _labels(model: str, version: str, arm: str) -> str:
    return f'model="{model}",version="{_escape(version)}",arm="{_escape(arm)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
