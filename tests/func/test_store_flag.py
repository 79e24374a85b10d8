"""`mlopsctl --store URL`: the store of one command. Precedence: the flag, then MLOPSCTL_STORE,
then store.url in mlops.yaml, then the default .mlops; a relative folder on the command line is
relative to where the command runs; the flag holds for that command only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Invoke

QUICK = """apiVersion: mlopsctl/v1
kind: Pipeline
name: quick
steps:
  hello:
    run: "echo hello > {outputs.out}"
    outputs: [out]
"""


def _store_detail(cli: Invoke, project: Path, *flags: str) -> str:
    result = cli(*flags, "doctor", "--json", cwd=project)
    assert result.exit_code == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["store"]["status"] == "ok", checks["store"]
    return str(checks["store"]["detail"])


def test_flag_wins_over_environment_which_wins_over_mlops_yaml(
    project: Path, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "(from mlops.yaml)" in _store_detail(cli, project)
    env_store, flag_store = tmp_path / "env-store", tmp_path / "flag-store"
    monkeypatch.setenv("MLOPSCTL_STORE", str(env_store))
    detail = _store_detail(cli, project)
    assert detail.startswith(f"{env_store} (from MLOPSCTL_STORE)")
    detail = _store_detail(cli, project, "--store", str(flag_store))
    assert detail.startswith(f"{flag_store} (from --store)")
    # The flag held for that command only.
    assert "(from MLOPSCTL_STORE)" in _store_detail(cli, project)
    monkeypatch.delenv("MLOPSCTL_STORE")
    assert "(from mlops.yaml)" in _store_detail(cli, project)


def test_a_run_and_its_listing_use_the_flagged_store(
    project: Path, cli: Invoke, tmp_path: Path
) -> None:
    (project / "pipelines/quick.yaml").write_text(QUICK)
    elsewhere = tmp_path / "elsewhere"
    ran = cli("--store", str(elsewhere), "run", "pipelines/quick.yaml", "--json", cwd=project)
    assert ran.exit_code == 0, ran.stderr
    run_id = json.loads(ran.stdout)["id"]
    assert (elsewhere / "runs" / f"{run_id}.json").is_file()
    assert not (project / ".mlops" / "runs").exists()
    listed = cli("--store", str(elsewhere), "runs", "list", "--json", cwd=project)
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    # Without the flag, mlops.yaml's store, which has no runs.
    assert json.loads(cli("runs", "list", "--json", cwd=project).stdout) == []


def test_a_relative_folder_is_relative_to_where_the_command_runs(
    project: Path, cli: Invoke
) -> None:
    (project / "pipelines/quick.yaml").write_text(QUICK)
    sub = project / "pipelines"
    ran = cli("--store", "here-store", "run", "quick.yaml", "--json", cwd=sub)
    assert ran.exit_code == 0, ran.stderr
    assert (sub / "here-store" / "runs").is_dir()
    # A relative url in mlops.yaml stays relative to the project root.
    assert ".mlops" in _store_detail(cli, project)
    assert not (sub / ".mlops").exists()


def test_help_documents_the_precedence(cli: Invoke) -> None:
    result = cli("--help")
    text = " ".join(result.stdout.split())
    assert "--store URL" in text
    assert "Wins over MLOPSCTL_STORE, which wins over store.url in mlops.yaml" in text
