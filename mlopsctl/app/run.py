"""Run a pipeline: plan the spec, execute its steps on the chosen runner, register the model
its register: block names. The one use case that spans pipeline/, containers/ (through the
runner registry) and registry/, so that none of those packages needs to import another."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl.errors import NotFound

if TYPE_CHECKING:
    from mlopsctl.records.run import RunRecord
    from mlopsctl.store.base import ObjectStore

__all__ = ["run_pipeline"]


def run_pipeline(
    spec: Path,
    overrides: list[str] | None = None,
    *,
    options: Any = None,
    start: Path | None = None,
) -> dict[str, Any]:
    """Plan and run `spec` on the project's store; returns the run record (or, with
    options.dry_run, {"dry_run": [...]} without running or recording anything)."""
    from mlopsctl.app.runners import prepare_runner
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.pipeline.executor import Executor, RunOptions
    from mlopsctl.pipeline.plan import load_plan

    if not spec.is_file():
        raise NotFound(f"no such pipeline spec: {spec}", "give the path of a kind: Pipeline file")
    # The project is where you stand, as with git; the spec can be anywhere.
    project = load_project(start)
    plan = load_plan(spec, overrides, project_root=project.root)
    options = options or RunOptions()
    store_config = {
        "url": project.store_url,
        "s3_options": project.s3_options,
        "base_dir": str(project.root),
    }
    runner = prepare_runner(options.backend, project, plan, store_config, options)
    try:
        with open_project_store(project) as store:
            executor = Executor(plan, store, store_config, options, runner)
            if options.dry_run:
                return {"dry_run": executor.dry_run(), "pipeline": plan.name}
            record = executor.run()
            if record["status"] == "succeeded" and plan.register and options.register:
                record["registered"] = _register(store, record, plan.register)
            return record
    finally:
        runner.close()  # e.g. leave the Ray cluster


def _register(
    store: ObjectStore, record: dict[str, Any], register: dict[str, Any]
) -> dict[str, Any]:
    from mlopsctl.registry import register_from_run

    version = register_from_run(
        store,
        cast("RunRecord", record),
        str(register["model"]),
        str(register["from"]),
        register.get("metrics"),
    )
    return {
        "model": version["name"],
        "version": version["version"],
        "new": not version.get("existing", False),
    }
