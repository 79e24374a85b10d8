"""Serving throughput and latency against MLflow: the same model (the quickstart's XGBoost
classifier with its preprocessing) served by `mlopsctl serve` and by `mlflow models serve`, under
the same load: single-row JSON requests (`dataframe_split`) to /invocations, 8 connections,
one wrk thread, on loopback, one server at a time.

    .venv/bin/python bench/serving.py [--runs N] [--duration S]

MLflow lives in its own virtualenv under .bench/ (made once from bench/requirements-mlflow.txt,
with the model's libraries pinned to mlopsctl's). mlopsctl serves with prediction logging on
(to the temporary project's store); both servers run their defaults (one worker process).
Goal: at least 5x MLflow's requests/s, and mlopsctl's p99 under 25 ms, on a 2-core machine that
also runs the load generator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"
MLFLOW_VENV = BENCH_DIR / "mlflow-venv"
MLFLOW_REQUIREMENTS = Path(__file__).with_name("requirements-mlflow.txt")
MLFLOW_FALLBACK = ["mlflow>=3,<4", "xgboost", "scikit-learn", "skops", "pandas"]
QUICKSTART = REPO / "specs" / "examples" / "quickstart.yaml"
MODEL = "breast-cancer"

THROUGHPUT_GOAL = 5.0
P99_GOAL_MS = 25.0
CONNECTIONS = 8
READY_TIMEOUT_S = 180.0

GIT = ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench"]

# Runs in the MLflow virtualenv: the model as an sklearn Pipeline (mlopsctl's fitted
# preprocessing, then the booster loaded from the very same model.ubj), saved with MLflow's
# sklearn flavor and a signature, as an MLflow user would log it.
SAVE_MLFLOW_MODEL = textwrap.dedent(
    """\
    import json, sys
    import mlflow.sklearn
    import pandas as pd
    import skops.io
    from mlflow.models import infer_signature
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    model_dir, out = sys.argv[1], sys.argv[2]
    meta = json.load(open(f"{model_dir}/model.json"))
    path = f"{model_dir}/preprocess.skops"
    preprocess = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    booster = XGBClassifier()
    booster.load_model(f"{model_dir}/model.ubj")
    pipeline = Pipeline([*preprocess.steps, ("model", booster)])
    columns = [f["name"] for f in meta["features"]]
    sample = pd.DataFrame([[1.0] * len(columns)], columns=columns)
    signature = infer_signature(sample, pipeline.predict(sample))
    # cloudpickle: MLflow's long-standing format (its skops default refuses the booster type)
    mlflow.sklearn.save_model(
        pipeline,
        out,
        signature=signature,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    """
)

POST_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _check(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout


# -- the peer -------------------------------------------------------------------------------


def ensure_mlflow() -> Path:
    """.bench/mlflow-venv's python, reused while its stamp matches the requirements file."""
    wanted = MLFLOW_REQUIREMENTS.read_text()
    stamp = MLFLOW_VENV / "bench-requirements.txt"
    python = MLFLOW_VENV / "bin" / "python"
    if not ((MLFLOW_VENV / "bin" / "mlflow").exists() and stamp.exists()):
        stamp_ok = False
    else:
        stamp_ok = stamp.read_text() == wanted
    if not stamp_ok:
        _say(f"setting up MLflow in {MLFLOW_VENV.relative_to(REPO)} (once; a few minutes)...")
        if not python.exists():
            BENCH_DIR.mkdir(exist_ok=True)
            _check([sys.executable, "-m", "venv", str(MLFLOW_VENV)])
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for cmd in ([*pip, "-r", str(MLFLOW_REQUIREMENTS)], [*pip, *MLFLOW_FALLBACK]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
            if proc.returncode == 0:
                stamp.write_text(wanted)
                break
        else:
            sys.exit(f"pip could not install MLflow: {proc.stderr.strip()[-500:]}")
    return python


# -- the model ------------------------------------------------------------------------------


def make_project(root: Path, env: dict[str, str]) -> Path:
    """A project that trained the quickstart (200 trees) and registered it; returns the
    unpacked model folder."""
    (root / "pipelines").mkdir(parents=True)
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: bench\nstore: {url: .mlops}\n"
    )
    (root / ".gitignore").write_text(".mlops/\n")
    shutil.copy(QUICKSTART, root / "pipelines" / "quickstart.yaml")
    _check([*GIT, "init", "-q"], root)
    _check([*GIT, "add", "-A"], root)
    _check([*GIT, "commit", "-qm", "quickstart"], root)
    mlopsctl = [sys.executable, "-m", "mlopsctl"]
    _check([*mlopsctl, "run", "pipelines/quickstart.yaml", "--json"], root, env)
    folder = root / "model"
    _check([*mlopsctl, "models", "download", f"{MODEL}:1", str(folder)], root, env)
    return folder


def request_body(model_dir: Path) -> tuple[list[str], list[float]]:
    """One realistic row: every feature at its training mean."""
    meta = json.loads((model_dir / "model.json").read_text())
    columns = [f["name"] for f in meta["features"]]
    profiles = meta["profile"]["features"]
    return columns, [float(profiles[c]["mean"]) for c in columns]


# -- servers --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        # its own session: uvicorn's workers are stopped with it, by process group
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url}: the server exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"{url} not ready after {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-2000:]}")


