"""Sticky weighted arm assignment: the configured split within statistical tolerance over
10,000 keys, the same key always on the same arm, and a weight change that moves only the keys
between the old and new boundaries."""

from __future__ import annotations

import math

import pytest

from mlopsctl.errors import UsageError
from mlopsctl.serving.arms import ArmSpec, assign, check_arms, cumulative, parse_arm, unit

KEYS = [f"customer-{i}" for i in range(10_000)]


@pytest.mark.parametrize("weights", [[95, 5], [50, 50], [70, 20, 10], [1, 1, 1, 1]])
def test_split_matches_the_weights_over_10000_keys(weights: list[float]) -> None:
    bounds = cumulative(weights)
    counts = [0] * len(weights)
    for key in KEYS:
        counts[assign(key, bounds)] += 1
    total = sum(weights)
    for count, weight in zip(counts, weights, strict=True):
        p = weight / total
        sigma = math.sqrt(p * (1 - p) / len(KEYS))
        assert abs(count / len(KEYS) - p) < 4.5 * sigma, (counts, weights)


def test_assignment_is_sticky_and_uniform() -> None:
    bounds = cumulative([95, 5])
    first = [assign(k, bounds) for k in KEYS]
    assert first == [assign(k, bounds) for k in KEYS]
    values = [unit(k) for k in KEYS]
    assert all(0.0 <= v < 1.0 for v in values)
    # deciles of a uniform: each holds about a tenth
    for d in range(10):
        share = sum(d / 10 <= v < (d + 1) / 10 for v in values) / len(values)
        assert abs(share - 0.1) < 0.015


def test_moving_weights_moves_only_the_keys_between_the_boundaries() -> None:
    before = cumulative([95, 5])
    after = cumulative([90, 10])
    moved = [k for k in KEYS if assign(k, before) != assign(k, after)]
    assert all(assign(k, before) == 0 and assign(k, after) == 1 for k in moved)
    assert 0.035 < len(moved) / len(KEYS) < 0.065


def test_zero_weight_arm_gets_nothing() -> None:
    bounds = cumulative([0, 100])
    assert {assign(k, bounds) for k in KEYS[:1000]} == {1}


def test_parse_and_check_arms() -> None:
    assert parse_arm("production=95") == ArmSpec("production", 95.0)
    assert parse_arm("3=50").version == 3
    assert parse_arm("candidate=2.5").ref("m") == "m@candidate"
    for bad in ("production", "=5", "Prod=5", "0=5", "a=-1", "a=x"):
        with pytest.raises(UsageError):
            parse_arm(bad)
    with pytest.raises(UsageError, match="twice"):
        check_arms([ArmSpec("a", 1), ArmSpec("a", 2)])
    with pytest.raises(UsageError, match="add up to 0"):
        check_arms([ArmSpec("a", 0)])
