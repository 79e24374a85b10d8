"""The runner registry (backend name -> lazily imported factory) and the package boundaries
around pipeline/: runs and the runner interface load without the executor, registry/ or
containers/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlopsctl.app.runners import RUNNERS, known_backends, prepare_runner, runner_factory
from mlopsctl.errors import UsageError
from mlopsctl.pipeline.runners import LocalRunner

REPO = Path(__file__).resolve().parents[2]


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        runner_factory("slurm")
    text = caught.value.one_line()
    assert "unknown backend 'slurm'" in text
    assert "docker, local, ray" in text


def test_every_registered_factory_imports() -> None:
    assert known_backends() == sorted(RUNNERS)
    for backend in RUNNERS:
        assert callable(runner_factory(backend))


def test_local_backend_runs_steps_in_the_project_root(tmp_path: Path) -> None:
    class Plan:
        project_root = tmp_path

    runner = prepare_runner("local", None, Plan(), {}, None)  # type: ignore[arg-type]
    assert isinstance(runner, LocalRunner)
    assert runner.project_root == tmp_path


def _loaded_after(statement: str) -> list[str]:
    probe = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        ("import mlopsctl.runs", ("mlopsctl.pipeline",)),
        (
            "import mlopsctl.pipeline.runners",
            ("mlopsctl.pipeline.executor", "mlopsctl.registry", "mlopsctl.containers"),
        ),
        (
            "import mlopsctl.pipeline.executor, mlopsctl.pipeline.plan",
            ("mlopsctl.registry", "mlopsctl.containers", "mlopsctl.app"),
        ),
        ("import mlopsctl.app", ("mlopsctl.containers", "docker")),
    ],
)
def test_imports_stay_inside_their_layer(statement: str, absent: tuple[str, ...]) -> None:
    loaded = _loaded_after(statement)
    for name in absent:
        assert not [m for m in loaded if m == name or m.startswith(name + ".")], name
