"""Serving throughput and latency: the same model (the quickstart's XGBoost classifier with its
preprocessing) served by `mlopsctl serve` (logging on), by a bare uvicorn ASGI app around the
same `Predictor` and codecs (httptools, uvloop, no logging: the baseline of the server itself),
and by `mlflow models serve`, under the same load: single-row JSON requests (`dataframe_split`)
to /invocations, 8 connections, one wrk thread, on loopback, one server at a time. A "floor"
is measured too: a Python loop calling the predictor on an already parsed row (no HTTP).

    .venv/bin/python bench/serving.py [--runs N] [--duration S] [--mlflow]

MLflow lives in its own virtualenv under .bench/ (made once from bench/requirements-mlflow.txt,
with the model's libraries pinned to mlopsctl's). Without --mlflow, the MLflow leg runs only when
.bench/mlflow-venv exists already (the output says when it was skipped). All servers run one
worker process. Goals: at least 0.95x the bare uvicorn baseline's requests/s and at least 50x
MLflow's, mlopsctl's p99 under 10 ms, on a 2-core machine that also runs the load generator.
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

THROUGHPUT_GOAL = 50.0  # x MLflow
BASELINE_GOAL = 0.95  # x bare uvicorn
P99_GOAL_MS = 10.0
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

# Runs in .venv: the bare uvicorn baseline, the same Predictor and codecs, no logging, no
# metrics, no limits.
BARE_UVICORN = textwrap.dedent(
    """\
    import json, sys
    import uvicorn
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving import codecs
    from mlopsctl.serving.predictor import Predictor

    predictor = Predictor(load_model_dir(sys.argv[1]), "m", 1)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/invocations":
            table, _ = codecs.mlflow_table(json.loads(body))
            inputs = codecs.to_inputs(table, predictor)
            labels = predictor.predict_matrix(inputs.matrix).labels
            payload = json.dumps({"predictions": labels.tolist()}).encode()
        else:
            payload = b"ok"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http="httptools", loop="uvloop",
                log_level="warning", access_log=False, lifespan="off")
    """
)

# Runs in .venv: the predictor alone on one parsed row, as fast as a Python loop calls it.
FLOOR = textwrap.dedent(
    """\
    import sys, time
    import numpy as np
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving.predictor import Predictor

    predictor = Predictor(load_model_dir(sys.argv[1]), "m", 1)
    row = np.asarray([[float(v) for v in sys.argv[3].split(",")]])
    for _ in range(2000):
        predictor.predict_matrix(row)
    seconds, n = float(sys.argv[2]), 0
    times = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        predictor.predict_matrix(row)
        times.append(time.perf_counter() - t)
    times.sort()
    p50, p99 = times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3
    print(len(times) / sum(times), p50, p99)
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


