"""`mlopsctl features materialize`: load the latest value per entity from the offline store
into the online store, incrementally by event time.

Each call reads only the offline rows newer than the set's watermark in the online store (the
latest event time loaded before; the date partitions before it are not read at all) and not
after ``until`` (default: now), keeps each entity's latest, writes them (a value never replaces
a newer one) and moves the watermark. A set whose layout changed (keys, features or their
types), or ``full=True``, starts afresh. Like Feast's materialize-incremental, a row that
arrives late (with an event time before the watermark) is loaded by a ``full`` run only."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlopsctl.features.offline import current_manifest, local_files
from mlopsctl.features.online import OnlineStore, layout_of
from mlopsctl.features.source import connect, literal, quote
from mlopsctl.features.spec import FeatureSet
from mlopsctl.timeutil import utc_now

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

_EPOCH = datetime(1970, 1, 1)


def to_us(moment: datetime) -> int:
    """A time as microseconds since the epoch (naive times are UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    from datetime import timedelta

    return (_EPOCH + timedelta(microseconds=int(value))).replace(tzinfo=timezone.utc)


def materialize(
    store: ObjectStore,
    fs: FeatureSet,
    online: OnlineStore,
    *,
    full: bool = False,
    until: datetime | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Load one set; returns {name, rows (entities written), since, until, watermark,
    manifest, full}."""
    manifest = current_manifest(store, fs.name)
    until = until or utc_now()
    until_us = to_us(until)
    meta = online.meta(fs.name)
    fresh = full or meta is None or meta.get("layout") != layout_of(fs)
    if fresh:
        online.reset(fs)
        since_us = None
    else:
        assert meta is not None
        since_us = meta.get("watermark_us")
    wanted = dict(manifest["partitions"])
    if since_us is not None:
        first_day = from_us(since_us).strftime("%Y-%m-%d")
        wanted = {d: p for d, p in wanted.items() if d >= first_day}
    last_day = from_us(until_us).strftime("%Y-%m-%d")
    wanted = {d: p for d, p in wanted.items() if d <= last_day}
    written = 0
    watermark = since_us
    if wanted:
        files = local_files(store, {**manifest, "partitions": wanted})
        keys = ", ".join(quote(k) for k in fs.keys)
        ts = quote(fs.timestamp)
        as_text = [f"CAST({quote(k)} AS VARCHAR)" for k in fs.keys]
        key_text = as_text[0] if len(as_text) == 1 else f"concat_ws(chr(31), {', '.join(as_text)})"
        nulls = " OR ".join(f"{quote(k)} IS NULL" for k in fs.keys)
        bounds = [f"epoch_us({ts}) <= {until_us}"]
        if since_us is not None:
            bounds.append(f"epoch_us({ts}) > {int(since_us)}")
        features = ", ".join(quote(f) for f in fs.feature_names)
        listing = "[" + ", ".join(literal(str(p)) for p in files) + "]"
        query = f"""
            SELECT {key_text} AS k, epoch_us({ts}) AS ts, {features}
            FROM read_parquet({listing})
            WHERE {" AND ".join(bounds)} AND NOT ({nulls})
            QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {ts} DESC) = 1"""
        con = connect(threads)
        try:
            cursor = con.execute(query)
            high = since_us

            def rows() -> Any:
                nonlocal high
                while True:
                    batch = cursor.fetchmany(10_000)
                    if not batch:
                        return
                    for row in batch:
                        if high is None or row[1] > high:
                            high = row[1]
                        yield row[0], row[1], [_plain(v) for v in row[2:]]

            written = online.write(fs, rows())
            watermark = high
        finally:
            con.close()
    online.set_meta(fs, watermark, manifest["manifest"])
    return {
        "name": fs.name,
        "rows": written,
        "full": fresh,
        "since": None if since_us is None else from_us(since_us).isoformat(),
        "until": until.isoformat(),
        "watermark": None if watermark is None else from_us(watermark).isoformat(),
        "manifest": manifest["manifest"],
        "digest": manifest["digest"],
        "online": online.url,
    }


def _plain(value: Any) -> Any:
    """A value as the online store keeps it: numbers, text, None."""
    if isinstance(value, bool):
        return int(value)
    return value


def materialize_all(
    store: ObjectStore,
    sets: list[FeatureSet],
    online: OnlineStore,
    *,
    full: bool = False,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    return [materialize(store, fs, online, full=full, until=until) for fs in sets if fs.online]
