from __future__ import annotations

import sys
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, NetworkOpt, QuietOpt
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
    network: NetworkOpt = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the server.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for readiness.")
    ] = 120.0,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Build (or reuse) the model's serving image, run it on a Docker host, wait until
    /v2/health/ready answers, and only then stop the container it replaces. Prints the URL.
    A container that never gets ready is removed (exit 4) and the old one keeps serving."""
    from mlopsctl.config import load_project
    from mlopsctl.containers.deploy import NotReady, deploy, parse_env

    pairs = parse_env(list(env or []))
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
            log=None if quiet else _log,
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


def _log(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
