"""Pipeline overhead against DVC: one 5-step chain built twice, as an mlopsctl spec of `run:`
steps and as a DVC `dvc.yaml`, timed on its first run and on a fully cached re-run.

    .venv/bin/python bench/pipeline.py [--runs N]

DVC lives in its own virtualenv under .bench/ (made once from bench/requirements-dvc.txt).
Goal: the cached `mlopsctl run` under 0.5 s and at least 2x faster than a no-op `dvc repro`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"
DVC_VENV = BENCH_DIR / "dvc-venv"
DVC_REQUIREMENTS = Path(__file__).with_name("requirements-dvc.txt")
# The pinned line is what TESTBED.md measured; any 3.x keeps the comparison meaningful when the
# index no longer carries it.
DVC_FALLBACK = "dvc>=3,<4"

CACHED_GOAL_S = 0.5
SPEEDUP_GOAL = 2.0

STAGES = ["generate", "scale", "keep", "order", "summarize"]
ROWS = 200_000  # about 4 MB of CSV out of the first stage

# Pure-stdlib stage bodies, so both tools run exactly the same work with the same interpreter.
STAGES_PY = """\
import json
import random
import sys


def generate(out):
    rng = random.Random(7)
    with open(out, "w") as f:
        for i in range(ROWS):
            f.write(f"{i},{rng.random():.12f}\\n")


def _rows(path):
    with open(path) as f:
        for line in f:
            key, value = line.rstrip("\\n").split(",")
            yield key, float(value)


def scale(src, out):
    with open(out, "w") as f:
        for key, value in _rows(src):
            f.write(f"{key},{value * 3.5 - 1:.12f}\\n")


def keep(src, out):
    with open(out, "w") as f:
        for key, value in _rows(src):
            if value > 0:
                f.write(f"{key},{value:.12f}\\n")


def order(src, out):
    rows = sorted(_rows(src), key=lambda kv: kv[1])
    with open(out, "w") as f:
        f.writelines(f"{key},{value:.12f}\\n" for key, value in rows)


def summarize(src, out):
    values = [value for _, value in _rows(src)]
    summary = {"rows": len(values), "min": values[0], "max": values[-1]}
    with open(out, "w") as f:
        json.dump(summary, f, sort_keys=True)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
