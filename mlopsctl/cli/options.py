"""What the command modules share: the option types repeated across commands, and the one
way a command opens the project's store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore

JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Allow a pickle model (pickle can run any code): only for artifacts you made.",
    ),
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", "-m", help="Why (kept in the audit log).")
]
NetworkOpt = Annotated[
    str | None, typer.Option("--network", help="Container network mode (default host).")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Do not stream the image build output.")
]


def project_store(project: Project | None = None) -> ObjectStore:
    """The store of `project` (default: the project found from the current folder). Use it as
    a context manager, `with project_store() as store:`, so that it is closed."""
    from mlopsctl.config import load_project, open_project_store

    return open_project_store(project if project is not None else load_project())
