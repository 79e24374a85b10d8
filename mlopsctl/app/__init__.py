"""Use cases that span services (see DESIGN.md "Layers"): the CLI calls these, and they call
pipeline/, containers/, registry/, … so that no service package needs to import another one
to finish a job. Modules: run (plan -> execute -> register), runners (backend -> StepRunner)."""

from __future__ import annotations

from mlopsctl.app.run import run_pipeline
from mlopsctl.app.runners import RUNNERS, prepare_runner

__all__ = ["RUNNERS", "prepare_runner", "run_pipeline"]
