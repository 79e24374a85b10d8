"""`release check`: score candidate and champion on the same rows and judge every gate.

Verdicts: pass, fail, inconclusive (a compare or latency interval that straddles its bound;
the spec's ``on_inconclusive`` says whether that blocks), skipped (the gate cannot be judged
here: no champion to compare with) and pending (approvals not in yet; `release promote` checks
them again). Skipped and pending never count as a pass: they are shown with a note, and promote
demands the approvals itself. The latency gate serves the candidate and measures it
(latency.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.config import load_project
from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.events import list_events, record_event
from mlopsctl.release import latency

if TYPE_CHECKING:
    import pandas as pd

    from mlopsctl.config import Project
    from mlopsctl.models.artifact import LoadedModel
    from mlopsctl.records.event import Event
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.release.stats import Scored
    from mlopsctl.store.base import ObjectStore

BLOCKING = frozenset({"fail"})


@dataclass
class GateResult:
    name: str
    type: str
    verdict: str
    metric: str | None = None
    value: float | None = None
    bound: str | None = None
    ci: list[float] | None = None
    note: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != []}


def candidate_ref(model: str, value: str | int | None) -> str:
    """The registry reference of the spec's (or --candidate's) candidate: 3, "3", "latest",
    "@challenger", "challenger" or a full reference to a version of ``model``."""
    from mlopsctl.registry import parse_ref

    if value is None or value == "latest":
        return model
    text = str(value)
    if text.isdigit():
        return f"{model}:{text}"
    if text.startswith("@"):
        return f"{model}{text}"
    if ":" in text or "@" in text:
        if parse_ref(text).name != model:
            raise UsageError(f"candidate {text!r} is not a version of {model}")
        return text
    return f"{model}@{text}"


def champion_alias(spec: dict[str, Any]) -> str:
    return str((spec.get("promote") or {}).get("alias") or spec.get("champion") or "champion")


def approvals_for(store: ObjectStore, model: str, version: int) -> list[Event]:
    """Approval events of one version, the first from each person."""
    seen: dict[str, Event] = {}
    for event in list_events(store, model=model, kind="approval"):
        if event.get("version") == version and event.get("by") not in seen:
            seen[event["by"]] = event
    return list(seen.values())


def approval_gate(gate: dict[str, Any], approvals: list[Event]) -> tuple[bool, int, int, list[str]]:
    """(enough, counted, needed, who) for an approval gate."""
    allowed = gate.get("approvers")
    people = [a["by"] for a in approvals if not allowed or a["by"] in allowed]
    needed = int(gate.get("min_approvals", 1))
    return len(people) >= needed, len(people), needed, people


def run_check(
    store: ObjectStore,
    spec: dict[str, Any],
    *,
    spec_path: str,
    candidate: str | None = None,
    seed: int = 0,
    root: Path | None = None,
    project: Project | None = None,
    hosts: list[str] | None = None,
    trust: bool = False,
    log: latency.Log | None = None,
) -> dict[str, Any]:
    """Judge every gate of ``spec``; record and return the result (the "gate" event).

    ``project`` (default: the one found from ``root``) gives the Docker hosts the latency gate
    may measure on; ``hosts`` replaces every latency gate's hosts (``--hosts a,b``); ``trust``
    lets pickle-flavoured models load (and be served for the latency gate)."""
    from mlopsctl.registry import get_alias, get_version, load_model, resolve

    model_name = spec["model"]
    cand = resolve(store, candidate_ref(model_name, candidate or spec.get("candidate")))
    alias = champion_alias(spec)
    found = get_alias(store, model_name, alias)
    champ = get_version(store, model_name, int(found[0]["version"])) if found else None
    cand_model = load_model(f"{model_name}:{cand['version']}", store=store, trust_pickle=trust)
    champ_model = (
        load_model(f"{model_name}:{champ['version']}", store=store, trust_pickle=trust)
        if champ is not None
        else None
    )
    frame, source = _evaluation_frame(store, spec, cand, root or Path.cwd())
    target = (spec.get("evaluation") or {}).get("target") or cand_model.target
    if not target or target not in frame.columns:
        raise UsageError(
            f"the evaluation data has no target column {target!r}",
            "set evaluation.target in the release spec",
        )
    frame = frame[frame[target].notna()]
    judge = _Judge(frame, target, cand_model, champ_model, seed)
    results: list[GateResult] = []
    for gate in spec["gates"]:
        kind = gate["type"]
        name = gate.get("name") or kind
        if kind == "threshold":
            results.append(judge.threshold(name, gate))
        elif kind == "compare":
            results.append(judge.compare(name, gate))
        elif kind == "slices":
            results.append(judge.slices(name, gate))
        elif kind == "signature":
            results.append(_signature(name, gate, cand, champ))
        elif kind == "ab":  # an A/B test on live traffic: mlopsctl/release/ab.py
            from mlopsctl.release.ab import gate_result, judge_gate

            results.append(gate_result(judge_gate(store, spec, gate, candidate=candidate)))
        elif kind == "approval":
            enough, counted, needed, people = approval_gate(
                gate, approvals_for(store, model_name, int(cand["version"]))
            )
            results.append(
                GateResult(
                    name,
                    kind,
                    "pass" if enough else "pending",
                    value=counted,
                    bound=f">= {needed}",
                    note=("approved by " + ", ".join(people))
                    if people
                    else "no approvals yet: mlopsctl release approve "
                    f"{model_name}:{cand['version']} --by EMAIL",
                )
            )
        else:
            project = project or load_project(root or Path.cwd())
            rows = latency.measure(
                project,
                store,
                model_name,
                int(cand["version"]),
                frame,
                [f.name for f in cand_model.features],
                gate,
                hosts=latency.hosts_of(gate, hosts),
                seed=seed,
                trust=trust,
                log=log,
            )
            results.append(_latency_result(name, gate, rows))
    passed = not any(_blocks(r, g) for r, g in zip(results, spec["gates"], strict=True))
    event = record_event(
        store,
        "gate",
        model=model_name,
        version=int(cand["version"]),
        release=spec["name"],
        spec=spec_path,
        champion={"alias": alias, "version": champ["version"] if champ else None},
        data=source,
        rows=len(frame),
        seed=seed,
        passed=passed,
        gates=[r.as_dict() for r in results],
    )
    return event


def _latency_result(name: str, gate: dict[str, Any], rows: list[dict[str, Any]]) -> GateResult:
    """The gate's verdict is the worst of its rows; its value and interval are those of the
    slowest measured row."""
    measured = [r for r in rows if r.get("value_ms") is not None]
    worst = max(measured, key=lambda r: r["value_ms"]) if measured else None
    notes = [f"{r['host']}: {r['note']}" for r in rows if r.get("note")]
    if worst is not None:
        notes.insert(
            0,
            f"slowest: {worst['host']}, batch {worst['batch_size']}, concurrency "
            f"{worst['concurrency']}, {worst['requests']} requests",
        )
    return GateResult(
        name,
        "latency",
        latency.verdict_of(rows),
        metric=f"p{float(gate.get('percentile', 95)):g} ms",
        value=worst["value_ms"] if worst else None,
        bound=f"<= {float(gate['max_ms']):g}",
        ci=worst.get("ci") if worst else None,
        note="; ".join(notes) or None,
        details=rows,
    )


def _blocks(result: GateResult, gate: dict[str, Any]) -> bool:
    if result.verdict in ("fail", "invalid"):  # invalid: an A/B test that cannot be trusted
        return True
    if result.verdict == "inconclusive":
        return gate.get("on_inconclusive", "fail") == "fail"
    return False


def _evaluation_frame(
    store: ObjectStore, spec: dict[str, Any], cand: VersionRecord, root: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows both models are scored on: the spec's dataset, or else the test set recorded
    with the candidate (the store keeps it by digest)."""
    from mlopsctl.components.frames import read_table
    from mlopsctl.models.predict import read_input
    from mlopsctl.store.blobs import get_blob_file

    path = (spec.get("evaluation") or {}).get("data")
    if path:
        full = Path(path) if Path(path).is_absolute() else root / path
        return read_input(full), {"path": path}
    recorded = (cand.get("evaluation") or {}).get("data") or {}
    if not recorded:
        raise UsageError(
            f"{cand['name']}:{cand['version']} has no recorded test set",
            "set evaluation.data in the release spec",
        )
    name, entry = next(iter(sorted(recorded.items())))
    with tempfile.TemporaryDirectory(prefix="mlopsctl-release-") as tmp:
        local = get_blob_file(store, entry["digest"], Path(tmp) / "test.parquet")
        frame = read_table(local, "recorded test set")
    return frame, {"recorded": name, "digest": entry["digest"]}


