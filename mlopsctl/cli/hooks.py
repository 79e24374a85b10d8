from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.output import err
from mlopsctl.errors import ExitCode, UsageError

app = typer.Typer(help="Git hooks that run mlopsctl's checks before a push.", no_args_is_help=True)


@app.command("install")
def install(
    force: Annotated[
        bool, typer.Option(help="Replace a pre-push hook not written by mlopsctl (kept as .orig).")
    ] = False,
) -> None:
    """Install a pre-push hook that validates the specs in the pushed commits and blocks the
    push when one is invalid."""
    from mlopsctl.project.hooks import install_hook

    path = install_hook(Path.cwd(), force=force)
    err(f"installed {path}")


@app.command("uninstall")
def uninstall() -> None:
    """Remove the pre-push hook that 'hooks install' wrote (any other hook is left alone)."""
    from mlopsctl.project.hooks import uninstall_hook

    path = uninstall_hook(Path.cwd())
    err(f"removed {path}" if path else "no pre-push hook installed")


@app.command("run")
def run(
    hook: Annotated[str, typer.Argument(help="The hook git is running: pre-push.")],
    remote: Annotated[str, typer.Argument(help="Name of the remote (git passes it).")],
    url: Annotated[str | None, typer.Argument(help="URL of the remote (git passes it).")] = None,
) -> None:
    """What the installed hook runs: read git's pre-push lines from stdin and validate the specs
    as they are in each pushed commit (not the working tree). Exit 3 when one is invalid."""
    import sys

    from mlopsctl.project.hooks import check_push

    if hook != "pre-push":
        raise UsageError(f"no hook named {hook!r} to run", "the one mlopsctl runs is pre-push")
    if sys.stdin.isatty():
        raise UsageError(
            "this reads git's pre-push lines from stdin", "git runs it from the installed hook"
        )
    results = check_push(Path.cwd(), sys.stdin.read().splitlines())
    failed = [r for r in results if not r.ok]
    for result in failed:
        bad = len({d.path for d in result.diagnostics})
        err(
            f"pre-push: {result.ref.remote_ref} ({result.ref.local_sha[:12]}) on {remote}: "
            f"{len(result.diagnostics)} problem(s) in {bad} of {len(result.files)} spec(s)"
        )
        for diagnostic in result.diagnostics:
            err(diagnostic.render())
    if failed:
        err("pre-push: push blocked; fix the specs above and commit (or push with --no-verify)")
        raise typer.Exit(int(ExitCode.INVALID_SPEC))
