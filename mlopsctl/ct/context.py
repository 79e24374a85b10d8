"""What one check of a trigger reads, loaded once: the spec, the pipeline's plan, the champion
and the trigger's state. The conditions and the check take this one value instead of a long
list of arguments."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.ct.state import read_state
from mlopsctl.errors import NotFound
from mlopsctl.timeutil import parse_time

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.pipeline.plan import PipelinePlan
    from mlopsctl.records.trigger_state import TriggerState
    from mlopsctl.store.base import ObjectStore

DEFAULT_ALIAS = "champion"

# Runs a Monitor spec and returns its result (mlopsctl.monitor.run_monitor; tests pass a fake).
MonitorFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class TriggerContext:
    """One check of one trigger at one moment (`now`, UTC, whole seconds)."""

    spec: dict[str, Any]  # the validated Trigger spec
    spec_path: Path
    project: Project
    store: ObjectStore
    now: datetime
    pipeline_path: Path
    plan: PipelinePlan  # the pipeline with the trigger's params applied
    model: str | None  # the model whose champion the conditions compare with
    alias: str
    champion: Mapping[str, Any] | None  # its version record; None when there is none yet
    state: TriggerState | None  # the trigger's state; None when it never ran
    etag: str | None  # the state's etag, for the compare-and-swap of a claim
    monitor: MonitorFn | None = None  # replaces run_monitor (tests)
    # Monitor results by spec path: drift and performance on one monitor run it once.
    monitor_runs: dict[Path, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def overrides(self) -> list[str]:
        return overrides(self.spec.get("params") or {})

    @property
    def last_run(self) -> dict[str, Any] | None:
        """The last trigger-started run as the state records it (its claim, then its outcome)."""
        last = self.state.get("last_run") if self.state is not None else None
        return dict(last) if last else None

    @property
    def last_started(self) -> datetime | None:
        last = self.last_run
        return parse_time(last["started"]) if last and last.get("started") else None

    @property
    def champion_registered(self) -> datetime | None:
        created = (self.champion or {}).get("created")
        return parse_time(created) if created else None


def load_context(
    spec: dict[str, Any],
    spec_path: Path,
    project: Project,
    store: ObjectStore,
    now: datetime,
    monitor: MonitorFn | None = None,
) -> TriggerContext:
    """Read what a check of the trigger `spec` needs from the project and the store."""
    from mlopsctl.pipeline.plan import load_plan

    pipeline_path = project_path(project, spec["pipeline"], "pipeline")
    plan = load_plan(pipeline_path, overrides(spec.get("params") or {}), project_root=project.root)
    model, alias = model_ref(spec, plan.register)
    champion = find_champion(store, model, alias)
    state, etag = read_state(store, str(spec["name"]))
    return TriggerContext(
        spec=spec,
        spec_path=spec_path,
        project=project,
        store=store,
        now=now,
        pipeline_path=pipeline_path,
        plan=plan,
        model=model,
        alias=alias,
        champion=champion,
        state=state,
        etag=etag,
        monitor=monitor,
    )


def project_path(project: Project, text: str, what: str) -> Path:
    """A path a Trigger names (relative to the project root), which must be a file."""
    path = Path(text)
    path = path if path.is_absolute() else project.root / path
    if not path.is_file():
        raise NotFound(
            f"the trigger's {what} spec {text} does not exist (looked in {project.root})",
            f"paths in a Trigger are relative to the project root; fix '{what}'",
        )
    return path


def overrides(params: dict[str, Any]) -> list[str]:
    """The trigger's `params` as the pipeline's key=value overrides."""
    from mlopsctl.pipeline.params import flatten

    # JSON is YAML, so each value reads back as it was written (numbers stay numbers).
    return [f"{key}={json.dumps(value)}" for key, value in flatten(params).items()]


def model_ref(spec: dict[str, Any], register: dict[str, Any] | None) -> tuple[str | None, str]:
    """The model and alias the trigger watches: its `model`, or the pipeline's register.model
    @ champion."""
    from mlopsctl.registry import check_alias, check_name

    text = spec.get("model")
    if not text:
        name = (register or {}).get("model")
        return (check_name(str(name)) if name else None), DEFAULT_ALIAS
    name, _, alias = str(text).partition("@")
    return check_name(name), check_alias(alias or DEFAULT_ALIAS)


def find_champion(store: ObjectStore, model: str | None, alias: str) -> Mapping[str, Any] | None:
    from mlopsctl.registry import Ref, resolve

    if not model:
        return None
    try:
        return resolve(store, Ref(model, alias=alias))
    except NotFound:
        return None
