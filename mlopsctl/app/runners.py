"""Where a pipeline's steps run, chosen by name (`mlopsctl run --backend NAME`).

Like the store's backends (mlopsctl/store: URL scheme -> backend class), each runner backend is
registered as a "module:function" string and imported on first use, so choosing `local` never
imports Docker's client nor Ray. The function is a factory: given the project, the plan, the store
settings and the run options, it checks everything that can fail before a step starts and
returns the StepRunner (mlopsctl/pipeline/runners.py) that the executor hands each step to.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.pipeline.executor import RunOptions
    from mlopsctl.pipeline.plan import PipelinePlan
    from mlopsctl.pipeline.runners import StepRunner

    RunnerFactory = Callable[[Project, PipelinePlan, dict[str, Any], RunOptions], StepRunner]

__all__ = ["RUNNERS", "known_backends", "prepare_runner", "runner_factory"]

RUNNERS: dict[str, str] = {
    "local": "mlopsctl.pipeline.runners:prepare_local_run",
    "docker": "mlopsctl.containers.runner:prepare_docker_run",
    "ray": "mlopsctl.engines.ray:prepare_ray_run",
}


def known_backends() -> list[str]:
    return sorted(RUNNERS)


def runner_factory(backend: str) -> RunnerFactory:
    """The factory registered for `backend`; UsageError naming the known ones otherwise."""
    target = RUNNERS.get(backend)
    if target is None:
        raise UsageError(
            f"unknown backend {backend!r}", f"use one of: {', '.join(known_backends())}"
        )
    module_name, _, function = target.partition(":")
    factory: RunnerFactory = getattr(importlib.import_module(module_name), function)
    return factory


def prepare_runner(
    backend: str,
    project: Project,
    plan: PipelinePlan,
    store_config: dict[str, Any],
    options: RunOptions,
) -> StepRunner:
    """The runner for one run of `plan` on `backend`, ready before any step starts."""
    return runner_factory(backend)(project, plan, store_config, options)
