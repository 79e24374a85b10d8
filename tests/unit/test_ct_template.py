"""The continuous-training workflow template parses as YAML, runs on a schedule and by hand,
and checks the trigger with --run; the example workflow rendered from it runs by hand only."""

from __future__ import annotations

from pathlib import Path

import yaml

from mlopsctl.templates import render, template_root

REPO = Path(__file__).resolve().parents[2]


def _triggers(workflow: dict) -> dict:
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    return workflow.get("on", workflow.get(True))


def test_github_ct_workflow_renders_to_a_scheduled_job() -> None:
    text = (template_root() / "ci/github-ct.yml.tmpl").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["env"]["TRIGGER"] == "{{trigger}}"  # unfilled, still YAML
    workflow = yaml.safe_load(render(text, {"cron": "17 * * * *", "trigger": "specs/retrain.yaml"}))
    triggers = _triggers(workflow)
    assert triggers["schedule"] == [{"cron": "17 * * * *"}]
    assert "workflow_dispatch" in triggers
    assert workflow["env"]["TRIGGER"] == "specs/retrain.yaml"
    assert "secrets.MLOPSCTL_STORE" in workflow["env"]["MLOPSCTL_STORE"]
    steps = workflow["jobs"]["ct"]["steps"]
    check = next(s for s in steps if "ct check" in s.get("run", ""))
    assert '"$TRIGGER" --run' in check["run"]
    assert check["shell"] == "bash"  # pipefail, so `| tee` does not hide a failed check
    assert any("pip install mlopsctl" in s.get("run", "") for s in steps)
    assert "{{cron}}" not in str(workflow) and "{{trigger}}" not in str(workflow)


def test_example_workflow_is_dispatch_only_and_names_an_existing_trigger() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/continuous-training.yml").read_text())
    assert _triggers(workflow) == {"workflow_dispatch": {}}
    assert (REPO / workflow["env"]["TRIGGER"]).is_file()
