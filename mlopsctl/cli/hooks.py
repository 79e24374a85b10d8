from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.output import err

app = typer.Typer(help="Git hooks that run mlopsctl's checks before a push.", no_args_is_help=True)


@app.command("install")
def install(
    force: Annotated[
        bool, typer.Option(help="Replace a pre-push hook not written by mlopsctl (kept as .orig).")
    ] = False,
) -> None:
    """Install a pre-push hook that runs 'mlopsctl validate' and blocks the push on failure."""
    from mlopsctl.project.hooks import install_hook

    path = install_hook(Path.cwd(), force=force)
    err(f"installed {path}")


@app.command("uninstall")
def uninstall() -> None:
    """Remove the pre-push hook that 'hooks install' wrote (any other hook is left alone)."""
    from mlopsctl.project.hooks import uninstall_hook

    path = uninstall_hook(Path.cwd())
    err(f"removed {path}" if path else "no pre-push hook installed")
