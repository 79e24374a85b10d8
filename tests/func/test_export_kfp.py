"""`mlopsctl export kfp`: the quickstart compiled with the kfp SDK, loaded back with the kfp SDK
(the DAG edges are the spec's dependencies; images, commands, arguments and resources are what
was asked), consumed by another pipeline, and run task by task the way a KFP backend would run
it (placeholders filled in, each task's container command run) with the same output digests
as `mlopsctl run`, every task from the step cache the second time.

The committed example specs/examples/kfp/quickstart-pipeline.yaml is regenerated and compared
(the mlopsctl_key constants and the SDK version masked: the first changes with mlopsctl's
component code, the second with the kfp release). To regenerate it, from the repository root:

    MLOPSCTL_STORE=s3://mlops-store/quickstart mlopsctl export kfp \\
        specs/examples/quickstart.yaml -o specs/examples/kfp/quickstart-pipeline.yaml \\
        --image registry.example.com/mlops/quickstart:v1
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.func.conftest import Invoke

kfp = pytest.importorskip("kfp")

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "examples" / "quickstart.yaml"
EXAMPLE = REPO / "specs" / "examples" / "kfp" / "quickstart-pipeline.yaml"
EXAMPLE_STORE = "s3://mlops-store/quickstart"
EXAMPLE_IMAGE = "registry.example.com/mlops/quickstart:v1"
STORE = "s3://mlops-test/kfp"
IMAGE = "127.0.0.1:5000/demo/quickstart:0123456789ab"
ENTRY = ["python", "-m", "mlopsctl.exec", "kfp"]


def _quickstart(project: Path, resources: str = "") -> Path:
    text = QUICKSTART.read_text().replace("n_estimators: 200", "n_estimators: 20")
    if resources:
        text = text.replace(
            '    with: {target: "${params.target}", estimator: "${params.model}"}\n',
            '    with: {target: "${params.target}", estimator: "${params.model}"}\n'
            f"    resources: {resources}\n",
        )
        assert resources in text
    spec = project / "pipelines" / "quickstart.yaml"
    spec.write_text(text)
    git(project, "add", "-A", check=True)
    git(project, "commit", "-qm", "quickstart", check=True)
    return spec


def _pipeline_spec(path: Path) -> dict[str, Any]:
    """The compiled pipeline as the kfp SDK loads it (a component whose implementation is a
    graph: the PipelineSpec message), as a dict."""
    from google.protobuf import json_format

    component = kfp.components.load_component_from_file(str(path))
    graph = component.component_spec.implementation.graph
    assert graph is not None
    return json_format.MessageToDict(graph)


def _upstream(spec: Path) -> dict[str, set[str]]:
    import yaml

    steps = yaml.safe_load(spec.read_text())["steps"]
    return {
        name: {ref.split(".")[0] for ref in (step.get("inputs") or {}).values()}
        for name, step in steps.items()
    }


def test_quickstart_compiles_and_loads_back(
    cli: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _quickstart(project, resources="{cpus: 2, memory: 4g, gpus: 1}")
    monkeypatch.setenv("MLOPSCTL_STORE", STORE)
    out = project / "quickstart.kfp.yaml"
    result = cli(
        "export",
        "kfp",
        "pipelines/quickstart.yaml",
        "-o",
        str(out),
        "--image",
        IMAGE,
        "--json",
        cwd=project,
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == ["ingest", "split", "train", "evaluate"]
    assert summary["image"] == IMAGE

    loaded = _pipeline_spec(out)
    assert loaded["pipelineInfo"]["name"] == "quickstart"
    tasks = loaded["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "split", "train", "evaluate"}
    # The DAG edges are the spec's dependencies, each carried by an artifact.
    upstream = _upstream(spec)
    for name, task in tasks.items():
        assert set(task.get("dependentTasks", [])) == upstream[name], name
        producers = {
            a["taskOutputArtifact"]["producerTask"]
            for a in task.get("inputs", {}).get("artifacts", {}).values()
        }
        assert producers == upstream[name]
        assert task["cachingOptions"]["enableCache"] is True
        key = task["inputs"]["parameters"]["mlopsctl_key"]["runtimeValue"]["constant"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", key)
    assert tasks["evaluate"]["inputs"]["artifacts"]["in_model"]["taskOutputArtifact"] == {
        "producerTask": "train",
        "outputArtifactKey": "out_model",
    }

    executors = loaded["deploymentSpec"]["executors"]
    assert len(executors) == 4
    for name, task in tasks.items():
        container = executors[loaded["components"][task["componentRef"]["name"]]["executorLabel"]]
        container = container["container"]
        assert container["image"] == IMAGE
        assert container["command"] == ENTRY
        args = container["args"]
        assert args[args.index("--step") + 1] == name
        assert args[args.index("--spec") + 1] == "pipelines/quickstart.yaml"
        assert args[args.index("--project-dir") + 1] == "/app"
        assert json.loads(args[args.index("--store") + 1])["url"] == STORE
        resources = container.get("resources", {})
        if name == "train":
            assert resources["resourceCpuLimit"] == "2"
            assert resources["resourceMemoryLimit"] == "4Gi"
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "1"
        else:
            assert resources == {}

    # The SDK can use the loaded pipeline as a component of another pipeline.
    from kfp import compiler, dsl

    component = kfp.components.load_component_from_file(str(out))

    @dsl.pipeline(name="outer")
    def outer():  # type: ignore[no-untyped-def]
        component()

    compiler.Compiler().compile(outer, str(project / "outer.yaml"))
    assert "quickstart" in (project / "outer.yaml").read_text()


def _fill(arg: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{\$\.[^}]+\}\}", lambda m: values[m.group(0)], arg)


def _run_like_kfp(out: Path, project: Path, store: str) -> dict[str, dict[str, Any]]:
    """Run each task of the compiled pipeline as a KFP backend would: in the DAG's order, its
    container command with the placeholders filled in (artifact paths in a scratch folder,
    parameters from the task's inputs), here instead of in a pod: the project folder stands
    for the image's /app and a local store for the bucket. Returns each task's output
    references."""
    loaded = _pipeline_spec(out)
    tasks = loaded["root"]["dag"]["tasks"]
    executors = loaded["deploymentSpec"]["executors"]
    scratch = project / "kfp-artifacts"
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(tasks):
        for name, task in tasks.items():
            if name in done or not set(task.get("dependentTasks", [])) <= set(done):
                continue
            component = loaded["components"][task["componentRef"]["name"]]
            container = executors[component["executorLabel"]]["container"]
            values: dict[str, str] = {}
            for key, param in task.get("inputs", {}).get("parameters", {}).items():
                values[f"{{{{$.inputs.parameters['{key}']}}}}"] = param["runtimeValue"]["constant"]
            for key, artifact in task.get("inputs", {}).get("artifacts", {}).items():
                source = artifact["taskOutputArtifact"]
                path = scratch / source["producerTask"] / source["outputArtifactKey"]
                values[f"{{{{$.inputs.artifacts['{key}'].path}}}}"] = str(path)
            for key in component["outputDefinitions"]["artifacts"]:
                values[f"{{{{$.outputs.artifacts['{key}'].path}}}}"] = str(scratch / name / key)
            args = [_fill(arg, values) for arg in container["args"]]
            args[args.index("--project-dir") + 1] = str(project)
            args[args.index("--store") + 1] = json.dumps({"url": store, "s3_options": {}})
            command = [sys.executable, *container["command"][1:]]
            proc = subprocess.run(
                [*command, *args],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert proc.returncode == 0, f"task {name}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            done[name] = {
                "log": proc.stderr,
                "outputs": {
                    key.removeprefix("out_"): json.loads((scratch / name / key).read_text())
                    for key in component["outputDefinitions"]["artifacts"]
                },
            }
    return done


def test_the_exported_pipeline_computes_what_a_local_run_computes(
    cli: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _quickstart(project)
    monkeypatch.setenv("MLOPSCTL_STORE", STORE)
    out = project / "quickstart.kfp.yaml"
    result = cli(
        "export",
        "kfp",
        "pipelines/quickstart.yaml",
        "-o",
        str(out),
        "--image",
        IMAGE,
        cwd=project,
    )
    assert result.exit_code == 0, result.stderr
    store = str(project / ".mlops")
    first = _run_like_kfp(out, project, store)

    monkeypatch.delenv("MLOPSCTL_STORE")
    result = cli("run", "pipelines/quickstart.yaml", "--no-cache", "--json", cwd=project)
    assert result.exit_code == 0, result.stderr
    local = json.loads(result.stdout)
    for name, step in local["steps"].items():
        for output, ref in step["outputs"].items():
            handed_on = first[name]["outputs"][output]
            assert handed_on["ref"]["digest"] == ref["digest"], (name, output)
            assert handed_on["cache_key"] == step["cache_key"]  # keyed as a local run is

    # Run again (as after a KFP cache miss): every task from the shared step cache.
    shutil.rmtree(project / "kfp-artifacts")
    again = _run_like_kfp(out, project, store)
    for name, task in again.items():
        assert "from the step cache" in task["log"], name
        assert task["outputs"] == first[name]["outputs"]


def test_a_task_refuses_an_image_with_other_code(
    cli: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _quickstart(project)
    monkeypatch.setenv("MLOPSCTL_STORE", STORE)
    out = project / "quickstart.kfp.yaml"
    assert (
        cli("export", "kfp", str(spec), "-o", str(out), "--image", IMAGE, cwd=project).exit_code
        == 0
    )
    # The "image" (here: the project folder) now holds other params than were exported.
    spec.write_text(spec.read_text().replace("test_size: 0.25", "test_size: 0.3"))
    loaded = _pipeline_spec(out)
    task = loaded["root"]["dag"]["tasks"]["ingest"]
    executor = loaded["components"][task["componentRef"]["name"]]["executorLabel"]
    args = loaded["deploymentSpec"]["executors"][executor]["container"]["args"]
    key = task["inputs"]["parameters"]["mlopsctl_key"]["runtimeValue"]["constant"]
    args = [a.replace("{{$.inputs.parameters['mlopsctl_key']}}", key) for a in args]
    args = [str(project / "o") if a.startswith("{{$.outputs") else a for a in args]
    args[args.index("--project-dir") + 1] = str(project)
    args[args.index("--store") + 1] = json.dumps({"url": str(project / ".mlops")})
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl.exec", "kfp", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr  # ingest itself did not change
    split = loaded["root"]["dag"]["tasks"]["split"]
    assert (
        split["inputs"]["parameters"]["mlopsctl_key"]
        != task["inputs"]["parameters"]["mlopsctl_key"]
    )
    executor = loaded["components"][split["componentRef"]["name"]]["executorLabel"]
    args = loaded["deploymentSpec"]["executors"][executor]["container"]["args"]
    key = split["inputs"]["parameters"]["mlopsctl_key"]["runtimeValue"]["constant"]
    args = [a.replace("{{$.inputs.parameters['mlopsctl_key']}}", key) for a in args]
    args = [str(project / "o") if a.startswith("{{$.inputs.artifacts") else a for a in args]
    args = [str(project / "x") if a.startswith("{{$.outputs") else a for a in args]
    args[args.index("--project-dir") + 1] = str(project)
    args[args.index("--store") + 1] = json.dumps({"url": str(project / ".mlops")})
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl.exec", "kfp", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "the image holds other code, params or data than the pipeline was exported from" in (
        proc.stderr
    )


def test_a_local_store_is_refused(cli: Invoke, project: Path) -> None:
    _quickstart(project)
    result = cli("export", "kfp", "pipelines/quickstart.yaml", "-o", "x.yaml", cwd=project)
    assert result.exit_code == 2
    assert "pods cannot see" in result.stderr
    assert "use an S3 store" in result.stderr
    assert not (project / "x.yaml").exists()


def test_the_default_image_is_the_build_tag(
    cli: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "mlops.yaml").write_text(
        (project / "mlops.yaml").read_text() + "registry: {url: '127.0.0.1:5000', insecure: true}\n"
    )
    _quickstart(project)
    commit = git(project, "rev-parse", "HEAD", check=True).stdout.strip()
    monkeypatch.setenv("MLOPSCTL_STORE", STORE)
    result = cli(
        "export", "kfp", "pipelines/quickstart.yaml", "-o", "q.yaml", "--json", cwd=project
    )
    assert result.exit_code == 0, result.stderr
    image = json.loads(result.stdout)["image"]
    assert image == f"127.0.0.1:5000/demo/quickstart:{commit[:12]}"
    executors = _pipeline_spec(project / "q.yaml")["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {image}


def test_without_kfp_installed_says_how_to_get_it(
    cli: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _quickstart(project)
    monkeypatch.setenv("MLOPSCTL_STORE", STORE)
    monkeypatch.setitem(sys.modules, "kfp", None)
    result = cli("export", "kfp", "pipelines/quickstart.yaml", "-o", "q.yaml", cwd=project)
    assert result.exit_code == 1
    assert "pip install 'mlopsctl[kfp]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _masked(text: str) -> str:
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:<key>", text)
    return re.sub(r"(?m)^(sdkVersion|# Name|# Description).*$", "", text)


def test_the_committed_example_is_what_export_writes(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPSCTL_STORE", EXAMPLE_STORE)
    out = tmp_path / "quickstart-pipeline.yaml"
    result = cli(
        "export",
        "kfp",
        "specs/examples/quickstart.yaml",
        "-o",
        str(out),
        "--image",
        EXAMPLE_IMAGE,
        cwd=REPO,
    )
    assert result.exit_code == 0, result.stderr
    assert _masked(out.read_text()) == _masked(EXAMPLE.read_text()), (
        "specs/examples/kfp/quickstart-pipeline.yaml is stale: regenerate it (see this "
        "module's docstring)"
    )
    _pipeline_spec(EXAMPLE)  # and the kfp SDK loads it
