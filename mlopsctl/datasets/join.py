"""The join at the heart of a dataset built from logs, in DuckDB (bench/datasets.py measured it
against pyarrow's join and pandas' merge: see README "Continuous training").

Rules (README "Continuous training" says the same):

* A prediction row counts when its ``ts`` lies in the window [since, until) (and, with
  ``version``, that version served it). Rows are keyed by (``request_id``, ``row``); a log
  without ``row`` (older logs) holds row 0. A key logged more than once (at-least-once log
  writes, or a client that reused an X-Request-ID) counts once: its latest row (then the one
  in the later file, later in it).
* Outcomes are keyed the same way (feedback without ``row``: row 0). Of several outcomes for
  one key the one with the latest ``ts`` wins (ties: the later file, later in it), the rule
  ``mlopsctl feedback`` and the A/B analysis follow. Only outcomes recorded at or before the
  build's moment count, so a build at a given moment is repeatable.
* Late labels: an outcome recorded after the window closed (its ``ts`` at or after until) for
  a prediction inside the window counts whenever the dataset is built after it arrived; such
  rows are counted as ``late_labels``.
* Unlabelled rows (no outcome, or a latest outcome of null) are dropped and counted; outcomes
  with no prediction in the window are counted as ``unmatched_feedback``.
* The rows come out ordered by prediction time, request id and row, so the same inputs give
  the same table, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlopsctl.datasets.logs import feature_names
from mlopsctl.errors import UsageError
from mlopsctl.logformat import FEATURE_PREFIX, FIXED_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

# Log columns that are never features: the sticky key (key.<name>) and contributions.
_NOT_FEATURES = ("key.", "contrib.")


@dataclass
class Joined:
    table: pa.Table | None  # features then the target column; None: no prediction logged
    features: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    labels_through: int | None = None  # ms: the latest outcome used


# Every log file at once: columns matched by name (versions with other features write other
# schemas), no columns made up from the date= folders.
_READ = "read_parquet($files, union_by_name = true, hive_partitioning = false)"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: Any, files: list[str]) -> dict[str, str]:
    rows = con.execute(
        "DESCRIBE SELECT * FROM read_parquet($f, union_by_name = true, hive_partitioning = false)",
        {"f": files},
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def feature_columns(columns: list[str], known: list[str] | None) -> list[tuple[str, str]]:
    """(log column, feature name) of the features in a prediction log with ``columns``. With
    the model's ``known`` feature names, each is looked up where serving logs it (its name, or
    feature.<name> for one named like a fixed column); otherwise every column that is not a
    fixed one, with one feature. prefix taken off a name that needs it."""
    if known:
        return list(feature_names(columns, known).items())
    pairs = []
    for column in columns:
        if column in FIXED_COLUMNS or column.startswith(_NOT_FEATURES):
            continue
        name = column
        if column.startswith(FEATURE_PREFIX) and column[len(FEATURE_PREFIX) :] in FIXED_COLUMNS:
            name = column[len(FEATURE_PREFIX) :]
        pairs.append((column, name))
    return pairs


def _arrow(relation: Any) -> pa.Table:
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    table: pa.Table = fetch()
    return table


def join_window(
    predictions: list[str],
    feedback: list[str],
    *,
    since: datetime,
    until: datetime,
    labels_until: datetime,
    target: str,
    version: int | None = None,
    known_features: list[str] | None = None,
    wanted_features: list[str] | None = None,
    new_after: datetime | None = None,
) -> Joined:
    """Join the prediction log files with the feedback files (local Parquet paths) under the
    rules above. ``new_after``: also count the labelled rows whose outcome came after it
    (``new_labels``)."""
    import duckdb

    if not predictions:
        return Joined(None, [], {"logged_rows": 0, "feedback_rows": 0})
    con = duckdb.connect()
    try:
        return _join(
            con,
            predictions,
            feedback,
            since_ms=_ms(since),
            until_ms=_ms(until),
            labels_ms=_ms(labels_until),
            target=target,
            version=version,
            known=known_features,
            wanted=wanted_features,
            new_ms=_ms(new_after) if new_after is not None else None,
        )
    finally:
        con.close()


def _join(
    con: Any,
    predictions: list[str],
    feedback: list[str],
    *,
    since_ms: int,
    until_ms: int,
    labels_ms: int,
    target: str,
    version: int | None,
    known: list[str] | None,
    wanted: list[str] | None,
    new_ms: int | None,
) -> Joined:
    columns = _columns(con, predictions)
    for needed in ("request_id", "ts"):
        if needed not in columns:
            raise UsageError(f"the prediction logs have no {needed!r} column")
    pairs = feature_columns(list(columns), known)
    if wanted:
        by_name = {name: logged for logged, name in pairs}
        missing = [w for w in wanted if w not in by_name]
        if missing:
            raise UsageError(
                f"the prediction logs have no feature(s) {', '.join(missing)}",
                f"logged features: {', '.join(by_name) or 'none'}",
            )
        pairs = [(by_name[w], w) for w in wanted]
    if target in {name for _, name in pairs}:
        raise UsageError(
            f"the target column {target!r} is also a logged feature",
            "name the outcome column otherwise (from_logs.target)",
        )
    if version is not None and "version" not in columns:
        raise UsageError("the prediction logs have no 'version' column to filter on")

    def row_of(p: str) -> str:
        return f"COALESCE(CAST({p}row AS BIGINT), 0)" if "row" in columns else "0"

    def in_window(p: str) -> str:
        served = f" AND {p}version = {int(version)}" if version is not None else ""
        return (
            f"epoch_ms({p}ts) >= $since AND epoch_ms({p}ts) < $until"
            f" AND {p}request_id IS NOT NULL{served}"
        )

    span = {"since": since_ms, "until": until_ms}
    if feedback:
        feed = _columns(con, feedback)
        for needed in ("request_id", "ts", "actual"):
            if needed not in feed:
                raise UsageError(f"the feedback logs have no {needed!r} column")
        feed_row = "COALESCE(CAST(row AS BIGINT), 0)" if "row" in feed else "0"
        # The latest outcome per key (ties: the later file, later in it); arg_max_null, since
        # a latest outcome of null must win too (arg_max skips nulls). file_index is the
        # file's place in the list, which is in key order.
        con.execute(
            f"""CREATE TEMP TABLE f AS
            SELECT CAST(request_id AS VARCHAR) AS rid, {feed_row} AS r, max(epoch_ms(ts)) AS t,
                   arg_max_null(actual, (epoch_ms(ts), file_index, file_row_number)) AS val,
                   count(*) AS copies
            FROM {_READ}
            WHERE request_id IS NOT NULL AND epoch_ms(ts) <= $labels
            GROUP BY ALL""",
            {"files": feedback, "labels": labels_ms},
        )
    else:
        con.execute(
            "CREATE TEMP TABLE f (rid VARCHAR, r BIGINT, t BIGINT, val VARCHAR, copies BIGINT)"
        )
    # Pass 1, the keys only, nothing kept: how many rows and keys the window logged.
    totals = con.execute(
        f"""SELECT count(*), coalesce(sum(copies), 0) FROM (
            SELECT CAST(request_id AS VARCHAR) AS rid, {row_of("")} AS r, count(*) AS copies
            FROM {_READ} WHERE {in_window("")} GROUP BY ALL)""",
        {"files": predictions, **span},
    ).fetchall()[0]
    distinct, logged = int(totals[0]), int(totals[1])
    # Pass 2, the rows whose key has an outcome, with their features and that outcome (every
    # copy of a key logged twice, for now).
    names = [name for _, name in pairs]
    keep = "".join(f", {_quote(logged_as)} AS {_quote(name)}" for logged_as, name in pairs)
    con.execute(
        f"""CREATE TEMP TABLE out AS
        SELECT p.*, f.t AS "__label_t", f.val AS {_quote(target)} FROM (
            SELECT CAST(request_id AS VARCHAR) AS "__rid", {row_of("")} AS "__r",
                   epoch_ms(ts) AS "__t", file_index AS "__file",
                   file_row_number AS "__line"{keep}
            FROM {_READ} WHERE {in_window("")}) AS p
        JOIN f ON p."__rid" = f.rid AND p."__r" = f.r""",
        {"files": predictions, **span},
    )
    if logged > distinct:
        # A key logged more than once: its latest row, then the one in the later file, later
        # in it.
        con.execute(
            """CREATE OR REPLACE TEMP TABLE out AS SELECT * FROM out
            QUALIFY row_number() OVER (PARTITION BY "__rid", "__r"
                                       ORDER BY "__t" DESC, "__file" DESC, "__line" DESC) = 1"""
        )
    labelled_only = f"{_quote(target)} IS NOT NULL"
    summary = con.execute(
        f"""SELECT (SELECT count(*) FROM out),
                   count(*) FILTER (WHERE "__label_t" >= $until),
                   max("__label_t"),
                   count(*) FILTER (WHERE "__label_t" > $new),
                   count(*),
                   (SELECT count(*) FROM f), (SELECT coalesce(sum(copies - 1), 0) FROM f)
        FROM out WHERE {labelled_only}""",
        {"until": until_ms, "new": new_ms if new_ms is not None else 2**62},
    ).fetchall()[0]
    matched, labelled = int(summary[0]), int(summary[4])
    counts = {
        "logged_rows": logged,
        "duplicate_rows": logged - distinct,
        "labelled_rows": labelled,
        "unlabelled_rows": distinct - labelled,
        "late_labels": int(summary[1]),
        "feedback_rows": int(summary[5]) + int(summary[6]),
        "duplicate_feedback": int(summary[6]),
        "unmatched_feedback": int(summary[5]) - matched,
    }
    if new_ms is not None:
        counts["new_labels"] = int(summary[3])
    through = int(summary[2]) if summary[2] is not None else None
    table = _arrow(
        con.sql(
            f"""SELECT * EXCLUDE ("__rid", "__r", "__t", "__file", "__line", "__label_t")
            FROM out WHERE {labelled_only} ORDER BY "__t", "__rid", "__r" """
        )
    )
    return Joined(table, names, counts, through)
