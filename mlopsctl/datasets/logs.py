"""The serving log files a window reads, as local files with their digests.

Prediction logs: ``logs/predictions/<model>/date=YYYY-MM-DD/*.parquet``, the date partitions
that can hold rows of [since, until). Feedback: ``logs/feedback/<model>/date=.../*.parquet``
from the window's first day on, whatever came later (a label may arrive days after its
prediction). Files outside any date partition are always read. A local store's files are read
where they lie; any other store's are downloaded to a temporary folder, a few at a time. Every
file is hashed (sha256) for the dataset's lineage.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.digest import format_digest
from mlopsctl.logformat import (
    FEEDBACK,
    FIXED_COLUMNS,
    PREDICTIONS,
    log_names,
)

if TYPE_CHECKING:
    from mlopsctl.datasets.spec import Window
    from mlopsctl.store.base import ObjectStore


def feature_names(columns: list[str], features: list[str]) -> dict[str, str]:
    """{log column: feature} for the model `features` found in a log with `columns`: a feature
    named like a fixed column is read from feature.<name>, where serving logs it."""
    present = set(columns)
    found = {}
    for logged, name in zip(log_names(features), features, strict=True):
        if logged in present:
            found[logged] = name
        elif name in present and name not in FIXED_COLUMNS:
            found[name] = name
    return found


_THREADS = 8
_CHUNK = 4 << 20


@dataclass(frozen=True)
class LogFile:
    key: str
    path: str  # where it is read from
    digest: str
    size: int

    def lineage(self) -> dict[str, Any]:
        return {"key": self.key, "digest": self.digest, "size": self.size}


def _day_of(key: str, prefix: str) -> str | None:
    part = key[len(prefix) :].split("/", 1)[0]
    return part[5:15] if part.startswith("date=") and "/" in key[len(prefix) :] else None


def window_keys(
    store: ObjectStore, kind: str, model: str, first_day: str, last_day: str | None
) -> list[str]:
    """The Parquet files of ``<kind>/<model>/`` in the date partitions [first_day, last_day]
    (no last_day: every later one too), in key order."""
    prefix = f"{kind}/{model}/"
    keys = []
    for key in store.list(prefix):
        if not key.endswith((".parquet", ".pq")):
            continue
        day = _day_of(key, prefix)
        if day is not None and (day < first_day or (last_day is not None and day > last_day)):
            continue
        keys.append(key)
    return sorted(keys)


def prediction_keys(store: ObjectStore, model: str, window: Window) -> list[str]:
    last = window.until - timedelta(microseconds=1)
    return window_keys(
        store, PREDICTIONS, model, window.since.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")
    )


def feedback_keys(store: ObjectStore, model: str, window: Window) -> list[str]:
    return window_keys(store, FEEDBACK, model, window.since.strftime("%Y-%m-%d"), None)


def _hash(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return format_digest(digest.hexdigest()), size


@contextmanager
def local_files(store: ObjectStore, keys: list[str]) -> Iterator[list[LogFile]]:
    """``keys`` as local files with their digests, for as long as the context lasts."""
    root = getattr(store, "root", None)
    if isinstance(root, Path):  # a local store: read in place
        paths = [str(root.joinpath(*key.split("/"))) for key in keys]
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            hashed = list(pool.map(_hash, paths))
        yield [
            LogFile(key, path, digest, size)
            for key, path, (digest, size) in zip(keys, paths, hashed, strict=True)
        ]
        return
    with tempfile.TemporaryDirectory(prefix="mlopsctl-dataset-") as tmp:

        def fetch(item: tuple[int, str]) -> LogFile:
            number, key = item
            dest = Path(tmp) / f"{number:06d}.parquet"
            store.get_file(key, dest)
            digest, size = _hash(str(dest))
            return LogFile(key, str(dest), digest, size)

        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            yield list(pool.map(fetch, enumerate(keys)))
