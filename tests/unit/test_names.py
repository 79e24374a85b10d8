"""One grammar per kind of name (mlopsctl/names.py): ASCII only, bounded, matched over the whole
text; the registry's references, the traffic arms and the spec schemas all use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlopsctl.errors import ExitCode, UsageError
from mlopsctl.names import GRAMMARS, check_name, check_version, is_name, schema_pattern

BAD = {
    "dotdot": "../x",
    "slash": "team/other",
    "long": "a" * 300,
    "newline": "production\n",
    "superscript": "²",
    "arabic-digit": "١",
    "huge": "9" * 5000,
    "empty": "",
    "dash": "-x",
    "space": "a b",
    "upper": "Churn",
    "accented": "modèle",
}


@pytest.mark.parametrize("kind", sorted(GRAMMARS))
@pytest.mark.parametrize("value", BAD.values(), ids=list(BAD))
def test_every_kind_refuses_what_is_not_a_plain_ascii_name(kind: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_name(kind, value)
    assert caught.value.exit_code == ExitCode.USAGE
    text = caught.value.one_line()
    assert GRAMMARS[kind].rule in text  # the message states the rule
    assert "\n" not in text and len(text) < 400  # one line, even for a 5,000-character value


@pytest.mark.parametrize(
    ("kind", "good"),
    [
        ("model", "churn"),
        ("model", "churn.v2_x-1"),
        ("model", "a" * 128),
        ("alias", "production"),
        ("alias", "canary_2"),
        ("alias", "a" * 64),
        ("experiment", "exp-a"),
        ("experiment", "2024.q1_run"),
        ("trigger", "nightly-retrain"),
        ("trigger", "a" * 63),
        ("deployment", "churn-blue"),
        ("version", "1"),
        ("version", "999999999"),
    ],
)
def test_good_names_pass(kind: str, good: str) -> None:
    assert check_name(kind, good) == good
    assert is_name(kind, good)


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        ("model", "a" * 129),
        ("alias", "a" * 65),
        ("alias", "1st"),
        ("alias", "prod.x"),
        ("experiment", "a" * 129),
        ("trigger", "a" * 64),
        ("trigger", "ends-"),
        ("trigger", "under_score"),
        ("version", "0"),
        ("version", "01"),
        ("version", "1000000000"),
        ("version", "+1"),
        ("version", " 1"),
    ],
)
def test_limits_of_each_grammar(kind: str, bad: str) -> None:
    assert not is_name(kind, bad)
    with pytest.raises(UsageError):
        check_name(kind, bad)


def test_versions() -> None:
    assert check_version("7") == 7
    assert check_version(7) == 7
    for bad in ("١", "²", "9" * 5000, 0, -1, True, 1.0, None):
        with pytest.raises(UsageError, match="versions are whole numbers from 1"):
            check_version(bad)


def test_non_text_is_refused() -> None:
    for value in (None, 3, b"churn", ["churn"]):
        with pytest.raises(UsageError, match="not text"):
            check_name("model", value)


def test_registry_references_use_the_grammar() -> None:
    from mlopsctl.registry import parse_ref

    assert parse_ref("churn:12").version == 12
    assert parse_ref("churn@production").alias == "production"
    for bad in ("churn:²", "churn:١", "churn:" + "9" * 5000, "churn:0", "churn:01",
                "churn@production\n", "churn\n:1", "../x:1", "team/other", "churn@", ":1"):  # fmt: skip
        with pytest.raises(UsageError):
            parse_ref(bad)


def test_store_keys_refuse_bad_segments() -> None:
    from mlopsctl.registry import keys

    assert keys.alias_key("churn", "production") == "models/churn/aliases/production.json"
    with pytest.raises(UsageError):
        keys.alias_key("churn", "production\n")
    with pytest.raises(UsageError):
        keys.versions_prefix("../x")
    with pytest.raises(UsageError):
        keys.history_prefix("churn", "../../runs")


def test_arms_use_the_grammar() -> None:
    from mlopsctl.serving.arms import deployment_key, parse_arm

    assert parse_arm("production=95").label == "production"
    assert parse_arm("3=5").version == 3
    for bad in ("١=5", "²=5", "0=5", "01=5", "9999999999=5", "Prod=5", "a/b=5"):
        with pytest.raises(UsageError):
            parse_arm(bad)
    with pytest.raises(UsageError, match="invalid deployment name"):
        deployment_key("churn", "blue\n")
    with pytest.raises(UsageError, match="invalid model name"):
        deployment_key("../x")


SPECS = {
    "pipeline": (
        "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: {name}\n"
        "steps:\n  train: {{component: train}}\nregister: {{model: {model}, from: train.model}}\n"
    ),
    "release": (
        "apiVersion: mlopsctl/v1\nkind: Release\nname: gate\nmodel: {model}\n"
        "champion: {alias}\npromote: {{alias: {alias}}}\n"
        "gates:\n  - {{type: threshold, metric: accuracy, min: 0.5}}\n"
    ),
    "trigger": (
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: {trigger}\npipeline: p.yaml\n"
        "model: {champion}\nexperiment: {experiment}\nschedule: '0 3 * * 1'\n"
    ),
}
GOOD = {"name": "churn-train", "model": "churn.v2", "alias": "production", "trigger": "nightly",
        "experiment": "exp_a", "champion": "churn.v2@production"}  # fmt: skip


def _validate(tmp_path: Path, kind: str, **names: str) -> list[str]:
    from mlopsctl.spec import validate_file

    path = tmp_path / f"{kind}.yaml"
    path.write_text(SPECS[kind].format(**{**GOOD, **names}), encoding="utf-8")
    return [d.render() for d in validate_file(path, display=f"{kind}.yaml")[1]]


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_specs_with_good_names_validate(tmp_path: Path, kind: str) -> None:
    assert _validate(tmp_path, kind) == []


@pytest.mark.parametrize(
    ("kind", "field", "value", "where"),
    [
        ("pipeline", "model", "'../x'", "register.model"),
        ("pipeline", "model", "'team/other'", "register.model"),
        ("pipeline", "model", "'" + "a" * 300 + "'", "register.model"),
        ("pipeline", "model", '"churn\\n"', "register.model"),
        ("pipeline", "name", '"churn\\n"', "name"),
        ("release", "model", "'-x'", "model"),
        ("release", "model", '"modèle"', "model"),
        ("release", "alias", '"production\\n"', "champion"),
        ("release", "alias", "'1st'", "champion"),
        ("trigger", "trigger", '"nightly\\n"', "name"),
        ("trigger", "trigger", "'../x'", "name"),
        ("trigger", "experiment", "'../x'", "experiment"),
        ("trigger", "experiment", "'team/other'", "experiment"),
        ("trigger", "experiment", '"exp\\n"', "experiment"),
        ("trigger", "champion", "'../x@production'", "model"),
        ("trigger", "champion", "'churn@production/x'", "model"),
    ],
)
def test_validate_reports_bad_names(
    tmp_path: Path, kind: str, field: str, value: str, where: str
) -> None:
    found = _validate(tmp_path, kind, **{field: value})
    assert found, f"{kind} spec with {field}={value} validated"
    assert any(f" {where} " in line or f"{where} '" in line for line in found), found


def test_schema_name_patterns_are_the_grammars() -> None:
    """The specs' name patterns are the grammars, in the form that means the same in Python
    (jsonschema) and ECMAScript: no trailing newline gets past them."""
    from mlopsctl.spec import schema_for

    def at(kind: str, *path: str) -> str:
        node = schema_for(kind)
        for step in path:
            node = node[step]
        if "$ref" in node:
            node = schema_for(kind)["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return str(node["pattern"])

    assert at("Pipeline", "properties", "register", "properties", "model") == (
        schema_pattern("model")
    )
    assert at("Release", "properties", "model") == schema_pattern("model")
    assert at("Release", "properties", "champion") == schema_pattern("alias")
    assert at("Release", "properties", "promote", "properties", "alias") == (
        schema_pattern("alias")
    )
    assert at("Trigger", "properties", "name") == schema_pattern("trigger")
    assert at("Trigger", "properties", "experiment") == schema_pattern("experiment")
    for kind in ("Pipeline", "Release", "Trigger", "Monitor", "Project"):
        name = at(kind, "properties", "name")
        assert name.endswith("$(?!\\n)") and re.search(name, "churn\n") is None
    for kind in GRAMMARS:
        assert re.search(schema_pattern(kind), "a\n") is None


@pytest.mark.parametrize("value", BAD.values(), ids=list(BAD))
def test_trigger_state_keys_refuse_bad_names(value: str) -> None:
    """A Trigger spec's name is checked by its schema; the keys its state lives under check it
    again, so no caller can build ct/<name>/ from an unchecked name."""
    from mlopsctl.ct.state import history_prefix, state_key

    assert state_key("nightly") == "ct/nightly/state.json"
    assert history_prefix("nightly") == "ct/nightly/history/"
    for key_of in (state_key, history_prefix):
        with pytest.raises(UsageError, match="trigger names are"):
            key_of(value)
