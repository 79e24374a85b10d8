from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.output import emit_json, err, out


def deploy(
    ref: Annotated[str, typer.Argument(help="Model version: NAME@ALIAS or NAME:VERSION.")],
    host: Annotated[
        str | None,
        typer.Option("--host", help="Docker host from mlops.yaml docker.hosts (default: local)."),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", help="Port (the same for every version: handed over in place).")
    ] = 8080,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Deployment name (default PROJECT-MODEL)."),
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="Container network mode (default host).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the server.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for readiness.")
    ] = 120.0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not stream the image build.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Build (or reuse) the model's serving image, run it on a Docker host, wait until
    /v2/health/ready answers, and only then stop the container it replaces. Prints the URL.
    A container that never gets ready is removed (exit 4) and the old one keeps serving."""
    from mlopsctl.config import load_project
    from mlopsctl.containers.serving import NotReady, deploy
    from mlopsctl.errors import UsageError

    pairs = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r} is not KEY=VALUE", "e.g. --env LOG_LEVEL=debug")
        pairs[key] = value

    def log(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    try:
        result = deploy(
            load_project(),
            ref,
            host=host,
            port=port,
            name=name,
            network_mode=network,
            env=pairs,
            timeout=timeout,
            log=None if quiet else log,
        )
    except NotReady as exc:
        for line in exc.tail:
            err(f"    {line}")
        raise
    if json_out:
        emit_json(result)
        return
    size = result["image_size"] / 1e6
    err(
        f"deployed {result['model']['name']}:{result['model']['version']} as "
        f"{result['deployment']} (container {result['container']}, image {result['image']}, "
        f"{size:.0f} MB), ready in {result['ready_s']:.1f} s"
    )
    for old in result["replaced"]:
        err(f"replaced {old['name']} (version {old['version']}, port {old['port']})")
    out(result["url"])


def build_serving(
    ref: str,
    spec: Path | None,
    port: int,
    push: bool,
    network: str | None,
    log: Callable[[str], None] | None,
    json_out: bool,
) -> None:
    """`mlopsctl build --serving REF`: the serving image of a model version."""
    from mlopsctl.config import load_project
    from mlopsctl.containers.serving import build_serving_image
    from mlopsctl.errors import UsageError

    if spec is not None:
        raise UsageError("give either a pipeline spec or --serving REF, not both")
    result = build_serving_image(
        load_project(), ref, push=push, network=network, port=port, log=log
    )
    if json_out:
        emit_json(result)
        return
    if result["skipped"]:
        err(f"unchanged: {result['skipped']} (nothing built)")
    err(f"image size: {result['size'] / 1e6:.0f} MB ({result['size']} bytes)")
    if result["pushed"]:
        err(f"pushed {', '.join(result['tags'])}; digest recorded in {result['record']}")
        out(f"{result['image']}@{result['digest']}")
    else:
        out(result["ref"])
