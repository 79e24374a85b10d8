"""Prometheus metrics that stay right with several worker processes: prometheus_client's
multiprocess mode.

Each worker writes its values into prometheus_client's own memory-mapped files in one shared
folder (``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_all_<pid>.db``, written with its
`MmapedDict` under its key format), and ``/metrics`` on any worker renders that folder with
its `MultiProcessCollector`, so a scrape that lands on one worker sees the whole server with no
lock and no message passing on the request path. A worker that dies leaves its counter files
behind, so a respawned worker's counts add to them; its process gauges are removed.

Series:

- ``mlopsctl_requests_total``: prediction requests, by model, version, arm, route and status
  code; ``mlopsctl_request_errors_total`` (those answered 4xx or 5xx) and the latency histogram
  ``mlopsctl_request_latency_seconds`` by model, version, arm and route. A prediction request
  always has an arm: one whose body cannot be read is routed by its request id, as any request
  without a key is.
- ``mlopsctl_http_requests_total``: every HTTP request by route and status code, including
  those refused before any model is involved (413, 431, 503, 404); these carry no version or
  arm labels at all.
- scalar counters (log rows written and dropped, swaps, refusals, feedback rows) by model, and
  ``process_*`` gauges per worker (``pid`` label).

On the request path a value only changes in memory: the worker's thread writes what changed
to its files every ``WRITE_EVERY_S`` (and at once before this worker renders a scrape and when
it stops), so a scrape answered by another worker sees a worker's requests a tenth of a second
later at most. (A write costs a microsecond or two; four per request were a measurable share of
a one-row prediction.) Metrics made with ``background=False`` (tools, tests) write at once.

The values are also kept in memory. If the folder disappears (a temporary-file cleaner), the
next check (every few seconds, and before each scrape) notices, says so once, makes the folder
again and writes this worker's values back; counts of workers that died before that are lost,
and the warning says so. Within a process, writes are serialised by one lock.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCALARS = (
    ("log_dropped", "mlopsctl_log_dropped_rows", "Prediction log rows dropped"),
    ("log_written", "mlopsctl_log_written_rows", "Prediction log rows written to the store"),
    ("log_failures", "mlopsctl_log_write_failures", "Failed writes of prediction log files"),
    ("feedback_rows", "mlopsctl_feedback_rows", "Ground-truth rows received"),
    ("swaps", "mlopsctl_model_swaps", "Model versions swapped in without a restart"),
    ("refused", "mlopsctl_model_refused", "New model versions refused by the smoke load"),
    ("extra_columns", "mlopsctl_ignored_columns", "Requests with extra columns that were ignored"),
)
_SCALAR_NAMES = {name: metric for name, metric, _ in SCALARS}
_SCALAR_HELP = {name: text for name, _, text in SCALARS}
_REQUEST_LABELS = ["arm", "code", "model", "route", "version"]
_LATENCY_LABELS = ["arm", "model", "route", "version"]
_HTTP_LABELS = ["code", "route"]
CHECK_EVERY_S = 5.0
WRITE_EVERY_S = 0.1
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _key(metric: str, name: str, labels: dict[str, str], text: str) -> str:
    # prometheus_client.mmap_dict.mmap_key's format, which its collector parses.
    return json.dumps([metric, name, labels, text], sort_keys=True)


def _go(bound: float) -> str:
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(bound))


# requests key, errors key (None below 400), bucket keys (the sum last), changes per bucket
_RequestKeys = tuple[str, "str | None", list[str], list[tuple[tuple[str, str], ...]]]


class Metrics:
    """One worker's metrics in ``folder`` (shared by all workers of a server)."""

    def __init__(
        self,
        folder: Path,
        worker: int,
        model: str,
        *,
        say: Callable[[str], None] | None = None,
        background: bool = True,
    ) -> None:
        from prometheus_client.mmap_dict import MmapedDict

        self._mmaped = MmapedDict
        self.folder = folder
        self.worker = worker
        self.model = model
        self.say = say or (lambda _text: None)
        self.pid = os.getpid()
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[str, Any] = {}
        self._values: dict[str, dict[str, float]] = {"counter": {}, "histogram": {}, "gauge": {}}
        # Per (version, arm, route, code): the keys a request adds to, and per latency bucket
        # the (kind, key) pairs it changes (marked in one set update).
        self._request_keys: dict[tuple[str, str, str, int], _RequestKeys] = {}
        self._http_keys: dict[tuple[str, int], str] = {}
        self._scalar_keys: dict[str, str] = {}
        self._bucket_text = [_go(b) for b in (*BUCKETS, float("inf"))]
        self._warned_missing = False
        self._stop = threading.Event()
        # Written to the files by the thread (when there is one): (kind, key) changed since.
        self._deferred = background
        self._changed: set[tuple[str, str]] = set()
        with self._lock:
            self._open_files()
            for name, metric, text in SCALARS:
                key = _key(metric, metric + "_total", {"model": model}, text + ".")
                self._scalar_keys[name] = key
                self._write("counter", key, 0.0)
        self.update_process()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
            self._thread.start()

    # -- files ------------------------------------------------------------------------------
    def _path(self, kind: str) -> Path:
        prefix = "gauge_all" if kind == "gauge" else kind
        return self.folder / f"{prefix}_{self.pid}.db"

    def _open_files(self) -> None:
        for kind in self._values:
            self._files[kind] = self._mmaped(str(self._path(kind)))

    def _write(self, kind: str, key: str, value: float) -> None:
        self._values[kind][key] = value
        self._files[kind].write_value(key, value, 0.0)

    def _add(self, kind: str, key: str, amount: float) -> None:
        values = self._values[kind]
        value = values.get(key, 0.0) + amount
        values[key] = value
        if self._deferred:
            self._changed.add((kind, key))
        else:
            self._files[kind].write_value(key, value, 0.0)

    def flush(self) -> None:
        """Write the values changed since the last flush to this worker's files."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        # Called with self._lock held.
        if not self._changed:
            return
        changed, self._changed = self._changed, set()
        for kind, key in changed:
            self._files[kind].write_value(key, self._values[kind][key], 0.0)

    def check_folder(self) -> bool:
        """Whether this worker's files are where the collector reads them; when they are not
        (the folder was removed), make them again from the values held in memory."""
        if all(self._path(kind).exists() for kind in self._values):
            return True
        with self._lock:
            if all(self._path(kind).exists() for kind in self._values):
                return True
            self.folder.mkdir(parents=True, exist_ok=True)
            for kind, handle in self._files.items():
                if not self._path(kind).exists():
                    handle.close()
                    self._files[kind] = self._mmaped(str(self._path(kind)))
                    for key, value in self._values[kind].items():
                        self._files[kind].write_value(key, value, 0.0)
        if not self._warned_missing:
            self._warned_missing = True
            self.say(
                f"warning: the metrics folder {self.folder} or its files were removed (a "
                "temporary-file cleaner?); recreated them from the values each worker holds: "
                "the counts of workers that exited before are lost"
            )
        return False

    def _run(self) -> None:
        last_check = time.monotonic()
        while not self._stop.wait(WRITE_EVERY_S):
            try:
                self.flush()
                if time.monotonic() - last_check >= CHECK_EVERY_S:
                    last_check = time.monotonic()
                    self.check_folder()
                    self.update_process()
            except Exception as exc:  # noqa: BLE001 - metrics must never end the server
                self.say(f"warning: metrics upkeep failed: {type(exc).__name__}: {exc}")

    # -- recording ---------------------------------------------------------------------------
    def observe(
        self, version: str, arm: str, route: str, code: int, seconds: float, error: bool = False
    ) -> None:
        """One prediction request (any status), with its latency."""
        keys = self._request_keys.get((version, arm, route, code))
        if keys is None:
            keys = self._make_request_keys(version, arm, route, code)
        requests, errors, buckets, marks = keys
        bucket = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            counter, histogram = self._values["counter"], self._values["histogram"]
            counter[requests] += 1.0
            if errors is not None:
                counter[errors] += 1.0
            histogram[buckets[bucket]] += 1.0
            histogram[buckets[-1]] += seconds
            if self._deferred:
                self._changed.update(marks[bucket])
            else:
                for kind, key in marks[bucket]:
                    self._files[kind].write_value(key, self._values[kind][key], 0.0)

    def _make_request_keys(self, version: str, arm: str, route: str, code: int) -> _RequestKeys:
        labels = {
            "model": self.model,
            "version": version,
            "arm": arm,
            "route": route,
            "code": str(code),
        }
        requests = _key(
            "mlopsctl_requests", "mlopsctl_requests_total", labels, "Prediction requests."
        )
        short = {k: v for k, v in labels.items() if k != "code"}
        error_key = _key(
            "mlopsctl_request_errors",
            "mlopsctl_request_errors_total",
            short,
            "Prediction requests answered with an error (4xx or 5xx).",
        )
        errors = error_key if code >= 400 else None
        metric = "mlopsctl_request_latency_seconds"
        text = "Prediction request latency."
        buckets = [
            _key(metric, metric + "_bucket", {**short, "le": le}, text) for le in self._bucket_text
        ]
        buckets.append(_key(metric, metric + "_sum", short, text))
        with self._lock:
            # Every bucket exists from the start (the collector only adds up what is there).
            for key in buckets:
                if key not in self._values["histogram"]:
                    self._write("histogram", key, 0.0)
            for key in (error_key, requests):
                if key not in self._values["counter"]:
                    self._write("counter", key, 0.0)
        counted = [("counter", requests)] + ([("counter", errors)] if errors else [])
        marks = [
            (*counted, ("histogram", bucket), ("histogram", buckets[-1])) for bucket in buckets[:-1]
        ]
        keys = (requests, errors, buckets, marks)
        self._request_keys[(version, arm, route, code)] = keys
        return keys

    def http(self, route: str, code: int) -> None:
        """Any HTTP request, by route and status code."""
        key = self._http_keys.get((route, code))
        if key is None:
            key = _key(
                "mlopsctl_http_requests",
                "mlopsctl_http_requests_total",
                {"route": route, "code": str(code)},
                "HTTP requests by route and status code, refused ones included.",
            )
            self._http_keys[(route, code)] = key
            with self._lock:
                if key not in self._values["counter"]:
                    self._write("counter", key, 0.0)
        with self._lock:
            self._values["counter"][key] += 1.0
            if self._deferred:
                self._changed.add(("counter", key))
            else:
                self._files["counter"].write_value(key, self._values["counter"][key], 0.0)

    def add(self, name: str, amount: float = 1) -> None:
        key = self._scalar_keys[name]
        with self._lock:
            self._add("counter", key, float(amount))

    def get(self, name: str) -> float:
        with self._lock:
            return self._values["counter"].get(self._scalar_keys[name], 0.0)

    def update_process(self) -> None:
        """This worker's process_* gauges (resident memory, CPU seconds, open files...)."""
        from prometheus_client import ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        collector = ProcessCollector(registry=CollectorRegistry())
        with self._lock:
            for family in collector.collect():
                for sample in family.samples:
                    labels = {"worker": str(self.worker)}
                    key = _key(family.name, sample.name, labels, family.documentation)
                    self._write("gauge", key, float(sample.value))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._flush()
            for handle in self._files.values():
                handle.close()
            self._files.clear()


def forget_process(folder: Path, pid: int) -> None:
    """A worker exited: its process gauges go; its counters stay, so totals keep counting."""
    try:
        (folder / f"gauge_all_{pid}.db").unlink()
    except FileNotFoundError:
        pass


def render(folder: Path, model: str = "") -> bytes:
    """Every worker's values, summed, in the Prometheus text format (version 0.0.4)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if not folder.is_dir():
        return b""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return bytes(generate_latest(registry))