""".replace("ROWS", str(ROWS))

GIT = ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench"]


@dataclass
class Peer:
    dvc: Path | None
    version: str
    note: str


def _check(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} (in {cwd}) exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    # keep DVC's per-repo index cache with the throw-away projects instead of /var/tmp
    env["DVC_SITE_CACHE_DIR"] = str(tmp / "dvc-site-cache")
    # a store URL from the caller's shell would send mlopsctl's cache somewhere else entirely
    env.pop("MLOPSCTL_STORE", None)
    return env


# -- the peer -------------------------------------------------------------------------------


def ensure_dvc() -> Peer:
    """Reuses .bench/dvc-venv while its stamp matches the requirements file; builds it otherwise."""
    wanted = DVC_REQUIREMENTS.read_text()
    stamp = DVC_VENV / "bench-requirements.txt"
    dvc = DVC_VENV / "bin" / "dvc"
    if not (dvc.exists() and stamp.exists() and stamp.read_text() == wanted):
        print(f"setting up DVC in {DVC_VENV.relative_to(REPO)} (once; about a minute)...")
        shutil.rmtree(DVC_VENV, ignore_errors=True)
        BENCH_DIR.mkdir(exist_ok=True)
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(DVC_VENV)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return Peer(None, "", f"could not create a virtualenv: {made.stderr.strip()[-500:]}")
        python = str(DVC_VENV / "bin" / "python")
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        tries = [[*pip, "-r", str(DVC_REQUIREMENTS)], [*pip, DVC_FALLBACK]]
        errors = []
        for cmd in tries:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode == 0 and dvc.exists():
                stamp.write_text(wanted)
                break
            errors.append(proc.stderr.strip().splitlines()[-1:] or ["(no message)"])
        else:
            reasons = "; ".join(e[0] for e in errors)
            return Peer(None, "", f"pip could not install DVC ({reasons})")
    version = subprocess.run(
        [str(dvc), "--version"], capture_output=True, text=True, env=_env(BENCH_DIR)
    ).stdout.strip()
    return Peer(dvc, version, "")


# -- the two projects -----------------------------------------------------------------------


def _mlops_spec(python: str) -> str:
    lines = ["apiVersion: mlopsctl/v1", "kind: Pipeline", "name: chain", "steps:"]
    previous = None
    for name in STAGES:
        src = " {inputs.data}" if previous else ""
        cmd = f"{python} stages.py {name}{src} {{outputs.data}}"
        lines += [f"  {name}:", f"    run: {json.dumps(cmd)}", "    code: [stages.py]"]
        if previous:
            lines.append(f"    inputs: {{data: {previous}.data}}")
        lines.append("    outputs: [data]")
        previous = name
    return "\n".join(lines) + "\n"


def _dvc_yaml(python: str) -> str:
    lines = ["stages:"]
    previous = None
    for name in STAGES:
        out = f"data/{name}.{'json' if name == STAGES[-1] else 'csv'}"
        src = f" {previous}" if previous else ""
        deps = ["stages.py", *([previous] if previous else [])]
        lines += [
            f"  {name}:",
            f"    cmd: {json.dumps(f'{python} stages.py {name}{src} {out}')}",
            f"    deps: {json.dumps(deps)}",
            f"    outs: {json.dumps([out])}",
        ]
        previous = out
    return "\n".join(lines) + "\n"


def build_mlops(root: Path, env: dict[str, str]) -> list[str]:
    root.mkdir()
    _check([*GIT, "init", "-q"], root)
    mlopsctl = _mlopsctl()
    _check([*mlopsctl, "init", "."], root, env)
    (root / "stages.py").write_text(STAGES_PY)
    spec = root / "pipelines" / "chain.yaml"
    spec.write_text(_mlops_spec(shlex.quote(sys.executable)))
    _check([*mlopsctl, "validate", str(spec.relative_to(root))], root, env)
    _check([*GIT, "add", "-A"], root)
    _check([*GIT, "commit", "-qm", "chain"], root)
    return [*mlopsctl, "run", str(spec.relative_to(root)), "--json"]


def build_dvc(root: Path, dvc: Path, env: dict[str, str]) -> list[str]:
    root.mkdir()
    _check([*GIT, "init", "-q"], root)
    _check([str(dvc), "init", "-q"], root, env)
    (root / "data").mkdir()
    (root / "stages.py").write_text(STAGES_PY)
    (root / "dvc.yaml").write_text(_dvc_yaml(shlex.quote(sys.executable)))
    _check([*GIT, "add", "-A"], root)
    _check([*GIT, "commit", "-qm", "chain"], root)
    return [str(dvc), "repro"]


def _mlopsctl() -> list[str]:
    exe = Path(sys.executable).with_name("mlopsctl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlopsctl"]


# -- timing and checks ----------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Sample:
    wall: float
    cpu: float  # user+sys of the command and its children: less swayed by a busy machine
    stdout: str
    stderr: str


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    """One run; any failure ends the benchmark."""
    cpu0, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return Sample(wall, cpu, proc.stdout, proc.stderr)


def expect_mlops(output: str, status: str) -> dict:
    """The run record, once every step in it has `status`."""
    record = json.loads(output)
    found = {name: record["steps"].get(name, {}).get("status", "missing") for name in STAGES}
    if set(found.values()) != {status}:
        sys.exit(f"mlopsctl: expected every step {status}, got {found}")
    return record


def _dvc_state(root: Path) -> tuple[bytes, list[int]]:
    """dvc.lock and the outputs' mtimes: a real no-op leaves all of them as they were."""
    outs = sorted((root / "data").iterdir())
    return (root / "dvc.lock").read_bytes(), [p.stat().st_mtime_ns for p in outs]


def expect_dvc_ran(output: str) -> None:
    missing = [name for name in STAGES if f"Running stage '{name}'" not in output]
    if missing:
        sys.exit(f"dvc repro did not run stages {missing}:\n{output[-2000:]}")


def expect_dvc_noop(output: str, before: tuple[bytes, list[int]], root: Path) -> None:
    if "Running stage" in output or _dvc_state(root) != before:
        sys.exit(f"dvc repro was expected to do nothing but did something:\n{output[-2000:]}")
    skipped = [n for n in STAGES if f"Stage '{n}' didn't change, skipping" in output]
    if len(skipped) != len(STAGES):
        sys.exit(f"dvc repro did not report every stage unchanged:\n{output[-2000:]}")


