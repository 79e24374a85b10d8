"""Pipeline spec -> a checked DAG of steps. Every problem is found before anything runs and
reported at its place in the spec (file:line:column), naming the step."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopsctl.digest import canonical_json, sha256_bytes
from mlopsctl.errors import Diagnostic, SpecError
from mlopsctl.pipeline.command import (
    Placeholder,
    explain,
    placeholders_in_item,
    render_argv,
    scan,
    substitute,
)
from mlopsctl.pipeline.params import (
    InterpolationError,
    UnsetVariable,
    apply_overrides,
    interpolate,
    reference_value,
    value_text,
)

FILE, DIR, AUTO = "file", "dir", "auto"
# A notebook step's executed notebook (outputs, tracebacks and all) is stored under this name.
NOTEBOOK_OUTPUT = "notebook"
_ENV_REF = re.compile(r"\$\{\s*env\.")


@dataclass
class StepPlan:
    name: str
    kind: str  # component | run (a shell command) | argv (a run: list, no shell) | python |
    # notebook (a .ipynb run with papermill)
    # component name; module:function; or the command (command.py): values shell-quoted,
    # {inputs.x} / {outputs.y} left for exec; for argv, its words shell-quoted, space-joined
    target: str
    params: dict[str, Any]  # resolved `with:`
    inputs: dict[str, tuple[str, str]]  # input name -> (upstream step, its output)
    outputs: dict[str, str]  # output name -> file | dir | auto
    code: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    libraries: tuple[str, ...] = ()
    file_params: tuple[str, ...] = ()
    code_modules: tuple[str, ...] = ()

    @property
    def upstream(self) -> set[str]:
        return {step for step, _ in self.inputs.values()}


@dataclass
class PipelinePlan:
    name: str
    spec_path: Path
    spec_display: str
    spec_digest: str
    project_root: Path
    params: dict[str, Any]
    overrides: list[str]
    steps: dict[str, StepPlan]  # in a topological order
    register: dict[str, Any] | None = None
    description: str = ""


class _Collector:
    """Problems of one spec, each at its place, and how far the checks may look: `static`
    (validate) leaves the run's environment and data alone; without `root` (a spec read from
    git rather than a working tree) files under the project are not looked for either."""

    def __init__(self, loaded: Any, root: Path | None, static: bool = False) -> None:
        self.loaded = loaded
        self.root = root
        self.static = static
        self.items: list[Diagnostic] = []

    def add(self, path: tuple, message: str) -> None:
        line, column = self.loaded.position(path)
        self.items.append(Diagnostic(self.loaded.display, line, column, message))

    def add_in_value(self, path: tuple, message: str, needle: str, nth: int) -> None:
        """A problem at the nth (from 0) `needle` inside the text value at `path`: its own line
        and column when the spec's text shows it there, else the value's position."""
        line, column = self.loaded.value_position(path)
        text = self.loaded.text
        lines = text.split("\n")
        if text and 0 < line <= len(lines):
            index = sum(len(row) + 1 for row in lines[: line - 1]) + column - 1
            for _ in range(nth + 1):
                index = text.find(needle, index)
                if index < 0:
                    break
                found, index = index, index + len(needle)
            else:
                line = text.count("\n", 0, found) + 1
                column = found - (text.rfind("\n", 0, found) + 1) + 1
        self.items.append(Diagnostic(self.loaded.display, line, column, message))


def load_plan(
    spec: Path, overrides: list[str] | None = None, project_root: Path | None = None
) -> PipelinePlan:
    from mlopsctl.spec import validate_file

    spec = spec.resolve()
    root = (project_root or _default_root(spec)).resolve()
    try:
        display = spec.relative_to(root).as_posix()
    except ValueError:
        display = str(spec)
    loaded, diagnostics = validate_file(spec, display=display, kind="Pipeline")
    if diagnostics or loaded is None:
        raise SpecError(diagnostics)
    data = loaded.data
    params = apply_overrides(data.get("params") or {}, list(overrides or []))
    problems = _Collector(loaded, root)
    params, steps, order = _plan_steps(data, params, problems)
    if problems.items:
        raise SpecError(problems.items)
    return PipelinePlan(
        name=str(data["name"]),
        spec_path=spec,
        spec_display=display,
        spec_digest=sha256_bytes(spec.read_bytes()),
        project_root=root,
        params=params,
        overrides=list(overrides or []),
        steps={name: steps[name] for name in order},
        register=data.get("register"),
        description=str(data.get("description") or ""),
    )


def check_plan(loaded: Any, project_root: Path | None) -> list[Diagnostic]:
    """Every problem `load_plan` would find in a Pipeline spec that passed its schema, found
    the same way but without running anything, reading data or opening a store: the checks of
    `mlopsctl validate`. Left to the run: ${env.X} that is not set here (and the `with:`
    values made from it) and data files that are not here. With project_root None (a spec
    read from a git tree, not a working tree), `code:` files and `python:` modules are not
    looked for either."""
    problems = _Collector(loaded, project_root, static=True)
    _plan_steps(loaded.data, loaded.data.get("params") or {}, problems)
    return problems.items


def _plan_steps(
    data: dict[str, Any], params: dict[str, Any], problems: _Collector
) -> tuple[dict[str, Any], dict[str, StepPlan], list[str]]:
    """(resolved params, steps by name, a topological order); problems go to `problems`."""
    unset: set[str] | None = set() if problems.static else None
    params = interpolate(params, params, problems.add, ("params",), unset)
    steps: dict[str, StepPlan] = {}
    for name, body in (data.get("steps") or {}).items():
        step = _step_plan(name, body, params, problems)
        if step is not None:
            steps[name] = step
    _check_references(steps, data.get("steps") or {}, problems)
    order = _topological_order(steps, problems)
    register = data.get("register")
    if register:
        _check_register(register, steps, problems)
    return params, steps, order


def _default_root(spec: Path) -> Path:
    from mlopsctl.config import find_project_file

    found = find_project_file(spec.parent)
    return found.parent if found else Path.cwd()


def _step_plan(
    name: str, body: dict[str, Any], params: dict[str, Any], problems: _Collector
) -> StepPlan | None:
    where = ("steps", name)

    def err(path: tuple, message: str) -> None:
        problems.add((*where, *path), f"step '{name}': {message}")

    unset: set[str] | None = set() if problems.static else None
    with_block = interpolate(body.get("with") or {}, params, err, ("with",), unset)
    # static: a with: value made from an unset ${env.X} (directly or through a parameter) is
    # not known, so the checks of the values are left to the run
    with_is_known = not (problems.static and _mentions_env(with_block))
    env = interpolate(body.get("env") or {}, params, err, ("env",), unset)
    inputs: dict[str, tuple[str, str]] = {}
    for input_name, ref in (body.get("inputs") or {}).items():
        upstream, _, output = str(ref).partition(".")
        inputs[input_name] = (upstream, output)
    common = {
        "params": with_block,
        "inputs": inputs,
        "code": [str(c) for c in body.get("code") or []],
        "env": {str(k): str(v) for k, v in env.items()},
        "resources": dict(body.get("resources") or {}),
    }
    root = problems.root
    if root is not None:
        for pattern in common["code"]:
            if not list(root.glob(pattern)):
                err(("code",), f"code file '{pattern}' matches nothing under {root}")

    if "component" in body:
        return _component_step(name, body, common, err, problems, with_is_known)
    declared = {str(o): AUTO for o in body.get("outputs") or []}
    if "run" in body:
        kind, command = _run_command(name, body["run"], params, inputs, declared, problems)
        return StepPlan(name=name, kind=kind, target=command, outputs=declared, **common)
    if "python" in body:
        target = str(body["python"])
        _check_python_target(target, root, err)
        return StepPlan(name=name, kind="python", target=target, outputs=declared, **common)
    if "notebook" in body:
        return _notebook_step(name, str(body["notebook"]), common, declared, root, err)
    err((), "needs one of 'component', 'run', 'python' or 'notebook'")
    return None


def _notebook_step(
    name: str,
    target: str,
    common: dict[str, Any],
    declared: dict[str, str],
    root: Path | None,
    err: Any,
) -> StepPlan:
    """A `notebook:` step: run with papermill (exec.py). The notebook file is part of the
    step's code, so editing it invalidates the cached result; the executed notebook is an
    output of its own."""
    if NOTEBOOK_OUTPUT in declared:
        err(
            ("outputs",),
            f"'{NOTEBOOK_OUTPUT}' is the executed notebook, an output every notebook step has; "
            "name yours otherwise",
        )
    if root is not None:
        path = root / target
        if not path.is_file():
            err(("notebook",), f"notebook '{target}' not found under {root}")
        else:
            problem = _notebook_problem(path)
            if problem:
                err(("notebook",), f"notebook '{target}' {problem}")
    common = {**common, "code": [target, *(c for c in common["code"] if c != target)]}
    return StepPlan(
        name=name,
        kind="notebook",
        target=target,
        outputs={**declared, NOTEBOOK_OUTPUT: FILE},
        libraries=("papermill", "nbclient", "ipykernel"),
        **common,
    )


def _notebook_problem(path: Path) -> str | None:
    """What makes the file no Jupyter notebook (nbformat 4), if anything."""
    import json

    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"is not a Jupyter notebook (not JSON: {exc})"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        return "is not a Jupyter notebook (no cells)"
    if data.get("nbformat") != 4:
        return f"is nbformat {data.get('nbformat')}; papermill runs nbformat 4 notebooks"
    return None


def _mentions_env(value: Any) -> bool:
    """Whether a ${env.X} reference is left in a value (a static check leaves it unresolved)."""
    if isinstance(value, dict):
        return any(_mentions_env(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_env(v) for v in value)
    return isinstance(value, str) and _ENV_REF.search(value) is not None


def _run_command(
    step: str,
    run: str | list[Any],
    params: dict[str, Any],
    inputs: dict[str, Any],
    outputs: dict[str, str],
    problems: _Collector,
) -> tuple[str, str]:
    """(kind, target) of a `run:` step. A string is a shell command: every placeholder must
    stand where the shell reads a plain word (command.py), and each value goes in as one
    shell-quoted word. A list is an argv, run without a shell: each element one argument."""
    where = ("steps", step, "run")

    def value(placeholder: Placeholder, path: tuple, nth: int) -> str | None:
        if placeholder.is_path:
            pool = inputs if placeholder.kind == "inputs" else outputs
            if placeholder.name not in pool:
                report(
                    path,
                    f"'{placeholder.text}' in run: no {placeholder.kind[:-1]} named "
                    f"'{placeholder.name}' is declared",
                    placeholder,
                    nth,
                )
            return None
        try:
            return value_text(reference_value(placeholder.kind, placeholder.name, params))
        except UnsetVariable as exc:
            if not problems.static:  # validate runs without the run's environment
                report(path, str(exc), placeholder, nth)
        except InterpolationError as exc:
            report(path, str(exc), placeholder, nth)
        return None

    def report(path: tuple, message: str, placeholder: Placeholder, nth: int) -> None:
        problems.add_in_value(path, f"step '{step}': {message}", placeholder.text, nth)

    if isinstance(run, list):
        items = [str(item) for item in run]
        argv_values: dict[tuple[int, int], str | None] = {}
        for index, item in enumerate(items):
            seen: list[str] = []
            for placeholder in placeholders_in_item(item):
                nth = seen.count(placeholder.text)
                seen.append(placeholder.text)
                argv_values[index, placeholder.start] = value(placeholder, (*where, index), nth)
        return "argv", render_argv(items, lambda i, p: argv_values.get((i, p.start)))
    template = str(run)
    placeholders = scan(template)
    values: dict[int, str | None] = {}
    for index, placeholder in enumerate(placeholders):
        nth = [p.text for p in placeholders[:index]].count(placeholder.text)
        if placeholder.problem:
            report(where, explain(placeholder), placeholder, nth)
        values[placeholder.start] = value(placeholder, where, nth)
    return "run", substitute(template, placeholders, lambda p: values.get(p.start))


def _component_step(
    name: str,
    body: dict[str, Any],
    common: dict[str, Any],
    err: Any,
    problems: _Collector,
    with_is_known: bool,
) -> StepPlan | None:
    from mlopsctl.components import BUILTIN, get_component
    from mlopsctl.errors import NotFound

    component_name = str(body["component"])
    try:
        module = get_component(component_name)
    except NotFound as exc:
        close = difflib.get_close_matches(component_name, BUILTIN, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (built-in: {', '.join(BUILTIN)})"
        err(("component",), f"unknown component '{component_name}'{hint}")
        del exc
        return None
    wanted = dict(getattr(module, "INPUTS", {}))
    optional = dict(getattr(module, "OPTIONAL_INPUTS", {}))
    for input_name in common["inputs"]:
        if input_name not in wanted and input_name not in optional:
            choices = sorted({*wanted, *optional})
            close = difflib.get_close_matches(input_name, choices, n=1)
            hint = (
                f"; did you mean '{close[0]}'?"
                if close
                else f" (it takes: {', '.join(choices) or 'none'})"
            )
            err(
                ("inputs", input_name),
                f"component '{component_name}' has no input '{input_name}'{hint}",
            )
    for input_name in wanted:
        if input_name not in common["inputs"]:
            err(
                ("inputs",) if body.get("inputs") else (),
                f"missing input '{input_name}' of component '{component_name}'",
            )
    check = getattr(module, "check", None)
    if with_is_known:
        _check_with(module, common["params"], err)
    if with_is_known and check is not None:
        root = problems.root
        for path, message in check(common["params"], root or Path.cwd()):
            if problems.static and _about_absent_data(module, common["params"], path, root):
                continue  # validate leaves data to the run (it is often fetched just before)
            err(("with", *path), message)
    return StepPlan(
        name=name,
        kind="component",
        target=component_name,
        outputs=dict(module.OUTPUTS),
        libraries=tuple(getattr(module, "LIBRARIES", ())),
        file_params=tuple(getattr(module, "FILE_PARAMS", ())),
        code_modules=(module.__name__, *getattr(module, "CODE_MODULES", ())),
        **common,
    )


def _about_absent_data(
    module: Any, params: dict[str, Any], path: tuple[Any, ...], root: Path | None
) -> bool:
    """Whether a component's problem is at a `with:` key naming a local data file that is not
    here (or, without a project root, any local data file)."""
    if len(path) != 1 or path[0] not in getattr(module, "FILE_PARAMS", ()):
        return False
    value = params.get(path[0])
    if not isinstance(value, str) or "://" in value:
        return False
    return root is None or not (root / value).exists()


def _check_with(module: Any, params: dict[str, Any], err: Any) -> None:
    schema = getattr(module, "PARAMS", None)
    if not schema:
        return
    from mlopsctl.memo import memo_key, passed_before, remember_pass

    memo = memo_key("with", canonical_json(schema), canonical_json(params))
    if passed_before(memo):
        return
    from jsonschema import Draft202012Validator

    errors = list(Draft202012Validator(schema).iter_errors(params))
    if not errors:
        remember_pass(memo)
    for error in errors:
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted((schema.get("properties") or {}).keys())
            instance = error.instance if isinstance(error.instance, dict) else {}
            extras = [k for k in instance if k not in allowed]
            for extra in extras:
                close = difflib.get_close_matches(extra, allowed, n=1)
                hint = (
                    f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(allowed)})"
                )
                err(("with", *path, extra), f"unknown key '{extra}' in with{hint}")
            continue
        where = "with" + "".join(f".{p}" for p in path)
        err(("with", *path), f"{where}: {error.message}")


def _check_python_target(target: str, root: Path | None, err: Any) -> None:
    module, sep, function = target.partition(":")
    if not sep or not module or not function:
        err(("python",), f"python: '{target}' must be written as module:function")
        return
    if root is None:
        return  # the module lives in the project's files, which are not here to look at
    import sys

    from mlopsctl.models.artifact import check_import_path

    sys.path.insert(0, str(root))
    try:
        problem = check_import_path(f"{module}.{function}")
    finally:
        sys.path.remove(str(root))
    if problem:
        err(("python",), problem)


def _check_references(
    steps: dict[str, StepPlan], bodies: dict[str, Any], problems: _Collector
) -> None:
    names = sorted(bodies)
    for step in steps.values():
        for input_name, (upstream, output) in step.inputs.items():
            path = ("steps", step.name, "inputs", input_name)
            if upstream not in bodies:
                close = difflib.get_close_matches(upstream, names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.add(
                    path,
                    f"step '{step.name}': input '{input_name}' refers to "
                    f"unknown step '{upstream}'{hint}",
                )
                continue
            if upstream == step.name:
                problems.add(
                    path, f"step '{step.name}': input '{input_name}' refers to the step itself"
                )
                continue
            source = steps.get(upstream)
            if source is None:
                continue  # the upstream step has its own error already
            if output not in source.outputs:
                known = sorted(source.outputs)
                close = difflib.get_close_matches(output, known, n=1)
                hint = (
                    f"; did you mean '{upstream}.{close[0]}'?"
                    if close
                    else f" (it has: {', '.join(known) or 'none'})"
                )
                problems.add(
                    path, f"step '{step.name}': step '{upstream}' has no output '{output}'{hint}"
                )


def _topological_order(steps: dict[str, StepPlan], problems: _Collector) -> list[str]:
    """Kahn's algorithm, stable in spec order; a cycle is reported once, at one of its steps."""
    pending = {
        name: {u for u in step.upstream if u in steps and u != name} for name, step in steps.items()
    }
    order: list[str] = []
    while pending:
        ready = [name for name, deps in pending.items() if not deps]
        if not ready:
            cycle = _find_cycle(pending)
            first = cycle[0]
            feeder = cycle[-1]  # data flows along the cycle, so the last step feeds the first
            input_name = next(i for i, (u, _) in steps[first].inputs.items() if u == feeder)
            problems.add(
                ("steps", first, "inputs", input_name),
                f"step '{first}': cycle in step inputs: {' -> '.join([*cycle, cycle[0]])}",
            )
            return order
        for name in ready:
            order.append(name)
            del pending[name]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def _find_cycle(pending: dict[str, set[str]]) -> list[str]:
    start = min(pending)
    seen: list[str] = []
    node = start
    while node not in seen:
        seen.append(node)
        node = min(pending[node])
    return seen[seen.index(node) :][::-1] if len(seen) > 1 else [node]


def _check_register(
    register: dict[str, Any], steps: dict[str, StepPlan], problems: _Collector
) -> None:
    for key in ("from", "metrics"):
        ref = register.get(key)
        if not ref:
            continue
        upstream, _, output = str(ref).partition(".")
        step = steps.get(upstream)
        if step is None or output not in step.outputs:
            problems.add(("register", key), f"register.{key}: '{ref}' is not an output of any step")
