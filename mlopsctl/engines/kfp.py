"""Export a pipeline to Kubeflow Pipelines v2 (which Vertex AI Pipelines also runs):
`mlopsctl export kfp SPEC -o pipeline.yaml [--image REF]`.

The pipeline is compiled with the kfp SDK. Each step becomes a container component that runs
the pipeline's image (the reference `mlopsctl build` tags it with: `<registry>/<project>/
<pipeline>:<commit12>`, computed here without Docker; or --image) and the exec entry point,
`python -m mlopsctl.exec kfp ARGS` (run_kfp_task below), which does inside the pod what the
executor does for one step: read the upstream outputs' references, compute the step's cache
key exactly as a local run does (code, params, input digests, data digests, the Python and
libraries of the image), serve the step from the shared step cache or run it through the same
`python -m mlopsctl.exec TASK.json` as a local run, store its outputs, save the cache entry and
hand on the output references.

- Artifacts pass through the store: what KFP moves between tasks is a small JSON file per
  output (its digest, kind and size); the bytes stay in the store, which must be S3 (a pod
  cannot see a local folder). The store URL and options are baked into the tasks' arguments;
  credentials come from the pods' environment (a Kubernetes secret, workload identity).
- Caching keyed as ours: KFP v2 keys a task on its container spec (image, command, arguments),
  its input parameter values and its input artifacts. Each task gets, as an input parameter,
  `mlopsctl_key`: the digest of the static part of our cache key (step kind and target, code
  digest, resolved params, environment variables, outputs, data digests), computed at export;
  the dynamic part, the upstream outputs, reaches KFP's key as the input artifacts; the
  environment is the image, which is in the container spec. So KFP's key changes exactly when
  ours does (a task checks `mlopsctl_key` against what the image holds and refuses to run
  when they differ). And when KFP itself misses (new upstream artifacts with the same content),
  our content-addressed step cache in the store still serves the step.
- Resources: `cpus` -> CPU limit, `memory` -> memory limit, `gpus` -> accelerator limit (of
  type nvidia.com/gpu, or --accelerator, e.g. NVIDIA_TESLA_T4 on Vertex AI).

`kfp` is imported only inside the functions that need it (`pip install 'mlopsctl[kfp]'`); the
tasks themselves do not need it in the image."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl.containers import IMAGE_PROJECT_DIR
from mlopsctl.containers.build import plan_build
from mlopsctl.digest import sha256_json
from mlopsctl.errors import MlopsError, NotFound, UsageError
from mlopsctl.pipeline import cache
from mlopsctl.pipeline.executor import Executor, RunOptions
from mlopsctl.pipeline.plan import PipelinePlan, StepPlan, load_plan
from mlopsctl.pipeline.runners import LocalRunner, LogSink
from mlopsctl.runs import new_run_id
from mlopsctl.store import open_store
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore

INSTALL_HINT = "pip install 'mlopsctl[kfp]'"
ENTRY = ["python", "-m", "mlopsctl.exec", "kfp"]
KEY_PARAMETER = "mlopsctl_key"
DEFAULT_ACCELERATOR = "nvidia.com/gpu"
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
_MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kKmMgGtT]?)i?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def import_kfp() -> Any:
    try:
        import kfp
        from kfp import compiler, dsl  # noqa: F401
    except ImportError:
        raise MlopsError(
            "export kfp needs the kfp package, which is not installed", INSTALL_HINT
        ) from None
    return kfp


# -- names and values ------------------------------------------------------------------------


def io_name(prefix: str, name: str) -> str:
    """A step's input or output name as a KFP parameter name (a Python identifier)."""
    return f"{prefix}_{name.replace('-', '_')}"


def kfp_memory(text: str) -> str:
    """A spec memory size ('512m', '4g', '2Gi': binary units) as KFP reads it ('512Mi')."""
    match = _MEMORY_RE.match(text.strip())
    if not match:
        raise UsageError(f"memory '{text}' is not a size like 512m, 4g or 2Gi")
    number, unit = float(match[1]), match[2].lower()
    size = int(number * _UNITS[unit])
    for suffix, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def static_key(executor: Executor, step: StepPlan) -> str:
    """The digest of the part of the step's cache key that is known before it runs: all of
    key_material but the upstream outputs' digests and the environment (the image)."""
    for up, out in step.inputs.values():
        executor.results.setdefault(up, {}).setdefault(out, {"digest": _PLACEHOLDER_DIGEST})
    material = executor.key_material(step)
    for name in ("inputs", "environment"):
        material.pop(name, None)
    return sha256_json(material)


