from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .conftest import Invoke, git

BAD_PIPELINE = """apiVersion: mlopsctl/v1
kind: Pipeline
name: broken
stpes: {}
"""


@pytest.fixture
def pushable(project: Path, tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    assert git(tmp_path, "init", "-q", "--bare", str(remote)).returncode == 0
    assert git(project, "remote", "add", "origin", str(remote)).returncode == 0
    assert git(project, "add", "-A").returncode == 0
    assert git(project, "commit", "-qm", "init").returncode == 0
    return project


def _push(repo: Path) -> tuple[int, str]:
    # The hook runs `mlopsctl` from PATH: put this interpreter's bin folder first.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    import subprocess

    proc = subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:refs/heads/main"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stderr + proc.stdout


def test_pre_push_hook_blocks_an_invalid_spec(pushable: Path, cli: Invoke) -> None:
    result = cli("hooks", "install", cwd=pushable)
    assert result.exit_code == 0, result.stderr
    hook = pushable / ".git/hooks/pre-push"
    assert os.access(hook, os.X_OK)

    (pushable / "pipelines/broken.yaml").write_text(BAD_PIPELINE)
    git(pushable, "add", "-A")
    git(pushable, "commit", "-qm", "broken spec")
    code, output = _push(pushable)
    assert code != 0
    assert "pipelines/broken.yaml:4:1:" in output
    assert "steps" in output

    (pushable / "pipelines/broken.yaml").unlink()
    git(pushable, "commit", "-qam", "remove it")
    code, output = _push(pushable)
    assert code == 0, output


def test_install_keeps_a_foreign_hook_unless_forced(project: Path, cli: Invoke) -> None:
    hook = project / ".git/hooks/pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\necho mine\n")
    refused = cli("hooks", "install", cwd=project)
    assert refused.exit_code == 1
    assert "not written by mlopsctl" in refused.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"

    forced = cli("hooks", "install", "--force", cwd=project)
    assert forced.exit_code == 0
    assert (project / ".git/hooks/pre-push.orig").read_text() == "#!/bin/sh\necho mine\n"
    assert "mlopsctl validate" in hook.read_text()

    removed = cli("hooks", "uninstall", cwd=project)
    assert removed.exit_code == 0
    assert not hook.exists()


def test_install_outside_git_is_not_found(tmp_path: Path, cli: Invoke) -> None:
    result = cli("hooks", "install", cwd=tmp_path)
    assert result.exit_code == 6
    assert "not inside a git repository" in result.stderr
