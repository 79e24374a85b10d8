"""The per-unit join of release ab on small hand-made logs: the key column the log writer adds,
units seen on both arms, logs without a row index, duplicate and unknown outcomes, delayed
outcomes, the gate's configuration errors, and the rollout's type: ab check."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlopsctl.errors import UsageError
from mlopsctl.release import ab
from mlopsctl.release.analysis import ArmData, Look, Window, run_checks
from mlopsctl.serving.logs import LogSchema, prediction_table
from mlopsctl.store.local import LocalStore

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
MS = int(T0.timestamp() * 1000)


def _put(store: LocalStore, kind: str, table: pa.Table, name: str, day: str = "2026-11-02") -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    store.put(f"logs/{kind}/m/date={day}/{name}.parquet", sink.getvalue())


def _ts(offsets_h: list[float]) -> pa.Array:
    return pa.array([MS + int(h * 3_600_000) for h in offsets_h], pa.timestamp("ms", tz="UTC"))


def _config(**extra: Any) -> ab.Config:
    return ab.config_of(
        {
            "name": "t",
            "primary": {"name": "conv", "metric": "proportion"},
            "guardrails": [{"name": "rev", "metric": "mean"}],
            "weights": {"control": 50, "treatment": 50},
            "unit": "customer_id",
            **extra,
        }
    )


def _analyze(store: LocalStore, cfg: ab.Config, hours: float = 48) -> dict[str, Any]:
    return ab.analyze(
        store, "m", cfg, control=1, treatment=2, since=T0, until=T0 + timedelta(hours=hours)
    )


def test_the_log_writer_logs_the_sticky_key_under_its_name() -> None:
    schema = LogSchema(("x",), ("numeric",), True, False)
    entry = ("r1", MS, 1, "production", 1.0, np.zeros((3, 1)), np.ones(3), None, schema, None)
    (table,) = prediction_table("m")([(*entry, ("customer_id", "c7")), (*entry, None)])
    assert table.column("customer_id").to_pylist() == ["c7"] * 3 + [None] * 3
    assert table.column("row").to_pylist() == [0, 1, 2] * 2
    # A key that is a feature is logged as the feature already; a key named like a fixed
    # column gets its own name.
    feature = LogSchema(("customer_id",), ("numeric",), True, False)
    (table,) = prediction_table("m")(
        [
            (
                "r",
                MS,
                1,
                "a",
                1.0,
                np.zeros((1, 1)),
                np.ones(1),
                None,
                feature,
                None,
                ("customer_id", "5"),
            )
        ]
    )
    assert table.column_names.count("customer_id") == 1
    (table,) = prediction_table("m")([(*entry, ("version", "c7"))])
    assert table.column("key.version").to_pylist() == ["c7"] * 3


def _logs(store: LocalStore) -> None:
    """Customers a..f: a, b, c on version 1, d, e on 2, f on both (left out). Old-style logs
    (no row column) for e."""
    _put(
        store,
        "predictions",
        pa.table(
            {
                "request_id": ["a1", "a1", "b1", "c1", "d1", "d2", "f1", "f2"],
                "row": pa.array([0, 1, 0, 0, 0, 0, 0, 0], pa.int32()),
                "ts": _ts([0, 0, 1, 2, 1, 30, 3, 4]),
                "version": pa.array([1, 1, 1, 1, 2, 2, 1, 2], pa.int64()),
                "customer_id": ["a", "a", "b", "c", "d", "d", "f", "f"],
                "spend": [10.0, 10.0, 0.0, 5.0, 8.0, 8.0, 1.0, 1.0],
            }
        ),
        "p1",
    )
    _put(
        store,
        "predictions",
        pa.table(
            {
                "request_id": ["e1", "e1"],
                "ts": _ts([5, 5]),
                "version": pa.array([2, 2], pa.int64()),
                "customer_id": ["e", "e"],
            }
        ),
        "p2",
    )
    # Outside the window's dates: never downloaded.
    _put(
        store,
        "predictions",
        pa.table({"request_id": ["z"], "ts": _ts([-200]), "version": pa.array([1], pa.int64())}),
        "old",
        day="2026-10-20",
    )


def _feedback(store: LocalStore) -> None:
    _put(
        store,
        "feedback",
        pa.table(
            {
                "request_id": ["a1", "a1", "a1", "d2", "e1", "nobody", "f1", "c1"],
                "row": pa.array([1, 1, 0, 0, None, 0, 0, 0], pa.int32()),
                "ts": _ts([5, 9, 6, 31, 6, 7, 4, 40]),
                # a1 row 1 sent twice: the later one (0) wins; text outcomes are cast.
                "actual": ["20", "0", "3", "yes", "7.5", "1", "2", "4"],
            }
        ),
        "f1",
        day="2026-11-03",
    )


def test_units_join_their_outcomes_per_arm(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        _logs(store)
        _feedback(store)
        result = _analyze(store, _config())
    assert result["files"] == {"predictions": 2, "feedback": 1}
    assert result["srm"]["units"] == {"control": 4, "treatment": 2}  # f counts where it began
    assert result["mixed_units"] == 1
    arms = result["arms"]
    assert (arms["control"]["analysed"], arms["treatment"]["analysed"]) == (3, 2)
    assert arms["control"]["exposures"] == 4 and arms["treatment"]["exposures"] == 4
    assert result["feedback"] == {"feedback_rows": 7, "duplicates": 1, "unknown": 1}
    conv, rev = result["metrics"]
    # control a (3 + 0), b (none), c (4); treatment d (yes = 1), e (7.5, no row column).
    assert conv["control"] == pytest.approx(2 / 3) and conv["treatment"] == 1.0
    assert rev["control"] == pytest.approx(7 / 3) and rev["treatment"] == pytest.approx(4.25)
    assert len(result["looks"]) == 2  # two days
    assert result["decision"] == "inconclusive"


def test_delayed_outcomes_and_cuped(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        _logs(store)
        _feedback(store)
        early = _analyze(store, _config(outcome_window="1d"), hours=26)
        delayed = _analyze(store, _config(outcome_window="1d"))
        cuped = _analyze(store, _config(cuped="spend"))
    # At 26 h a unit first seen after 2 h has not had its day: e (5 h) waits.
    assert early["arms"]["control"]["analysed"] == 3
    assert early["arms"]["treatment"]["analysed"] == 1
    assert early["pending_units"] == 1
    # At 48 h every unit had its day, but only outcomes within a day of the first request
    # count: c's (at 40 h, first seen at 2 h) and d's (31 h; 1 h) do not.
    conv, rev = delayed["metrics"]
    assert conv["control"] == pytest.approx(1 / 3) and conv["treatment"] == pytest.approx(0.5)
    assert rev["control"] == pytest.approx(1.0) and rev["treatment"] == pytest.approx(3.75)
    assert "cuped_theta" in cuped["metrics"][0] and cuped["cuped"] == "spend"


def test_weights_default_to_the_deployment_record(tmp_path: Path) -> None:
    from mlopsctl import registry
    from mlopsctl.serving.arms import ArmSpec, set_traffic
    from mlopsctl.store.blobs import put_blob_bytes

    with LocalStore(tmp_path) as store:
        for v in (1, 2):
            registry.register_version(
                store, "m", {"artifact": {"digest": put_blob_bytes(store, b"x%d" % v)}}
            )
        registry.set_alias(store, "m", "production", 1)
        set_traffic(store, "m", [ArmSpec("production", 90), ArmSpec("2", 10)], key="customer_id")
        _logs(store)
        cfg = _config()
        cfg.weights = None
        cfg.unit = None
        result = _analyze(store, cfg)
        assert result["weights"] == {"control": 90.0, "treatment": 10.0}
        assert result["unit"] == "customer_id"  # the record's key
        set_traffic(store, "m", [ArmSpec("production", 100)])
        with pytest.raises(UsageError, match="does not split traffic"):
            _analyze(store, cfg)


def test_configuration_errors() -> None:
    with pytest.raises(UsageError, match="no primary"):
        ab.config_of({"type": "ab"})
    with pytest.raises(UsageError, match="without mde"):
        ab.config_of({"primary": {"metric": "mean"}, "mode": "fixed"})
    with pytest.raises(UsageError, match="not one of"):
        ab.config_of({"primary": {"metric": "median"}})
    with pytest.raises(UsageError, match="winsorize"):
        ab.config_of({"primary": {"metric": "mean", "winsorize": 0.2}})
    guard = ab.config_of({"primary": {"metric": "mean"}, "guardrails": [{"metric": "mean"}]})
    assert guard.metrics[1].max_regression == 0.0 and guard.metrics[1].bound == 0.0
    assert ab.look_step(T0, T0 + timedelta(days=30)) == timedelta(days=1)
    assert ab.look_step(T0, T0 + timedelta(hours=5)) == timedelta(hours=1)
    assert ab.look_step(T0, T0 + timedelta(days=365)) == timedelta(days=8)


def test_a_missing_unit_column_says_how_to_log_it(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        _logs(store)
        with pytest.raises(UsageError, match="serve with --key"):
            _analyze(store, _config(unit="account"))


def test_the_rollout_judges_type_ab_on_its_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 4000
    version = np.where(rng.uniform(size=n) < 0.5, 1, 2)
    with LocalStore(tmp_path) as store:
        _put(
            store,
            "predictions",
            pa.table(
                {
                    "request_id": [f"r{i}" for i in range(n)],
                    "row": pa.array(np.zeros(n, dtype="int32")),
                    "ts": _ts(list(rng.uniform(0, 1, n))),
                    "version": pa.array(version, pa.int64()),
                }
            ),
            "p",
        )
        converted = rng.uniform(size=n) < np.where(version == 2, 0.02, 0.30)
        ids = [f"r{i}" for i in np.nonzero(converted)[0]]
        _put(
            store,
            "feedback",
            pa.table(
                {
                    "request_id": ids,
                    "ts": _ts([1.5] * len(ids)),
                    "actual": pa.array([1.0] * len(ids)),
                }
            ),
            "f",
        )
        window = Window(T0, T0 + timedelta(hours=2), ArmData(2), ArmData(1), store=store, model="m")
        check = {
            "type": "ab",
            "primary": {"metric": "proportion"},
            "weights": {"control": 50, "treatment": 50},
        }
        (result,) = run_checks([check], window, Look(1, 1, 0.05))
        assert result.type == "ab" and result.verdict == "fail"  # the candidate converts less
        assert result.candidate is not None and result.candidate["units"] > 1500
        # A split far from the weights is a mismatch: the step fails.
        (skewed,) = run_checks(
            [{**check, "weights": {"control": 80, "treatment": 20}}], window, Look(1, 1, 0.05)
        )
        assert skewed.verdict == "fail" and "sample ratio mismatch" in (skewed.note or "")


def test_no_traffic_on_an_arm(tmp_path: Path) -> None:
    from mlopsctl import registry
    from mlopsctl.serving.arms import ArmSpec, set_traffic
    from mlopsctl.store.blobs import put_blob_bytes

    with LocalStore(tmp_path) as store:
        # No logs at all: nothing to trust, never a pass.
        empty = _analyze(store, _config())
        assert empty["decision"] == "invalid" and "no units" in empty["reason"]
        window = Window(T0, T0 + timedelta(hours=2), ArmData(2), ArmData(1), store=store, model="m")
        check = {"type": "ab", "primary": {"metric": "proportion"}}
        (held,) = run_checks(
            [{**check, "weights": {"control": 1, "treatment": 1}}], window, Look(1, 1)
        )
        assert held.verdict == "inconclusive"  # the rollout holds until units come
        # A step at 100% for the candidate: no A/B test to judge, the check steps aside.
        for v in (1, 2):
            registry.register_version(
                store, "m", {"artifact": {"digest": put_blob_bytes(store, b"y%d" % v)}}
            )
        registry.set_alias(store, "m", "production", 1)
        set_traffic(store, "m", [ArmSpec("2", 100)])
        (skipped,) = run_checks([check], window, Look(1, 1))
        assert skipped.verdict == "skipped"


def test_the_latest_outcome_wins_even_when_null(tmp_path: Path) -> None:
    """The rule datasets build follows too: of the outcomes for one (request id, row), the one
    with the latest ts wins even when it is null (a retraction: no outcome for that row), and
    a tie goes to the later file, later in it."""
    with LocalStore(tmp_path) as store:
        _put(
            store,
            "predictions",
            pa.table(
                {
                    "request_id": ["a1", "b1", "c1", "d1", "e1", "g1", "h1"],
                    "ts": _ts([0, 0, 0, 1, 1, 1, 1]),
                    "version": pa.array([1, 1, 1, 2, 2, 2, 2], pa.int64()),
                    "customer_id": ["a", "b", "c", "d", "e", "g", "h"],
                }
            ),
            "p",
        )
        _put(
            store,
            "feedback",
            pa.table(
                {
                    "request_id": ["a1", "a1", "b1", "c1", "c1", "d1", "e1"],
                    "ts": _ts([2, 3, 2, 2, 2, 2, 2]),
                    # a: 5 then retracted (null, later); b: 1; c: 9 then 0 at the same ms, the
                    # later row wins; d: 1; e: 2.
                    "actual": pa.array([5.0, None, 1.0, 9.0, 0.0, 1.0, 2.0]),
                }
            ),
            "f1",
        )
        # The same ms again in a later file: it beats the earlier file's outcome for e.
        _put(
            store,
            "feedback",
            pa.table(
                {"request_id": ["e1"], "ts": _ts([2]), "actual": pa.array([0.0], pa.float64())}
            ),
            "f2",
        )
        result = _analyze(store, _config())
    assert result["feedback"] == {"feedback_rows": 5, "duplicates": 3, "unknown": 0}
    assert result["arms"]["control"]["outcomes"] == 2  # b and c; a's was retracted
    assert result["arms"]["treatment"]["outcomes"] == 2  # d and e
    conv, rev = result["metrics"]
    # control a (none), b (1), c (0); treatment d (1), e (0), g, h (none).
    assert conv["control"] == pytest.approx(1 / 3) and conv["treatment"] == pytest.approx(1 / 4)
    assert rev["control"] == pytest.approx(1 / 3) and rev["treatment"] == pytest.approx(1 / 4)


def test_cuped_fills_a_unit_without_the_column_with_the_mean(tmp_path: Path) -> None:
    """A unit whose rows lack the CUPED column gets the mean of the others, not 0."""
    with LocalStore(tmp_path) as store:
        _logs(store)  # e's file has no spend column
        units = ab.read_units(
            store,
            "m",
            control=1,
            treatment=2,
            since=T0,
            until=T0 + timedelta(hours=48),
            step=timedelta(days=1),
            unit="customer_id",
            cuped="spend",
            outcome_window=None,
        )
    # Control first: a, b, c, f (f began on version 1), then d, e, in key order per arm.
    assert list(units.arm) == sorted(units.arm) and int((units.arm == 0).sum()) == 4
    assert sorted(float(v) for v in units.x if np.isfinite(v)) == [0.0, 1.0, 5.0, 8.0, 10.0]
    assert int(np.isnan(units.x).sum()) == 1  # e
