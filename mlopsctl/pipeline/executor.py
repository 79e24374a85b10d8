"""Run a planned pipeline: independent steps in parallel (up to `jobs`), each in its own
process through `python -m mlopsctl.exec` (a local subprocess, or a container: see
pipeline/runners.py), served from the shared step cache when nothing that decides its outputs
changed, and recorded as one immutable run record.

While it runs, the run has a live record with a heartbeat (mlopsctl.runs.RunLease). SIGINT and
SIGTERM stop the running steps and record the run as `interrupted`, with the signal, then raise
RunInterrupted. Each step works in a temporary folder named with this process's PID; folders
that killed runs left behind are removed when the next run starts."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl import __version__
from mlopsctl.digest import format_digest
from mlopsctl.pipeline import cache
from mlopsctl.pipeline.hashing import path_digest
from mlopsctl.pipeline.plan import PipelinePlan, StepPlan
from mlopsctl.pipeline.runners import LocalRunner, LogSink, StepRunner
from mlopsctl.provenance import git_info, library_versions, python_version, where, who
from mlopsctl.runs import RunLease, heartbeat_interval, new_run_id, pid_alive, save_run
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.records.run import RunRecord
    from mlopsctl.store.base import ObjectStore

_TAIL_LINES = 40
# A step's work folder: mlopsctl-<pid of the run>-<step>-<random>, in the temp folder.
_WORKDIR = re.compile(r"mlopsctl-([0-9]+)-[a-z][a-z0-9_-]*-[a-z0-9_]+")
KEPT_MARKER = ".mlopsctl-kept"  # in a failed step's folder, kept for the user to look at
_STALE_AFTER_S = 60.0


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run. `signum` gives the exit code (128 + signum, in
    cli/main.py); the message says what became of the run."""

    def __init__(self, signum: int, run_id: str | None = None, status: str | None = None):
        super().__init__(signum)
        self.signum = signum
        self.run_id = run_id
        self.status = status

    def __str__(self) -> str:
        said = f"interrupted by {_signal_name(self.signum)}"
        if self.run_id is None:
            return said
        if self.status == "interrupted":
            return f"{said}; run {self.run_id} recorded as interrupted"
        return f"{said} as run {self.run_id} ended; it is recorded as {self.status}"


