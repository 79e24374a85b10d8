"""Per-row signals from the model layer, judged over the current data: the outlier share and
attribution drift.

Outliers (spec ``outliers``): every current row gets the outlier score of
mlopsctl/models/outliers.py against the model's training data (the tail tables in its
model.json, or its training profile for models trained before those existed); rows that carry
a logged score (serving logs: column ``outlier_score``) keep it, the others are scored here from
their features. A row is an outlier at a score of at least ``threshold`` (0.99: about 1 % of
training-like rows at most); the check fails when the share of outliers exceeds ``max_share``
(0.05). Which feature was the most extreme is counted over the outlier rows scored here.

Attribution drift (spec ``attribution``), when the current data carry feature contributions
(columns ``contrib.<feature>``, as ``mlopsctl models explain`` writes them and serving logs them
when asked; rows without them are skipped): the mean |contribution| of each feature over the
rows that have one, against the same mean on the training rows (model.json "explain", computed
at training time). Each feature's share of the total mean |contribution| is compared with its
share in training, so a change of scale of the whole output does not count, only a change in
which features drive the predictions (feature attribution drift, as Vertex AI Model Monitoring
calls it). A feature's ``change`` is the move of its share relative to its training share, where
a training share under ``MIN_SHARE`` (2 %) counts as 2 % (so that features that hardly matter
do not raise alarms over noise, while one that comes to matter does); it drifts at a change of
at least ``threshold`` (0.5: its share grew or shrank by half). The statistic of the whole is
half the sum of the absolute share moves (a total variation distance, 0..1), for the report.
The contributions are those the data carry (``source: "logged"``: a server logs them for the
share of requests ``serve --log-contributions`` samples, and for requests that asked for
explanations); the result says how many rows had them (``sampled``) of the rows checked
(``of``). Nothing is recomputed here: without such rows there is no attribution result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlopsctl.models.explain import CONTRIB_PREFIX
from mlopsctl.models.outliers import LOG_COLUMN, THRESHOLD, Scorer
from mlopsctl.monitor.checks import float_values
from mlopsctl.monitor.data import feature_column, logged_names

if TYPE_CHECKING:
    import pyarrow as pa

MAX_SHARE = 0.05
ATTRIBUTION_THRESHOLD = 0.5
MIN_SHARE = 0.02


@dataclass
class OutlierCheck:
    """The outlier share, accumulated batch by batch."""

    scorer: Scorer
    threshold: float = THRESHOLD
    max_share: float = MAX_SHARE
    column: str = LOG_COLUMN
    fail: bool = True
    rows: int = 0
    flagged: int = 0
    logged: int = 0
    worst: dict[str, int] = field(default_factory=dict)

    def columns(self) -> list[str]:
        return [self.column, *logged_names(list(self.scorer.names))]

    def add(self, table: pa.Table) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = table.num_rows
        scores = np.full(rows, np.nan)
        if self.column in table.column_names:
            try:
                scores = float_values(pc.cast(table.column(self.column), pa.float64())).copy()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        known = np.isfinite(scores)
        self.logged += int(known.sum())
        todo = ~known
        if todo.any():
            subset = table if known.sum() == 0 else table.filter(pa.array(todo))
            computed, worst = self.scorer.score(_columns(subset, self.scorer))
            scores[todo] = computed
            hit = computed >= self.threshold
            if hit.any():
                names = self.scorer.names
                for index, number in zip(*np.unique(worst[hit], return_counts=True), strict=True):
                    name = names[int(index)]
                    self.worst[name] = self.worst.get(name, 0) + int(number)
        self.rows += rows
        self.flagged += int((scores >= self.threshold).sum())

    def result(self) -> dict[str, Any]:
        share = self.flagged / self.rows if self.rows else 0.0
        ranked = sorted(self.worst.items(), key=lambda item: (-item[1], item[0]))
        return {
            "rows": self.rows,
            "outliers": self.flagged,
            "share": share,
            "threshold": self.threshold,
            "max_share": self.max_share,
            "failed": bool(self.fail and share > self.max_share),
            "exceeded": bool(share > self.max_share),
            "logged": self.logged,
            "source": self.scorer.source,
            "features": [
                {"name": name, "outliers": number, "share": number / self.flagged}
                for name, number in ranked[:20]
            ],
        }


def _columns(table: pa.Table, scorer: Scorer) -> dict[str, Any]:
    """The scorer's features from a batch: numbers as float64 (NaN when missing or not numeric),
    categories as Python values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, Any] = {}
    present = set(table.column_names)
    for name in scorer.numeric:
        source = feature_column(present, name)
        if source in present:
            try:
                out[name] = float_values(pc.cast(table.column(source), pa.float64()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                out[name] = np.full(table.num_rows, np.nan)
    for name in scorer.categorical:
        source = feature_column(present, name)
        if source in present:
            column = table.column(source)
            if pa.types.is_floating(column.type):
                column = pc.if_else(pc.is_nan(column), None, column)
            values = column.to_pylist()
            textual = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            # As the model sees them: str() of each value ('True', '1.0'), None when missing.
            out[name] = values if textual else [None if v is None else str(v) for v in values]
    return out


@dataclass
class AttributionCheck:
    """Mean |contribution| per feature, accumulated batch by batch."""

    features: list[str]
    baseline: dict[str, float] | None
    threshold: float = ATTRIBUTION_THRESHOLD
    prefix: str = CONTRIB_PREFIX
    fail: bool = True
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    checked: int = 0  # every row seen, with contributions or not

    def columns(self) -> list[str]:
        return [f"{self.prefix}{name}" for name in self.features]

    def add(self, table: pa.Table) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        present = set(table.column_names)
        seen = np.zeros(table.num_rows, dtype=bool)
        for name, column in zip(self.features, self.columns(), strict=True):
            if column not in present:
                continue
            try:
                values = float_values(pc.cast(table.column(column), pa.float64()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            finite = np.isfinite(values)
            seen |= finite
            self.sums[name] = self.sums.get(name, 0.0) + float(np.abs(values[finite]).sum())
            self.counts[name] = self.counts.get(name, 0) + int(finite.sum())
        self.rows += int(seen.sum())
        self.checked += table.num_rows

    def result(self) -> dict[str, Any] | None:
        """None when no row carried contributions."""
        if not self.rows:
            return None
        current = {n: self.sums[n] / self.counts[n] for n in self.features if self.counts.get(n)}
        base = {n: float(v) for n, v in (self.baseline or {}).items() if n in current and v == v}
        out: dict[str, Any] = {
            "rows": self.rows,
            # Where the contributions came from: the contrib.* columns logged with the rows.
            "source": "logged",
            "sampled": self.rows,
            "of": max(self.checked, self.rows),
            "threshold": self.threshold,
            "statistic": None,
            "drifted": False,
            "failed": False,
            "drifted_features": [],
            "features": [],
        }
        current_total, base_total = sum(current.values()), sum(base.values())
        if not base or base_total <= 0:
            out["note"] = (
                "no training attribution baseline in this model version (trained before "
                "mlopsctl kept one, or not explainable): current values only"
            )
        rows = []
        moves = []
        for name, value in current.items():
            entry: dict[str, Any] = {
                "name": name,
                "current": value,
                "current_share": value / current_total if current_total > 0 else 0.0,
                "baseline": base.get(name),
                "baseline_share": None,
                "change": None,
                "drifted": False,
            }
            if name in base and base_total > 0:
                entry["baseline_share"] = base[name] / base_total
                move = abs(entry["current_share"] - entry["baseline_share"])
                moves.append(move)
                entry["change"] = move / max(entry["baseline_share"], MIN_SHARE)
                entry["drifted"] = bool(entry["change"] >= self.threshold)
            rows.append(entry)
        rows.sort(key=lambda e: (not e["drifted"], -e["current"]))
        out["features"] = rows
        if moves:
            out["statistic"] = 0.5 * sum(moves)
            out["drifted_features"] = [e["name"] for e in rows if e["drifted"]]
            out["drifted"] = bool(out["drifted_features"])
            out["failed"] = bool(self.fail and out["drifted"])
        return out


def plan(
    spec: dict[str, Any], facts: dict[str, Any] | None, *, default_on: bool
) -> tuple[OutlierCheck | None, AttributionCheck | None]:
    """The two checks for a run. ``facts`` is the model's model.json, or a bare profile's
    stand-in ({"profile", "outliers", "explain"}); ``default_on``: run the outlier check without
    an ``outliers`` spec key (a run against a model does)."""
    if facts is None:
        return None, None
    outlier_spec = spec.get("outliers")
    options = outlier_spec if isinstance(outlier_spec, dict) else {}
    outliers: OutlierCheck | None = None
    wanted = options.get("enabled", True) and (default_on or outlier_spec is not None)
    if wanted:
        scorer = Scorer(facts)
        if scorer.names:
            outliers = OutlierCheck(
                scorer,
                threshold=float(options.get("threshold", scorer.threshold)),
                max_share=float(options.get("max_share", MAX_SHARE)),
                column=str(options.get("column", LOG_COLUMN)),
                fail=bool(options.get("fail", True)),
            )
    attribution_spec = spec.get("attribution") or {}
    attribution: AttributionCheck | None = None
    if attribution_spec.get("enabled", True):
        names = [f["name"] for f in facts.get("features") or []] or list(
            (facts.get("profile") or {}).get("features") or {}
        )
        explained = facts.get("explain") or {}
        if names:
            attribution = AttributionCheck(
                names,
                explained.get("mean_abs"),
                threshold=float(attribution_spec.get("threshold", ATTRIBUTION_THRESHOLD)),
                fail=bool(attribution_spec.get("fail", True)),
            )
    return outliers, attribution
