"""The example specs double as schema tests: adding a file under specs/examples adds a test.

Each is checked the way `mlopsctl validate` checks it, plan checks of pipelines included, but
as the pre-push hook checks a pushed tree: without the project's files (the examples' `code:`
files and data are not in this repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopsctl.project.validate import validate_spec_file
from mlopsctl.spec import SPEC_KINDS, load_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "specs" / "examples"
VALID = sorted(EXAMPLES.glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
EXPECT = "# expect: "


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_there_are_examples_of_every_kind() -> None:
    kinds = {load_yaml(p).data["kind"] for p in VALID}
    assert kinds == set(SPEC_KINDS)
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_example_has_no_diagnostics(path: Path) -> None:
    diagnostics = validate_spec_file(path, path.name, None)
    assert [d.render() for d in diagnostics] == []


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_example_reports_expected_diagnostic(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith(EXPECT), f"{path.name} must begin with '{EXPECT}<text>'"
    expected = first_line[len(EXPECT) :].strip()
    diagnostics = validate_spec_file(path, path.name, None)
    rendered = [d.render() for d in diagnostics]
    assert any(expected in line for line in rendered), rendered
