from __future__ import annotations

import json
from pathlib import Path

import yaml

from .conftest import Invoke


def test_init_scaffolds_a_valid_project(tmp_path: Path, cli: Invoke) -> None:
    root = tmp_path / "My Churn_Project"
    result = cli("init", str(root), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["created"] == ["mlops.yaml", "pipelines/train.yaml"]
    assert report["gitignore_added"] == ["/.mlops/"]
    config = yaml.safe_load((root / "mlops.yaml").read_text())
    assert config["kind"] == "Project"
    assert config["name"] == "my-churn-project"
    assert config["store"]["url"] == ".mlops"
    pipeline = yaml.safe_load((root / "pipelines/train.yaml").read_text())
    assert pipeline["register"]["model"] == "my-churn-project-model"
    # what init writes must pass validation as it stands
    check = cli("validate", "--json", cwd=root)
    assert check.exit_code == 0, check.stdout
    assert sorted(json.loads(check.stdout)["files"]) == ["mlops.yaml", "pipelines/train.yaml"]


def test_init_refuses_to_overwrite_and_changes_nothing(tmp_path: Path, cli: Invoke) -> None:
    (tmp_path / "mlops.yaml").write_text("mine\n")
    result = cli("init", str(tmp_path))
    assert result.exit_code == 1
    assert "never overwrites" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "mlops.yaml").read_text() == "mine\n"
    assert not (tmp_path / "pipelines").exists()
    assert not (tmp_path / ".gitignore").exists()


def test_init_merges_gitignore_without_losing_lines(tmp_path: Path, cli: Invoke) -> None:
    (tmp_path / ".gitignore").write_text("*.log")  # no trailing newline
    assert cli("init", str(tmp_path), "--name", "demo").exit_code == 0
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[0] == "*.log"
    assert "/.mlops/" in lines


def test_init_store_option_and_bad_name(tmp_path: Path, cli: Invoke) -> None:
    ok = cli("init", str(tmp_path / "a"), "--store", "s3://bucket/team")
    assert ok.exit_code == 0
    assert yaml.safe_load((tmp_path / "a/mlops.yaml").read_text())["store"]["url"] == (
        "s3://bucket/team"
    )
    bad = cli("init", str(tmp_path / "b"), "--name", "Bad Name!")
    assert bad.exit_code == 2
    assert "invalid project name" in bad.stderr
    assert not (tmp_path / "b" / "mlops.yaml").exists()
