"""Whole commands through Typer's CliRunner, in temporary project folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mlopsctl.cli.main import app
from tests.conftest import git

Invoke = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run `mlopsctl ARGS` in-process; returns exit_code, stdout and stderr."""
    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    runner = CliRunner()

    def invoke(*args: str, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def project(tmp_path: Path, cli: Invoke) -> Iterator[Path]:
    """A scaffolded project inside a fresh git repository."""
    root = tmp_path / "demo"
    root.mkdir()
    assert git(root, "init", "-q").returncode == 0
    result = cli("init", str(root))
    assert result.exit_code == 0, result.stderr
    yield root
