"""`mlopsctl ci init github|gitlab`: CI workflows for the repository's specs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err, out

app = typer.Typer(help="CI workflows for GitHub Actions and GitLab CI.", no_args_is_help=True)


class Provider(str, Enum):
    github = "github"
    gitlab = "gitlab"


@app.command("init")
def init(
    provider: Annotated[Provider, typer.Argument(help="github or gitlab.")],
    git: Annotated[
        str | None,
        typer.Option("--git", metavar="URL", help="Install mlopsctl from this git repository."),
    ] = None,
    ref: Annotated[
        str | None,
        typer.Option(metavar="REF", help="...at this tag or commit (default v<this version>)."),
    ] = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            "--index-url", metavar="URL", help="Or install it from this package index of yours."
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="...at this version (default this one)."),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Pipeline spec (default: the one making the model)."),
    ] = None,
    release: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Release spec (default: the only one found)."),
    ] = None,
    trigger: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Trigger spec (default: the only one found)."),
    ] = None,
    branch: Annotated[str, typer.Option(help="The branch releases are promoted from.")] = "main",
    cron: Annotated[
        str, typer.Option(help="When the continuous-training check runs (UTC cron).")
    ] = "17 * * * *",
    python: Annotated[str, typer.Option(help="Python version in the jobs.")] = "3.11",
    timeout: Annotated[int, typer.Option(help="Job time limit, minutes.")] = 60,
    force: Annotated[
        bool, typer.Option("--force", help="Replace workflow files that differ.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Render the release gate (pull/merge requests; promotion from --branch) and the
    continuous-training schedule for this repository's specs: .github/workflows/mlopsctl-*.yml,
    or .gitlab/mlopsctl.yml (included from .gitlab-ci.yml). Never overwrites a file that
    differs, unless --force."""
    from mlopsctl.config import load_project
    from mlopsctl.project.ci import CiOptions, init_ci

    project = load_project()
    options = CiOptions(
        provider=provider.value,
        pipeline=pipeline,
        release=release,
        trigger=trigger,
        git=git,
        ref=ref,
        index_url=index_url,
        version=version,
        branch=branch,
        cron=cron,
        python=python,
        timeout=timeout,
        force=force,
    )
    result = init_ci(project.root, options, project.exclude)
    if json_out:
        emit_json(result.__dict__)
        return
    for name in result.written:
        out(name)
    for name in result.unchanged:
        err(f"unchanged: {name}")
    for note in result.notes:
        err(f"note: {note}")
    for role, path in result.specs.items():
        err(f"{role}: {path}")
    where = "repository secret" if provider is Provider.github else "CI/CD variable"
    err(
        f"next: set the {where} MLOPSCTL_STORE (s3://bucket/prefix) and the credentials "
        "(see the comments at the top of the files), then commit them"
    )
