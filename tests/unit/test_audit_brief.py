"""The audit text view keeps each event on one short line; --json keeps everything."""

from __future__ import annotations

from mlopsctl.cli.audit import _brief


def test_gate_lists_read_as_name_and_status() -> None:
    gates = [
        {"name": "min-auc", "status": "passed", "value": 0.98, "bound": ">= 0.9"},
        {"name": "beats-champion", "status": "failed", "low": -0.01, "high": 0.002},
    ]
    assert _brief(gates) == "[min-auc:passed, beats-champion:failed]"


def test_long_lists_and_values_are_cut_with_a_count() -> None:
    features = [f"f{i}" for i in range(10)]
    assert _brief(features) == "[f0, f1, f2, f3, f4, f5, +4 more]"
    text = _brief({"path": "x" * 200})
    assert len(text) == 80 and text.endswith("…")
    assert _brief({"alias": "production", "version": 3}) == '{"alias":"production","version":3}'
