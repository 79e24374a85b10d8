"""`mlopsctl run` with shell and Python steps: DAG order, parallelism, the step cache, run
records, and errors found before anything runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import Invoke

SLEEPY = """apiVersion: mlopsctl/v1
kind: Pipeline
name: sleepy
params:
  seconds: 1.5
  greeting: hello
steps:
  left:
    run: "sleep ${params.seconds} && echo ${params.greeting}-left > {outputs.out}"
    outputs: [out]
  right:
    run: "sleep ${params.seconds} && echo right > {outputs.out}"
    outputs: [out]
  join:
    run: "cat {inputs.a} {inputs.b} > {outputs.out} && echo '{\\"lines\\": 2}' > $MLOPS_METRICS_FILE"
    inputs: {a: left.out, b: right.out}
    outputs: [out]
"""

PYTHON_STEPS = """apiVersion: mlopsctl/v1
kind: Pipeline
name: py
params:
  factor: 3
steps:
  make:
    python: "steps:make"
    with: {n: 10}
    code: [steps.py]
    outputs: [numbers]
  scale:
    python: "steps:scale"
    inputs: {numbers: make.numbers}
    with: {factor: "${params.factor}"}
    code: [steps.py]
    outputs: [scaled]
"""

STEPS_PY = """
import json


def make(ctx):
    ctx.outputs["numbers"].write_text(json.dumps(list(range(ctx.params["n"]))))


def scale(ctx):
    numbers = json.loads(ctx.inputs["numbers"].read_text())
    folder = ctx.outputs["scaled"]
    folder.mkdir()
    scaled = [n * ctx.params["factor"] for n in numbers]
    (folder / "values.json").write_text(json.dumps(scaled))
    return {"total": sum(scaled)}
"""


def _write(project: Path, name: str, text: str) -> Path:
    path = project / "pipelines" / name
    path.write_text(text)
    return path


def _run(cli: Invoke, project: Path, *args: str) -> dict:
    result = cli("run", *args, "--json", cwd=project)
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def test_independent_steps_run_concurrently(project: Path, cli: Invoke) -> None:
    spec = _write(project, "sleepy.yaml", SLEEPY)
    t0 = time.perf_counter()
    record = _run(cli, project, str(spec), "--jobs", "2", "-p", "seconds=4")
    elapsed = time.perf_counter() - t0
    assert record["status"] == "succeeded"
    assert [s["status"] for s in record["steps"].values()] == ["executed"] * 3
    # two 4 s sleeps side by side, then a quick join: about one sleep, never the 8 s of two in
    # turn (the 3.5 s margin absorbs process start-up on a loaded 2-core machine)
    assert elapsed < 7.5, elapsed
    assert record["metrics"] == {"lines": 2.0}


def test_second_run_is_served_from_the_cache(project: Path, cli: Invoke) -> None:
    spec = _write(project, "sleepy.yaml", SLEEPY)
    first = _run(cli, project, str(spec), "-p", "seconds=0")
    t0 = time.perf_counter()
    second = _run(cli, project, str(spec), "-p", "seconds=0")
    assert time.perf_counter() - t0 < 1.0
    assert [s["status"] for s in second["steps"].values()] == ["cached"] * 3
    assert second["steps"]["join"]["outputs"] == first["steps"]["join"]["outputs"]
    assert second["steps"]["join"]["cached_from"] == first["id"]
    assert second["metrics"] == first["metrics"]

    # a changed parameter re-runs the step that uses it and everything downstream only
    third = _run(cli, project, str(spec), "-p", "seconds=0", "-p", "greeting=bye")
    statuses = {name: s["status"] for name, s in third["steps"].items()}
    assert statuses == {"left": "executed", "right": "cached", "join": "executed"}

    forced = _run(cli, project, str(spec), "-p", "seconds=0", "--no-cache")
    assert {s["status"] for s in forced["steps"].values()} == {"executed"}


def test_an_unreadable_cache_entry_is_a_miss(project: Path, cli: Invoke) -> None:
    """A cache entry that is not a record (truncated, overwritten by hand) does not stop the
    run: the step runs again, and the entry is left as it was."""
    spec = _write(project, "sleepy.yaml", SLEEPY)
    first = _run(cli, project, str(spec), "-p", "seconds=0")
    key = first["steps"]["left"]["cache_key"]
    entry = project / ".mlops" / "cache" / key[:2] / f"{key}.json"
    assert entry.is_file()
    entry.write_text("[1, 2")
    again = _run(cli, project, str(spec), "-p", "seconds=0")
    statuses = {name: s["status"] for name, s in again["steps"].items()}
    assert statuses == {"left": "executed", "right": "cached", "join": "cached"}
    assert entry.read_text() == "[1, 2"


def test_python_steps_folder_outputs_and_code_digest(project: Path, cli: Invoke) -> None:
    (project / "steps.py").write_text(STEPS_PY)
    spec = _write(project, "py.yaml", PYTHON_STEPS)
    record = _run(cli, project, str(spec))
    assert record["metrics"] == {"total": 135.0}
    assert record["steps"]["scale"]["outputs"]["scaled"]["kind"] == "dir"
    again = _run(cli, project, str(spec))
    assert {s["status"] for s in again["steps"].values()} == {"cached"}
    # editing code listed in `code:` invalidates the steps that list it
    (project / "steps.py").write_text(STEPS_PY.replace("sum(scaled)", "sum(scaled) + 1"))
    edited = _run(cli, project, str(spec))
    assert edited["metrics"] == {"total": 136.0}
    assert edited["steps"]["make"]["status"] == "executed"


def test_bytecode_under_a_code_glob_is_not_code(project: Path, cli: Invoke) -> None:
    """Python writes __pycache__/*.pyc beside the sources a step imports: derived from the
    sources, which are hashed, it must not make the next run miss the cache."""
    (project / "src").mkdir()
    (project / "src" / "steps.py").write_text(STEPS_PY)
    spec = _write(
        project,
        "py.yaml",
        PYTHON_STEPS.replace('"steps:', '"src.steps:').replace("[steps.py]", '["src/**/*"]'),
    )
    first = _run(cli, project, str(spec))
    cache = project / "src" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "steps.cpython-311.pyc").write_bytes(b"\x00compiled")
    (project / "src" / "old.pyc").write_bytes(b"\x00stale")
    again = _run(cli, project, str(spec))
    assert {s["status"] for s in again["steps"].values()} == {"cached"}
    assert again["steps"]["make"]["cache_key"] == first["steps"]["make"]["cache_key"]
    (project / "src" / "util.py").write_text("X = 1\n")  # a new source under the glob is code
    assert _run(cli, project, str(spec))["steps"]["make"]["status"] == "executed"


