"""Drift check against Evidently: reference and current tables of 1,000,000 rows x 20 numeric
and 5 categorical columns, some shifted, checked by `mlopsctl monitor check` (from a stored
baseline profile) and by Evidently's DataDriftPreset report, on the same data.

    .venv/bin/python bench/monitor.py [--runs N] [--rows N] [--evidently-runs N]

Evidently lives in its own virtualenv under .bench/ (made once from
bench/requirements-evidently.txt). Goals: `monitor check` under 2 s, at least 20x faster than
Evidently, and the same drift verdict on every shifted column.

What is timed, to be fair to Evidently rather than to us:
- mlopsctl: the whole `mlopsctl monitor check SPEC --json` command as a subprocess: interpreter
  start, spec validation, streaming the current Parquet file, every test, the audit event. The
  baseline is a profile JSON written once beforehand by `mlopsctl monitor profile` (the same
  per-feature sketches a registered model stores), as a monitor in production would use it.
- Evidently: only `Report([DataDriftPreset()]).run(current, reference)` and reading its result,
  in an interpreter that already imported Evidently and already holds both tables as pandas
  DataFrames (reading the Parquet files is not counted).
Both use the same tests at this size: normed Wasserstein distance for numeric columns and
Jensen-Shannon distance for categorical ones, drift at 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"
EVIDENTLY_VENV = BENCH_DIR / "evidently-venv"
EVIDENTLY_REQUIREMENTS = Path(__file__).with_name("requirements-evidently.txt")
MLOPSCTL = [sys.executable, "-m", "mlopsctl"]

TIME_GOAL_S = 2.0
SPEEDUP_GOAL = 20.0

NUMERIC = [f"n{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
# What the current data does differently; every other column is a fresh sample of the
# reference distribution. Sizes are far from the 0.1 threshold on purpose, both ways, so a
# verdict does not hang on sampling noise.
SHIFTS = {
    "n00": "mean + 0.5 sd",
    "n01": "sd x 1.6",
    "n02": "mean + 0.25 sd",
    "n03": "mean + 0.02 sd (below threshold)",
    "c0": "category shares reshuffled",
    "c1": "a new category takes 20%",
    "c2": "shares nudged by 2 points (below threshold)",
}

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import pandas as pd
reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
runs = int(sys.argv[3])
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset
seconds = []
for _ in range(runs):
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    found = snapshot.dict()
    seconds.append(time.perf_counter() - t0)
columns = {}
for metric in found["metrics"]:
    config = metric.get("config") or {}
    if config.get("type", "").endswith("ValueDrift"):
        score, threshold = float(metric["value"]), float(config["threshold"])
        columns[config["column"]] = {
            "method": config.get("method"),
            "score": score,
            "threshold": threshold,
            "drifted": score >= threshold,
        }
print(json.dumps({"version": evidently.__version__, "seconds": seconds, "columns": columns}))
"""


# -- the data -------------------------------------------------------------------------------


def make_data(rows: int, folder: Path, seed: int = 11) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    means = rng.uniform(-5, 5, len(NUMERIC))
    sds = rng.uniform(0.5, 3, len(NUMERIC))
    counts = (4, 6, 8, 12, 20)
    levels = [[f"{c}_{k}" for k in range(n)] for c, n in zip(CATEGORICAL, counts, strict=True)]
    shares = [rng.dirichlet(np.full(len(lv), 5.0)) for lv in levels]

    def table(shifted: bool) -> pa.Table:
        columns: dict[str, Any] = {}
        for i, name in enumerate(NUMERIC):
            mean, sd = means[i], sds[i]
            if shifted and name == "n00":
                mean += 0.5 * sd
            elif shifted and name == "n01":
                sd *= 1.6
            elif shifted and name == "n02":
                mean += 0.25 * sd
            elif shifted and name == "n03":
                mean += 0.02 * sd
            columns[name] = rng.normal(mean, sd, rows)
        for i, name in enumerate(CATEGORICAL):
            labels, p = list(levels[i]), shares[i].copy()
            if shifted and name == "c0":
                p = p[::-1].copy()
            elif shifted and name == "c1":
                labels.append(f"{name}_new")
                p = np.append(p * 0.8, 0.2)
            elif shifted and name == "c2":
                p[0] += 0.02
                p[1] = max(p[1] - 0.02, 0.0)
                p /= p.sum()
            codes = rng.choice(len(labels), size=rows, p=p)
            columns[name] = pa.DictionaryArray.from_arrays(
                pa.array(codes, pa.int32()), pa.array(labels)
            ).cast(pa.string())
        return pa.table(columns)

    reference, current = folder / "reference.parquet", folder / "current.parquet"
    pq.write_table(table(False), reference)
    pq.write_table(table(True), current)
    return reference, current


# -- the peer -------------------------------------------------------------------------------


def ensure_evidently() -> tuple[Path | None, str]:
    """Reuses .bench/evidently-venv while its stamp matches the requirements file (or while
    Evidently imports in it); builds it otherwise. (python, note)."""
    wanted = EVIDENTLY_REQUIREMENTS.read_text()
    stamp = EVIDENTLY_VENV / "bench-requirements.txt"
    python = EVIDENTLY_VENV / "bin" / "python"

    def imports() -> bool:
        probe = [str(python), "-c", "import evidently.presets, pandas, pyarrow"]
        return python.exists() and subprocess.run(probe, capture_output=True).returncode == 0

    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python, ""
    if imports():
        stamp.write_text(wanted)
        return python, ""
    print(f"setting up Evidently in {EVIDENTLY_VENV.relative_to(REPO)} (once; a few minutes)...")
    shutil.rmtree(EVIDENTLY_VENV, ignore_errors=True)
    BENCH_DIR.mkdir(exist_ok=True)
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], capture_output=True, text=True
    )
    if made.returncode != 0:
        return None, f"could not create a virtualenv: {made.stderr.strip()[-500:]}"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*pip, "-r", str(EVIDENTLY_REQUIREMENTS)], capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0 or not imports():
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return None, f"pip could not install Evidently ({last})"
    stamp.write_text(wanted)
    return python, ""


