"""The online store: the latest value of every feature per entity, for lookups while serving.

Chosen by URL (``MLOPSCTL_ONLINE_STORE``, or ``--online``):

- ``sqlite:PATH`` (the default: ``sqlite:.mlops-online/features.sqlite`` under the project
  root): embedded, no server. One table per set, ``fs__<set>``, keyed by the entity key text,
  with the event time and one column per feature; WAL mode, so a server reads while
  `materialize` writes.
- ``redis://HOST:PORT/DB``: one string per entity, ``mlopsctl:fs:<set>:<key>``, holding JSON
  ``[event time in µs, value, ...]``; written by a script that keeps the newer of two values.

Both keep per set the layout (key and feature names and types: a different layout starts the
set afresh), the watermark (the latest event time loaded) and the manifest it came from.
A write never replaces a value with an older one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from mlopsctl.digest import sha256_json
from mlopsctl.errors import StoreUnreachable, UsageError
from mlopsctl.features.spec import FeatureSet

ONLINE_ENV = "MLOPSCTL_ONLINE_STORE"
DEFAULT_SQLITE = ".mlops-online/features.sqlite"

Row = tuple[Any, ...]  # (event time in µs, value, value, ...)


def layout_of(fs: FeatureSet) -> str:
    """What a stored row's shape depends on: key and feature names and types."""
    return sha256_json(
        {"keys": list(fs.entities), "features": [(f.name, f.type) for f in fs.features]}
    )[7:23]


class OnlineStore(Protocol):
    url: str

    def meta(self, name: str) -> dict[str, Any] | None: ...

    def reset(self, fs: FeatureSet) -> None: ...

    def write(self, fs: FeatureSet, rows: Iterable[tuple[str, int, Sequence[Any]]]) -> int: ...

    def set_meta(self, fs: FeatureSet, watermark_us: int | None, manifest: str) -> None: ...

    def read(self, fs: FeatureSet, keys: Sequence[str | None]) -> list[Row | None]: ...

    def close(self) -> None: ...


def online_url(project_root: Path | None = None, given: str | None = None) -> str:
    """The online store's URL: ``given``, else MLOPSCTL_ONLINE_STORE, else the SQLite file
    under the project root."""
    url = given or os.environ.get(ONLINE_ENV)
    if url:
        return url
    root = project_root if project_root is not None else Path.cwd()
    return f"sqlite:{root / DEFAULT_SQLITE}"