class _Judge:
    def __init__(
        self,
        frame: pd.DataFrame,
        target: str,
        candidate: LoadedModel,
        champion: LoadedModel | None,
        seed: int,
    ) -> None:
        self.frame = frame
        self.target = target
        self.seed = seed
        self.cand = _score(candidate, frame, target)
        self.champ = _score(champion, frame, target) if champion is not None else None

    def threshold(self, name: str, gate: dict[str, Any]) -> GateResult:
        from mlopsctl.release.stats import metric_value

        metric = gate["metric"]
        value = metric_value(metric, self.cand)
        verdict, bound = _bounds(value, gate)
        return GateResult(name, "threshold", verdict, metric=metric, value=value, bound=bound)

    def compare(
        self, name: str, gate: dict[str, Any], mask: Any = None, kind: str = "compare"
    ) -> GateResult:
        from mlopsctl.release.stats import decide, paired_bootstrap

        metric = gate["metric"]
        bound_value, bound_text = _compare_bound(gate)
        if self.champ is None:
            return GateResult(
                name,
                kind,
                "skipped",
                metric=metric,
                bound=bound_text,
                note="no champion yet: nothing to compare with (not passed)",
            )
        cand, champ = self.cand, self.champ
        if mask is not None:
            cand, champ = cand.subset(mask), champ.subset(mask)
        level = float(gate.get("level", 0.95))
        interval = paired_bootstrap(
            metric,
            cand,
            champ,
            level=level,
            resamples=int(gate.get("resamples", 1000)),
            seed=self.seed,
        )
        verdict = decide(interval.low, interval.high, bound_value)
        note = f"candidate {interval.candidate:.4g} vs champion {interval.champion:.4g}"
        if interval.method == "delong":
            note += " (DeLong's test)"
        if verdict == "inconclusive":
            policy = gate.get("on_inconclusive", "fail")
            note += f"; the interval straddles the bound (on_inconclusive: {policy})"
        return GateResult(
            name,
            kind,
            verdict,
            metric=f"{metric} improvement",
            value=interval.delta,
            bound=bound_text,
            ci=[interval.low, interval.high],
            note=note,
        )

    def slices(self, name: str, gate: dict[str, Any]) -> GateResult:
        from mlopsctl.release.stats import higher_is_better, metric_value

        column, metric = gate["column"], gate["metric"]
        if column not in self.frame.columns:
            raise UsageError(f"slices: the evaluation data has no column {column!r}")
        values = self.frame[column].to_numpy()
        comparing = "min_improvement" in gate or "max_regression" in gate
        min_rows = int(gate.get("min_rows", 1))
        details: list[dict[str, Any]] = []
        verdicts: list[str] = []
        bound = None
        for value in sorted({v for v in values.tolist()}, key=str):
            mask = values == value
            rows = int(mask.sum())
            if rows < min_rows:
                details.append({"slice": str(value), "rows": rows, "verdict": "skipped"})
                continue
            if comparing:
                one = self.compare(f"{name}[{value}]", gate, mask, kind="slices")
                bound = one.bound
                entry = {"value": one.value, "ci": one.ci, "verdict": one.verdict}
            else:
                try:
                    score = metric_value(metric, self.cand.subset(mask))
                except UsageError as exc:
                    entry = {"verdict": "skipped", "note": exc.message}
                else:
                    verdict, bound = _bounds(score, gate)
                    entry = {"value": score, "verdict": verdict}
            details.append({"slice": str(value), "rows": rows, **entry})
            verdicts.append(str(entry["verdict"]))
        if not verdicts:
            return GateResult(name, "slices", "skipped", metric=metric, note="no slice to judge")
        # A slice whose metric is undefined (one class only) neither passes nor blocks.
        verdict = next((v for v in ("fail", "inconclusive", "pass") if v in verdicts), "skipped")
        judged = [d for d in details if isinstance(d.get("value"), float)]
        flip = 1.0 if comparing or higher_is_better(metric) else -1.0
        worst = min(judged, key=lambda d: flip * d["value"]) if judged else None
        failing = [d["slice"] for d in details if d["verdict"] == verdict and verdict != "pass"]
        note = f"worst {column}={worst['slice']}" if worst else None
        if failing:
            note = f"{verdict}: {column} in {', '.join(failing)}"
        return GateResult(
            name,
            "slices",
            verdict,
            metric=metric,
            value=worst["value"] if worst else None,
            bound=bound,
            ci=worst.get("ci") if worst else None,
            note=note,
            details=details,
        )


