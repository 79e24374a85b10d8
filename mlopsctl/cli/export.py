"""`mlopsctl export kfp`: a pipeline as a Kubeflow Pipelines v2 / Vertex AI Pipelines file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err

app = typer.Typer(
    help="Export a pipeline to another engine (Kubeflow Pipelines v2, Vertex AI Pipelines).",
    no_args_is_help=True,
)


@app.command("kfp")
def kfp(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (kind: Pipeline).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the pipeline YAML.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="Override a parameter: -p model.max_depth=6."),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            help="The image the steps run in (default: the reference mlopsctl build tags the "
            "pipeline's image with, by git commit).",
        ),
    ] = None,
    accelerator: Annotated[
        str,
        typer.Option(
            "--accelerator",
            help="Accelerator type for steps with resources.gpus (Vertex AI: e.g. "
            "NVIDIA_TESLA_T4).",
        ),
    ] = "nvidia.com/gpu",
    json_out: JsonOpt = False,
) -> None:
    """Compile the pipeline with the kfp SDK: each step a container component running the
    pipeline's image and `python -m mlopsctl.exec`, outputs passed through the (S3) store,
    KFP's caching keyed as mlopsctl's step cache, resources set on each task."""
    from mlopsctl.config import load_project
    from mlopsctl.engines.kfp import export_kfp

    result = export_kfp(
        load_project(),
        spec,
        output,
        overrides=list(param or []),
        image=image,
        accelerator=accelerator,
    )
    if json_out:
        emit_json(result)
        return
    for note in result["notes"]:
        err(f"note: {note}")
    err(f"wrote {result['output']}: {len(result['steps'])} steps, image {result['image']}")
