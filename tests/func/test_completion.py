"""Shell completion: real `mlopsctl` processes asked as bash, zsh and fish ask (Typer's and
click's COMP_WORDS/COMP_CWORD, or COMP_LINE/COMP_POINT), for commands, options, choices, spec
paths by kind, model names, aliases, versions and run ids from the store; each answer in under
150 ms; the scripts, and the bash one run in bash."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import Invoke

REPO = Path(__file__).resolve().parents[2]
MLOPSCTL = str(Path(sys.executable).parent / "mlopsctl")
QUICK = """apiVersion: mlopsctl/v1
kind: Pipeline
name: quick
steps:
  hello:
    run: "echo hello > {outputs.out}"
    outputs: [out]
"""
RELEASE = """apiVersion: mlopsctl/v1
kind: Release
name: r
model: churn
gates:
  - type: threshold
    metric: accuracy
    min: 0.5
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completion cache for the module: the command index is built on the first ask."""
    return tmp_path_factory.mktemp("xdg-cache")


def _ask(
    cwd: Path, cache: Path, line: str, shell: str = "bash", **env: str
) -> tuple[list[str], float, float]:
    """Complete the end of `line` as `shell` asks; (answers, wall seconds, CPU seconds)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    full = {
        **{k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"},
        "XDG_CACHE_HOME": str(cache),
        "_MLOPSCTL_COMPLETE": f"complete_{shell}",
        "COMP_WORDS": line,
        "COMP_CWORD": str(cword),
        **env,
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [MLOPSCTL], cwd=cwd, env=full, capture_output=True, text=True, timeout=60, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines(), wall, cpu


def _complete(cwd: Path, cache: Path, line: str, shell: str = "bash", **env: str) -> list[str]:
    return _ask(cwd, cache, line, shell, **env)[0]


@pytest.fixture
def stocked(project: Path, cli: Invoke) -> tuple[Path, str]:
    """A project with a run, two models (versions, aliases) and specs of two kinds."""
    (project / "pipelines/quick.yaml").write_text(QUICK)
    (project / "specs").mkdir()
    (project / "specs/release.yaml").write_text(RELEASE)
    (project / "specs/notes.yaml").write_text("just: data\n")
    ran = cli("run", "pipelines/quick.yaml", "--json", cwd=project)
    assert ran.exit_code == 0, ran.stderr
    run_id = json.loads(ran.stdout)["id"]
    for model, versions, aliases in (("churn", 3, ["production", "staging"]), ("chess", 1, [])):
        folder = project / ".mlops/models" / model
        (folder / "versions").mkdir(parents=True)
        (folder / "aliases").mkdir()
        for n in range(1, versions + 1):
            (folder / f"versions/{n}.json").write_text("{}")
        for alias in aliases:
            (folder / f"aliases/{alias}.json").write_text("{}")
    return project, run_id


def test_commands_options_and_choices(tmp_path: Path, cache: Path) -> None:
    assert _complete(tmp_path, cache, "mlopsctl mo") == ["models", "monitor"]
    assert "init" in _complete(tmp_path, cache, "mlopsctl ci ")
    assert {"--no-cache", "--no-register"} <= set(_complete(tmp_path, cache, "mlopsctl run --no"))
    assert _complete(tmp_path, cache, "mlopsctl run x.yaml --backend ") == [
        "local",
        "docker",
        "ray",
    ]
    assert _complete(tmp_path, cache, "mlopsctl ci init ") == ["github", "gitlab"]
    assert "--store" in _complete(tmp_path, cache, "mlopsctl --st")
    # zsh and fish get the help too; zsh's separator is escaped in values.
    zsh = _complete(tmp_path, cache, "mlopsctl mod", "zsh")
    assert zsh[0].startswith("models:") and len(zsh) == 1
    fish = _complete(tmp_path, cache, "mlopsctl mod", "fish")
    assert fish[0].startswith("models\t")


def test_spec_paths_of_the_commands_kind(stocked: tuple[Path, str], cache: Path) -> None:
    project, _ = stocked
    assert _complete(project, cache, "mlopsctl run pipelines/") == [
        "pipelines/quick.yaml",
        "pipelines/train.yaml",
    ]
    assert _complete(project, cache, "mlopsctl run specs/") == []  # a Release is not run
    assert _complete(project, cache, "mlopsctl release check specs/") == ["specs/release.yaml"]
    assert "specs/" in _complete(project, cache, "mlopsctl validate ")
    assert _complete(project, cache, "mlopsctl validate specs/") == ["specs/release.yaml"]
    # Hidden and tool folders are left out unless asked for.
    assert ".mlops/" not in _complete(project, cache, "mlopsctl run ")


def test_models_aliases_versions_and_runs(stocked: tuple[Path, str], cache: Path) -> None:
    project, run_id = stocked
    assert _complete(project, cache, "mlopsctl models show ") == ["chess", "churn"]
    assert _complete(project, cache, "mlopsctl models show chu") == ["churn"]
    assert _complete(project, cache, "mlopsctl models show churn@") == [
        "churn@production",
        "churn@staging",
    ]
    # bash splits at ':' and replaces what follows it only.
    assert _complete(project, cache, "mlopsctl deploy churn:") == ["3", "2", "1"]
    assert _complete(project, cache, "mlopsctl deploy churn:", "zsh") == [
        "churn\\:3",
        "churn\\:2",
        "churn\\:1",
    ]
    assert _complete(project, cache, "mlopsctl models alias history churn pro") == ["production"]
    assert _complete(project, cache, "mlopsctl models promote churn:3 st") == ["staging"]
    assert _complete(project, cache, "mlopsctl runs show ") == [run_id]
    assert _complete(project, cache, "mlopsctl models register m --run ") == [run_id]


def test_the_store_comes_from_the_flag_env_or_mlops_yaml(
    stocked: tuple[Path, str], cache: Path, tmp_path: Path
) -> None:
    project, _ = stocked
    other = tmp_path / "other-store"
    (other / "models/fraud/versions").mkdir(parents=True)
    line = f"mlopsctl --store {other} models show "
    assert _complete(project, cache, line) == ["fraud"]
    assert _complete(project, cache, "mlopsctl models show ", MLOPSCTL_STORE=str(other)) == [
        "fraud"
    ]
    # From a sub-folder, mlops.yaml's relative store is the project's.
    assert _complete(project / "pipelines", cache, "mlopsctl models show ") == ["chess", "churn"]
    # An S3 store is not asked (no network per keypress): nothing, at once.
    answers, wall, _ = _ask(
        project, cache, "mlopsctl models show ", MLOPSCTL_STORE="s3://bucket/prefix"
    )
    assert answers == [] and wall < 5


def test_every_answer_comes_in_under_150_ms(stocked: tuple[Path, str], cache: Path) -> None:
    project, _ = stocked
    _complete(project, cache, "mlopsctl ")  # the index exists (built on a first ask)
    lines = [
        "mlopsctl ",
        "mlopsctl models show ",
        "mlopsctl deploy churn@",
        "mlopsctl runs show ",
        "mlopsctl run pipelines/",
        "mlopsctl release check --",
    ]
    for line in lines:
        timings = [_ask(project, cache, line)[1:] for _ in range(5)]
        best_wall = min(w for w, _ in timings)
        worst_cpu = max(c for _, c in timings)
        assert worst_cpu < 0.150, (line, timings)
        # Wall time also counts waiting for a CPU: judged when the machine is not overloaded.
        if os.getloadavg()[0] < (os.cpu_count() or 1):
            assert best_wall < 0.150, (line, timings)


def test_bash_script_completes_in_bash(stocked: tuple[Path, str], cache: Path, cli: Invoke) -> None:
    project, _ = stocked
    shown = cli("completion", "show", "bash")
    assert shown.exit_code == 0
    script = project / "completion.bash"
    script.write_text(shown.stdout)
    bash = (
        f"source {script}; COMP_LINE='mlopsctl models show ch'; COMP_POINT=${{#COMP_LINE}}; "
        "COMP_WORDS=(mlopsctl models show ch); COMP_CWORD=3; "
        "_mlopsctl_completion mlopsctl; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env["PATH"] = f"{Path(MLOPSCTL).parent}:{env['PATH']}"
    env.pop("MLOPSCTL_STORE", None)
    proc = subprocess.run(
        ["bash", "-c", bash], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == ["chess", "churn"], proc.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_and_install(
    shell: str, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = cli("completion", "show", shell)
    assert shown.exit_code == 0 and f"complete_{shell}" in shown.stdout
    binary = shutil.which(shell)
    if binary is not None:  # syntax check where the shell is here
        flag = ["--no-execute"] if shell == "fish" else ["-n"]
        script = tmp_path / f"script.{shell}"
        script.write_text(shown.stdout)
        check = subprocess.run([binary, *flag, str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SHELL", f"/bin/{shell}")
    installed = cli("--install-completion")
    assert installed.exit_code == 0, installed.stderr
    path = Path(installed.stdout.strip())
    assert path.is_file() and path.read_text() == shown.stdout
    assert str(path).startswith(str(tmp_path))
    assert list((tmp_path / "cache/mlopsctl").glob("commands-*.json"))  # warmed
    assert cli("--show-completion").stdout == shown.stdout


def test_an_unknown_shell_is_refused(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    result = cli("completion", "install")
    assert result.exit_code == 2 and "cannot tell your shell" in result.stderr
