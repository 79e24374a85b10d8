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
