"""An A/B test end to end through a real `mlopsctl serve`: two versions on sticky arms by
customer, batch requests (several rows each, the customer as an extra column that is not a
feature), outcomes posted to /feedback in batches per request id and row (duplicates, a late
correction, unknown ids), then `mlopsctl release ab` joins them per customer, and `release
check` judges the same gate next to the offline ones."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import numpy as np

from .test_serving_follow import cache_env, events, mlopsctl, register_copy, set_alias
from .test_serving_server import MODEL, ServerProcess, rows, start_server

__all__ = ["cache_env"]  # the fixture, imported for pytest

SPEC = f"""\
apiVersion: mlopsctl/v1
kind: Release
name: serve-ab
model: {MODEL}
candidate: "@candidate"
champion: production
gates:
  - type: ab
    name: conversion-ab
    window: 1d
    primary: {{name: conversion, metric: proportion}}
    guardrails:
      - {{name: value, metric: mean, max_regression: 100}}
"""


def _send(server: ServerProcess, customers: list[str], rng: np.random.Generator) -> list[Any]:
    """1-2 requests per customer, 2-4 rows each, over one keep-alive connection: (customer,
    request id, rows, arm) per request."""
    base = rows(4).to_dict("records")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sent = []
    try:
        for customer in customers:
            for _ in range(int(rng.integers(1, 3))):
                n = int(rng.integers(2, 5))
                body = json.dumps(
                    {"dataframe_records": [{**r, "customer": customer} for r in base[:n]]}
                )
                conn.request(
                    "POST",
                    "/invocations",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                payload = response.read()
                assert response.status == 200, payload
                sent.append(
                    (customer, response.getheader("X-Request-ID"), n, response.getheader("X-Arm"))
                )
    finally:
        conn.close()
    return sent


def test_ab_through_a_running_server(cache_env: Path, tmp_path: Path) -> None:
    root = cache_env
    set_alias(root, "production", 1)
    candidate = register_copy(root, tmp_path)
    set_alias(root, "candidate", candidate)
    (root / "release.yaml").write_text(SPEC)
    server = start_server(
        root,
        f"{MODEL}@production",
        "--arm",
        "production=50",
        "--arm",
        "candidate=50",
        "--key",
        "customer",
        "--log-interval",
        "0.5",
    )
    rng = np.random.default_rng(11)
    try:
        customers = [f"cust-{i}" for i in range(700)]
        sent = _send(server, customers, rng)
        arm_of = {}
        for customer, _, _, arm in sent:
            assert arm_of.setdefault(customer, arm) == arm  # sticky
        # Outcomes: one per customer's last request, on a random row of it; the candidate's
        # customers buy far more often.
        last = {customer: (request_id, n) for customer, request_id, n, _ in sent}
        feedback = []
        for customer, (request_id, n) in last.items():
            rate = 0.45 if arm_of[customer] == "candidate" else 0.10
            bought = float(rng.uniform() < rate)
            feedback.append(
                {"request_id": request_id, "row": int(rng.integers(0, n)), "actual": bought * 20.0}
            )
        extra = [dict(f) for f in feedback[:40]]  # sent twice
        unknown = [{"request_id": f"ghost-{i}", "actual": 1.0} for i in range(9)]
        body = feedback + unknown
        for start in range(0, len(body), 250):
            status, answer = server.json("POST", "/feedback", body[start : start + 250])
            assert status == 202 and answer["recorded"] == len(body[start : start + 250])
        status, _ = server.json("POST", "/feedback", extra)
        assert status == 202
    finally:
        assert server.stop() == 0

    proc = mlopsctl(root, "release", "ab", "release.yaml", "--json", "--report", "ab.html")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    event = json.loads(proc.stdout)
    assert event["decision"] == "pass" and event["version"] == candidate
    (gate,) = event["gates"]
    # The unit is the deployment record's key, logged by the server under its name.
    assert gate["unit"] == "customer"
    expected = {"control": sum(a == "production" for a in arm_of.values())}
    expected["treatment"] = len(arm_of) - expected["control"]
    assert gate["srm"]["units"] == expected and gate["mixed_units"] == 0
    assert gate["arms"]["treatment"]["exposures"] == sum(
        n for c, _, n, a in sent if a == "candidate"
    )
    assert gate["feedback"]["unknown"] == 9 and gate["feedback"]["duplicates"] == 40
    conversion = gate["metrics"][0]
    truth = {"production": [], "candidate": []}  # type: ignore[var-annotated]
    for f, customer in zip(feedback, last, strict=True):
        truth[arm_of[customer]].append(f["actual"] > 0)
    assert conversion["control"] == np.mean(truth["production"])
    assert conversion["treatment"] == np.mean(truth["candidate"])
    assert 'data-decision="pass"' in (root / "ab.html").read_text()

    # release check judges the same gate (the offline gates' data: the recorded test set).
    proc = mlopsctl(root, "release", "check", "release.yaml", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    checked = json.loads(proc.stdout)
    (ab_gate,) = [g for g in checked["gates"] if g["type"] == "ab"]
    assert ab_gate["verdict"] == "pass" and ab_gate["metric"] == "conversion"
    assert checked["passed"] is True
    assert [e["decision"] for e in events(root, "ab")] == ["pass"]