def default_image(project: Project, spec: Path) -> tuple[str, list[str]]:
    """The reference `mlopsctl build` tags the pipeline's image with (by git commit), with
    notes for the user. No engine is asked anything."""
    planned = plan_build(project, spec)
    tag = planned.git_tag
    if tag is None:
        raise UsageError(
            "the project has no git commit, so the pipeline's image has no tag to name",
            "commit, then mlopsctl build --push; or give --image REF",
        )
    notes = [f"image {planned.repository}:{tag} (build and push it: mlopsctl build --push)"]
    if tag.endswith("-dirty"):
        notes.append("the working tree has changes: commit before building the image")
    if not (project.registry or {}).get("url"):
        notes.append("mlops.yaml names no registry: the cluster must find the image by that name")
    return f"{planned.repository}:{tag}", notes


# -- export ----------------------------------------------------------------------------------


def export_kfp(
    project: Project,
    spec: Path,
    output: Path,
    *,
    overrides: list[str] | None = None,
    image: str | None = None,
    accelerator: str = DEFAULT_ACCELERATOR,
) -> dict[str, Any]:
    """Compile `spec` into a KFP v2 pipeline file at `output`. Returns what was written."""
    kfp = import_kfp()
    from kfp import compiler, dsl

    if not spec.is_file():
        raise NotFound(f"no such pipeline spec: {spec}", "give the path of a kind: Pipeline file")
    if not str(project.store_url).startswith("s3://"):
        raise UsageError(
            f"the store is the local folder {project.store_url}, which pods cannot see",
            "use an S3 store for pipelines on Kubeflow or Vertex AI (store.url: s3://bucket/"
            "prefix in mlops.yaml, or MLOPSCTL_STORE)",
        )
    plan = load_plan(spec, overrides, project_root=project.root)
    notes: list[str] = []
    if image is None:
        image, notes = default_image(project, spec)
    executor = Executor(plan, cast("ObjectStore", _NoStore()), {}, RunOptions(jobs=1))
    keys = {name: static_key(executor, step) for name, step in plan.steps.items()}
    store = {"url": project.store_url, "s3_options": dict(project.s3_options or {})}
    components = {
        name: _component(dsl, plan, step, image, store, overrides or [])
        for name, step in plan.steps.items()
    }

    def pipeline() -> None:
        tasks: dict[str, Any] = {}
        for name, step in plan.steps.items():
            arguments: dict[str, Any] = {KEY_PARAMETER: keys[name]}
            for input_name, (up, out) in step.inputs.items():
                arguments[io_name("in", input_name)] = tasks[up].outputs[io_name("out", out)]
            task = components[name](**arguments)
            task.set_caching_options(True)
            task.set_env_variable("PYTHONUNBUFFERED", "1")
            _set_resources(task, step.resources or {}, accelerator)
            tasks[name] = task

    pipeline.__name__ = _identifier(plan.name)
    pipeline.__annotations__ = {}  # kfp would read the return annotation ("None") as outputs
    decorated = dsl.pipeline(name=plan.name, description=plan.description or None)(pipeline)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(decorated, package_path=str(output))
    return {
        "pipeline": plan.name,
        "output": str(output),
        "image": image,
        "steps": list(plan.steps),
        "kfp": kfp.__version__,
        "notes": notes,
    }


class _NoStore:
    """The executor is only asked for cache keys at export: it never touches a store."""


def _identifier(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "pipeline"


def _component(
    dsl: Any,
    plan: PipelinePlan,
    step: StepPlan,
    image: str,
    store: dict[str, Any],
    overrides: list[str],
) -> Any:
    """A container component for one step, its signature made from the step's inputs and
    outputs (kfp reads the signature to know the component's interface)."""
    inputs = {io_name("in", name): name for name in step.inputs}
    outputs = {io_name("out", name): name for name in sorted(step.outputs)}
    if len(inputs) != len(step.inputs) or len(outputs) != len(step.outputs):
        raise UsageError(
            f"step '{step.name}': input or output names differ only by '-' and '_'",
            "rename them: KFP needs them as identifiers",
        )
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(n, kind, annotation=dsl.Input[dsl.Artifact]) for n in inputs]
    parameters += [inspect.Parameter(n, kind, annotation=dsl.Output[dsl.Artifact]) for n in outputs]
    parameters.append(inspect.Parameter(KEY_PARAMETER, kind, annotation=str))
    names = [p.name for p in parameters]
    fixed = [
        "--project-dir",
        _project_dir(),
        "--spec",
        plan.spec_display,
        "--step",
        step.name,
        "--store",
        json.dumps(store, sort_keys=True),
    ]
    for override in overrides:
        fixed += ["--param", override]

    def body(*values: Any) -> Any:
        given = dict(zip(names, values, strict=True))
        args = list(fixed)
        for parameter, name in inputs.items():
            args += ["--input", name, given[parameter].path]
        for parameter, name in outputs.items():
            args += ["--output", name, given[parameter].path]
        args += ["--key", given[KEY_PARAMETER]]
        return dsl.ContainerSpec(image=image, command=list(ENTRY), args=args)

    body.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    body.__annotations__ = {p.name: p.annotation for p in parameters}
    body.__name__ = _identifier(step.name)  # the task's name in the pipeline
    body.__doc__ = f"Step '{step.name}' of pipeline '{plan.name}' ({step.kind}: {step.target})"
    return dsl.container_component(body)


