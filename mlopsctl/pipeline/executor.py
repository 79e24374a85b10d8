"""Run a planned pipeline: independent steps in parallel (up to `jobs`), each in its own
process through `python -m mlopsctl.exec` (a local subprocess, or a container: see
pipeline/runners.py), served from the shared step cache when nothing that decides its outputs
changed, and recorded as one immutable run record."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import __version__
from mlopsctl.digest import format_digest
from mlopsctl.pipeline import cache
from mlopsctl.pipeline.hashing import path_digest
from mlopsctl.pipeline.plan import PipelinePlan, StepPlan
from mlopsctl.pipeline.runners import LocalRunner, LogSink, StepRunner
from mlopsctl.provenance import git_info, library_versions, python_version, where, who
from mlopsctl.runs import new_run_id, save_run
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

_TAIL_LINES = 40


class Progress:
    """One line per step event on stderr; silent unless enabled (a terminal, or -v)."""

    def __init__(self, enabled: bool, width: int = 12) -> None:
        self.enabled = enabled
        self.width = width
        self._lock = threading.Lock()

    def __call__(self, step: str, state: str) -> None:
        if self.enabled:
            with self._lock:
                sys.stderr.write(f"  {step:<{self.width}} {state}\n")
                sys.stderr.flush()


@dataclass
class RunOptions:
    jobs: int = 0  # 0: one per CPU
    use_cache: bool = True
    experiment: str | None = None
    dry_run: bool = False
    progress: Progress = field(default_factory=lambda: Progress(False))
    echo_logs: bool = False
    image: dict[str, Any] | None = None  # set by the container runner: {ref, digest}
    register: bool = True  # register the model named in the spec's register: block
    backend: str = "local"  # local | docker
    docker_host: str | None = None  # a docker.hosts entry of mlops.yaml (docker backend)
    image_ref: str | None = None  # run in this image instead of building the pipeline's
    network: str | None = None  # container network mode (docker backend)
    build_log: Callable[[str], None] | None = None  # image build output (docker backend)
    # Why this run was started, kept in its record (e.g. the trigger that fired: mlopsctl ct).
    reason: dict[str, Any] | None = None


@dataclass
class _Outcome:
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    workdir: str = ""
    seconds: float = 0.0


def _code_digest(step: StepPlan, root: Path) -> str:
    import importlib.util

    digest = hashlib.sha256()
    sources: list[Path] = []
    for module in step.code_modules:
        spec = importlib.util.find_spec(module)
        if spec and spec.origin:
            sources.append(Path(spec.origin))
    if step.kind == "python":
        sys.path.insert(0, str(root))
        try:
            spec = importlib.util.find_spec(step.target.partition(":")[0])
        finally:
            sys.path.remove(str(root))
        if spec and spec.origin:
            sources.append(Path(spec.origin))
    for pattern in step.code:
        sources.extend(sorted(p for p in root.glob(pattern) if p.is_file()))
    for source in sources:
        digest.update(source.name.encode() + b"\0" + path_digest(source).encode() + b"\0")
    return format_digest(digest.hexdigest())


def data_digests(step: StepPlan, root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in step.file_params:
        value = step.params.get(key)
        if not isinstance(value, str) or not value:
            continue
        if "://" in value:
            found[key] = _remote_fingerprint(value)
        else:
            found[key] = path_digest(root / value)
    return found


def _remote_fingerprint(url: str) -> str:
    """For s3:// data: the object's ETag and size (reading it all just to hash it would cost
    more than most steps); a changed object gets a new ETag, so the cache key changes."""
    if not url.startswith("s3://"):
        return url
    import boto3

    bucket, _, key = url[5:].partition("/")
    head = boto3.client("s3").head_object(Bucket=bucket, Key=key)
    return f"{url}#etag={head['ETag'].strip(chr(34))}#size={head['ContentLength']}"


class Executor:
    def __init__(
        self,
        plan: PipelinePlan,
        store: ObjectStore,
        store_config: dict[str, Any],
        options: RunOptions,
        runner: StepRunner | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.store_config = store_config
        self.options = options
        self.runner = runner or LocalRunner(plan.project_root)
        self.run_id = new_run_id()
        self.experiment = options.experiment or plan.name
        self.results: dict[str, dict[str, Any]] = {}  # step -> outputs
        self.steps: dict[str, dict[str, Any]] = {}  # step -> its part of the run record
        self._interrupted = False

    # -- keys -----------------------------------------------------------------------------
    def key_material(self, step: StepPlan) -> dict[str, Any]:
        root = self.plan.project_root
        return {
            "kind": step.kind,
            "target": step.target,
            "code": _code_digest(step, root),
            "params": step.params,
            "env_vars": step.env,
            "inputs": {
                name: self.results[up][out]["digest"] for name, (up, out) in step.inputs.items()
            },
            "outputs": sorted(step.outputs),
            "data": data_digests(step, root),
            "environment": self._environment(step),
        }

    def _environment(self, step: StepPlan) -> dict[str, Any]:
        image = self.options.image
        if image:
            # In a container the image decides Python and every library: its digest (never
            # its tag, which can move) says it all, whatever is installed on this machine.
            return {"image": image["digest"]}
        return {
            "python": python_version(),
            "libraries": library_versions(step.libraries),
            "image": None,
        }

    # -- running --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        plan, options = self.plan, self.options
        started_at, t0 = stamp(), time.perf_counter()
        for name in plan.steps:
            options.progress(name, "waiting")
        pending = list(plan.steps)
        running: dict[Future[_Outcome], str] = {}
        jobs = options.jobs or os.cpu_count() or 1
        failed = False
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="step")
        try:
            while pending or running:
                progressed = True
                while progressed and not failed:
                    progressed = False
                    for name in list(pending):
                        step = plan.steps[name]
                        if any(up not in self.results for up in step.upstream):
                            continue
                        if len(running) >= jobs:
                            break
                        pending.remove(name)
                        progressed = True
                        material = self.key_material(step)
                        key = cache.cache_key(material)
                        if options.use_cache and self._serve_from_cache(step, key, material):
                            continue
                        self.steps[name] = self._step_record(step, key, material, "running")
                        options.progress(name, "running")
                        running[pool.submit(self._execute, step)] = name
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    if not self._finish(plan.steps[name], future.result()):
                        failed = True
        except KeyboardInterrupt:
            self._interrupted = True
            self.runner.stop_all()
            for future, name in running.items():
                outcome = future.result()
                self.steps[name].update(status="interrupted", error=outcome.error[-2000:])
                options.progress(name, "interrupted")
            running.clear()
        finally:
            pool.shutdown(wait=True)
        for name in pending:
            self.steps[name] = {"status": "skipped"}
            options.progress(name, "skipped")

        status = "interrupted" if self._interrupted else ("failed" if failed else "succeeded")
        record = self._run_record(status, started_at, time.perf_counter() - t0)
        save_run(self.store, record)
        if self._interrupted:
            raise KeyboardInterrupt
        return record

    def _serve_from_cache(self, step: StepPlan, key: str, material: dict[str, Any]) -> bool:
        entry = cache.lookup(self.store, key)
        if entry is None:
            return False
        self.results[step.name] = entry["outputs"]
        record = self._step_record(step, key, material, "cached")
        record.update(
            outputs=entry["outputs"],
            metrics=entry.get("metrics", {}),
            info=entry.get("info", {}),
            cached_from=entry.get("run_id"),
            seconds=0.0,
        )
        self.steps[step.name] = record
        self.options.progress(step.name, "cached")
        return True

    def _step_record(
        self, step: StepPlan, key: str, material: dict[str, Any], status: str
    ) -> dict[str, Any]:
        return {
            "status": status,
            "kind": step.kind,
            "target": step.target,
            "cache_key": key,
            "params": step.params,
            "inputs": material["inputs"],
            "data": material["data"],
            "code": material["code"],
        }

    def _finish(self, step: StepPlan, outcome: _Outcome) -> bool:
        record = self.steps[step.name]
        record["seconds"] = round(outcome.seconds, 3)
        if not outcome.ok:
            record.update(status="failed", error=outcome.error, workdir=outcome.workdir)
            self.options.progress(step.name, f"failed after {outcome.seconds:.1f} s")
            return False
        result = outcome.result
        self.results[step.name] = result["outputs"]
        record.update(
            status="executed",
            outputs=result["outputs"],
            metrics=result.get("metrics", {}),
            info=result.get("info", {}),
        )
        cache.save(
            self.store,
            record["cache_key"],
            {
                "outputs": result["outputs"],
                "metrics": result.get("metrics", {}),
                "info": result.get("info", {}),
                "run_id": self.run_id,
                "step": step.name,
                "created": stamp(),
            },
        )
        self.options.progress(step.name, f"done in {outcome.seconds:.1f} s")
        return True

    def _task(self, step: StepPlan, workdir: Path) -> dict[str, Any]:
        inputs = {name: self.results[up][out] for name, (up, out) in step.inputs.items()}
        return {
            "run_id": self.run_id,
            "step": step.name,
            "kind": step.kind,
            "target": step.target,
            "params": step.params,
            "env": step.env,
            "inputs": inputs,
            "outputs": sorted(step.outputs),
            "store": self.store_config,
            "project_root": str(self.plan.project_root),
            "workdir": str(workdir),
            "result": str(workdir / "result.json"),
            "experiment": self.experiment,
        }

    def _execute(self, step: StepPlan) -> _Outcome:
        """Runs in a worker thread: the runner runs the step's process to completion."""
        t0 = time.perf_counter()
        workdir = Path(tempfile.mkdtemp(prefix=f"mlopsctl-{step.name}-"))
        task = self._task(step, workdir)
        log_path = workdir / "step.log"
        with log_path.open("wb") as log:
            sink = LogSink(log, step.name, self.options.echo_logs)
            try:
                ended = self.runner.run(step, task, workdir, sink)
            finally:
                sink.close()
        seconds = time.perf_counter() - t0
        if ended.code == 0 and ended.result is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            return _Outcome(ok=True, result=ended.result, seconds=seconds)
        lines = log_path.read_text(errors="replace").splitlines()
        if ended.detail:
            lines.append(ended.detail)
        tail = "\n".join(lines[-_TAIL_LINES:])
        return _Outcome(ok=False, error=tail, workdir=str(workdir), seconds=seconds)

    # -- the record -----------------------------------------------------------------------
    def _run_record(self, status: str, started: str, seconds: float) -> dict[str, Any]:
        plan = self.plan
        metrics: dict[str, float] = {}
        data: dict[str, str] = {}
        for name in plan.steps:
            step = self.steps.get(name, {})
            metrics.update(step.get("metrics") or {})
            for key, digest in (step.get("data") or {}).items():
                data[f"{name}.{key}"] = digest
        libraries = sorted({lib for s in plan.steps.values() for lib in s.libraries})
        record: dict[str, Any] = {
            "id": self.run_id,
            "kind": "pipeline",
            "pipeline": plan.name,
            "experiment": self.experiment,
            "status": status,
            "spec": {"path": plan.spec_display, "digest": plan.spec_digest},
            "params": plan.params,
            "overrides": plan.overrides,
            "started": started,
            "ended": stamp(),
            "duration_s": round(seconds, 3),
            "git": git_info(plan.project_root),
            "user": who(plan.project_root),
            "where": where(),
            "environment": {
                "mlopsctl": __version__,
                "python": python_version(),
                "libraries": library_versions(libraries),
            },
            "image": self.options.image,
            "store": self.store_config.get("url"),
            "data": data,
            # Records are canonical JSON (sorted keys), so the run order is kept explicitly.
            "order": list(plan.steps),
            "steps": {name: self.steps.get(name, {"status": "skipped"}) for name in plan.steps},
            "metrics": metrics,
        }
        if self.options.reason:
            record["reason"] = self.options.reason
        return record

    # -- dry run --------------------------------------------------------------------------
    def dry_run(self) -> list[dict[str, Any]]:
        """What a run would do: each step cached, or to run (with the reason when known)."""
        rows: list[dict[str, Any]] = []
        for name, step in self.plan.steps.items():
            if all(up in self.results for up in step.upstream):
                key = cache.cache_key(self.key_material(step))
                entry = cache.lookup(self.store, key) if self.options.use_cache else None
                if entry is not None:
                    self.results[name] = entry["outputs"]
                    rows.append({"step": name, "action": "cached", "cache_key": key})
                    continue
                rows.append({"step": name, "action": "run", "cache_key": key})
            else:
                rows.append({"step": name, "action": "run", "cache_key": None})
        return rows
