"""The CI workflow template parses as YAML and runs check before promote, promote on main."""

from __future__ import annotations

from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "templates/ci/github-release.yml.tmpl"


def test_github_release_workflow_is_valid_yaml() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert yaml.safe_load(text)["env"]["RELEASE"] == "{{release}}"  # unfilled, still YAML
    text = text.replace("{{pipeline}}", "pipelines/train.yaml").replace(
        "{{release}}", "release.yaml"
    )
    workflow = yaml.safe_load(text)
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    triggers = workflow.get("on", workflow.get(True))
    assert "push" in triggers
    steps = workflow["jobs"]["release"]["steps"]
    runs = [s.get("run", "") for s in steps]
    check = next(i for i, r in enumerate(runs) if "release check" in r)
    promote = next(i for i, r in enumerate(runs) if "release promote" in r)
    assert any("mlopsctl run" in r for r in runs[:check])
    assert check < promote and steps[promote]["if"] == "github.ref == 'refs/heads/main'"
    assert "--junit" in runs[check]
