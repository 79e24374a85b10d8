"""`mlopsctl release ab` on a simulated experiment with a known effect: batch requests logged by
the real log writer (sticky arms by customer, the key logged per row), outcomes recorded with
`mlopsctl feedback` (per request id and row, with timestamps, duplicates and unknown ids), then
the analysis per customer: the decision, the sample ratio, delayed outcomes, fixed horizon, the
audit event, JUnit and the HTML report."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlopsctl import registry
from mlopsctl.serving.arms import ArmSpec, assign, cumulative, set_traffic
from mlopsctl.serving.logs import PREDICTIONS, BufferedWriter, LogSchema, prediction_table
from mlopsctl.store.blobs import put_blob_bytes
from mlopsctl.store.local import LocalStore

from .conftest import Invoke

MODEL = "shop"
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = "2026-11-15T00:00:00Z"
SCHEMA = LogSchema(("basket", "visits"), ("numeric", "numeric"), True, True)

SPEC = """\
apiVersion: mlopsctl/v1
kind: Release
name: checkout
model: shop
candidate: 2
champion: production
gates:
  - type: ab
    name: checkout-ab
    unit: customer_id
    window: 14d
{extra}    primary: {{name: conversion, metric: proportion}}
    guardrails:
      - {{name: revenue, metric: mean, winsorize: 0.99, max_regression: 5}}
      - {{name: revenue-per-prediction, metric: ratio, numerator: value, denominator: exposures,
          max_regression: 5}}
