"""`mlopsctl completion show|install [SHELL]`: the shell completion scripts (the completing
itself is mlopsctl/cli/completion.py, reached before Typer loads)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from mlopsctl.cli.completion import detect_shell, script
from mlopsctl.cli.completion import install as install_script
from mlopsctl.cli.output import err, out
from mlopsctl.errors import UsageError

app = typer.Typer(
    help="Shell completion for bash, zsh and fish: commands, options, model names, aliases, "
    "run ids and spec paths.",
    no_args_is_help=True,
)


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


ShellArg = Annotated[
    Shell | None, typer.Argument(help="bash, zsh or fish (default: the one in $SHELL).")
]


def _shell(shell: Shell | None) -> str:
    name = shell.value if shell is not None else detect_shell()
    if name is None:
        raise UsageError("cannot tell your shell from $SHELL", "name it: bash, zsh or fish")
    return name


@app.command("show")
def show(shell: ShellArg = None) -> None:
    """Print the completion script, e.g. `source <(mlopsctl completion show bash)`."""
    out(script(_shell(shell)).rstrip("\n"))


@app.command("install")
def install(shell: ShellArg = None) -> None:
    """Install the completion script where the shell loads completions from."""
    path, note = install_script(_shell(shell))
    out(str(path))
    err(f"installed {_shell(shell)} completion; {note}")


def install_option(value: bool) -> None:
    """--install-completion on the root command (Typer's spelling of the same thing)."""
    if value:
        install(None)
        raise typer.Exit()


def show_option(value: bool) -> None:
    """--show-completion on the root command."""
    if value:
        show(None)
        raise typer.Exit()
