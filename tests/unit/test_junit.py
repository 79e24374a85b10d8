"""JUnit XML of release check and release ab: a <testsuites> root, unique test identities
(model version and gate type in the classname; gate, metric and slice in the name), `time`
attributes, counts on the suite and the root."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from mlopsctl.release.report import ab_junit, junit

RESULT = {
    "release": "churn-release",
    "model": "churn",
    "version": 7,
    "time": "2026-12-01T00:00:00Z",
    "gates": [
        {"name": "roc_auc floor", "type": "threshold", "metric": "roc_auc", "verdict": "pass"},
        {"name": "threshold", "type": "threshold", "metric": "accuracy", "verdict": "fail"},
        {"name": "compare", "type": "compare", "metric": "roc_auc", "verdict": "pass"},
        {"name": "compare", "type": "compare", "metric": "roc_auc", "verdict": "inconclusive"},
        {
            "name": "by-region",
            "type": "slices",
            "metric": "accuracy",
            "verdict": "fail",
            "details": [
                {"slice": "eu", "rows": 40, "value": 0.91, "verdict": "pass"},
                {"slice": "us", "rows": 35, "value": 0.61, "verdict": "fail"},
                {"slice": "apac", "rows": 2, "verdict": "skipped"},
            ],
        },
        {"name": "p95", "type": "latency", "metric": "p95 ms", "verdict": "pass", "seconds": 2.5},
    ],
}
POLICIES = ["fail", "fail", "fail", "pass", "fail", "fail"]


def _cases(root: ET.Element) -> list[ET.Element]:
    return list(root.iter("testcase"))


def test_a_testsuites_root_with_counts_and_times() -> None:
    root = ET.fromstring(junit(RESULT, POLICIES, seconds=12.25))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "release churn-release"
    assert suite.get("timestamp") == "2026-12-01T00:00:00Z"
    for element in (root, suite):
        counts = [element.get(k) for k in ("tests", "failures", "errors", "skipped")]
        assert counts == ["8", "2", "0", "2"]
        assert element.get("time") == "12.250"
    assert all(c.get("time") is not None for c in _cases(root))
    latency = next(c for c in _cases(root) if c.get("classname") == "churn.v7.latency")
    assert latency.get("time") == "2.500"
    # Without the check's own duration, the suite's time is the sum of the gates'.
    assert ET.fromstring(junit(RESULT, POLICIES)).get("time") == "2.500"


def test_test_identities_are_unique_and_say_gate_type_metric_slice_and_version() -> None:
    cases = _cases(ET.fromstring(junit(RESULT, POLICIES)))
    ids = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(set(ids)) == len(ids)
    assert ids == [
        ("churn.v7.threshold", "roc_auc floor"),  # the metric is in the name already
        ("churn.v7.threshold", "threshold [accuracy]"),
        ("churn.v7.compare", "compare [roc_auc]"),
        ("churn.v7.compare", "compare [roc_auc] #2"),
        ("churn.v7.slices", "by-region [accuracy] slice=eu"),
        ("churn.v7.slices", "by-region [accuracy] slice=us"),
        ("churn.v7.slices", "by-region [accuracy] slice=apac"),
        ("churn.v7.latency", "p95 [p95 ms]"),
    ]
    verdicts = {c.get("name"): [child.tag for child in c] for c in cases}
    assert verdicts["threshold [accuracy]"] == ["failure"]
    assert verdicts["compare [roc_auc] #2"] == ["skipped"]  # inconclusive, policy pass
    assert verdicts["by-region [accuracy] slice=us"] == ["failure"]
    assert verdicts["by-region [accuracy] slice=eu"] == []
    assert verdicts["by-region [accuracy] slice=apac"] == ["skipped"]
    us = next(c for c in cases if c.get("name") == "by-region [accuracy] slice=us")
    failure = us.find("failure")
    assert failure is not None and "35 rows" in (failure.get("message") or "")


def test_a_slices_gate_without_judged_slices_is_one_case() -> None:
    result = {
        **RESULT,
        "gates": [{"name": "s", "type": "slices", "metric": "accuracy", "verdict": "skipped"}],
    }
    (case,) = _cases(ET.fromstring(junit(result, ["fail"])))
    assert case.get("name") == "s [accuracy]" and case.find("skipped") is not None


def test_ab_junit_has_the_same_root_and_times() -> None:
    event = {
        "release": "r",
        "model": "m",
        "version": 4,
        "time": "2026-12-01T00:00:00Z",
        "gates": [
            {
                "gate": "ab",
                "mode": "fixed",
                "srm": {"mismatch": False, "observed_share": 0.5, "expected_share": 0.5, "p": 0.9},
                "metrics": [
                    {
                        "name": "conversion",
                        "verdict": "pass",
                        "delta": 0.02,
                        "ci": [0.01, 0.03],
                        "bound_text": "> 0",
                    }
                ],
                "decision": "pass",
                "reason": "all metrics pass",
            }
        ],
    }
    root = ET.fromstring(ab_junit(event, ["fail"]))
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "0"
    assert all(c.get("time") == "0.000" for c in _cases(root))
    assert {c.get("classname") for c in _cases(root)} == {"m.v4.ab"}
    ids = [c.get("name") for c in _cases(root)]
    assert len(set(ids)) == len(ids) == 3
