"""The CI workflow template renders to YAML that gates pull requests and promotes on main:
check before promote, the JUnit report, the store check first."""

from __future__ import annotations

import re

import yaml

from mlopsctl.templates import render, template_root

VALUES = {
    "pipeline": "pipelines/train.yaml",
    "release": "release.yaml",
    "branch": "main",
    "python": "3.11",
    "timeout": "60",
    "pip_args": "'mlopsctl @ git+https://example.com/mlopsctl@v1'",
    "install_key": "0123456789abcdef",
}


def test_github_release_workflow_renders_to_a_gate_and_a_promotion() -> None:
    text = (template_root() / "ci/github-release.yml.tmpl").read_text(encoding="utf-8")
    workflow = yaml.safe_load(render(text, VALUES))
    assert not re.search(r"\{\{[a-z_]+\}\}", str(workflow))  # every placeholder filled
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    triggers = workflow.get("on", workflow.get(True))
    assert "pull_request" in triggers and triggers["push"] == {"branches": ["main"]}
    job = workflow["jobs"]["release"]
    assert job["timeout-minutes"] == 60
    steps = job["steps"]
    runs = [s.get("run", "") for s in steps]
    assert "MLOPSCTL_STORE" in runs[0] and "exit 1" in runs[0]  # fails loudly, first
    check = next(i for i, r in enumerate(runs) if "release check" in r)
    promote = next(i for i, r in enumerate(runs) if "release promote" in r)
    assert any("mlopsctl run" in r for r in runs[:check])
    assert check < promote and steps[promote]["if"] == "github.ref == 'refs/heads/main'"
    assert "--junit" in runs[check]
    assert any(str(s.get("uses", "")).startswith("mikepenz/action-junit-report@") for s in steps)