def _bounds(value: float, gate: dict[str, Any]) -> tuple[str, str]:
    parts, ok = [], True
    if "min" in gate:
        parts.append(f">= {gate['min']:g}")
        ok = ok and value >= gate["min"]
    if "max" in gate:
        parts.append(f"<= {gate['max']:g}")
        ok = ok and value <= gate["max"]
    return ("pass" if ok else "fail"), ", ".join(parts)


def _compare_bound(gate: dict[str, Any]) -> tuple[float, str]:
    if "max_regression" in gate:
        return -float(gate["max_regression"]), f"> -{gate['max_regression']:g}"
    m = float(gate.get("min_improvement", 0.0))
    return m, f"> {m:g}"


def _score(model: LoadedModel, frame: pd.DataFrame, target: str) -> Scored:
    import numpy as np
    import pandas as pd

    from mlopsctl.release.stats import Scored

    y = frame[target].to_numpy()
    if model.task == "classification" and model.classes is not None:
        classes = pd.Index(model.classes)
        pred = classes.get_indexer(pd.Index(model.predict(frame)))
        proba = model.predict_proba(frame) if model.has_proba else None
        return Scored(
            "classification",
            classes.get_indexer(pd.Index(y)),
            pred,
            proba,
            len(classes),
        )
    try:
        truth = y.astype("float64")
    except (TypeError, ValueError):
        raise MlopsError(f"target '{target}' is not numeric; the model is a regressor") from None
    return Scored("regression", truth, np.asarray(model.predict(frame), dtype="float64"))


