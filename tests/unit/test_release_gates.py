"""Pieces of release check that need no trained model: references, bounds, JUnit."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from mlopsctl.errors import UsageError
from mlopsctl.release.gates import _compare_bound, candidate_ref, champion_alias
from mlopsctl.release.report import junit, table


@pytest.mark.parametrize(
    ("value", "ref"),
    [
        (None, "m"),
        ("latest", "m"),
        (3, "m:3"),
        ("3", "m:3"),
        ("@challenger", "m@challenger"),
        ("challenger", "m@challenger"),
        ("m:4", "m:4"),
        ("m@staging", "m@staging"),
    ],
)
def test_candidate_ref(value: str | int | None, ref: str) -> None:
    assert candidate_ref("m", value) == ref


def test_candidate_of_another_model_is_refused() -> None:
    with pytest.raises(UsageError):
        candidate_ref("m", "other:2")


def test_bounds_and_champion_alias() -> None:
    assert _compare_bound({}) == (0.0, "> 0")
    assert _compare_bound({"min_improvement": 0.01}) == (0.01, "> 0.01")
    assert _compare_bound({"max_regression": 0.02}) == (-0.02, "> -0.02")
    assert champion_alias({}) == "champion"
    assert champion_alias({"champion": "production"}) == "production"
    assert champion_alias({"champion": "production", "promote": {"alias": "live"}}) == "live"


RESULT = {
    "release": "r",
    "model": "m",
    "time": "2026-11-27T00:00:00Z",
    "gates": [
        {"name": "t", "type": "threshold", "verdict": "pass", "value": 0.9, "bound": ">= 0.8"},
        {"name": "c", "type": "compare", "verdict": "inconclusive", "value": 0.0, "ci": [-1, 1]},
        {"name": "c2", "type": "compare", "verdict": "inconclusive", "value": 0.0, "ci": [-1, 1]},
        {"name": "l", "type": "latency", "verdict": "skipped", "note": "needs a target"},
        {"name": "s", "type": "slices", "verdict": "fail", "value": 0.1},
    ],
}


def test_junit_one_case_per_gate_inconclusive_as_the_spec_says() -> None:
    suite = ET.fromstring(junit(RESULT, ["fail", "fail", "pass", "fail", "fail"]))
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["t", "c", "c2", "l", "s"]
    assert cases["t"].find("failure") is None and cases["t"].find("skipped") is None
    assert cases["c"].find("failure") is not None
    assert cases["c2"].find("skipped") is not None
    assert cases["l"].find("skipped") is not None
    assert cases["s"].find("failure") is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "2", "2")


def test_table_has_a_row_per_gate_and_the_notes() -> None:
    lines = table(RESULT)
    assert lines[0].split() == ["gate", "value", "bound", "CI", "verdict"]
    assert lines[2].split()[-1] == "INCONCLUSIVE" and "[-1, 1]" in lines[2]
    assert lines[-1].strip() == "l: needs a target"