def _project_dir() -> str:
    return IMAGE_PROJECT_DIR


def _set_resources(task: Any, resources: dict[str, Any], accelerator: str) -> None:
    if resources.get("cpus"):
        task.set_cpu_limit(f"{float(resources['cpus']):g}")
    if resources.get("memory"):
        task.set_memory_limit(kfp_memory(str(resources["memory"])))
    gpus = int(resources.get("gpus") or 0)
    if gpus:
        task.set_accelerator_type(accelerator)
        task.set_accelerator_limit(gpus)


# -- inside a KFP task -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlopsctl.exec kfp")
    parser.add_argument("--project-dir", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--step", required=True)
    parser.add_argument("--store", required=True, help="JSON: {url, s3_options}")
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--input", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))
    parser.add_argument("--output", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))
    parser.add_argument("--key", required=True)
    parser.add_argument("--no-cache", action="store_true")
    return parser


def run_kfp_task(argv: list[str], log: Callable[[str], None] | None = None) -> int:
    """One step of an exported pipeline, inside its pod: 0 when its outputs are handed on,
    1 (the reason on stderr) when the step failed or must not run."""
    try:
        return _run_kfp_task(argv, log or _stderr)
    except MlopsError as exc:
        sys.stderr.write(f"step failed: {exc.one_line()}\n")
        return 1


def _run_kfp_task(argv: list[str], say: Callable[[str], None]) -> int:
    args = _parser().parse_args(argv)
    root = Path(args.project_dir).resolve()
    os.chdir(root)
    plan = load_plan(root / args.spec, list(args.param), project_root=root)
    if args.step not in plan.steps:
        raise UsageError(f"pipeline '{plan.name}' has no step '{args.step}'")
    step = plan.steps[args.step]
    store_config = {**json.loads(args.store), "base_dir": str(root)}
    with open_store(
        store_config["url"], s3_options=store_config.get("s3_options"), base_dir=root
    ) as store:
        executor = Executor(plan, store, store_config, RunOptions(jobs=1))
        if static_key(executor, step) != args.key:
            raise MlopsError(
                f"step '{step.name}': the image holds other code, params or data than the "
                "pipeline was exported from (its cache key differs)",
                "build and push the image from the commit you export, then export again",
            )
        executor.results.clear()
        upstream = {name: json.loads(Path(path).read_text()) for name, path in args.input}
        for name, (up, out) in step.inputs.items():
            executor.results.setdefault(up, {})[out] = upstream[name]["ref"]
        material = executor.key_material(step)
        key = cache.cache_key(material)
        entry = None if args.no_cache else cache.lookup(store, key)
        if entry is not None:
            say(f"{step.name}: from the step cache ({key[:12]}, run {entry.get('run_id')})")
            outputs = entry["outputs"]
        else:
            outputs = _execute(executor, store, step, key, say)
    for name, path in args.output:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        reference = {"step": step.name, "output": name, "ref": outputs[name], "cache_key": key}
        target.write_text(json.dumps(reference, sort_keys=True) + "\n")
    return 0


def _execute(
    executor: Executor, store: Any, step: StepPlan, key: str, say: Callable[[str], None]
) -> dict[str, Any]:
    plan = executor.plan
    run_id = new_run_id()
    workdir = Path(tempfile.mkdtemp(prefix=f"mlopsctl-kfp-{step.name}-"))
    inputs = {name: executor.results[up][out] for name, (up, out) in step.inputs.items()}
    task = {
        "run_id": run_id,
        "step": step.name,
        "kind": step.kind,
        "target": step.target,
        "params": step.params,
        "env": step.env,
        "inputs": inputs,
        "outputs": sorted(step.outputs),
        "store": executor.store_config,
        "project_root": str(plan.project_root),
        "workdir": str(workdir),
        "result": str(workdir / "result.json"),
        "experiment": plan.name,
    }
    with (workdir / "step.log").open("wb") as log:
        sink = LogSink(log, step.name, echo=True)  # the pod's log is the step's log
        try:
            ended = LocalRunner(plan.project_root).run(step, task, workdir, sink)
        finally:
            sink.close()
    if ended.code != 0 or ended.result is None:
        raise MlopsError(f"step '{step.name}' failed (exit {ended.code}) {ended.detail}".strip())
    result = ended.result
    cache.save(
        store,
        key,
        {
            "outputs": result["outputs"],
            "metrics": result.get("metrics", {}),
            "info": result.get("info", {}),
            "run_id": run_id,
            "step": step.name,
            "created": stamp(),
        },
    )
    say(f"{step.name}: done in {result.get('seconds', 0):.1f} s, cache entry {key[:12]}")
    outputs: dict[str, Any] = result["outputs"]
    return outputs


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