def _signature(
    name: str, gate: dict[str, Any], cand: VersionRecord, champ: VersionRecord | None
) -> GateResult:
    if champ is None:
        return GateResult(name, "signature", "skipped", note="no champion yet: nothing to match")
    allowed = set(gate.get("allow") or [])
    a, b = cand.get("signature") or {}, champ.get("signature") or {}
    problems = [
        f"{key} {b.get(key)!r} -> {a.get(key)!r}"
        for key in ("task", "target", "classes")
        if a.get(key) != b.get(key)
    ]
    fa = {f["name"]: f for f in a.get("features") or []}
    fb = {f["name"]: f for f in b.get("features") or []}
    for feature in sorted(set(fa) | set(fb)):
        if feature in allowed:
            continue
        if feature not in fa:
            problems.append(f"{feature} dropped")
        elif feature not in fb:
            problems.append(f"{feature} added")
        elif (fa[feature].get("dtype"), fa[feature].get("kind")) != (
            fb[feature].get("dtype"),
            fb[feature].get("kind"),
        ):
            problems.append(
                f"{feature} {fb[feature].get('dtype')}/{fb[feature].get('kind')} -> "
                f"{fa[feature].get('dtype')}/{fa[feature].get('kind')}"
            )
    return GateResult(
        name,
        "signature",
        "fail" if problems else "pass",
        value=len(problems),
        bound="== champion",
        note="; ".join(problems[:5]) if problems else f"{len(fa)} features match",
    )