def test_run_record_has_provenance(project: Path, cli: Invoke) -> None:
    spec = _write(project, "sleepy.yaml", SLEEPY)
    record = _run(cli, project, str(spec), "-p", "seconds=0", "--experiment", "exp-a")
    assert record["experiment"] == "exp-a"
    assert record["spec"]["path"] == "pipelines/sleepy.yaml"
    assert record["spec"]["digest"].startswith("sha256:")
    assert record["params"]["seconds"] == 0
    assert record["overrides"] == ["seconds=0"]
    assert record["user"]["name"]
    assert record["where"]["host"]
    assert "commit" in record["git"]  # the project fixture is a git repository (no commit yet)
    stored = json.loads((project / ".mlops" / "runs" / f"{record['id']}.json").read_text())
    assert stored == record


def test_failed_step_is_recorded_and_not_cached(project: Path, cli: Invoke) -> None:
    spec = _write(
        project,
        "fails.yaml",
        SLEEPY.replace("echo right > {outputs.out}", "echo boom >&2; exit 3"),
    )
    result = cli("run", str(spec), "-p", "seconds=0", "--json", cwd=project)
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["status"] == "failed"
    assert record["steps"]["right"]["status"] == "failed"
    assert "boom" in record["steps"]["right"]["error"]
    assert record["steps"]["join"]["status"] == "skipped"
    again = json.loads(cli("run", str(spec), "-p", "seconds=0", "--json", cwd=project).stdout)
    assert again["steps"]["right"]["status"] == "failed"  # never served from the cache
    assert again["steps"]["left"]["status"] == "cached"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("inputs: {a: left.out", "inputs: {a: left.outt"), "pipelines/bad.yaml:16:"),
        (
            ("inputs: {a: left.out", "inputs: {a: lefty.out"),
            "no step 'lefty'; did you mean 'left'?",
        ),
        (("{outputs.out} && echo", "{outputs.result} && echo"), "no output named 'result'"),
    ],
    ids=["unknown-output", "unknown-step", "bad-placeholder"],
)
def test_bad_references_fail_before_anything_runs(
    project: Path, cli: Invoke, edit: tuple[str, str], expected: str
) -> None:
    spec = _write(project, "bad.yaml", SLEEPY.replace(*edit))
    result = cli("run", str(spec), cwd=project)
    assert result.exit_code == 3, result.stderr
    assert expected in result.stderr
    assert "step 'join'" in result.stderr
    assert not (project / ".mlops" / "runs").exists()


def test_cycle_is_reported_with_its_location(project: Path, cli: Invoke) -> None:
    cyclic = SLEEPY.replace(
        'run: "sleep ${params.seconds} && echo right > {outputs.out}"',
        'run: "cat {inputs.j} > {outputs.out}"\n    inputs: {j: join.out}',
    )
    spec = _write(project, "cycle.yaml", cyclic)
    result = cli("run", str(spec), cwd=project)
    assert result.exit_code == 3
    assert "cycle in step inputs" in result.stderr
    assert "pipelines/cycle.yaml:" in result.stderr


