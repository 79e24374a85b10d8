"""The example specs double as schema tests: adding a file under specs/examples adds a test."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopsctl.spec import SPEC_KINDS, load_yaml, validate_file

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
    loaded, diagnostics = validate_file(path)
    assert [d.render() for d in diagnostics] == []
    assert loaded is not None


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_example_reports_expected_diagnostic(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith(EXPECT), f"{path.name} must begin with '{EXPECT}<text>'"
    expected = first_line[len(EXPECT) :].strip()
    _, diagnostics = validate_file(path, display=path.name)
    rendered = [d.render() for d in diagnostics]
    assert any(expected in line for line in rendered), rendered