"""


@dataclass
class Experiment:
    customers: int
    arm_of: dict[str, int]  # customer -> version
    feedback: Path


def _store(root: Path) -> LocalStore:
    return LocalStore(root / ".mlops")


def _simulate(
    root: Path, customers: int, p_control: float, p_treatment: float, seed: int
) -> Experiment:
    """Customers over 10 days, 1-3 requests each (1-4 rows per request, one customer per
    request), arms by the sticky hash at 50/50; a converting customer's revenue comes back as
    the outcome of one row, 1-3 days later (converted or not, every customer's last request
    gets an outcome: 0 when nothing was bought)."""
    rng = np.random.default_rng(seed)
    bounds = cumulative([50.0, 50.0])
    versions = (1, 2)
    arm_of: dict[str, int] = {}
    outcomes: list[dict[str, Any]] = []
    with _store(root) as store:
        writer = BufferedWriter(
            store, PREDICTIONS, MODEL, prediction_table(MODEL), batch_rows=10**9, interval=3600
        )
        for c in range(customers):
            customer = f"c{c:05d}"
            version = versions[assign(customer, bounds)]
            arm_of[customer] = version
            first = START + timedelta(days=float(rng.uniform(0, 10)))
            requests = int(rng.integers(1, 4))
            last: tuple[str, int, datetime] | None = None
            for r in range(requests):
                at = first + timedelta(hours=float(r * rng.uniform(1, 20)))
                rows = int(rng.integers(1, 5))
                request_id = f"{customer}-r{r}"
                writer.append(
                    (
                        request_id,
                        int(at.timestamp() * 1000),
                        version,
                        "production" if version == 1 else "2",
                        3.0,
                        rng.normal(size=(rows, 2)),
                        np.ones(rows, dtype="int64"),
                        rng.uniform(size=rows),
                        SCHEMA,
                        None,
                        ("customer_id", customer),
                    ),
                    rows,
                )
                last = (request_id, int(rng.integers(0, rows)), at)
            assert last is not None
            p = p_treatment if version == 2 else p_control
            bought = rng.uniform() < p
            value = round(float(rng.lognormal(3.0, 0.8)), 2) if bought else 0.0
            outcomes.append(
                {
                    "request_id": last[0],
                    "row": last[1],
                    "outcome": value,
                    "timestamp": (last[2] + timedelta(days=float(rng.uniform(1, 3)))).isoformat(),
                }
            )
        writer.close()
        assert writer.dropped == 0
    import pandas as pd

    frame = pd.DataFrame(outcomes)
    # The same outcomes sent twice, one corrected later (the latest wins), and unknown ids.
    again = frame.iloc[:50].copy()
    fixed = frame.iloc[50:51].copy()
    fixed["outcome"] = 0.0
    fixed["timestamp"] = (pd.to_datetime(fixed["timestamp"]) + pd.Timedelta(hours=1)).astype(str)
    unknown = pd.DataFrame(
        {
            "request_id": [f"nobody-{i}" for i in range(7)],
            "row": [0] * 7,
            "outcome": [1.0] * 7,
            "timestamp": [(START + timedelta(days=3)).isoformat()] * 7,
        }
    )
    path = root / "outcomes.csv"
    pd.concat([frame, again, fixed, unknown]).to_csv(path, index=False)
    return Experiment(customers, arm_of, path)


@pytest.fixture
def root(project: Path) -> Path:
    with _store(project) as store:
        for v in (1, 2):
            digest = put_blob_bytes(store, f"model {v}".encode())
            registry.register_version(
                store,
                MODEL,
                {
                    "artifact": {"digest": digest, "flavor": "sklearn"},
                    "signature": {"task": "classification", "features": []},
                },
            )
        registry.set_alias(store, MODEL, "production", 1)
        set_traffic(store, MODEL, [ArmSpec("production", 50), ArmSpec("2", 50)], key="customer_id")
    return project


def _spec(root: Path, extra: str = "") -> Path:
    path = root / "release.yaml"
    path.write_text(SPEC.format(extra=extra))
    return path


def _ab(cli: Invoke, root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("release", "ab", "release.yaml", "--now", NOW, "--json", *args, cwd=root)
    assert result.exit_code in (0, 4), result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_a_real_effect_passes_with_the_numbers_recorded(cli: Invoke, root: Path) -> None:
    exp = _simulate(root, 6000, 0.10, 0.16, seed=1)
    recorded = cli("feedback", str(exp.feedback), "--model", MODEL, "--json", cwd=root)
    assert recorded.exit_code == 0, recorded.stderr
    fed = json.loads(recorded.stdout)
    assert fed["rows"] == 6000 + 7 and fed["duplicates"] == 51 and fed["unknown"] == 7
    # One file per date partition of the outcomes' timestamps.
    assert len({k.split("/")[3] for k in fed["files"]}) > 5
    _spec(root)
    code, event = _ab(cli, root, "--junit", str(root / "ab.xml"), "--report", str(root / "ab.html"))
    assert code == 0 and event["decision"] == "pass" and event["passed"] is True
    (gate,) = event["gates"]
    assert gate["unit"] == "customer_id"
    truth = np.bincount([v for v in exp.arm_of.values()], minlength=3)
    assert gate["arms"]["control"]["units"] == truth[1]
    assert gate["arms"]["treatment"]["units"] == truth[2]
    assert gate["srm"]["mismatch"] is False and gate["mixed_units"] == 0
    assert gate["weights"] == {"control": 50.0, "treatment": 50.0}
    # Outcomes that came after --now are not read; the duplicates were left out on the way in.
    assert gate["feedback"]["unknown"] == 7 and gate["feedback"]["duplicates"] == 0
    assert 5900 < gate["feedback"]["feedback_rows"] <= 6007
    conversion, revenue, per_prediction = gate["metrics"]
    assert conversion["verdict"] == "pass"
    assert 0.08 < conversion["control"] < 0.12 and 0.13 < conversion["treatment"] < 0.19
    low, high = conversion["sequence"]
    assert low > 0 and low < 0.06 < high  # the true difference is inside
    assert conversion["ci"][0] > low  # the always-valid interval is the wider one
    assert revenue["winsorized"]["quantile"] == 0.99 and revenue["verdict"] in (
        "pass",
        "inconclusive",
    )
    assert per_prediction["ratio"] == "value / exposures"
    assert len(gate["looks"]) == 14 and gate["looks"][-1]["time"] == "2026-11-15T00:00:00Z"
    # The recorded event is the same one, for promote and the audit log.
    audit = cli("audit", "--type", "ab", "--json", cwd=root)
    (stored,) = json.loads(audit.stdout)
    assert stored["id"] == event["id"] and stored["decision"] == "pass"
    suite = ET.parse(root / "ab.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests") or 0) == 5
    page = (root / "ab.html").read_text()
    assert 'data-decision="pass"' in page and 'data-chart="interval"' in page
    assert page.count("data-metric=") == 3 and 'data-srm="ok"' in page


def test_text_output_and_a_sample_ratio_mismatch_is_invalid(cli: Invoke, root: Path) -> None:
    exp = _simulate(root, 3000, 0.10, 0.10, seed=2)
    assert cli("feedback", str(exp.feedback), "--model", MODEL, cwd=root).exit_code == 0
    _spec(root, "    weights: {control: 60, treatment: 40}\n")
    result = cli("release", "ab", "release.yaml", "--now", NOW, cwd=root)
    assert result.exit_code == 4
    assert "INVALID" in result.stdout and "sample ratio mismatch" in result.stdout
    assert "MISMATCH" in result.stdout
    _spec(root)
    code, event = _ab(cli, root)
    # An A/A experiment: nothing to find, so the conversion gate cannot pass.
    assert code == 4 and event["decision"] in ("inconclusive", "fail")
    assert event["gates"][0]["srm"]["mismatch"] is False


def test_delayed_outcomes_count_only_once_their_window_closed(cli: Invoke, root: Path) -> None:
    exp = _simulate(root, 3000, 0.10, 0.20, seed=3)
    assert cli("feedback", str(exp.feedback), "--model", MODEL, cwd=root).exit_code == 0
    _spec(root, "    outcome_window: 5d\n")
    _, event = _ab(cli, root)
    gate = event["gates"][0]
    # Customers arrive over days 0-10 and the analysis is at day 14: those first seen in the
    # last 5 days (about 1/10 of them, days 9-10) are still pending.
    assert 0.05 * exp.customers < gate["pending_units"] < 0.16 * exp.customers
    analysed = gate["arms"]["control"]["analysed"] + gate["arms"]["treatment"]["analysed"]
    assert analysed + gate["pending_units"] == exp.customers
    # Looking back from day 7 only customers first seen in the first 2 days count.
    result = cli(
        "release", "ab", "release.yaml", "--now", "2026-11-08T00:00:00Z", "--json", cwd=root
    )
    early = json.loads(result.stdout)["gates"][0]
    early_analysed = early["arms"]["control"]["analysed"] + early["arms"]["treatment"]["analysed"]
    assert 0.15 * exp.customers < early_analysed < 0.25 * exp.customers
    # A 1-day outcome window drops the outcomes that came 1-3 days after the last request.
    _spec(root, "    outcome_window: 1d\n")
    _, short = _ab(cli, root)
    assert (
        short["gates"][0]["arms"]["treatment"]["outcomes"] < gate["arms"]["treatment"]["outcomes"]
    )


def test_fixed_horizon_waits_for_the_planned_sample_size(cli: Invoke, root: Path) -> None:
    exp = _simulate(root, 2000, 0.10, 0.14, seed=4)
    assert cli("feedback", str(exp.feedback), "--model", MODEL, cwd=root).exit_code == 0
    _spec(root, "    mode: fixed\n    mde: 0.01\n    power: 0.8\n")
    code, event = _ab(cli, root)
    primary = event["gates"][0]["metrics"][0]
    assert code == 4 and primary["verdict"] == "inconclusive"
    assert primary["required_units"] > 20_000 and "fixed-horizon test needs" in primary["note"]
    _spec(root, "    mode: fixed\n    mde: 0.1\n")
    _, event = _ab(cli, root)
    primary = event["gates"][0]["metrics"][0]
    assert (primary["required_units"] < 2000 and primary["verdict"] != "inconclusive") or (
        primary["ci"][0] < 0 < primary["ci"][1]
    )


def test_spec_problems_are_usage_errors(cli: Invoke, root: Path) -> None:
    path = _spec(root, "    mode: fixed\n")
    result = cli("validate", str(path), cwd=root)
    assert result.exit_code == 3 and "mde" in result.stdout + result.stderr
    (root / "release.yaml").write_text(
        SPEC.format(extra="").replace(
            "type: ab", "type: threshold\n    metric: accuracy\n    min: 0.5"
        )
    )
    result = cli("release", "ab", "release.yaml", cwd=root)
    assert result.exit_code == 2 and "no gate of type ab" in result.stderr
