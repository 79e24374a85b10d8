"""`mlopsctl --help` and `validate` must not pay for heavy libraries (STYLE.md: fast start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pandas", "sklearn", "xgboost", "scipy", "boto3", "botocore", "docker", "numpy", "git")
REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from mlopsctl.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.__stdout__.write(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))
"""


def _modules_after(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = proc.stdout.strip().splitlines()[-1]
    return set(json.loads(last[last.index("[") :]))


@pytest.mark.parametrize(
    "args",
    [("--help",), ("validate", "specs/examples"), ("hooks", "--help"), ("build", "--help")],
    ids=["help", "validate", "hooks-help", "build-help"],
)
def test_no_heavy_imports(args: tuple[str, ...]) -> None:
    loaded = _modules_after(*args)
    assert "mlopsctl" in loaded  # the probe really ran the CLI
    assert not loaded & set(HEAVY), f"heavy modules imported: {sorted(loaded & set(HEAVY))}"


def _names(tree: object) -> set[str]:
    import typer

    return set(typer.main.get_command(tree).commands)  # type: ignore[arg-type, attr-defined]


def test_one_command_builds_only_its_own_tree() -> None:
    from mlopsctl.cli.main import app, command_tree

    everything = _names(app)
    assert {"validate", "runs", "models", "site"} <= everything and len(everything) > 20
    for name in everything:  # every command and group is found by its name
        assert _names(command_tree([name, "--help"])) == {name}
    assert _names(command_tree(["--store", "s3://b/p", "-v", "-q", "validate", "x.yaml"])) == {
        "validate"
    }
    assert _names(command_tree(["runs", "list", "-e", "validate"])) == {"runs"}
    for whole in ([], ["--help"], ["-h"], ["--version"], ["-v"], ["valdate"], ["--", "run"]):
        assert command_tree(whole) is app, whole  # root help and suggestions see every command


def test_a_pruned_tree_runs_the_command_with_root_options(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("apiVersion: mlopsctl/v1\nkind: Pipeline\nname: x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "--store", str(tmp_path / "s"), "-q", "validate"]
        + [str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3 and "missing required key 'steps'" in proc.stdout + proc.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "valdate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 2 and "Did you mean 'validate'?" in wrong.stderr
