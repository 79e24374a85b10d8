"""Repeatable pipelines: plan a spec into a DAG (plan.py, params.py), run it step by step with
the shared step cache (executor.py, cache.py, hashing.py; outputs become blobs through
store/artifacts.py) on a StepRunner (runners.py: the interface, and the local one).

Running a spec end to end (plan -> execute -> register) is a use case of the application layer:
mlopsctl.app.run.run_pipeline. This package imports neither registry/ nor containers/ nor app/.

The names below are re-exported lazily (PEP 562), so that importing one module of the package,
such as the runner interface that containers/ builds on, does not load the executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlopsctl.lazy import lazy_exports

if TYPE_CHECKING:
    from mlopsctl.pipeline.executor import Executor, Progress, RunOptions, data_digests
    from mlopsctl.pipeline.hashing import path_digest
    from mlopsctl.pipeline.params import apply_overrides, interpolate, parse_override
    from mlopsctl.pipeline.plan import PipelinePlan, StepPlan, load_plan
    from mlopsctl.pipeline.runners import LocalRunner, LogSink, StepExit, StepRunner

_EXPORTS = {
    "Executor": "executor",
    "Progress": "executor",
    "RunOptions": "executor",
    "data_digests": "executor",
    "path_digest": "hashing",
    "apply_overrides": "params",
    "interpolate": "params",
    "parse_override": "params",
    "PipelinePlan": "plan",
    "StepPlan": "plan",
    "load_plan": "plan",
    "LocalRunner": "runners",
    "LogSink": "runners",
    "StepExit": "runners",
    "StepRunner": "runners",
}

__all__ = [
    "Executor",
    "LocalRunner",
    "LogSink",
    "PipelinePlan",
    "Progress",
    "RunOptions",
    "StepExit",
    "StepPlan",
    "StepRunner",
    "apply_overrides",
    "data_digests",
    "interpolate",
    "load_plan",
    "parse_override",
    "path_digest",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
