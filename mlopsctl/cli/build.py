from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt, QuietOpt
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import BuildFailed, UsageError


def build(
    spec: Annotated[Path | None, typer.Argument(help="Pipeline spec (kind: Pipeline).")] = None,
    serving: Annotated[
        str | None,
        typer.Option("--serving", help="Build a serving image of NAME@ALIAS or NAME:VERSION."),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", help="With --serving: the port the server listens on.")
    ] = 8080,
    push: Annotated[
        bool, typer.Option("--push", help="Push to the registry and record the digest.")
    ] = False,
    network: Annotated[
        str | None, typer.Option("--network", help="Network mode of build steps (default host).")
    ] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Build the pipeline's container image (project code, requirements, mlopsctl), tagged
    by git commit and by content; an unchanged build is skipped. Prints the image reference
    (with --push: REPO@DIGEST). The build output streams to stderr."""
    from mlopsctl.config import load_project

    log = None if quiet else _log
    if serving is not None:
        from mlopsctl.containers.deploy import build_serving_image

        if spec is not None:
            raise UsageError("give either a pipeline spec or --serving REF, not both")
        result = build_serving_image(
            load_project(), serving, push=push, network=network, port=port, log=log
        )
    elif spec is None:
        raise UsageError("give a pipeline spec, or --serving REF", "mlopsctl build --help")
    else:
        from mlopsctl.containers.build import build_image

        try:
            result = build_image(load_project(), spec, push=push, network=network, log=log)
        except BuildFailed as exc:
            if quiet and exc.tail:  # streamed output already shows these lines
                err("mlopsctl: the failing build step's last lines:")
                for line in exc.tail:
                    err(f"    {line}")
            raise
    if json_out:
        emit_json(result)
    else:
        _render(result, serving is not None)


def _log(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _render(result: dict[str, Any], serving: bool) -> None:
    if result["skipped"]:
        err(f"unchanged: {result['skipped']} (nothing built)")
    if serving:
        err(f"image size: {result['size'] / 1e6:.0f} MB ({result['size']} bytes)")
    if result["pushed"]:
        err(f"pushed {', '.join(result['tags'])}; digest recorded in {result['record']}")
        out(f"{result['image']}@{result['digest']}")
    else:
        out(result["ref"])
