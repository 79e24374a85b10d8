from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.output import emit_json, err, out


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
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not stream the build output.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Build the pipeline's container image (project code, requirements, mlopsctl), tagged
    by git commit and by content; an unchanged build is skipped. Prints the image reference
    (with --push: REPO@DIGEST). The build output streams to stderr."""
    from mlopsctl.config import load_project
    from mlopsctl.containers.build import build_image
    from mlopsctl.errors import BuildFailed

    def log(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    if serving is not None:
        from mlopsctl.cli.deploy import build_serving

        build_serving(serving, spec, port, push, network, None if quiet else log, json_out)
        return
    if spec is None:
        from mlopsctl.errors import UsageError

        raise UsageError("give a pipeline spec, or --serving REF", "mlopsctl build --help")
    try:
        result = build_image(
            load_project(), spec, push=push, network=network, log=None if quiet else log
        )
    except BuildFailed as exc:
        if quiet and exc.tail:  # streamed output already shows these lines
            err("mlopsctl: the failing build step's last lines:")
            for line in exc.tail:
                err(f"    {line}")
        raise
    if json_out:
        emit_json(result)
        return
    if result["skipped"]:
        err(f"unchanged: {result['skipped']} (nothing built)")
    if result["pushed"]:
        err(f"pushed {', '.join(result['tags'])}; digest recorded in {result['record']}")
        out(f"{result['image']}@{result['digest']}")
    else:
        out(result["ref"])
