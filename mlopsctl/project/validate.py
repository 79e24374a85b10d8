"""`mlopsctl validate`: decide which spec files to check, then check them all: each against its
schema and, for pipelines, with every check `run` makes before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopsctl.config import find_project_file, load_project, repo_root
from mlopsctl.errors import Diagnostic, NotFound, SpecError


@dataclass
class ValidationReport:
    root: Path
    files: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def display(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def validate_specs(paths: list[Path], start: Path | None = None) -> ValidationReport:
    """Validate the given files and folders; with none, every spec in the project."""
    from mlopsctl.spec import find_specs

    start = (start or Path.cwd()).resolve()
    project_file = find_project_file(start)
    root = project_file.parent if project_file else repo_root(start)
    exclude: tuple[str, ...] = ()
    try:
        exclude = load_project(start).exclude
    except SpecError:
        pass  # mlops.yaml itself is invalid: it is among the files checked and reported below

    files: list[Path] = []
    if not paths:
        files = find_specs(root, list(exclude))
    for given in paths:
        if given.is_dir():
            files.extend(find_specs(given.resolve(), list(exclude)))
        elif given.is_file():
            files.append(given.resolve())
        else:
            raise NotFound(f"no such file or folder: {given}", "check the path")
    report = ValidationReport(root=root, files=files)
    for path in files:
        report.diagnostics += validate_spec_file(path, report.display(path), root)
    return report


def validate_spec_file(path: Path, display: str, root: Path | None) -> list[Diagnostic]:
    """Every problem of one spec: its schema and references and, for a pipeline that passes
    those, every check `run` makes before anything runs (pipeline.plan.check_plan: components
    and their `with:` keys, ${params.x}, cycles, estimator classes, `code:` files, placeholders
    in `run:`), without reading data or opening a store. With root None, files under the
    project are not looked for (see check_plan)."""
    from mlopsctl.spec import validate_file

    loaded, problems = validate_file(path, display)
    return problems + _plan_problems(loaded, problems, root)


def validate_spec_text(display: str, raw: bytes) -> list[Diagnostic]:
    """validate_spec_file for a spec that is not a file here (a blob of a commit being
    pushed): the same checks, but files under the project are not looked for, since the
    working tree is not what is pushed."""
    from mlopsctl.spec.validate import validate_text

    loaded, problems = validate_text(display, raw)
    return problems + _plan_problems(loaded, problems, None)


def _plan_problems(loaded: Any, problems: list[Diagnostic], root: Path | None) -> list[Diagnostic]:
    if problems or loaded is None or loaded.data.get("kind") != "Pipeline":
        return []  # the plan checks need a spec that passed its schema
    from mlopsctl.pipeline.plan import check_plan

    return sorted(dict.fromkeys(check_plan(loaded, root)), key=lambda d: (d.line, d.column))
