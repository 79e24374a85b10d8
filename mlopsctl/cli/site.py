"""`mlopsctl site build`: render the store as a static HTML site."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err, out

app = typer.Typer(help="A static HTML site of the store (no server).", no_args_is_help=True)


@app.command("build")
def build(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Folder to write the site to.")
    ] = Path("site"),
    store_url: Annotated[
        str | None,
        typer.Option("--store", metavar="URL", help="Read this store (a folder or s3://...)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Render experiments, runs, models, lineage, pipelines, the audit log and reports as
    static pages; only pages whose inputs changed are rewritten."""
    from mlopsctl.cli.options import project_store
    from mlopsctl.config import load_project, set_store_flag
    from mlopsctl.site import build_site

    if store_url:
        local = "://" not in store_url and not os.path.isabs(store_url)
        set_store_flag(os.path.abspath(store_url) if local else store_url)
    project = load_project()
    with project_store(project) as store:
        result = build_site(store, output, base_dir=project.root)
    if json_out:
        result.pop("written_pages", None)
        emit_json(result)
        return
    out(
        f"{result['output']}: {result['pages']} pages, {result['written']} written, "
        f"{result['removed']} removed, {result['records_read']} records read "
        f"({result['seconds']:.2f} s)"
    )
    err(f"open {Path(result['output']) / 'index.html'}")
