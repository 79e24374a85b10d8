"""The one entry point that runs a pipeline step, locally or inside a container:

    python -m mlopsctl.exec TASK.json

It fetches the step's inputs from the store by digest (verified), runs the component, shell
command, Python function or notebook (papermill) in a fresh work folder, stores every output as
a blob, and writes RESULT (the task's `result` path) with the output digests, metrics and facts.
Exit 0 on success; on failure a one-line reason is the last line of stderr.

Started by the local runner, it leads its own process group and watches a pipe from the runner
(PARENT_FD_ENV): when the runner's process is gone, however it died, it stops that group (the
`run:` command's processes included) and itself.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from mlopsctl.errors import MlopsError
from mlopsctl.pipeline.runners import PARENT_FD_ENV

_ORPHAN_GRACE_S = 2.0  # SIGTERM to the group, then this long before SIGKILL
_ORPHANED = threading.Event()  # set when the runner is gone


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    from mlopsctl.components.base import StepContext
    from mlopsctl.store import open_store
    from mlopsctl.store.artifacts import fetch_artifact, store_output

    workdir = Path(task["workdir"])
    store_cfg = task["store"]
    store = open_store(
        store_cfg["url"], s3_options=store_cfg.get("s3_options"), base_dir=store_cfg.get("base_dir")
    )
    in_dir, out_dir = workdir / "inputs", workdir / "outputs"
    in_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, Path] = {}
    for name, ref in task["inputs"].items():
        inputs[name] = fetch_artifact(store, ref, in_dir / name)
    outputs = {name: out_dir / name for name in task["outputs"]}
    project_root = Path(task["project_root"])
    ctx = StepContext(
        step=task["step"],
        run_id=task["run_id"],
        params=task["params"],
        inputs=inputs,
        outputs=outputs,
        workdir=workdir,
        project_root=project_root,
        store=store,
        experiment=task.get("experiment"),
    )
    engine = task.get("engine") or {}
    if "ray" in engine:  # on a Ray cluster: the step may hand work out to it (tune's trials)
        from mlopsctl.engines.ray import parallel_map

        ctx.parallel = parallel_map(engine["ray"])
    started = time.perf_counter()
    kind = task["kind"]
    if kind == "component":
        from mlopsctl.components import get_component

        get_component(task["target"]).run(ctx)
    elif kind == "python":
        _call_python(task["target"], ctx, project_root)
    elif kind in ("run", "argv"):
        _run_command(task["target"], ctx, task.get("env") or {}, shell=kind == "run")
    elif kind == "notebook":
        _run_notebook(task["target"], ctx, task.get("env") or {})
    else:
        raise MlopsError(
            f"unknown step kind {kind!r}", "this task file was not written by mlopsctl"
        )
    elapsed = time.perf_counter() - started

    stored: dict[str, Any] = {}
    for name, path in outputs.items():
        if not path.exists():
            raise MlopsError(
                f"step '{ctx.step}' did not write its output '{name}'",
                f"write it to the path given for {{outputs.{name}}}",
            )
        stored[name] = store_output(store, path, workdir)
    return {
        "outputs": stored,
        "metrics": {k: float(v) for k, v in ctx.metrics.items()},
        "info": ctx.info,
        "seconds": round(elapsed, 4),
    }


def _call_python(target: str, ctx: Any, project_root: Path) -> None:
    import importlib

    module_name, _, function = target.partition(":")
    sys.path.insert(0, str(project_root))
    module = importlib.import_module(module_name)
    result = getattr(module, function)(ctx)
    if isinstance(result, dict):
        ctx.metrics.update({k: float(v) for k, v in result.items()})


NOTEBOOK_OUTPUT = "notebook"  # mlopsctl.pipeline.plan.NOTEBOOK_OUTPUT


def _run_notebook(target: str, ctx: Any, env: dict[str, str]) -> None:
    """A `notebook:` step: papermill runs the notebook on this environment's python3 kernel,
    from the project root, with the step's `with:` values injected as variables (in the cell
    tagged parameters, or at the top), and `inputs` and `outputs` as dicts of paths by name,
    `metrics_file` for metrics as a run: step writes them. The executed notebook is the output
    named `notebook`; when a cell fails it is kept in the work folder and the error names the
    cell."""
    import shutil

    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        raise MlopsError(
            "notebook steps need papermill, ipykernel and nbconvert, which are not installed",
            "pip install 'mlopsctl[notebook]' (in the step's image too, for --backend docker)",
        ) from None
    source = ctx.project_root / target
    executed = ctx.workdir / "executed.ipynb"
    metrics_file = ctx.workdir / "metrics.json"
    parameters = {
        **ctx.params,
        "inputs": {k: str(v) for k, v in ctx.inputs.items()},
        "outputs": {k: str(v) for k, v in ctx.outputs.items() if k != NOTEBOOK_OUTPUT},
        "metrics_file": str(metrics_file),
    }
    # The kernel is a child of this process: it sees the step's environment.
    os.environ.update(env)
    os.environ["MLOPS_METRICS_FILE"] = str(metrics_file)
    os.environ["MLOPS_PARAMS"] = json.dumps(ctx.params)
    os.environ["MLOPS_RUN_ID"] = ctx.run_id
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name="python3",
            language="python",
            cwd=str(ctx.project_root),
            progress_bar=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
        )
    except PapermillExecutionError as exc:
        raise MlopsError(
            f"notebook {target} failed in {_failed_cell(source, str(exc.source))}: "
            f"{exc.ename}: {exc.evalue}",
            f"the executed notebook, with the traceback, is kept at {executed}",
        ) from None
    shutil.copyfile(executed, ctx.outputs[NOTEBOOK_OUTPUT])
    if metrics_file.exists():
        data = json.loads(metrics_file.read_text())
        ctx.metrics.update({k: float(v) for k, v in data.items()})


def _failed_cell(notebook: Path, source: str) -> str:
    """ "cell 3 (`df = load(...)`)": the failing cell's place in the user's notebook (papermill's
    own injected and error cells not counted) and its first line."""
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    shown = f" (`{first[:60]}`)" if first else ""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        cells = []
    for number, cell in enumerate(cells, start=1):
        text = cell.get("source") or ""
        if ("".join(text) if isinstance(text, list) else str(text)) == source:
            return f"cell {number}{shown}"
    return f"a cell{shown}"


def _run_command(target: str, ctx: Any, env: dict[str, str], shell: bool) -> None:
    """A `run:` step: a shell command, or (shell False) an argument list run without a shell.
    Each {inputs.x} / {outputs.y} becomes its path here as one word (mlopsctl.pipeline.command);
    the values of ${params.x} / ${env.X} went in, shell-quoted, when the run was planned."""
    from mlopsctl.pipeline.command import argv, fill

    paths = {f"inputs.{k}": str(v) for k, v in ctx.inputs.items()}
    paths.update({f"outputs.{k}": str(v) for k, v in ctx.outputs.items()})
    command: str | list[str] = fill(target, paths) if shell else argv(target, paths)
    shown = command if isinstance(command, str) else shlex.join(command)
    metrics_file = ctx.workdir / "metrics.json"
    child_env = dict(os.environ, **env)
    child_env["MLOPS_METRICS_FILE"] = str(metrics_file)
    child_env["MLOPS_PARAMS"] = json.dumps(ctx.params)
    child_env["MLOPS_RUN_ID"] = ctx.run_id
    try:
        proc = subprocess.run(
            command, shell=shell, cwd=ctx.project_root, env=child_env, check=False
        )
    except OSError as exc:  # run: as a list names a program that cannot be started
        program = "/bin/sh" if isinstance(command, str) else command[0]
        raise MlopsError(
            f"cannot start {program!r}: {exc.strerror or exc}",
            "the first element of run: must be a program on PATH or a path to one",
        ) from None
    if proc.returncode != 0:
        raise MlopsError(f"command exited with status {proc.returncode}: {shown}")
    if metrics_file.exists():
        data = json.loads(metrics_file.read_text())
        ctx.metrics.update({k: float(v) for k, v in data.items()})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["kfp"]:  # a step of a pipeline exported by `mlopsctl export kfp`
        return _kfp_task(args[1:])
    if len(args) != 1:
        sys.stderr.write("usage: python -m mlopsctl.exec TASK.json\n")
        return 2
    task = json.loads(Path(args[0]).read_text())
    try:
        result = run_task(task)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure must reach the run record
        if isinstance(exc, MlopsError):
            sys.stderr.write(f"step failed: {exc.one_line()}\n")
        else:
            traceback.print_exc()
            sys.stderr.write(f"step failed: {type(exc).__name__}: {exc}\n")
        return 1
    tmp = Path(task["result"] + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, task["result"])
    return 0


def _kfp_task(args: list[str]) -> int:
    from mlopsctl.engines.kfp import run_kfp_task

    return run_kfp_task(args)


# -- when the runner dies -------------------------------------------------------------------
def watch_parent() -> threading.Thread | None:
    """When started with PARENT_FD_ENV (the read end of a pipe whose write end only the
    runner holds), a daemon thread waits for end-of-file on it, which comes when the runner's
    process is gone, and then stops this process group: SIGTERM to the others, a short grace,
    SIGKILL to the group, this process included (nobody is left to record the step)."""
    text = os.environ.pop(PARENT_FD_ENV, "")  # not for the step's own children
    if not text:
        return None
    try:
        fd = int(text)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return None
    watchdog = threading.Thread(target=_wait_for_parent, args=(fd,), name="parent", daemon=True)
    watchdog.start()
    return watchdog


def _wait_for_parent(fd: int) -> None:
    try:
        while os.read(fd, 512):  # the runner never writes: this returns b"" when it is gone
            pass
    except OSError:
        pass
    _ORPHANED.set()
    _stop_own_group(_ORPHAN_GRACE_S)


def _stop_own_group(grace: float) -> None:
    me, group = os.getpid(), os.getpgrp()
    if group != me:
        os.kill(me, signal.SIGKILL)  # not a group of our own: only this process is ours
    others = _group_members(group, me)
    if others:
        for pid in others:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while _group_members(group, me) and time.monotonic() < deadline:
            time.sleep(0.05)
    os.killpg(group, signal.SIGKILL)  # whatever is left, and this process


def _group_members(group: int, me: int) -> list[int] | None:
    """The live processes of process group `group` other than `me`, read from /proc; None
    where there is no /proc (then the group gets SIGKILL without the SIGTERM first)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found = []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if len(fields) > 2 and fields[2] == str(group) and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return found


def settle(watchdog: threading.Thread | None) -> None:
    """At exit: when the runner is gone, let the watchdog finish stopping the group (it ends
    this process) instead of exiting and leaving the group's stragglers behind."""
    if watchdog is not None and _ORPHANED.is_set():
        watchdog.join(timeout=_ORPHAN_GRACE_S + 5)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    _watchdog = watch_parent()
    try:
        _code = main()
    finally:
        settle(_watchdog)
    sys.exit(_code)
