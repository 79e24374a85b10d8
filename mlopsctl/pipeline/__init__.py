"""Repeatable pipelines: plan a spec into a DAG, then run it with the shared step cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlopsctl.errors import NotFound, UsageError


def run_pipeline(
    spec: Path,
    overrides: list[str] | None = None,
    *,
    options: Any = None,
    start: Path | None = None,
) -> dict[str, Any]:
    """Plan and run `spec` on the project's store; returns the run record (or, with
    options.dry_run, {"dry_run": [...]} without running or recording anything)."""
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.pipeline.executor import Executor, RunOptions
    from mlopsctl.pipeline.plan import load_plan

    if not spec.is_file():
        raise NotFound(f"no such pipeline spec: {spec}", "give the path of a kind: Pipeline file")
    project = load_project(
        start
    )  # the project is where you stand, as with git; the spec can be anywhere
    plan = load_plan(spec, overrides, project_root=project.root)
    options = options or RunOptions()
    store_config = {
        "url": project.store_url,
        "s3_options": project.s3_options,
        "base_dir": str(project.root),
    }
    runner = None
    if options.backend == "docker":
        from mlopsctl.containers.runner import prepare_docker_run

        runner = prepare_docker_run(project, plan, store_config, options)
    elif options.backend != "local":
        raise UsageError(f"unknown backend {options.backend!r}", "use local or docker")
    with open_project_store(project) as store:
        executor = Executor(plan, store, store_config, options, runner)
        if options.dry_run:
            return {"dry_run": executor.dry_run(), "pipeline": plan.name}
        record = executor.run()
        if record["status"] == "succeeded" and plan.register and options.register:
            from mlopsctl.registry import register_from_run

            version = register_from_run(
                store,
                record,
                str(plan.register["model"]),
                str(plan.register["from"]),
                plan.register.get("metrics"),
            )
            record["registered"] = {
                "model": version["name"],
                "version": version["version"],
                "new": not version.get("existing", False),
            }
        return record
