"""`mlopsctl build --serving` and `mlopsctl deploy`: the command-line mistakes that are caught
before any engine or store is asked anything, each a one-line error with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlopsctl.cli.main import app


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\n"
        "docker:\n  hosts:\n    gpu: {url: 'tcp://127.0.0.1:1'}\n"
    )
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("build",), "give a pipeline spec, or --serving REF"),
        (("build", "p.yaml", "--serving", "m:1"), "not both"),
        (("deploy", "m:1", "--env", "NOEQUALS"), "is not KEY=VALUE"),
        (("deploy", "m:1", "--host", "nope"), "no Docker host named 'nope'"),
        (("deploy", "m:1", "--port", "70000"), "port 70000 is out of range"),
        (("deploy", "Bad Name:1"), "invalid model name"),
    ],
)
def test_mistakes_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    result = _run(tmp_path, monkeypatch, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1  # one line
