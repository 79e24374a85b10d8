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


# -- the hook checks what is pushed, not the working tree ---------------------------------


def _env_without_mlopsctl_on_path() -> dict[str, str]:
    """PATH with no folder that holds an `mlopsctl`, so the hook uses its recorded interpreter."""
    folders = [
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not os.access(os.path.join(folder, "mlopsctl"), os.X_OK)
    ]
    return dict(os.environ, PATH=os.pathsep.join(folders))


def _push_refs(repo: Path, *refspecs: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    import subprocess

    if env is None:
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        env = dict(os.environ, PATH=path)
    proc = subprocess.run(
        ["git", "push", "-q", "origin", *refspecs],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stderr + proc.stdout


def _commit(repo: Path, message: str, *paths: str) -> str:
    assert git(repo, "add", "-A", *paths).returncode == 0
    assert git(repo, "commit", "-qm", message).returncode == 0
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def _install(repo: Path, cli: Invoke) -> None:
    result = cli("hooks", "install", cwd=repo)
    assert result.exit_code == 0, result.stderr


def test_a_bad_spec_deleted_but_not_committed_still_blocks(pushable: Path, cli: Invoke) -> None:
    _install(pushable, cli)
    (pushable / "pipelines/broken.yaml").write_text(BAD_PIPELINE)
    _commit(pushable, "broken spec")
    (pushable / "pipelines/broken.yaml").unlink()  # clean-looking tree, bad commit
    code, output = _push(pushable)
    assert code != 0, output
    assert "pipelines/broken.yaml:4:1:" in output
    assert "refs/heads/main" in output

    _commit(pushable, "remove it")
    code, output = _push(pushable)
    assert code == 0, output


def test_uncommitted_work_does_not_block_good_commits(pushable: Path, cli: Invoke) -> None:
    _install(pushable, cli)
    (pushable / "pipelines/wip.yaml").write_text(BAD_PIPELINE)  # untracked
    train = pushable / "pipelines/train.yaml"
    committed = train.read_text()
    train.write_text(committed.replace("kind: Pipeline", "kind: Pipline"))  # modified
    (pushable / "notes.txt").write_text("a good change\n")
    _commit(pushable, "notes", "notes.txt")
    assert train.read_text() != committed  # still uncommitted
    code, output = _push(pushable)
    assert code == 0, output


def test_excludes_are_read_from_the_pushed_tree(pushable: Path, cli: Invoke) -> None:
    _install(pushable, cli)
    config = pushable / "mlops.yaml"
    original = config.read_text()
    config.write_text(original + "exclude: [drafts/*]\n")
    (pushable / "drafts").mkdir()
    (pushable / "drafts/old.yaml").write_text(BAD_PIPELINE)
    _commit(pushable, "park a draft")
    config.write_text(original)  # the working tree no longer excludes it; the commit does
    code, output = _push(pushable)
    assert code == 0, output

    # The same tree without the exclude: the draft is checked and blocks.
    _commit(pushable, "stop excluding drafts")
    code, output = _push(pushable)
    assert code != 0 and "drafts/old.yaml:4:1:" in output, output


def test_every_pushed_ref_is_checked_and_a_deletion_passes(pushable: Path, cli: Invoke) -> None:
    _install(pushable, cli)
    good = git(pushable, "rev-parse", "HEAD").stdout.strip()
    assert git(pushable, "checkout", "-qb", "feature").returncode == 0
    (pushable / "pipelines/broken.yaml").write_text(BAD_PIPELINE)
    bad = _commit(pushable, "broken on a branch")

    # Checked out on the bad branch, a push of the good commit alone goes through.
    code, output = _push_refs(pushable, f"{good}:refs/heads/main")
    assert code == 0, output
    # Both at once: blocked, and the message names the bad ref only.
    code, output = _push_refs(pushable, f"{good}:refs/heads/main", f"{bad}:refs/heads/feature")
    assert code != 0
    assert "refs/heads/feature" in output and "pipelines/broken.yaml:4:1:" in output
    assert "refs/heads/main" not in output

    code, output = _push_refs(pushable, "--no-verify", f"{bad}:refs/heads/feature")
    assert code == 0, output
    code, output = _push_refs(pushable, ":refs/heads/feature")  # deleting checks nothing
    assert code == 0, output


def test_hook_runs_with_an_interpreter_path_holding_a_space(pushable: Path, tmp_path: Path) -> None:
    import subprocess

    # A virtualenv-like folder named "my env": its python is a link to this one, and its
    # libraries are this environment's.
    venv = tmp_path / "my env"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to(sys.executable)
    (venv / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib", target_is_directory=True)
    env = _env_without_mlopsctl_on_path()
    proc = subprocess.run(
        [str(venv / "bin/python"), "-m", "mlopsctl", "hooks", "install"],
        cwd=pushable,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "my env" in (pushable / ".git/hooks/pre-push").read_text()

    code, output = _push_refs(pushable, "HEAD:refs/heads/main", env=env)
    assert code == 0, output
    (pushable / "pipelines/broken.yaml").write_text(BAD_PIPELINE)
    _commit(pushable, "broken spec")
    code, output = _push_refs(pushable, "HEAD:refs/heads/main", env=env)
    assert code != 0
    assert "pipelines/broken.yaml:4:1:" in output, output


def test_a_tree_holds_the_specs_validate_finds_in_its_checkout(pushable: Path, cli: Invoke) -> None:
    from mlopsctl.project.hooks import check_tree
    from mlopsctl.project.validate import validate_specs

    config = pushable / "mlops.yaml"
    config.write_text(config.read_text() + "exclude: [drafts, 'old/*.yml']\n")
    for name in (
        "drafts/a.yaml",
        "drafts/deep/b.yaml",
        "old/c.yml",
        "old/keep/d.yml",
        "node_modules/e.yaml",
        "sub/.venv/f.yaml",
        "sub/g.yml",
    ):
        (pushable / name).parent.mkdir(parents=True, exist_ok=True)
        (pushable / name).write_text(BAD_PIPELINE)
    (pushable / "data.yaml").write_text("rows: [1, 2, 3]\n")  # YAML, but not a spec
    _commit(pushable, "a tree with every case")
    tree = git(pushable, "rev-parse", "HEAD^{tree}").stdout.strip()

    files, diagnostics = check_tree(pushable, tree)
    report = validate_specs([], start=pushable)
    assert files == [report.display(p) for p in report.files]
    # fnmatch's `*` crosses folders, so old/*.yml leaves out old/keep/d.yml as well.
    assert files == ["mlops.yaml", "pipelines/train.yaml", "sub/g.yml"]
    assert [d.render() for d in diagnostics] == [d.render() for d in report.diagnostics]


def test_run_reads_git_lines_and_refuses_anything_else(pushable: Path) -> None:
    import subprocess

    head = git(pushable, "rev-parse", "HEAD").stdout.strip()
    zero = "0" * 40

    def run(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlopsctl", "hooks", "run", "pre-push", "origin", "url"],
            cwd=pushable,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run("").returncode == 0  # nothing pushed
    assert run(f"refs/heads/main {head} refs/heads/main {zero}\n").returncode == 0
    refused = run("refs/heads/main HEAD refs/heads/main 0\n")
    assert refused.returncode == 2 and "not a pre-push line" in refused.stderr

    # A spec over the size cap in a pushed commit is refused without being parsed.
    big = pushable / "pipelines/big.yaml"
    big.write_text("apiVersion: mlopsctl/v1\nkind: Pipeline\n" + "# padding\n" * 120_000)
    tip = _commit(pushable, "a big spec")
    blocked = run(f"refs/heads/main {tip} refs/heads/main {head}\n")
    assert blocked.returncode == 3
    size = big.stat().st_size
    assert f"pipelines/big.yaml:1:1: the file is {size} bytes, over the limit" in blocked.stderr