def test_unknown_param_override_is_a_usage_error(project: Path, cli: Invoke) -> None:
    spec = _write(project, "sleepy.yaml", SLEEPY)
    result = cli("run", str(spec), "-p", "secnds=1", cwd=project)
    assert result.exit_code == 2
    assert "unknown parameter 'secnds'" in result.stderr
    assert "did you mean 'seconds'?" in result.stderr


def test_dry_run_reports_without_running(project: Path, cli: Invoke) -> None:
    spec = _write(project, "sleepy.yaml", SLEEPY)
    plan = cli("run", str(spec), "-p", "seconds=0", "--dry-run", "--json", cwd=project)
    assert plan.exit_code == 0
    assert [r["action"] for r in json.loads(plan.stdout)["dry_run"]] == ["run"] * 3
    assert not (project / ".mlops" / "runs").exists()
    _run(cli, project, str(spec), "-p", "seconds=0")
    plan = cli("run", str(spec), "-p", "seconds=0", "--dry-run", "--json", cwd=project)
    assert [r["action"] for r in json.loads(plan.stdout)["dry_run"]] == ["cached"] * 3


def test_runs_list_show_compare(project: Path, cli: Invoke, tmp_path: Path) -> None:
    spec = _write(project, "sleepy.yaml", SLEEPY)
    a = _run(cli, project, str(spec), "-p", "seconds=0", "-e", "cmp")
    b = _run(cli, project, str(spec), "-p", "seconds=0", "-p", "greeting=hey", "-e", "cmp")
    listed = json.loads(cli("runs", "list", "-e", "cmp", "--json", cwd=project).stdout)
    assert [r["id"] for r in listed] == [b["id"], a["id"]]

    shown = cli("runs", "show", "latest", cwd=project)
    assert shown.exit_code == 0, shown.stderr
    assert b["id"] in shown.stdout
    assert "join" in shown.stdout

    plot = tmp_path / "metrics.png"
    compared = cli("runs", "compare", a["id"], b["id"][:20], "--plot", str(plot), cwd=project)
    assert compared.exit_code == 0, compared.stderr
    lines = {line[2:30].strip(): line for line in compared.stdout.splitlines()[1:]}
    assert lines["param greeting"].startswith("*")
    assert lines["param seconds"].startswith(" ")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    missing = cli("runs", "show", "19990101-000000-000-abcdef", cwd=project)
    assert missing.exit_code == 6


COMPONENTS = """apiVersion: mlopsctl/v1
kind: Pipeline
name: churn
params:
  data: data/churn.csv
  model: {class: sklearn.ensemble.RandomForestClassifier, n_estimators: 10}
steps:
  ingest: {component: ingest, with: {path: "${params.data}"}}
  split:
    component: split
    inputs: {dataset: ingest.dataset}
    with: {test_size: 0.25, seed: 1}
  train:
    component: train
    inputs: {train: split.train}
    with: {target: churned, estimator: "${params.model}"}
"""


def test_missing_data_and_bad_estimator_fail_before_anything_runs(
    project: Path, cli: Invoke
) -> None:
    spec = _write(
        project,
        "churn.yaml",
        COMPONENTS.replace("RandomForestClassifier", "RandomForestClasifier"),
    )
    result = cli("run", str(spec), cwd=project)
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    missing = next(line for line in lines if "data/churn.csv" in line)
    assert missing.startswith("pipelines/churn.yaml:8:")
    assert "step 'ingest'" in missing
    estimator = next(line for line in lines if "RandomForestClasifier" in line)
    assert estimator.startswith("pipelines/churn.yaml:")
    assert "step 'train'" in estimator
    assert "did you mean 'RandomForestClassifier'?" in estimator
    assert not (project / ".mlops" / "runs").exists()


def test_component_pipeline_on_a_csv_then_cached(project: Path, cli: Invoke) -> None:
    (project / "data").mkdir()
    rows = ["tenure,plan,churned"] + [
        f"{i % 37},{'basic' if i % 3 else 'pro'},{int(i % 37 < 12)}" for i in range(300)
    ]
    (project / "data/churn.csv").write_text("\n".join(rows) + "\n")
    spec = _write(project, "churn.yaml", COMPONENTS)
    first = _run(cli, project, str(spec))
    assert first["status"] == "succeeded"
    assert first["data"]["ingest.path"].startswith("sha256:")
    second = _run(cli, project, str(spec))
    assert {s["status"] for s in second["steps"].values()} == {"cached"}
    # new data: the same path with other content re-runs everything from ingest on
    (project / "data/churn.csv").write_text("\n".join(rows[:200]) + "\n")
    third = _run(cli, project, str(spec))
    assert third["steps"]["ingest"]["status"] == "executed"
    assert third["data"]["ingest.path"] != first["data"]["ingest.path"]