class _StopSignals:
    """SIGINT and SIGTERM during a run (main thread only; a signal the process ignores stays
    ignored). The first one raises RunInterrupted while `armed` (the steps are running), and
    is only noted otherwise; any later one is only noted, so that stopping the steps and
    recording the run are never cut short."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(sig)
                if previous is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            if self.armed:
                raise RunInterrupted(signum)

    def arm(self) -> None:
        """From here on the first signal raises (at once if one came already)."""
        self.armed = True
        if self.signum is not None:
            raise RunInterrupted(self.signum)

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)


def remove_stale_workdirs(
    folder: Path | None = None, older_than_s: float | None = None
) -> list[Path]:
    """Remove the step work folders that killed runs left in the temp folder: named with the
    PID of a run that is gone, untouched for a minute (a running run's heartbeat keeps its
    own fresh, so a run this process cannot see is spared too), ours, and not kept on purpose
    for a failed step. Returns the folders removed."""
    folder = Path(tempfile.gettempdir()) if folder is None else folder
    if older_than_s is None:
        older_than_s = max(_STALE_AFTER_S, 3 * heartbeat_interval())
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed: list[Path] = []
    for entry in entries:
        match = _WORKDIR.fullmatch(entry.name)
        if not match:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or info.st_mtime > cutoff:
                continue
            if info.st_uid != os.getuid():
                continue  # someone else's
        except OSError:
            continue
        if pid_alive(int(match[1])) or os.path.lexists(os.path.join(entry.path, KEPT_MARKER)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


# Told of every step event as (step, state): waiting, running, cached, skipped, interrupted,
# "done in 1.2 s", "failed after 1.2 s". Called from the run's thread; the executor never
# prints (the CLI's callback is mlopsctl/cli/progress.py).
Progress = Callable[[str, str], None]


def no_progress(step: str, state: str) -> None:
    """The default progress callback: nothing to tell anyone."""


@dataclass
class RunOptions:
    jobs: int = 0  # 0: one per CPU
    use_cache: bool = True
    experiment: str | None = None
    dry_run: bool = False
    progress: Progress = no_progress
    echo_logs: bool = False
    image: dict[str, Any] | None = None  # set by the container runner: {ref, digest}
    register: bool = True  # register the model named in the spec's register: block
    backend: str = "local"  # local | docker | ray
    docker_host: str | None = None  # a docker.hosts entry of mlops.yaml (docker backend)
    address: str | None = None  # the Ray cluster: HOST:PORT, ray://HOST:PORT or auto (ray)
    image_ref: str | None = None  # run in this image instead of building the pipeline's
    requirements: bool = False  # ray: install the requirements file in Ray's pip environment
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
        sources.extend(sorted(p for p in root.glob(pattern) if p.is_file() and _is_source(p)))
    for source in sources:
        digest.update(source.name.encode() + b"\0" + path_digest(source).encode() + b"\0")
    return format_digest(digest.hexdigest())


def _is_source(path: Path) -> bool:
    """Bytecode is not code of its own: Python writes it beside the sources a step imports
    (__pycache__/*.pyc), derived from them, and hashing it would make every next run miss."""
    return path.suffix not in (".pyc", ".pyo") and "__pycache__" not in path.parts


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
        self._signal: str | None = None  # the signal that interrupted the run
        self._workdirs: set[Path] = set()  # of the steps running now
        self._workdirs_lock = threading.Lock()
        self._user: dict[str, Any] | None = None  # who started it, for the live record

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
            "data": {**data_digests(step, root), **self._store_digests(step)},
            "environment": self._environment(step),
        }

    def _store_digests(self, step: StepPlan) -> dict[str, str]:
        """What a component reads from the store by itself rather than through its inputs (an
        ingest's feature sets), by content: its module's ``store_digests`` says."""
        if step.kind != "component" or not step.code_modules:
            return {}
        import importlib

        reader = getattr(importlib.import_module(step.code_modules[0]), "store_digests", None)
        return dict(reader(step.params, self.plan.project_root, self.store)) if reader else {}

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
        """Run the steps and save the run record. On SIGINT or SIGTERM: stop the steps, record
        the run as interrupted, raise RunInterrupted."""
        started_at, t0 = stamp(), time.perf_counter()
        remove_stale_workdirs()
        lease = RunLease(
            self.store, lambda: self._live_record(started_at), on_beat=self._touch_workdirs
        )
        with _StopSignals() as signals:
            try:
                failed = self._run_steps(lease, signals)
                status = "failed" if failed else "succeeded"
                if self._interrupted:
                    status = "interrupted"
                record = self._run_record(status, started_at, time.perf_counter() - t0)
                save_run(self.store, cast("RunRecord", record))
            finally:
                lease.end()
        if signals.signum is not None:
            raise RunInterrupted(signals.signum, self.run_id, status)
        return record

    def _run_steps(self, lease: RunLease, signals: _StopSignals) -> bool:
        """Run every step that can run; True when one failed. Sets _interrupted."""
        plan, options = self.plan, self.options
        for name in plan.steps:
            options.progress(name, "waiting")
        pending = list(plan.steps)
        running: dict[Future[_Outcome], str] = {}
        jobs = options.jobs or os.cpu_count() or 1
        failed = False
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="step")
        try:
            signals.arm()
            lease.start()
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
            signals.armed = False
        except KeyboardInterrupt as exc:
            signals.armed = False  # a second signal must not cut the clean-up short
            self._interrupted = True
            signals.signum = int(getattr(exc, "signum", 0) or signals.signum or signal.SIGINT)
            self._signal = _signal_name(signals.signum)
            self.runner.stop_all()
            for future, name in running.items():
                outcome = future.result()
                self.steps[name].update(status="interrupted", error=outcome.error[-2000:])
                if outcome.workdir:  # nothing to look at: the log's tail is in the record
                    shutil.rmtree(outcome.workdir, ignore_errors=True)
                options.progress(name, "interrupted")
            running.clear()
        finally:
            pool.shutdown(wait=True)
        for part in self.steps.values():
            if part.get("status") == "running":  # started just as the signal came
                part["status"] = "interrupted"
        for name in pending:
            self.steps[name] = {"status": "skipped"}
            options.progress(name, "skipped")
        return failed

    def _live_record(self, started: str) -> dict[str, Any]:
        """What the live record says while the run is in progress (RunLease adds the owner
        and the heartbeat)."""
        plan = self.plan
        if self._user is None:
            self._user = who(plan.project_root)
        steps = dict(self.steps)  # a copy: the main thread adds steps as they start
        return {
            "id": self.run_id,
            "kind": "pipeline",
            "pipeline": plan.name,
            "experiment": self.experiment,
            "spec": {"path": plan.spec_display, "digest": plan.spec_digest},
            "params": plan.params,
            "overrides": plan.overrides,
            "started": started,
            "user": self._user,
            "where": where(),
            "order": list(plan.steps),
            "steps": {
                name: {"status": (steps.get(name) or {}).get("status", "waiting")}
                for name in plan.steps
            },
            "metrics": {},
        }

    def _touch_workdirs(self) -> None:
        """Keep the running steps' work folders fresh, so that no other run's clean-up takes
        them for a killed run's (remove_stale_workdirs)."""
        with self._workdirs_lock:
            folders = list(self._workdirs)
        for folder in folders:
            try:
                os.utime(folder)
            except OSError:
                pass

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
        workdir = Path(tempfile.mkdtemp(prefix=f"mlopsctl-{os.getpid()}-{step.name}-"))
        with self._workdirs_lock:
            self._workdirs.add(workdir)
        try:
            task = self._task(step, workdir)
            log_path = workdir / "step.log"
            with log_path.open("wb") as log:
                sink = LogSink(log, step.name, self.options.echo_logs)
                try:
                    ended = self.runner.run(step, task, workdir, sink)
                finally:
                    sink.close()
        finally:
            with self._workdirs_lock:
                self._workdirs.discard(workdir)
        seconds = time.perf_counter() - t0
        if ended.code == 0 and ended.result is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            return _Outcome(ok=True, result=ended.result, seconds=seconds)
        lines = log_path.read_text(errors="replace").splitlines()
        if ended.detail:
            lines.append(ended.detail)
        tail = "\n".join(lines[-_TAIL_LINES:])
        (workdir / KEPT_MARKER).touch()  # for the user to look at: no clean-up takes it
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
            "user": self._user or who(plan.project_root),
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
        if self._signal:
            record["signal"] = self._signal
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


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