def floor(model_dir: Path, row: list[float], seconds: float) -> tuple[float, float, float]:
    """(calls/s, p50 ms, p99 ms) of the predictor alone, in a fresh process."""
    out = _check(
        [sys.executable, "-c", FLOOR, str(model_dir), str(seconds), ",".join(map(str, row))]
    )
    rate, p50, p99 = (float(x) for x in out.split())
    return rate, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="load runs per server (median)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per load run")
    parser.add_argument(
        "--mlflow", action="store_true", help="set up .bench/mlflow-venv if missing (minutes)"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.duration <= 0:
        parser.error("--runs must be at least 1 and --duration above 0")

    wrk = ensure_wrk()
    with_mlflow = args.mlflow or (MLFLOW_VENV / "bin" / "mlflow").exists()
    mlflow_python = ensure_mlflow() if with_mlflow else None
    servers: list[subprocess.Popen[bytes]] = []
    load_before = os.getloadavg()[0]
    names = ["mlopsctl", "bare-uvicorn"] + (["mlflow"] if with_mlflow else [])
    loads: dict[str, list[Load]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
        root = tmp / "project"
        _say("training the quickstart model (200 trees) and registering it...")
        model_dir = make_project(root, env)
        columns, row = request_body(model_dir)
        body = json.dumps({"dataframe_split": {"columns": columns, "data": [row]}})
        script = tmp / "post.lua"
        script.write_text(POST_LUA.format(body=json.dumps(body)))
        bases: dict[str, str] = {}
        try:
            port = _free_port()
            bases["mlopsctl"] = f"http://127.0.0.1:{port}"
            log = tmp / "mlopsctl.log"
            proc = _start(
                [sys.executable, "-m", "mlopsctl", "serve", f"{MODEL}:1", "--port", str(port)],
                root,
                env,
                log,
            )
            servers.append(proc)
            _wait_ready(proc, f"{bases['mlopsctl']}/v2/health/ready", log)
            port = _free_port()
            bases["bare-uvicorn"] = f"http://127.0.0.1:{port}"
            log = tmp / "bare.log"
            proc = _start(
                [sys.executable, "-c", BARE_UVICORN, str(model_dir), str(port)], tmp, env, log
            )
            servers.append(proc)
            _wait_ready(proc, f"{bases['bare-uvicorn']}/ping", log)
            if mlflow_python is not None:
                mlflow_bin = mlflow_python.parent
                mlflow_model = tmp / "mlflow-model"
                mlflow_env = {
                    **env,
                    "MLFLOW_DISABLE_TELEMETRY": "true",
                    "PATH": f"{mlflow_bin}:{env.get('PATH', '')}",  # it starts uvicorn by name
                }
                _check(
                    [
                        str(mlflow_python),
                        "-c",
                        SAVE_MLFLOW_MODEL,
                        str(model_dir),
                        str(mlflow_model),
                    ],
                    env=mlflow_env,
                )
                port = _free_port()
                bases["mlflow"] = f"http://127.0.0.1:{port}"
                log = tmp / "mlflow.log"
                proc = _start(
                    [str(mlflow_bin / "mlflow"), "models", "serve", "-m", str(mlflow_model)]
                    + ["-h", "127.0.0.1", "-p", str(port), "--env-manager", "local"],
                    tmp,
                    mlflow_env,
                    log,
                )
                servers.append(proc)
                _wait_ready(proc, f"{bases['mlflow']}/ping", log)
            answers = {name: _predict(base, body.encode()) for name, base in bases.items()}
            if len({json.dumps(a) for a in answers.values()}) != 1:
                sys.exit(f"the servers disagree: {answers}")
            _say(f"servers ready and agree ({answers['mlopsctl']}); warming up...")
            for base in bases.values():
                run_wrk(wrk, f"{base}/invocations", script, 3)
            for i in range(args.runs):
                # rotate who goes first so a burst of noise does not always land on one side
                order = names[i % len(names) :] + names[: i % len(names)]
                for name in order:
                    load = run_wrk(wrk, f"{bases[name]}/invocations", script, args.duration)
                    _say(
                        f"run {i + 1} {name:12}: {load.rps:8.0f} req/s, p50 {load.p50_ms:6.2f} "
                        f"ms, p99 {load.p99_ms:6.2f} ms"
                    )
                    loads[name].append(load)
            time.sleep(1)
        finally:
            for proc in servers:
                _stop(proc)  # mlopsctl writes its prediction log at the graceful stop
        logged = sorted((root / ".mlops" / "logs" / "predictions").rglob("*.parquet"))
        floor_rate, floor_p50, floor_p99 = floor(model_dir, row, min(args.duration, 5.0))
    load = max(load_before, os.getloadavg()[0])

    medians = {name: _median(x) for name, x in loads.items()}
    m = medians["mlopsctl"]
    cores = os.cpu_count() or 1
    print(
        f"load: wrk -t1 -c{CONNECTIONS} -d{args.duration:g}s, one-row dataframe_split POST "
        f"/invocations on loopback, median of {args.runs} runs per server, one at a time"
    )
    if mlflow_python is not None:
        version = _check([str(mlflow_python), "-c", "import mlflow; print(mlflow.__version__)"])
        print(f"peer: MLflow {version.strip()} (mlflow models serve, --env-manager local)")
    else:
        print(
            "peer: MLflow skipped (.bench/mlflow-venv is missing; --mlflow sets it up, a few "
            "minutes)"
        )
    busy = " - BUSY, figures skewed" if load > cores else ""
    print(f"load average {load:.2f} on {cores} cores{busy}")
    print(f"{'':14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, x in medians.items():
        print(f"{name:14}{x.rps:10.0f}{x.p50_ms:10.2f}{x.p99_ms:10.2f}{x.errors:8d}")
    print(f"{'floor':14}{floor_rate:10.0f}{floor_p50:10.3f}{floor_p99:10.3f}       -")
    bare = medians["bare-uvicorn"]
    print(
        f"mlopsctl/bare-uvicorn: throughput {m.rps / bare.rps:.2f}x, "
        f"p99 {m.p99_ms / bare.p99_ms:.2f}x"
    )
    print(f"mlopsctl/floor: throughput {m.rps / floor_rate:.2f}x (the predictor alone, no HTTP)")
    verdicts = [m.rps >= BASELINE_GOAL * bare.rps, m.p99_ms < P99_GOAL_MS]
    print(
        f"goal >= {BASELINE_GOAL}x bare uvicorn: "
        f"{'met' if verdicts[0] else 'MISSED'}; goal p99 < {P99_GOAL_MS:.0f} ms: "
        f"{'met' if verdicts[1] else 'MISSED'}"
    )
    if "mlflow" in medians:
        f = medians["mlflow"]
        ratio = m.rps / f.rps if f.rps else float("inf")
        print(
            f"mlopsctl/mlflow: throughput {ratio:.1f}x, p50 {f.p50_ms / m.p50_ms:.1f}x lower, "
            f"p99 {f.p99_ms / m.p99_ms:.1f}x lower"
        )
        verdicts.append(ratio >= THROUGHPUT_GOAL)
        print(f"goal >= {THROUGHPUT_GOAL:.0f}x MLflow: {'met' if verdicts[-1] else 'MISSED'}")
    print(f"mlopsctl prediction log: {len(logged)} parquet file(s) written to the store")
    clean = all(x.errors == 0 for x in medians.values())
    if not clean:
        print("errors: some requests failed (non-2xx or socket errors): figures not comparable")
    print(f"verdict: {'met' if all(verdicts) and clean else 'MISSED'}")


if __name__ == "__main__":
    main()
