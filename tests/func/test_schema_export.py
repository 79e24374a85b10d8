"""`mlopsctl schema export DIR` writes the schemas `validate` uses; the files `init` writes name
them in a yaml-language-server modeline, so an editor checks specs as `validate` does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from mlopsctl.spec import SPEC_KINDS, schema_for

from .conftest import Invoke

REPO = Path(__file__).resolve().parents[2]
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def test_export_writes_every_kind_as_validate_has_it(tmp_path: Path, cli: Invoke) -> None:
    dest = tmp_path / "out" / "schemas"
    result = cli("schema", "export", str(dest), "--json")
    assert result.exit_code == 0, result.stderr
    files = [Path(f) for f in json.loads(result.stdout)["files"]]
    assert sorted(f.name for f in files) == sorted(f"{k.lower()}.schema.json" for k in SPEC_KINDS)
    for kind in SPEC_KINDS:
        exported = json.loads((dest / f"{kind.lower()}.schema.json").read_text())
        assert exported == schema_for(kind)
        Draft202012Validator.check_schema(exported)
    # Exporting again replaces older copies.
    (dest / "pipeline.schema.json").write_text("{}")
    assert cli("schema", "export", str(dest)).exit_code == 0
    assert json.loads((dest / "pipeline.schema.json").read_text()) == schema_for("Pipeline")


def test_export_into_a_file_is_a_usage_error(tmp_path: Path, cli: Invoke) -> None:
    (tmp_path / "f").write_text("x")
    result = cli("schema", "export", str(tmp_path / "f"))
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.stderr


def test_the_exported_schemas_judge_the_examples_as_validate_does(
    tmp_path: Path, cli: Invoke
) -> None:
    assert cli("schema", "export", str(tmp_path)).exit_code == 0
    examples = [REPO / "specs/examples/quickstart.yaml", REPO / "specs/examples/release.yaml"]
    examples += sorted((REPO / "specs/examples/invalid").glob("*.yaml"))
    checked = 0
    for path in examples:
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # broken YAML: no schema gets to see it
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind not in SPEC_KINDS:
            continue
        schema = json.loads((tmp_path / f"{kind.lower()}.schema.json").read_text())
        editor_ok = not list(Draft202012Validator(schema).iter_errors(data))
        validate = cli("validate", str(path), "--json")
        if editor_ok:
            # A few problems are beyond a schema (references between steps, cron syntax), so
            # validate may still refuse; what the schema refuses, validate always does.
            continue
        assert validate.exit_code == 3, path
        checked += 1
    assert checked >= 3


def test_init_writes_the_schemas_and_a_modeline_in_each_file(tmp_path: Path, cli: Invoke) -> None:
    root = tmp_path / "proj"
    result = cli("init", str(root), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["created"] == ["mlops.yaml", "pipelines/train.yaml"]
    assert len(report["schemas"]) == len(SPEC_KINDS)
    for name, kind in (("mlops.yaml", "Project"), ("pipelines/train.yaml", "Pipeline")):
        path = root / name
        first = path.read_text().splitlines()[0]
        match = MODELINE.match(first)
        assert match, first
        schema_path = (path.parent / match[1]).resolve()
        assert schema_path == (root / ".mlopsctl/schemas" / f"{kind.lower()}.schema.json")
        schema = json.loads(schema_path.read_text())
        assert schema == schema_for(kind)
        # The editor's verdict on the file init wrote: valid, as validate says too.
        assert not list(Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
    assert cli("validate", cwd=root).exit_code == 0
    # Text output says where the schemas went.
    again = cli("init", str(tmp_path / "other"))
    assert "spec schemas for editors to .mlopsctl/schemas/" in again.stderr
