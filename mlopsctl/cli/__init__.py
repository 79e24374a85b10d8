"""The command line. A shell asking for completions (_MLOPSCTL_COMPLETE set) is answered here,
before Typer and the command modules load, so that it takes milliseconds: cli/completion.py."""

import os as _os

if _os.environ.get("_MLOPSCTL_COMPLETE"):
    from mlopsctl.cli.completion import complete_and_exit

    complete_and_exit()
