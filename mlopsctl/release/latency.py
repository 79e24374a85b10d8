"""The latency gate (``type: latency`` in a Release spec): start the candidate exactly as it
will serve, replay the evaluation rows against it and judge a latency percentile.

Where it runs (``hosts:``, or ``host:``, or ``release check --hosts a,b``; default ``local``):
  * ``local``: `mlopsctl serve NAME:VERSION --port 0 --no-log` as a subprocess of this machine;
  * ``docker``: the model's serving image (`mlopsctl build --serving`) on the default Docker
    engine; any other name: on that ``docker.hosts`` engine of mlops.yaml (the image is pushed to
    the project's registry and pulled there, as `mlopsctl deploy` does). The container runs the
    image's own command with host networking on a free port and logging off, and is removed
    afterwards.
  * GPU hosts (a ``docker.hosts`` entry with ``gpus: N``) get the container with N GPUs
    requested (Docker device requests, as pipeline steps get them). mlopsctl builds one serving
    image per model version, and it is CPU-only (``xgboost-cpu``, no CUDA libraries): until a
    CUDA serving build exists, the GPU host's image is that same image with the devices attached,
    so what is measured is the model on that host's CPUs, next to its GPUs. The table names the
    image and its digest, so nobody mistakes one for the other.
Nothing the gate sends reaches the prediction log (the server runs with logging off).

What it sends: for each batch size x concurrency, ``warmup`` requests (not measured), then
``requests`` requests of ``batch_size`` evaluation rows each (the rows cycled, as JSON
``dataframe_split`` to /invocations) from ``concurrency`` keep-alive connections, bounded by
``max_seconds``; the latency is the client's, from sending the request to reading the answer.

What it reports per host and combination: p50/p95/p99 in ms, throughput (predictions per
second: rows answered / wall time), a bootstrap confidence interval (``resamples`` resamples,
``level``) of the gate's percentile and, for a host with ``price_per_hour``, the cost of 1,000
predictions at that throughput. The verdict, like the compare gates: pass when the interval is
at or below ``max_ms``, fail when it is wholly above (or a request failed), inconclusive when it
straddles the bound (``on_inconclusive`` decides); over several hosts and combinations the worst
verdict counts. Every host's result is also a ``latency`` audit event of the candidate version,
with the host, image and image digest: the version's history keeps it.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlopsctl.containers.build import pull_image
from mlopsctl.containers.deploy import Target, build_serving_image, serve_command
from mlopsctl.containers.engine import engine_named
from mlopsctl.errors import CheckFailed, MlopsError, UsageError
from mlopsctl.events import record_event

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore

LOCAL = "local"
DOCKER = "docker"  # the default engine (DOCKER_HOST or the local socket)
READY_TIMEOUT_S = 120.0
DEFAULTS = {"warmup": 10, "requests": 200, "max_seconds": 30.0, "concurrency": 1, "batch_size": 1}
_READY_LINE = re.compile(r"^serving .* on (http://\S+)")
_BODIES = 64  # distinct request bodies per batch size (the rows cycle through them)
Log = Callable[[str], None]


@dataclass
class Server:
    """A started candidate: where it answers, and what runs it."""

    url: str
    host: str
    image: str
    digest: str | None = None
    gpus: int = 0


@dataclass
class Run:
    """One batch size x concurrency on one host."""

    host: str
    batch_size: int
    concurrency: int
    latencies_ms: Any = None
    failed: int = 0
    seconds: float = 0.0
    rows: int = 0
    first_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Predictions per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def hosts_of(gate: dict[str, Any], override: list[str] | None) -> list[str]:
    if override:
        return list(dict.fromkeys(override))
    if gate.get("hosts"):
        return list(dict.fromkeys(str(h) for h in gate["hosts"]))
    return [str(gate.get("host") or LOCAL)]


def _ints(value: Any, default: int) -> list[int]:
    if value is None:
        return [default]
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values]


# -- starting the candidate ------------------------------------------------------------------


@contextmanager
def local_server(project: Project, ref: str, *, trust: bool = False) -> Iterator[Server]:
    """`mlopsctl serve REF --port 0 --no-log` in the project, stopped (SIGTERM) afterwards."""
    command = [sys.executable, "-m", "mlopsctl", "serve", ref, "--port", "0", "--no-log"]
    if trust:
        command.append("--trust")
    proc = subprocess.Popen(
        command,
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            match = _READY_LINE.match(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, name="latency-serve", daemon=True)
    reader.start()
    try:
        if not ready.wait(READY_TIMEOUT_S) or not found:
            tail = " | ".join(lines[-3:]) or f"exit status {proc.poll()}"
            raise CheckFailed(
                f"the candidate did not start serving within {READY_TIMEOUT_S:.0f} s: {tail}",
                f"try it by hand: mlopsctl serve {ref}",
            )
        yield Server(found[0], LOCAL, f"mlopsctl serve (python {sys.version.split()[0]})")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        reader.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


@contextmanager
def docker_server(
    project: Project, ref: str, host: str, *, log: Log | None = None
) -> Iterator[Server]:
    """The serving image of REF on Docker host ``host`` (``docker``: the default engine), with
    host networking on a free port, its GPUs requested; removed afterwards."""
    remote = host != DOCKER
    engine = engine_named(project, host if remote else None)
    port = _free_port() if engine.local else 20000 + secrets.randbelow(20000)
    built = build_serving_image(project, ref, push=remote, port=port, log=log)
    model, version = built["model"]["name"], int(built["model"]["version"])
    client = engine.client()
    container = None
    try:
        image = built["image_id"]
        if remote:
            image = pull_image(client, built["image"], built["content_tag"], log)
        device_requests = None
        if engine.gpus:
            from docker.types import DeviceRequest

            device_requests = [DeviceRequest(count=engine.gpus, capabilities=[["gpu"]])]
        created = client.create_container(
            image,
            command=serve_command(model, version, port),
            name=f"latency-{model}-v{version}-{secrets.token_hex(3)}",
            labels={"dev.mlopsctl.latency": f"{model}:{version}"},
            host_config=client.create_host_config(
                network_mode="host", device_requests=device_requests
            ),
        )
        container = created["Id"]
        client.start(container)
        url = f"http://{Target.of(engine).address}:{port}"
        _wait_ready(url, lambda: _exited(client, container))
        yield Server(
            url,
            host,
            built["ref"],
            built.get("digest") or built.get("image_id"),
            gpus=engine.gpus,
        )
    finally:
        if container is not None:
            try:
                client.remove_container(container, force=True)
            except Exception:  # noqa: BLE001 - removal is best effort; the measurement stands
                pass
        client.close()


def _exited(client: Any, container: str) -> str | None:
    state = client.inspect_container(container).get("State") or {}
    if not state.get("Running") and state.get("Status") in ("exited", "dead"):
        raw = client.logs(container, stdout=True, stderr=True, tail=5)
        return f"exit status {state.get('ExitCode')}: " + " | ".join(
            raw.decode(errors="replace").strip().splitlines()
        )
    return None


def _wait_ready(url: str, exited: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        gone = exited()
        if gone:
            raise CheckFailed(f"the candidate's container stopped: {gone}")
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.5)
    raise CheckFailed(
        f"the candidate at {url} was not ready after {READY_TIMEOUT_S:.0f} s ({last})"
    )


# -- the load --------------------------------------------------------------------------------


def request_bodies(frame: pd.DataFrame, columns: list[str], batch_size: int) -> list[bytes]:
    """Up to _BODIES JSON bodies of ``batch_size`` consecutive rows each (the rows cycle)."""
    import numpy as np

    values = frame[columns].astype(object).where(frame[columns].notna(), None).to_numpy()
    n = len(values)
    if n == 0:
        raise UsageError("the evaluation data hold no rows to send")
    bodies = []
    for start in range(0, min(_BODIES * batch_size, max(n, batch_size)), batch_size):
        rows = values[np.arange(start, start + batch_size) % n].tolist()
        data = [[_plain(v) for v in row] for row in rows]
        bodies.append(json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode())
    return bodies


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def replay(
    url: str,
    bodies: list[bytes],
    *,
    batch_size: int,
    concurrency: int,
    warmup: int,
    requests: int,
    max_seconds: float,
    host: str = LOCAL,
) -> Run:
    """Send ``warmup`` then ``requests`` requests from ``concurrency`` connections (stopping at
    ``max_seconds``); the latency of each measured request, in ms."""
    from urllib.parse import urlsplit

    import numpy as np

    parts = urlsplit(url)
    address, port = parts.hostname or "127.0.0.1", parts.port or 80
    run = Run(host, batch_size, concurrency)
    lock = threading.Lock()
    counter = {"next": 0}
    latencies: list[float] = []
    total = warmup + requests
    deadline = [math.inf]
    measured_start = [0.0]

    def take() -> int | None:
        with lock:
            number = counter["next"]
            if number >= total or time.perf_counter() > deadline[0]:
                return None
            counter["next"] += 1
            if number == warmup:
                measured_start[0] = time.perf_counter()
                deadline[0] = measured_start[0] + max_seconds
            return number

    def worker() -> None:
        conn = http.client.HTTPConnection(address, port, timeout=60)
        try:
            while True:
                number = take()
                if number is None:
                    return
                body = bodies[number % len(bodies)]
                started = time.perf_counter()
                try:
                    conn.request(
                        "POST",
                        "/invocations",
                        body=body,
                        headers={"Content-Type": "application/json"},
                    )
                    answer = conn.getresponse()
                    payload = answer.read()
                    status = answer.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(address, port, timeout=60)
                    status, payload = 0, str(exc).encode()
                elapsed = (time.perf_counter() - started) * 1000.0
                if number < warmup:
                    continue
                with lock:
                    if status == 200:
                        latencies.append(elapsed)
                        run.rows += batch_size
                    else:
                        run.failed += 1
                        if run.first_error is None:
                            run.first_error = (
                                f"HTTP {status}: {payload[:200].decode(errors='replace')}"
                            )
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = time.perf_counter()
    run.seconds = end - measured_start[0] if measured_start[0] else 0.0
    run.latencies_ms = np.asarray(latencies, dtype="float64")
    return run


# -- judging ---------------------------------------------------------------------------------


def bootstrap_percentile(
    values: np.ndarray,
    percentile: float,
    *,
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a percentile (resamples drawn in batches)."""
    import numpy as np

    n = len(values)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    found = []
    batch = max(1, 2_000_000 // n)
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        index = rng.integers(0, n, size=(size, n))
        found.append(np.percentile(values[index], percentile, axis=1))
    estimates = np.concatenate(found)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(low), float(high)


def judge(run: Run, gate: dict[str, Any], price: float | None, seed: int) -> dict[str, Any]:
    """One table row: the numbers, the interval and the verdict of one run."""
    import numpy as np

    percentile = float(gate.get("percentile", 95))
    bound = float(gate["max_ms"])
    lat = run.latencies_ms if run.latencies_ms is not None else np.empty(0)
    row: dict[str, Any] = {
        "host": run.host,
        "batch_size": run.batch_size,
        "concurrency": run.concurrency,
        "requests": len(lat),
        "failed": run.failed,
        "seconds": round(run.seconds, 3),
        "throughput": round(run.throughput, 3),
        **run.extra,
    }
    if len(lat):
        for p in (50, 95, 99):
            row[f"p{p}_ms"] = float(np.percentile(lat, p))
        row["value_ms"] = float(np.percentile(lat, percentile))
        low, high = bootstrap_percentile(
            lat,
            percentile,
            level=float(gate.get("level", 0.95)),
            resamples=int(gate.get("resamples", 1000)),
            seed=seed,
        )
        row["ci"] = [low, high]
    if price is not None:
        row["price_per_hour"] = price
        row["cost_per_1000"] = (
            price / (run.throughput * 3600.0) * 1000.0 if run.throughput > 0 else None
        )
    if run.failed:
        row["verdict"] = "fail"
        row["note"] = f"{run.failed} request(s) failed; first: {run.first_error}"
    elif not len(lat):
        row["verdict"] = "inconclusive"
        row["note"] = "no request was measured"
    elif row["ci"][1] <= bound:
        row["verdict"] = "pass"
    elif row["ci"][0] > bound:
        row["verdict"] = "fail"
    else:
        row["verdict"] = "inconclusive"
    return row


def measure(
    project: Project,
    store: ObjectStore,
    model: str,
    version: int,
    frame: pd.DataFrame,
    columns: list[str],
    gate: dict[str, Any],
    *,
    hosts: list[str],
    seed: int = 0,
    trust: bool = False,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Every host x batch size x concurrency, as table rows; each host's rows are also recorded
    as a ``latency`` event of the version."""
    ref = f"{model}:{version}"
    settings = {**DEFAULTS, **{k: gate[k] for k in DEFAULTS if k in gate}}
    batches = _ints(gate.get("batch_size"), 1)
    concurrencies = _ints(gate.get("concurrency"), 1)
    rows: list[dict[str, Any]] = []
    for host in hosts:
        if host not in (LOCAL, DOCKER) and host not in project.docker_hosts:
            known = ", ".join([LOCAL, DOCKER, *sorted(project.docker_hosts)])
            raise UsageError(
                f"latency host '{host}' is neither local, docker nor a docker.hosts entry",
                f"use one of: {known}",
            )
        opened = (
            local_server(project, ref, trust=trust)
            if host == LOCAL
            else docker_server(project, ref, host, log=log)
        )
        price = project.host_price(host)
        host_rows = []
        try:
            with opened as server:
                for batch in batches:
                    bodies = request_bodies(frame, columns, batch)
                    for concurrency in concurrencies:
                        run = replay(
                            server.url,
                            bodies,
                            batch_size=batch,
                            concurrency=concurrency,
                            warmup=int(settings["warmup"]),
                            requests=int(settings["requests"]),
                            max_seconds=float(settings["max_seconds"]),
                            host=host,
                        )
                        run.extra = {
                            "image": server.image,
                            "digest": server.digest,
                            "gpus": server.gpus,
                        }
                        host_rows.append(judge(run, gate, price, seed))
        except MlopsError as exc:
            host_rows.append(
                {"host": host, "verdict": "fail", "note": f"could not measure: {exc.one_line()}"}
            )
        record_event(
            store,
            "latency",
            model=model,
            version=version,
            host=host,
            image=host_rows[0].get("image") if host_rows else None,
            digest=host_rows[0].get("digest") if host_rows else None,
            percentile=float(gate.get("percentile", 95)),
            max_ms=float(gate["max_ms"]),
            results=host_rows,
        )
        rows += host_rows
    return rows


def verdict_of(rows: list[dict[str, Any]]) -> str:
    verdicts = {r["verdict"] for r in rows}
    return next((v for v in ("fail", "inconclusive", "pass") if v in verdicts), "inconclusive")
