"""Where a step's process runs. The executor decides what runs and records it; a runner only
starts `python -m mlopsctl.exec TASK.json` somewhere, streams its output into the step's log
and hands back the exit status and the result file. `LocalRunner` starts a subprocess here;
the Docker runner (mlopsctl.containers.runner) starts a container from the pipeline's image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.pipeline.executor import RunOptions
    from mlopsctl.pipeline.plan import PipelinePlan, StepPlan

# The read end of a pipe whose write end only the runner holds: `python -m mlopsctl.exec` sees
# end-of-file on it when the runner's process is gone, however it died (SIGKILL included), and
# then stops its own process group (mlopsctl/exec.py).
PARENT_FD_ENV = "MLOPSCTL_PARENT_FD"
STOP_GRACE_S = 5.0  # between SIGTERM and SIGKILL when stopping a step's process group


@dataclass
class StepExit:
    """How a step's process ended: its exit status, the parsed result file on success, and a
    line to add to the log when the runner itself saw something go wrong."""

    code: int
    result: dict[str, Any] | None = None
    detail: str = ""


class LogSink:
    """A step's output: every byte into its log file, each line echoed to stderr with a
    `[step]` prefix when asked. Accepts chunks that split lines anywhere."""

    def __init__(self, log: IO[bytes], step: str, echo: bool) -> None:
        self.log = log
        self.prefix = f"[{step}] ".encode()
        self.echo = echo
        self._partial = b""

    def write(self, data: bytes) -> None:
        self.log.write(data)
        if not self.echo:
            return
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if lines:
            sys.stderr.buffer.write(b"".join(self.prefix + line + b"\n" for line in lines))
            sys.stderr.flush()

    def close(self) -> None:
        self.log.flush()
        if self.echo and self._partial:
            sys.stderr.buffer.write(self.prefix + self._partial + b"\n")
            sys.stderr.flush()
        self._partial = b""


class StepRunner:
    """The seam between the executor and the place a step runs."""

    name = "base"

    def run(self, step: StepPlan, task: dict[str, Any], workdir: Path, log: LogSink) -> StepExit:
        """Run one task to completion (called from a worker thread)."""
        raise NotImplementedError

    def stop_all(self) -> None:
        """Stop every step still running (Ctrl-C); `run` then returns for each of them."""

    def close(self) -> None:
        """Release connections once the run is over."""


class LocalRunner(StepRunner):
    """One child process per step, in its own session so that Ctrl-C reaches only us and we
    stop each step's whole process group (a shell command's children included). Each step
    also gets the read end of a pipe (PARENT_FD_ENV) so that it stops itself, group and all,
    if this process dies without stopping it."""

    name = "local"

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def run(self, step: StepPlan, task: dict[str, Any], workdir: Path, log: LogSink) -> StepExit:
        task_path = workdir / "task.json"
        task_path.write_text(json.dumps(task))
        # os.pipe() makes both ends non-inheritable: only this step gets the read end (pass_fds)
        # and no child at all gets the write end, so EOF means this process is gone.
        watch, alive = os.pipe()
        try:
            env = dict(os.environ, PYTHONUNBUFFERED="1", **step.env)
            env[PARENT_FD_ENV] = str(watch)
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlopsctl.exec", str(task_path)],
                cwd=self.project_root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                pass_fds=(watch,),
            )
        except BaseException:
            os.close(alive)
            raise
        finally:
            os.close(watch)
        with self._lock:
            self._procs[step.name] = proc
            stopping = self._stopping
        try:
            if stopping:  # stop_all ran while this step was starting
                _stop_groups([proc])
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                log.write(line)
            code = proc.wait()
        finally:
            with self._lock:
                self._procs.pop(step.name, None)
            os.close(alive)
        if code != 0:
            return StepExit(code)
        return StepExit(code, json.loads(Path(task["result"]).read_text()))

    def stop_all(self) -> None:
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        _stop_groups(procs)


def _stop_groups(procs: list[subprocess.Popen[bytes]], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to each step's process group, up to `grace` seconds for them to end, then
    SIGKILL to whatever of each group is still there."""
    import signal

    def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session made the step its group's leader
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone (PermissionError: macOS says so for a zombie leader)

    for proc in procs:
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        signal_group(proc, signal.SIGKILL)  # whatever of the group is still alive


def prepare_local_run(
    project: Project, plan: PipelinePlan, store_config: dict[str, Any], options: RunOptions
) -> LocalRunner:
    """The runner factory of the `local` backend (mlopsctl.app.runners): nothing to check
    before the run, each step is a child process started in the project's root."""
    del project, store_config, options  # the same signature as every backend's factory
    return LocalRunner(plan.project_root)