def open_online(url: str, project_root: Path | None = None) -> OnlineStore:
    if url.startswith("sqlite:"):
        path = Path(url[len("sqlite:") :].removeprefix("//"))
        if not path.is_absolute():
            path = (project_root or Path.cwd()) / path
        return SqliteOnline(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisOnline(url)
    raise UsageError(
        f"unknown online store {url!r}",
        "use sqlite:PATH or redis://HOST:PORT/DB (MLOPSCTL_ONLINE_STORE or --online)",
    )


def _table(name: str) -> str:
    return '"fs__' + name.replace('"', "") + '"'


def _column(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteOnline:
    """The embedded online store. One connection per thread (a server's thread pool reads in
    parallel)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:{path}"
        self._local = threading.local()
        self._selects: dict[tuple[str, int], str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        con = self._con()
        con.execute(
            "CREATE TABLE IF NOT EXISTS featuresets (name TEXT PRIMARY KEY, layout TEXT, "
            "watermark_us INTEGER, manifest TEXT)"
        )
        con.commit()

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StoreUnreachable(f"cannot open the online store {self.path}: {exc}") from None
            self._local.con = con
        return con

    def meta(self, name: str) -> dict[str, Any] | None:
        row = (
            self._con()
            .execute(
                "SELECT layout, watermark_us, manifest FROM featuresets WHERE name = ?", (name,)
            )
            .fetchone()
        )
        if row is None:
            return None
        return {"layout": row[0], "watermark_us": row[1], "manifest": row[2]}

    def reset(self, fs: FeatureSet) -> None:
        con = self._con()
        columns = ", ".join(f"{_column(f.name)}" for f in fs.features)
        with con:
            con.execute(f"DROP TABLE IF EXISTS {_table(fs.name)}")
            con.execute(
                f"CREATE TABLE {_table(fs.name)} (k TEXT PRIMARY KEY, ts INTEGER NOT NULL, "
                f"{columns}) WITHOUT ROWID"
            )
            con.execute(
                "INSERT OR REPLACE INTO featuresets VALUES (?, ?, NULL, NULL)",
                (fs.name, layout_of(fs)),
            )

    def write(self, fs: FeatureSet, rows: Iterable[tuple[str, int, Sequence[Any]]]) -> int:
        names = [_column(f.name) for f in fs.features]
        marks = ", ".join("?" * (len(names) + 2))
        updates = ", ".join(f"{n} = excluded.{n}" for n in ["ts", *names])
        sql = (
            f"INSERT INTO {_table(fs.name)} VALUES ({marks}) ON CONFLICT(k) DO UPDATE SET "
            f"{updates} WHERE excluded.ts >= {_table(fs.name)}.ts"
        )
        con = self._con()
        count = 0
        with con:
            batch: list[tuple[Any, ...]] = []
            for key, ts, values in rows:
                batch.append((key, ts, *values))
                if len(batch) >= 10_000:
                    con.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            if batch:
                con.executemany(sql, batch)
                count += len(batch)
        return count

    def set_meta(self, fs: FeatureSet, watermark_us: int | None, manifest: str) -> None:
        con = self._con()
        with con:
            con.execute(
                "INSERT OR REPLACE INTO featuresets VALUES (?, ?, ?, ?)",
                (fs.name, layout_of(fs), watermark_us, manifest),
            )

    def read(self, fs: FeatureSet, keys: Sequence[str | None]) -> list[Row | None]:
        wanted = [k for k in keys if k is not None]
        if not wanted:
            return [None] * len(keys)
        con = self._con()
        if len(wanted) == 1:
            sql = self._select(fs, 1)
            try:
                row = con.execute(sql, wanted).fetchone()
            except sqlite3.OperationalError as exc:
                raise _not_loaded(fs, exc) from None
            return [row if k is not None else None for k in keys]
        found: dict[str, Row] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            try:
                for row in con.execute(self._select(fs, len(chunk), True), chunk):
                    found[row[0]] = row[1:]
            except sqlite3.OperationalError as exc:
                raise _not_loaded(fs, exc) from None
        return [found.get(k) if k is not None else None for k in keys]

    def _select(self, fs: FeatureSet, n: int, with_key: bool = False) -> str:
        cache_key = (fs.name, n if with_key else -1)
        sql = self._selects.get(cache_key)
        if sql is None:
            columns = ", ".join(["ts", *(_column(f.name) for f in fs.features)])
            if with_key:
                marks = ", ".join("?" * n)
                sql = f"SELECT k, {columns} FROM {_table(fs.name)} WHERE k IN ({marks})"
            else:
                sql = f"SELECT {columns} FROM {_table(fs.name)} WHERE k = ?"
            self._selects[cache_key] = sql
        return sql

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def _not_loaded(fs: FeatureSet, exc: Exception) -> UsageError:
    return UsageError(
        f"the online store has no feature set '{fs.name}' ({exc})",
        "run `mlopsctl features materialize` first",
    )


# Keep the newer of the stored and the given value: ARGV[1] the event time, ARGV[2] the value.
_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ts = tonumber(string.match(cur, '^%[(%-?%d+)'))
  if ts and ts > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class RedisOnline:
    """The online store in Redis (the ``redis`` client library: ``pip install mlopsctl[redis]``)."""

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:
            raise UsageError(
                "the Redis online store needs the redis client library",
                "pip install 'mlopsctl[redis]'",
            ) from None
        self.url = url
        self._redis = redis
        self.client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._newer: Any = None

    def _call(self, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except self._redis.exceptions.ConnectionError as exc:
            raise StoreUnreachable(f"cannot reach the online store {self.url}: {exc}") from None

    def _key(self, name: str, key: str) -> str:
        return f"mlopsctl:fs:{name}:{key}"

    def meta(self, name: str) -> dict[str, Any] | None:
        found = self._call(self.client.hgetall, f"mlopsctl:fsmeta:{name}")
        if not found:
            return None
        text = {k.decode(): v.decode() for k, v in found.items()}
        watermark = text.get("watermark_us")
        return {
            "layout": text.get("layout"),
            "watermark_us": int(watermark) if watermark not in (None, "") else None,
            "manifest": text.get("manifest") or None,
        }

    def reset(self, fs: FeatureSet) -> None:
        pattern = self._key(fs.name, "*")
        cursor = 0
        while True:
            cursor, keys = self._call(self.client.scan, cursor, pattern, 10_000)
            if keys:
                self._call(self.client.unlink, *keys)
            if cursor == 0:
                break
        self._call(
            self.client.hset,
            f"mlopsctl:fsmeta:{fs.name}",
            None,
            None,
            {"layout": layout_of(fs), "watermark_us": "", "manifest": ""},
        )

    def write(self, fs: FeatureSet, rows: Iterable[tuple[str, int, Sequence[Any]]]) -> int:
        if self._newer is None:
            self._newer = self.client.register_script(_NEWER)
        count = 0
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        for key, ts, values in rows:
            body = json.dumps([ts, *values], separators=(",", ":"))
            self._newer(keys=[self._key(fs.name, key)], args=[ts, body], client=pipe)
            pending += 1
            if pending >= 5_000:
                self._call(pipe.execute)
                count += pending
                pending = 0
        if pending:
            self._call(pipe.execute)
            count += pending
        return count

    def set_meta(self, fs: FeatureSet, watermark_us: int | None, manifest: str) -> None:
        self._call(
            self.client.hset,
            f"mlopsctl:fsmeta:{fs.name}",
            None,
            None,
            {
                "layout": layout_of(fs),
                "watermark_us": "" if watermark_us is None else str(watermark_us),
                "manifest": manifest,
            },
        )

    def read(self, fs: FeatureSet, keys: Sequence[str | None]) -> list[Row | None]:
        return self.read_many([(fs, keys)])[0]

    def read_many(
        self, wanted: Sequence[tuple[FeatureSet, Sequence[str | None]]]
    ) -> list[list[Row | None]]:
        """Several sets' rows in one round trip (one MGET)."""
        names = [self._key(fs.name, k) for fs, keys in wanted for k in keys if k is not None]
        values = iter(self._call(self.client.mget, names) if names else [])
        out: list[list[Row | None]] = []
        for _, keys in wanted:
            rows: list[Row | None] = []
            for k in keys:
                if k is None:
                    rows.append(None)
                    continue
                raw = next(values)
                rows.append(tuple(json.loads(raw)) if raw is not None else None)
            out.append(rows)
        return out

    def close(self) -> None:
        self.client.close()
