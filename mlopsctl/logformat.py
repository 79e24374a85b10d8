"""The layout of the serving logs, as `mlopsctl serve` writes them (mlopsctl/serving/logs.py)
and `datasets build`, `monitor check` and `release` read them: where they live in the store,
the fixed columns every prediction row has, and the column each model feature is logged under.
Part of the ground floor, so that readers need not import the server."""

from __future__ import annotations

PREDICTIONS = "logs/predictions"
FEEDBACK = "logs/feedback"
# Requests answered with an error status, one row each: with the prediction log, the error
# share per arm that `release rollout` judges.
ERRORS = "logs/errors"
FIXED_COLUMNS = frozenset(
    {
        "request_id",
        "row",
        "ts",
        "model",
        "version",
        "arm",
        "latency_ms",
        "prediction",
        "score",
        "outlier_score",
    }
)
FEATURE_PREFIX = "feature."
# Contribution columns: contrib.<feature> ... contrib.bias (= explain.CONTRIB_PREFIX, BIAS).
CONTRIB_PREFIX = "contrib."
CONTRIB_BIAS = "bias"


def log_names(names: tuple[str, ...] | list[str]) -> list[str]:
    """The log column of each feature: its name, or ``feature.<name>`` where the name is one
    of the fixed columns (prefixed again in the odd case that name is a feature too)."""
    taken = set(names) | FIXED_COLUMNS
    out = []
    for name in names:
        if name in FIXED_COLUMNS:
            column = FEATURE_PREFIX + name
            while column in taken:
                column = FEATURE_PREFIX + column
            taken.add(column)
            name = column
        out.append(name)
    return out