def run_evidently(python: Path, reference: Path, current: Path, runs: int) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), "-c", EVIDENTLY_SCRIPT, str(reference), str(current), str(runs)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"Evidently failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- mlopsctl -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLOPSCTL_STORE", None)  # the caller's store must not receive the bench's events
    return env


def setup_mlops(root: Path, reference: Path, current: Path) -> list[str]:
    root.mkdir(parents=True)
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: bench\nstore: {url: .mlops}\n"
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    profile = root / "baseline-profile.json"
    made = subprocess.run(
        [*MLOPSCTL, "monitor", "profile", str(reference), "-o", str(profile)],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        sys.exit(f"mlopsctl monitor profile failed:\n{made.stderr[-3000:]}")
    (root / "monitor.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Monitor\nname: bench\n"
        f"baseline: {profile.name}\ncurrent: {{path: {current}}}\n"
    )
    return [*MLOPSCTL, "monitor", "check", "monitor.yaml", "--json"]


def timed_check(cmd: list[str], root: Path) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 4):  # 4: drift found, as expected here
        sys.exit(f"mlopsctl monitor check exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, dict(json.loads(proc.stdout))


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="monitor check runs (median)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each table")
    parser.add_argument(
        "--evidently-runs",
        type=int,
        default=1,
        help="Evidently report runs (median); one takes minutes at 1M rows",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.evidently_runs < 1 or args.rows < 2000:
        parser.error("--runs and --evidently-runs must be >= 1, --rows >= 2000")

    python, note = ensure_evidently()
    if python is None:
        print(f"Evidently unavailable: {note}. Reporting mlopsctl's own figures only.")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-monitor-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        reference, current = make_data(args.rows, tmp)
        made_s = time.perf_counter() - t0
        size_mb = (reference.stat().st_size + current.stat().st_size) / 1e6
        root = tmp / "project"
        cmd = setup_mlops(root, reference, current)
        timed_check(cmd, root)  # untimed: cold page cache, .pyc writes
        samples = [timed_check(cmd, root) for _ in range(args.runs)]
        m_time = statistics.median(s for s, _ in samples)
        m_result = samples[-1][1]
        e_result = (
            run_evidently(python, reference, current, args.evidently_runs) if python else None
        )
    load = max(load_before, os.getloadavg()[0])

    print(
        f"data: {args.rows:,} rows x {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical "
        f"columns, reference and current ({size_mb:.0f} MB of Parquet, made in {made_s:.1f} s)"
    )
    inner = m_result.get("seconds")
    print(
        f"mlopsctl monitor check (whole command, from the stored profile): {m_time:.3f} s "
        f"(median of {args.runs}; {inner} s inside the command)"
    )
    mine = {f["name"]: f for f in m_result["features"]}
    theirs = (e_result or {}).get("columns", {})
    if e_result:
        e_time = statistics.median(e_result["seconds"])
        print(
            f"Evidently {e_result['version']} DataDriftPreset report (computation only): "
            f"{e_time:.2f} s (median of {len(e_result['seconds'])})"
        )
        print(f"ratio: mlopsctl is {e_time / m_time:.1f}x faster")
    print()
    print(f"{'column':<7} {'shift':<44} {'mlopsctl':>18} {'Evidently':>18}  same")
    agree_shifted, agree_all = True, True
    for name in NUMERIC + CATEGORICAL:
        ours = mine.get(name, {})
        ours_text = f"{_verdict(ours.get('drifted'))} {ours.get('statistic', float('nan')):.3f}"
        if name in theirs:
            other = theirs[name]
            other_text = f"{_verdict(other['drifted'])} {other['score']:.3f}"
            same = bool(ours.get("drifted")) == other["drifted"]
        else:
            other_text, same = "-", True
        agree_all &= same
        if name in SHIFTS:
            agree_shifted &= same
        if name in SHIFTS or not same:
            print(
                f"{name:<7} {SHIFTS.get(name, 'none'):<44} {ours_text:>18} {other_text:>18}  "
                f"{'yes' if same else 'NO'}"
            )
    unshifted = [n for n in NUMERIC + CATEGORICAL if n not in SHIFTS]
    quiet = sum(1 for n in unshifted if not mine.get(n, {}).get("drifted"))
    print(f"(unshifted columns: {quiet} of {len(unshifted)} judged not drifted by mlopsctl)")
    print()
    met = "met" if m_time < TIME_GOAL_S else "MISSED"
    print(f"goal: monitor check under {TIME_GOAL_S} s: {met}")
    if e_result:
        ratio = statistics.median(e_result["seconds"]) / m_time
        met = "met" if ratio >= SPEEDUP_GOAL else "MISSED"
        print(f"goal: at least {SPEEDUP_GOAL:.0f}x faster than Evidently: {met} ({ratio:.1f}x)")
        print(
            f"goal: same verdicts on the shifted columns: {'met' if agree_shifted else 'MISSED'}"
            f" (all columns: {'same' if agree_all else 'differ'})"
        )
    cores = os.cpu_count()
    print(f"machine: {cores} CPU(s), load average up to {load:.1f} during the run")


def _verdict(drifted: Any) -> str:
    return "drift" if drifted else "ok"


if __name__ == "__main__":
    main()
