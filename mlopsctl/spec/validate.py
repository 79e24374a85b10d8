"""Check spec files against their kind's JSON Schema and report every problem at once.

A spec goes through three gates, each reporting all it finds: the YAML loader (syntax, duplicate
keys, refused tags, keys YAML turned into booleans or numbers), the header (apiVersion and kind),
and the kind's schema plus a few cross-reference checks a schema cannot express. jsonschema is
imported only when a schema is needed, and each schema is read and compiled once per process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlopsctl.errors import Diagnostic, SpecError
from mlopsctl.memo import memo_key, passed_before, remember_pass
from mlopsctl.spec.featureset import featureset_problems
from mlopsctl.spec.loader import LoadedYaml, parse_yaml_bytes, read_yaml
from mlopsctl.spec.messages import Explainer, did_you_mean, found

API_VERSION = "mlopsctl/v1"
SPEC_KINDS = ("Project", "Pipeline", "Release", "Monitor", "Trigger", "Dataset", "FeatureSet")
SCHEMA_DIR = Path(__file__).parent / "schemas"

_schemas: dict[str, dict[str, Any]] = {}
_validators: dict[str, Any] = {}


def schema_for(kind: str) -> dict[str, Any]:
    """The JSON Schema (a dict) for one of SPEC_KINDS, read once."""
    if kind not in _schemas:
        with open(SCHEMA_DIR / f"{kind.lower()}.schema.json", encoding="utf-8") as handle:
            _schemas[kind] = json.load(handle)
    return _schemas[kind]


def _validator(kind: str) -> Any:
    if kind not in _validators:
        from jsonschema import Draft202012Validator

        _validators[kind] = Draft202012Validator(schema_for(kind))
    return _validators[kind]


def validate_file(
    path: Path, display: str | None = None, kind: str | None = None
) -> tuple[LoadedYaml | None, list[Diagnostic]]:
    """Load and check one spec; return what was loaded (if it parsed) and every problem, sorted.

    With `kind`, the file must be a spec of that kind (mlops.yaml must be a Project).
    """
    loaded, problems = read_yaml(path, display)
    if loaded is not None:
        memo = _memo_for(path, loaded, kind) if not problems else None
        if memo is not None and passed_before(memo):
            return loaded, []
        problems += check(loaded, kind)
        if memo is not None and not problems:
            remember_pass(memo)
    unique = dict.fromkeys(problems)
    return loaded, sorted(unique, key=lambda d: (d.line, d.column))


def validate_text(
    display: str, raw: bytes, kind: str | None = None
) -> tuple[LoadedYaml | None, list[Diagnostic]]:
    """validate_file for a spec that is not a file here (say, a blob of a commit being pushed):
    the same size cap, loader and checks; `display` names it in the diagnostics."""
    loaded, problems = parse_yaml_bytes(raw, Path(display), display)
    if loaded is not None:
        problems += check(loaded, kind)
    unique = dict.fromkeys(problems)
    return loaded, sorted(unique, key=lambda d: (d.line, d.column))


def _memo_for(path: Path, loaded: LoadedYaml, kind: str | None) -> str | None:
    """Key of "this exact text passed this exact schema", or None when it cannot be formed."""
    data = loaded.data
    spec_kind = data.get("kind") if isinstance(data, dict) else None
    if spec_kind not in SPEC_KINDS or loaded.key_surprises:
        return None
    schema = (SCHEMA_DIR / f"{str(spec_kind).lower()}.schema.json").read_bytes()
    return memo_key("spec", str(kind).encode(), schema, path.read_bytes())


def check(loaded: LoadedYaml, kind: str | None = None) -> list[Diagnostic]:
    """Every problem with the data of an already loaded spec."""
    data = loaded.data
    if () in loaded.broken:
        return []  # the loader refused the whole document and has said why
    if data is None:
        return [_at(loaded, (), "the file is empty; a spec starts with apiVersion: mlopsctl/v1")]
    if not isinstance(data, dict):
        shape = f"a spec is a mapping with apiVersion, kind and name at the top, not {found(data)}"
        return [_at(loaded, (), shape)]
    problems: list[Diagnostic] = []
    unknown: set[tuple[Any, ...]] = set()
    spec_kind = _check_header(loaded, data, kind, problems)
    if spec_kind is not None:
        explainer = Explainer(loaded, spec_kind)
        problems += explainer.explain_all(_validator(spec_kind).iter_errors(data))
        unknown = explainer.unknown_keys
        if spec_kind == "Pipeline":
            problems += _check_pipeline_references(loaded, data)
        elif spec_kind == "Trigger" and not problems:
            problems += _check_trigger_schedule(loaded, data)
        elif spec_kind == "FeatureSet":
            problems += featureset_problems(loaded, data)
    # `on:` read as true is worth a word even where any key is allowed; but where the key is
    # unknown anyway, advice to quote it would mislead, so "unknown key" says it alone.
    problems += [
        _at(loaded, path, surprise.message())
        for path, surprise in loaded.key_surprises.items()
        if path not in unknown
    ]
    return problems


def validate_paths(paths: list[Path], root: Path | None = None) -> list[Diagnostic]:
    """Every diagnostic for every file, each file's in line order.

    Paths under `root` are shown relative to it, the way a user in the repository writes them.
    """
    base = root.resolve() if root is not None else None
    diagnostics: list[Diagnostic] = []
    for path in paths:
        diagnostics += validate_file(path, _display(path, base))[1]
    return diagnostics


def load_spec(path: Path, kind: str | None = None) -> dict[str, Any]:
    """The validated data of one spec, or SpecError listing all its problems."""
    loaded, problems = validate_file(path, kind=kind)
    if problems or loaded is None:
        raise SpecError(problems, hint="fix the spec; `mlopsctl validate` lists every problem")
    data: dict[str, Any] = loaded.data
    return data


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return path.resolve().relative_to(base).as_posix()
        except ValueError:
            pass
    return str(path)


def _at(loaded: LoadedYaml, path: tuple[Any, ...], message: str) -> Diagnostic:
    line, column = loaded.position(path)
    return Diagnostic(loaded.display, line, column, message)


def _at_value(loaded: LoadedYaml, path: tuple[Any, ...], message: str) -> Diagnostic:
    line, column = loaded.value_position(path)
    return Diagnostic(loaded.display, line, column, message)


def _check_header(
    loaded: LoadedYaml, data: dict[str, Any], wanted: str | None, problems: list[Diagnostic]
) -> str | None:
    """Check apiVersion and kind; return the kind to validate against, or None to stop there."""
    ok = True
    version = data.get("apiVersion")
    if "apiVersion" not in data:
        problems.append(_at(loaded, (), f"missing required key 'apiVersion' (use {API_VERSION})"))
        ok = False
    elif version != API_VERSION:
        ok = False
        if isinstance(version, str) and version.startswith("mlopsctl/"):
            message = (
                f"apiVersion '{version}' is not supported: this mlopsctl reads {API_VERSION}; "
                "upgrade mlopsctl or write the spec for v1"
            )
        elif isinstance(version, str):
            message = f"apiVersion '{version}' is not a mlopsctl spec; use {API_VERSION}"
        else:
            message = f"apiVersion must be the string {API_VERSION}, not {found(version)}"
        problems.append(_at_value(loaded, ("apiVersion",), message))

    kind = data.get("kind")
    kinds = ", ".join(SPEC_KINDS)
    if "kind" not in data:
        problems.append(_at(loaded, (), f"missing required key 'kind' (one of {kinds})"))
        return None
    if kind not in SPEC_KINDS:
        hint = did_you_mean(kind, SPEC_KINDS) if isinstance(kind, str) else ""
        shown = f"'{kind}'" if isinstance(kind, str) else found(kind)
        message = f"unknown kind {shown}{hint} (kinds: {kinds})"
        problems.append(_at_value(loaded, ("kind",), message))
        return None
    if wanted is not None and kind != wanted:
        message = f"expected a {wanted} spec here, but this file is a {kind}"
        problems.append(_at_value(loaded, ("kind",), message))
        return None
    # Another apiVersion may mean other keys, so its schema errors would only be noise.
    return kind if ok else None


def _check_pipeline_references(loaded: LoadedYaml, data: dict[str, Any]) -> list[Diagnostic]:
    """Inputs and register entries must name a step that exists (and, for run steps, an output
    that step declares); the schema can only check their shape."""
    steps = data.get("steps")
    if not isinstance(steps, dict):
        return []
    problems: list[Diagnostic] = []

    def check_ref(path: tuple[Any, ...], ref: Any, reader: str | None, what: str) -> None:
        if not isinstance(ref, str) or ref.count(".") != 1:
            return  # the schema has reported its shape
        step, output = ref.split(".")
        if step == reader:
            message = f"{what} reads '{ref}', an output of the step itself"
        elif step not in steps:
            message = f"{what} reads '{ref}', but there is no step '{step}'"
            message += did_you_mean(step, steps)
        else:
            declared = steps[step].get("outputs") if isinstance(steps[step], dict) else None
            if not isinstance(declared, list) or output in declared:
                return
            listed = ", ".join(str(o) for o in declared) or "none"
            message = (
                f"{what} reads '{ref}', but step '{step}' has no output '{output}' "
                f"(its outputs: {listed})"
            )
        problems.append(_at_value(loaded, path, message))

    for name, step in steps.items():
        inputs = step.get("inputs") if isinstance(step, dict) else None
        if isinstance(inputs, dict):
            for input_name, ref in inputs.items():
                path = ("steps", name, "inputs", input_name)
                check_ref(path, ref, name, f"input '{input_name}' of step '{name}'")
    register = data.get("register")
    if isinstance(register, dict):
        for key in ("from", "metrics"):
            if key in register:
                check_ref(("register", key), register[key], None, f"register.{key}")
    return problems


def _check_trigger_schedule(loaded: LoadedYaml, data: dict[str, Any]) -> list[Diagnostic]:
    """A schedule of the right shape can still never fire (`0 0 31 2 *`) or name a field value
    out of range: the cron parser says which field, here rather than at the first `ct check`."""
    schedule = data.get("schedule")
    if not isinstance(schedule, str):
        return []
    from mlopsctl.cron import CronError, parse_cron

    try:
        parse_cron(schedule)
    except CronError as exc:
        return [_at_value(loaded, ("schedule",), f"schedule: {exc.one_line()}")]
    return []