def _predict(base: str, body: bytes) -> object:
    request = urllib.request.Request(
        f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["predictions"]


# -- load -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Load:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        sys.exit(f"could not read wrk's output:\n{output}")
    errors = sum(int(m.group(1)) for m in re.finditer(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", output)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Load(
        float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)), errors
    )


def run_wrk(wrk: str, url: str, script: Path, seconds: float) -> Load:
    cmd = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        sys.exit(f"wrk exited {proc.returncode}: {proc.stderr[-1000:]}")
    return parse_wrk(proc.stdout)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("installing wrk (apt-get)...")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True, check=False)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is missing: apt-get install -y wrk")
    return found


# -- main -----------------------------------------------------------------------------------


def _median(loads: list[Load]) -> Load:
    return Load(
        statistics.median(x.rps for x in loads),
        statistics.median(x.p50_ms for x in loads),
        statistics.median(x.p99_ms for x in loads),
        sum(x.requests for x in loads),
        sum(x.errors for x in loads),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="load runs per server (median)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per load run")
    args = parser.parse_args()
    if args.runs < 1 or args.duration <= 0:
        parser.error("--runs must be at least 1 and --duration above 0")

    wrk = ensure_wrk()
    mlflow_python = ensure_mlflow()
    mlflow_bin = mlflow_python.parent
    servers: list[subprocess.Popen[bytes]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
        root = tmp / "project"
        _say("training the quickstart model (200 trees) and registering it...")
        model_dir = make_project(root, env)
        mlflow_model = tmp / "mlflow-model"
        mlflow_env = {
            **env,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PATH": f"{mlflow_bin}:{env.get('PATH', '')}",  # it starts uvicorn by name
        }
        _check(
            [str(mlflow_python), "-c", SAVE_MLFLOW_MODEL, str(model_dir), str(mlflow_model)],
            env=mlflow_env,
        )
        columns, row = request_body(model_dir)
        body = json.dumps({"dataframe_split": {"columns": columns, "data": [row]}})
        script = tmp / "post.lua"
        script.write_text(POST_LUA.format(body=json.dumps(body)))

        m_port, f_port = _free_port(), _free_port()
        m_base, f_base = f"http://127.0.0.1:{m_port}", f"http://127.0.0.1:{f_port}"
        try:
            m_log, f_log = tmp / "mlopsctl.log", tmp / "mlflow.log"
            mlops = _start(
                [sys.executable, "-m", "mlopsctl", "serve", f"{MODEL}:1", "--port", str(m_port)],
                root,
                env,
                m_log,
            )
            servers.append(mlops)
            mlflow = _start(
                [str(mlflow_bin / "mlflow"), "models", "serve", "-m", str(mlflow_model)]
                + ["-h", "127.0.0.1", "-p", str(f_port), "--env-manager", "local"],
                tmp,
                mlflow_env,
                f_log,
            )
            servers.append(mlflow)
            _wait_ready(mlops, f"{m_base}/v2/health/ready", m_log)
            _wait_ready(mlflow, f"{f_base}/ping", f_log)
            m_answer, f_answer = _predict(m_base, body.encode()), _predict(f_base, body.encode())
            if m_answer != f_answer:
                sys.exit(f"the servers disagree: mlopsctl {m_answer}, mlflow {f_answer}")
            _say(f"both servers ready and agree ({m_answer}); warming up...")
            for base in (m_base, f_base):
                run_wrk(wrk, f"{base}/invocations", script, 3)
            m_loads: list[Load] = []
            f_loads: list[Load] = []
            for i in range(args.runs):
                # alternate who goes first so a burst of noise does not always land on one side
                order = [(m_base, m_loads), (f_base, f_loads)]
                for base, into in order if i % 2 == 0 else order[::-1]:
                    load = run_wrk(wrk, f"{base}/invocations", script, args.duration)
                    _say(
                        f"run {i + 1} {'mlopsctl' if base == m_base else 'mlflow  '}: "
                        f"{load.rps:8.0f} req/s, p50 {load.p50_ms:6.2f} ms, "
                        f"p99 {load.p99_ms:6.2f} ms"
                    )
                    into.append(load)
            # the prediction log: every request was to be written to the store
            time.sleep(6)  # one flush interval
            logged = sorted((root / ".mlops" / "logs" / "predictions").rglob("*.parquet"))
        finally:
            for proc in servers:
                _stop(proc)
    load = max(load_before, os.getloadavg()[0])
    versions = _check([str(mlflow_python), "-c", "import mlflow; print(mlflow.__version__)"])

    m, f = _median(m_loads), _median(f_loads)
    cores = os.cpu_count() or 1
    print(
        f"load: wrk -t1 -c{CONNECTIONS} -d{args.duration:g}s, one-row dataframe_split POST "
        f"/invocations on loopback, median of {args.runs} runs per server, one at a time"
    )
    print(f"peer: MLflow {versions.strip()} (mlflow models serve, --env-manager local)")
    busy = " - BUSY, figures skewed" if load > cores else ""
    print(f"load average {load:.2f} on {cores} cores{busy}")
    print(f"{'':10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, x in (("mlopsctl", m), ("mlflow", f)):
        print(f"{name:10}{x.rps:10.0f}{x.p50_ms:10.2f}{x.p99_ms:10.2f}{x.errors:8d}")
    ratio = m.rps / f.rps if f.rps else float("inf")
    print(
        f"ratios mlopsctl/mlflow: throughput {ratio:.1f}x, p50 {f.p50_ms / m.p50_ms:.1f}x lower, "
        f"p99 {f.p99_ms / m.p99_ms:.1f}x lower"
    )
    print(f"mlopsctl prediction log: {len(logged)} parquet file(s) written to the store")
    faster = ratio >= THROUGHPUT_GOAL
    quick = m.p99_ms < P99_GOAL_MS
    clean = m.errors == 0 and f.errors == 0
    print(f"goal >= {THROUGHPUT_GOAL:.0f}x MLflow's requests/s: {'met' if faster else 'MISSED'}")
    print(f"goal mlopsctl p99 < {P99_GOAL_MS:.0f} ms: {'met' if quick else 'MISSED'}")
    if not clean:
        print("errors: some requests failed (non-2xx or socket errors): figures not comparable")
    print(f"verdict: {'met' if faster and quick and clean else 'MISSED'}")


if __name__ == "__main__":
    main()
