"""Validation: every problem in a file, each at its own line:column, in words people act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlopsctl.errors import Diagnostic, SpecError
from mlopsctl.spec import SPEC_KINDS, load_spec, schema_for, validate_file, validate_paths
from mlopsctl.spec.messages import did_you_mean, show_path

HEADER = "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: churn-train\n"
STEPS = "steps:\n  ingest: {component: ingest}\n"


def check(tmp_path: Path, text: str, kind: str | None = None) -> list[str]:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    _, diagnostics = validate_file(path, display="spec.yaml", kind=kind)
    return [d.render() for d in diagnostics]


def test_reports_every_error_not_just_the_first(tmp_path: Path) -> None:
    text = (
        HEADER
        + "stpes: {}\n"  # line 4: unknown key
        + "steps:\n"
        + "  train:\n"
        + "    component: train\n"
        + "    resources: {gpus: two}\n"  # line 8: wrong type
        + "register:\n"  # line 9: missing required 'from'
        + "  model: churn-classifier\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:4:1: unknown key 'stpes' in pipeline; did you mean 'steps'?",
        "spec.yaml:8:23: steps.train.resources.gpus must be an integer, not the string 'two'",
        "spec.yaml:9:1: missing required key 'from' in register",
    ]


def test_loader_problems_and_schema_problems_come_together(tmp_path: Path) -> None:
    text = HEADER + "name: again\n" + STEPS + "colour: blue\n"
    found = check(tmp_path, text)
    assert found == [
        "spec.yaml:4:1: duplicate key 'name' (first defined on line 3); "
        "YAML keeps only one of them, so delete or rename one",
        "spec.yaml:7:1: unknown key 'colour' in pipeline; known keys: apiVersion, kind, name, "
        "description, params, image, steps, register",
    ]


def test_refused_value_is_not_judged_again(tmp_path: Path) -> None:
    text = HEADER + "steps:\n  ingest: !!python/object:x {component: ingest}\n"
    found = check(tmp_path, text)
    assert len(found) == 1
    assert "is refused" in found[0]


def test_refused_document_is_reported_once(tmp_path: Path) -> None:
    found = check(tmp_path, "!!python/object:x {apiVersion: mlopsctl/v1}\n")
    assert len(found) == 1
    assert "is refused" in found[0]


def test_syntax_error_stops_there(tmp_path: Path) -> None:
    loaded, diagnostics = validate_file(_write(tmp_path, "a: [\n"), display="spec.yaml")
    assert loaded is None
    assert len(diagnostics) == 1
    assert "YAML syntax error" in diagnostics[0].message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Pipeline\nname: x\n", "1:1: missing required key 'apiVersion'"),
        ("apiVersion: mlopsctl/v1\nname: x\n", "1:1: missing required key 'kind' (one of Project"),
        (
            "apiVersion: mlopsctl/v1\nkind: pipeline\n",
            "2:7: unknown kind 'pipeline'; did you mean 'Pipeline'?",
        ),
        (
            "apiVersion: mlopsctl/v9\nkind: Pipeline\n",
            "1:13: apiVersion 'mlopsctl/v9' is not supported",
        ),
        (
            "apiVersion: v1\nkind: Pod\n",
            "1:13: apiVersion 'v1' is not a mlopsctl spec; use mlopsctl/v1",
        ),
        (
            "apiVersion: 1\nkind: Pipeline\n",
            "1:13: apiVersion must be the string mlopsctl/v1, not the number 1",
        ),
        ("[]\n", "1:1: a spec is a mapping with apiVersion, kind and name at the top, not a list"),
        ("# only a comment\n", "1:1: the file is empty"),
    ],
)
def test_header_problems(tmp_path: Path, text: str, expected: str) -> None:
    found = check(tmp_path, text)
    assert any(expected in line for line in found), found


def test_other_api_version_skips_schema_noise(tmp_path: Path) -> None:
    found = check(tmp_path, "apiVersion: mlopsctl/v2\nkind: Pipeline\nfuture_key: 1\n")
    assert len(found) == 1


def test_kind_argument_requires_that_kind(tmp_path: Path) -> None:
    found = check(tmp_path, HEADER + STEPS, kind="Project")
    assert found == ["spec.yaml:2:7: expected a Project spec here, but this file is a Pipeline"]
    assert check(tmp_path, HEADER + STEPS, kind="Pipeline") == []


def test_boolean_surprise_only_where_text_is_expected(tmp_path: Path) -> None:
    text = HEADER + "params: {debug: yes, version: 1.10}\n" + STEPS
    assert check(tmp_path, text) == []
    text = HEADER + "description: no\n" + STEPS
    assert check(tmp_path, text) == [
        "spec.yaml:4:14: 'no' was read as the boolean false; quote it (\"no\") to mean the text"
    ]


def test_boolean_where_a_boolean_is_expected_is_fine(tmp_path: Path) -> None:
    text = "apiVersion: mlopsctl/v1\nkind: Project\nname: p\nregistry: {insecure: yes}\n"
    assert check(tmp_path, text) == []


def test_surprise_in_an_enum(tmp_path: Path) -> None:
    text = (
        "apiVersion: mlopsctl/v1\nkind: Monitor\nname: m\nmodel: x\ncurrent: {path: p}\n"
        "features:\n  plan: {type: categorical, ignore: no}\n  age: {type: on}\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:8:15: features.age.type must be one of numerical, categorical; "
        "found 'on' (which YAML read as the boolean true)"
    ]


def test_key_surprise_in_free_form_mapping(tmp_path: Path) -> None:
    text = HEADER + "params:\n  on: 1\n" + STEPS
    assert check(tmp_path, text) == [
        "spec.yaml:5:3: 'on' was read as the boolean true; quote it (\"on\") to mean the text"
    ]


def test_unknown_key_that_yaml_turned_into_a_boolean_is_reported_once(tmp_path: Path) -> None:
    found = check(tmp_path, HEADER + "on: push\n" + STEPS)
    assert len(found) == 1
    assert found[0].startswith("spec.yaml:4:1: unknown key 'on' in pipeline")


def test_number_where_text_is_expected_suggests_quotes(tmp_path: Path) -> None:
    text = HEADER + "steps:\n  t:\n    component: train\n    env: {THREADS: 4}\n"
    assert check(tmp_path, text) == [
        "spec.yaml:7:20: steps.t.env.THREADS must be a string, not the number 4; "
        'quote it ("4") to keep it as text'
    ]


def test_empty_value_is_named(tmp_path: Path) -> None:
    assert check(tmp_path, HEADER + "steps:\n") == [
        "spec.yaml:4:1: steps must be a mapping, but it is empty"
    ]


def test_step_shapes(tmp_path: Path) -> None:
    text = HEADER + (
        "steps:\n"
        "  a: {with: {x: 1}}\n"
        "  b: {component: c, run: r}\n"
        "  c: {component: c, code: [x.py]}\n"
        "  Bad: {run: r}\n"
        "  d: {run: r, outputs: [o, o]}\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:5:3: step 'a' needs one of 'component', 'run', 'python' or 'notebook'",
        "spec.yaml:6:3: step 'b' has 'component' and 'run'; give only one of them",
        "spec.yaml:7:21: 'code' belongs to steps that use 'run' or 'python'; "
        "a component declares its own code and outputs",
        "spec.yaml:8:3: step name 'Bad' is not valid: use lowercase letters, digits, '_' and '-', "
        "starting with a letter",
        "spec.yaml:9:15: steps.d.outputs lists the same item more than once",
    ]


def test_step_references(tmp_path: Path) -> None:
    text = HEADER + (
        "steps:\n"
        "  features: {run: r, outputs: [train]}\n"
        "  train: {component: t, inputs: {a: featurs.train, b: features.tran, c: train.x}}\n"
        "register: {model: m, from: trian.model, metrics: not-a-ref}\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:6:37: input 'a' of step 'train' reads 'featurs.train', but there is no step "
        "'featurs'; did you mean 'features'?",
        "spec.yaml:6:55: input 'b' of step 'train' reads 'features.tran', but step 'features' "
        "has no output 'tran' (its outputs: train)",
        "spec.yaml:6:73: input 'c' of step 'train' reads 'train.x', an output of the step itself",
        "spec.yaml:7:28: register.from reads 'trian.model', but there is no step 'trian'; "
        "did you mean 'train'?",
        "spec.yaml:7:50: register.metrics 'not-a-ref' should name a step output as "
        "<step>.<output>, like train.model",
    ]


def test_project_credentials_are_refused_with_a_hint(tmp_path: Path) -> None:
    text = (
        "apiVersion: mlopsctl/v1\nkind: Project\nname: p\n"
        "store:\n  url: s3://bucket/prefix\n  secret_key: x\n"
        "  s3: {accessKey: y, profile: ml}\n"
        "registry: {url: ghcr.io/org, password: z}\n"
    )
    found = check(tmp_path, text)
    assert [line.split(": ", 1)[0] for line in found] == [
        "spec.yaml:6:3",
        "spec.yaml:7:8",
        "spec.yaml:8:30",
    ]
    assert "credentials are never read from specs" in found[0]
    assert "~/.aws/credentials" in found[1]
    assert "docker login" in found[2]


def test_enum_lists_allowed_values_with_a_suggestion(tmp_path: Path) -> None:
    text = (
        "apiVersion: mlopsctl/v1\nkind: Project\nname: p\nstore: {s3: {addressing_style: virtul}}\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:4:32: store.s3.addressing_style must be one of auto, path, virtual; "
        "found the string 'virtul'; did you mean 'virtual'?"
    ]


def test_range_and_pattern_messages(tmp_path: Path) -> None:
    text = (
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: t\npipeline: p.yaml\n"
        "schedule: '61 * * *'\ncooldown: soon\ndrift: {monitor: m.yaml, min_share: 1.5}\n"
    )
    found = check(tmp_path, text)
    assert found == [
        "spec.yaml:5:11: schedule '61 * * *' is not a cron expression: give five fields "
        '(minute hour day month weekday, like "0 3 * * 1") or @daily, @weekly, ...',
        "spec.yaml:6:11: cooldown 'soon' should be a duration like 30m, 6h, 1d or 1w",
        "spec.yaml:7:37: drift.min_share must be at most 1, not 1.5",
    ]


def test_release_gates(tmp_path: Path) -> None:
    text = (
        "apiVersion: mlopsctl/v1\nkind: Release\nname: r\nmodel: m\n"
        "gates:\n"
        "  - {type: threshold, metric: auc}\n"
        "  - {type: latency, future_option: 1}\n"
        "  - {metric: auc}\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:6:5: gates[0] needs at least one of 'min' or 'max'",
        "spec.yaml:7:5: missing required key 'max_ms' in gates[1]",
        "spec.yaml:8:5: missing required key 'type' in gates[2]",
    ]


def test_load_spec_returns_data_or_raises_with_everything(tmp_path: Path) -> None:
    good = _write(tmp_path, HEADER + STEPS, "good.yaml")
    assert load_spec(good, kind="Pipeline")["steps"] == {"ingest": {"component": "ingest"}}
    bad = _write(tmp_path, HEADER + "stpes: {}\nextra: 1\n", "bad.yaml")
    with pytest.raises(SpecError) as caught:
        load_spec(bad)
    assert len(caught.value.diagnostics) == 3
    assert "(and 2 more)" in caught.value.message


def test_validate_paths_shows_paths_relative_to_root(tmp_path: Path) -> None:
    (tmp_path / "repo" / "specs").mkdir(parents=True)
    inside = _write(tmp_path / "repo" / "specs", "apiVersion: mlopsctl/v1\n", "a.yaml")
    outside = _write(tmp_path, "apiVersion: mlopsctl/v1\n", "b.yaml")
    found = validate_paths([inside, outside], root=tmp_path / "repo")
    assert [d.path for d in found] == ["specs/a.yaml", str(outside)]
    assert all(isinstance(d, Diagnostic) for d in found)
    assert validate_paths([]) == []


@pytest.mark.parametrize("kind", SPEC_KINDS)
def test_schemas_are_valid_and_documented(kind: str) -> None:
    from jsonschema import Draft202012Validator

    schema = schema_for(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"]["const"] == kind
    undocumented = [name for name, sub in _properties(schema) if "description" not in sub]
    assert undocumented == []


def _properties(schema: object, trail: str = ""):  # type: ignore[no-untyped-def]
    """Every (name, subschema) under `properties`, skipping if/then/dependentSchemas clauses,
    which only restate keys documented elsewhere."""
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            yield f"{trail}.{name}", sub
        for key, sub in schema.items():
            if key in ("if", "dependentSchemas"):
                continue
            yield from _properties(sub, f"{trail}/{key}")
    elif isinstance(schema, list):
        for item in schema:
            yield from _properties(item, trail)


def test_did_you_mean_and_paths() -> None:
    assert did_you_mean("stpes", ["steps", "name"]) == "; did you mean 'steps'?"
    assert did_you_mean("PIPELINE", ["Pipeline"]) == "; did you mean 'Pipeline'?"
    assert did_you_mean("zzz", ["steps"]) == ""
    assert show_path(["gates", 0, "metric"]) == "gates[0].metric"
    assert show_path([]) == ""


def test_import_is_cheap_and_jsonschema_is_lazy() -> None:
    probe = (
        "import json, sys, mlopsctl.spec;"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert "jsonschema" not in loaded
    assert not loaded & {"pandas", "numpy", "boto3", "typer", "rich", "dataclasses"}


def _write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_python_steps(tmp_path: Path) -> None:
    text = HEADER + (
        "steps:\n"
        "  make: {python: 'steps:make', code: [steps.py], outputs: [numbers]}\n"
        "  use: {python: steps.use, inputs: {n: make.numbers}}\n"
    )
    assert check(tmp_path, text) == [
        "spec.yaml:6:17: python: 'steps.use' must be written as module:function"
    ]
