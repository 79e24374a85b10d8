"""Pipeline spec -> a checked DAG of steps. Every problem is found before anything runs and
reported at its place in the spec (file:line:column), naming the step."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopsctl.digest import canonical_json, sha256_bytes
from mlopsctl.errors import Diagnostic, SpecError
from mlopsctl.pipeline.params import apply_overrides, interpolate

FILE, DIR, AUTO = "file", "dir", "auto"


@dataclass
class StepPlan:
    name: str
    kind: str  # component | run | python
    target: str  # component name, shell command, or module:function
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
    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self.items: list[Diagnostic] = []

    def add(self, path: tuple, message: str) -> None:
        line, column = self.loaded.position(path)
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
    raw_params = data.get("params") or {}
    params = apply_overrides(raw_params, list(overrides or []))
    problems = _Collector(loaded)
    params = interpolate(params, params, problems.add, ("params",))

    steps: dict[str, StepPlan] = {}
    for name, body in (data.get("steps") or {}).items():
        step = _step_plan(name, body, params, problems, root)
        if step is not None:
            steps[name] = step
    _check_references(steps, data.get("steps") or {}, problems)
    order = _topological_order(steps, problems)
    register = data.get("register")
    if register:
        _check_register(register, steps, problems)
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
        register=register,
        description=str(data.get("description") or ""),
    )


def _default_root(spec: Path) -> Path:
    from mlopsctl.config import find_project_file

    found = find_project_file(spec.parent)
    return found.parent if found else Path.cwd()


def _step_plan(
    name: str, body: dict[str, Any], params: dict[str, Any], problems: _Collector, root: Path
) -> StepPlan | None:
    where = ("steps", name)

    def err(path: tuple, message: str) -> None:
        problems.add((*where, *path), f"step '{name}': {message}")

    with_block = interpolate(body.get("with") or {}, params, err, ("with",))
    env = interpolate(body.get("env") or {}, params, err, ("env",))
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
    for pattern in common["code"]:
        if not list(root.glob(pattern)):
            err(("code",), f"code file '{pattern}' matches nothing under {root}")

    if "component" in body:
        return _component_step(name, body, common, err, root)
    declared = {str(o): AUTO for o in body.get("outputs") or []}
    if "run" in body:
        command = interpolate(str(body["run"]), params, err, ("run",))
        _check_placeholders(command, inputs, declared, err)
        return StepPlan(name=name, kind="run", target=command, outputs=declared, **common)
    if "python" in body:
        target = str(body["python"])
        _check_python_target(target, root, err)
        return StepPlan(name=name, kind="python", target=target, outputs=declared, **common)
    err((), "needs one of 'component', 'run' or 'python'")
    return None


def _component_step(
    name: str, body: dict[str, Any], common: dict[str, Any], err: Any, root: Path
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
    _check_with(module, common["params"], err)
    check = getattr(module, "check", None)
    if check is not None:
        for path, message in check(common["params"], root):
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


def _check_placeholders(
    command: str, inputs: dict[str, Any], outputs: dict[str, str], err: Any
) -> None:
    import re

    for kind, name in re.findall(r"\{(inputs|outputs)\.([A-Za-z0-9_\-]+)\}", command):
        pool = inputs if kind == "inputs" else outputs
        if name not in pool:
            err(("run",), f"'{{{kind}.{name}}}' in run: no {kind[:-1]} named '{name}' is declared")


def _check_python_target(target: str, root: Path, err: Any) -> None:
    module, sep, function = target.partition(":")
    if not sep or not module or not function:
        err(("python",), f"python: '{target}' must be written as module:function")
        return
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