def _median(samples: list[Sample]) -> tuple[float, float]:
    return statistics.median(x.wall for x in samples), statistics.median(x.cpu for x in samples)


def _report(label: str, samples: list[Sample]) -> float:
    wall, cpu = _median(samples)
    low, high = min(x.wall for x in samples), max(x.wall for x in samples)
    print(f"{label}  {wall:7.3f} s median (min {low:.3f}, max {high:.3f}), cpu {cpu:.3f} s")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="cached re-runs to take the median of")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    peer = ensure_dvc()
    if peer.dvc is None:
        print(f"DVC unavailable: {peer.note}. Reporting mlopsctl's own figures only.")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        env = _env(tmp)
        m_root, d_root = tmp / "mlops", tmp / "dvc"
        m_cmd = build_mlops(m_root, env)
        d_cmd = build_dvc(d_root, peer.dvc, env) if peer.dvc else None

        # first runs: one sample each, so they show the order of magnitude, not a fine figure
        m_first = _timed(m_cmd, m_root, env)
        record = expect_mlops(m_first.stdout, "executed")
        first_size = record["steps"][STAGES[0]]["outputs"]["data"]["size"]
        d_first = None
        if d_cmd:
            d_first = _timed(d_cmd, d_root, env)
            expect_dvc_ran(d_first.stdout + d_first.stderr)

        def cached_mlops() -> Sample:
            sample = _timed(m_cmd, m_root, env)
            expect_mlops(sample.stdout, "cached")
            return sample

        def noop_dvc() -> Sample:
            assert d_cmd is not None
            state = _dvc_state(d_root)
            sample = _timed(d_cmd, d_root, env)
            expect_dvc_noop(sample.stdout + sample.stderr, state, d_root)
            return sample

        # one untimed round each, so neither side pays for cold pages or .pyc writes
        cached_mlops()
        if d_cmd:
            noop_dvc()

        m_samples: list[Sample] = []
        d_samples: list[Sample] = []
        for i in range(args.runs):
            # alternate who goes first so a burst of noise does not always land on one side
            if i % 2 and d_cmd:
                d_samples.append(noop_dvc())
            m_samples.append(cached_mlops())
            if i % 2 == 0 and d_cmd:
                d_samples.append(noop_dvc())
    load = max(load_before, os.getloadavg()[0])

    print(
        f"chain: {len(STAGES)} steps, first output {ROWS} rows ({first_size / 1e6:.1f} MB); "
        f"median of {args.runs} cached runs each"
    )
    if peer.dvc:
        print(f"peer: DVC {peer.version or '(version unknown)'} in {DVC_VENV.relative_to(REPO)}")
    cores = os.cpu_count() or 1
    # DVC's no-op spends more CPU than mlopsctl's, so contention slows it more and flatters the
    # ratio: a verdict taken on a busy machine is not one to trust.
    busy = load > cores
    print(f"load average {load:.2f} on {cores} cores{' - BUSY, figures skewed' if busy else ''}")
    print(f"first run   mlopsctl run  {m_first.wall:7.3f} s, cpu {m_first.cpu:.3f} s")
    if d_first is not None:
        print(f"first run   dvc repro     {d_first.wall:7.3f} s, cpu {d_first.cpu:.3f} s")
    m_med = _report("cached      mlopsctl run", m_samples)
    under = m_med < CACHED_GOAL_S
    faster = None
    if d_samples:
        d_med = _report("no-op       dvc repro   ", d_samples)
        ratio = d_med / m_med
        cpu_ratio = _median(d_samples)[1] / _median(m_samples)[1]
        print(f"ratio dvc/mlopsctl (cached): {ratio:.2f}x wall, {cpu_ratio:.2f}x cpu")
        faster = ratio >= SPEEDUP_GOAL
    print(f"goal cached mlopsctl < {CACHED_GOAL_S} s: {'met' if under else 'MISSED'}")
    if faster is None:
        print(f"goal >= {SPEEDUP_GOAL:.0f}x faster than dvc no-op: not measured (no DVC)")
        verdict = "MISSED" if not under else "incomplete (no DVC to compare with)"
    else:
        print(f"goal >= {SPEEDUP_GOAL:.0f}x faster than dvc no-op: {'met' if faster else 'MISSED'}")
        verdict = "met" if under and faster else "MISSED"
    print(f"verdict: {verdict}{' (busy machine: rerun when idle)' if busy else ''}")


if __name__ == "__main__":
    main()
