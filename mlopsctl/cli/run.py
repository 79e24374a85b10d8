from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, NetworkOpt
from mlopsctl.cli.output import emit_json, err, out, stderr_is_terminal
from mlopsctl.errors import ExitCode
from mlopsctl.names import check_name


class Backend(str, Enum):
    local = "local"
    docker = "docker"
    ray = "ray"


def _build_log(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def run(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (kind: Pipeline).")],
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="Override a parameter: -p model.max_depth=6."),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", "-e", help="Experiment name (default: pipeline name)."),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="Steps run at once (0: one per CPU).")
    ] = 0,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, ignoring the cache.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would run or be cached.")
    ] = False,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Do not register the model (register: block).")
    ] = False,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend", help="Where steps run: local processes, containers or a Ray cluster."
        ),
    ] = Backend.local,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Docker host from mlops.yaml (docker.hosts) for the steps."),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Run in this image instead of building the pipeline's."),
    ] = None,
    network: NetworkOpt = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster (--backend ray): HOST:PORT of its head, ray://HOST:PORT, or auto "
            "(default: RAY_ADDRESS, else the cluster started on this machine).",
        ),
    ] = None,
    requirements: Annotated[
        bool,
        typer.Option(
            "--requirements",
            help="Ray backend: install the pipeline's requirements file (image.requirements, "
            "else requirements.txt) on every node, in Ray's pip runtime environment.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a pipeline: independent steps in parallel, unchanged steps from the shared cache,
    the run recorded in the store. With --backend docker every step runs in the pipeline's
    image (built first when its content changed). Exit 1 when a step fails."""
    if experiment is not None:
        check_name("experiment", experiment)  # before any step runs or anything is written
    from mlopsctl.app.run import run_pipeline
    from mlopsctl.cli.progress import StepProgress
    from mlopsctl.pipeline.executor import RunOptions

    verbose = bool(getattr(ctx.find_root().obj, "verbose", False))
    options = RunOptions(
        jobs=jobs,
        use_cache=not no_cache,
        experiment=experiment,
        dry_run=dry_run,
        progress=StepProgress(),
        echo_logs=verbose,
        register=not no_register,
        backend=backend.value,
        docker_host=host,
        address=address,
        image_ref=image,
        requirements=requirements,
        network=network,
        build_log=_build_log if stderr_is_terminal() or verbose else None,
    )
    if backend is Backend.local and (host or image or network):
        raise typer.BadParameter("--host, --image and --network need --backend docker")
    if backend is Backend.ray and (host or network):
        raise typer.BadParameter("--host and --network need --backend docker")
    if (address is not None or requirements) and backend is not Backend.ray:
        raise typer.BadParameter("--address and --requirements need --backend ray")
    record = run_pipeline(spec, list(param or []), options=options)
    if dry_run:
        if json_out:
            emit_json(record)
        else:
            for row in record["dry_run"]:
                out(f"{row['action']:<7} {row['step']}")
        return
    if json_out:
        emit_json(record)
    else:
        _print_summary(record)
    if record["status"] != "succeeded":
        raise typer.Exit(int(ExitCode.ERROR))


def _print_summary(record: dict) -> None:
    steps = record["steps"]
    cached = sum(1 for s in steps.values() if s.get("status") == "cached")
    out(
        f"run {record['id']}  {record['status']}  ({record['duration_s']:.2f} s, "
        f"{cached}/{len(steps)} steps cached, experiment {record['experiment']})"
    )
    for name, metric in sorted(record.get("metrics", {}).items()):
        out(f"  {name:<24} {metric:.6g}")
    registered = record.get("registered")
    if registered and registered["new"]:
        out(f"model registered {registered['model']}:{registered['version']}")
    elif registered:
        out(
            f"model identical to version {registered['version']} of {registered['model']}, "
            "nothing registered"
        )
    for name, step in steps.items():
        if step.get("status") == "failed":
            err(f"mlopsctl: step '{name}' failed; last lines of its log:")
            for line in (step.get("error") or "").splitlines()[-15:]:
                err(f"    {line}")
            if step.get("workdir"):
                err(f"  work folder kept at {step['workdir']}")
