"""The continuous-training workflow template renders to a scheduled job that checks the
trigger with --run; the example workflow rendered from it runs by hand only."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mlopsctl.templates import render, template_root

REPO = Path(__file__).resolve().parents[2]
VALUES = {
    "cron": "17 * * * *",
    "trigger": "specs/retrain.yaml",
    "python": "3.11",
    "timeout": "60",
    "pip_args": "'mlopsctl @ git+https://example.com/mlopsctl@v1'",
    "install_key": "0123456789abcdef",
}


def _triggers(workflow: dict) -> dict:
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    return workflow.get("on", workflow.get(True))


def test_github_ct_workflow_renders_to_a_scheduled_job() -> None:
    text = (template_root() / "ci/github-ct.yml.tmpl").read_text(encoding="utf-8")
    workflow = yaml.safe_load(render(text, VALUES))
    triggers = _triggers(workflow)
    assert triggers["schedule"] == [{"cron": "17 * * * *"}]
    assert "workflow_dispatch" in triggers
    assert workflow["env"]["TRIGGER"] == "specs/retrain.yaml"
    assert "secrets.MLOPSCTL_STORE" in workflow["env"]["MLOPSCTL_STORE"]
    steps = workflow["jobs"]["ct"]["steps"]
    check = next(s for s in steps if "ct check" in s.get("run", ""))
    assert '"$TRIGGER" --run' in check["run"]
    assert check["shell"] == "bash"  # pipefail, so `| tee` does not hide a failed check
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert "git+https://example.com/mlopsctl@v1" in install["run"]
    assert not re.search(r"\{\{[a-z_]+\}\}", str(workflow))  # every placeholder filled


def test_example_workflow_is_dispatch_only_and_names_an_existing_trigger() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/continuous-training.yml").read_text())
    assert _triggers(workflow) == {"workflow_dispatch": {}}
    assert (REPO / workflow["env"]["TRIGGER"]).is_file()
