from __future__ import annotations

from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, out


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be deleted.")
    ] = False,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last",
            min=0,
            help="Keep the blobs of only the newest N runs (and of every registered version).",
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0, help="Hours: never delete anything younger (work in flight)."
        ),
    ] = 1.0,
    json_out: JsonOpt = False,
) -> None:
    """Delete blobs and cache entries that no version or kept run reaches, and abort stale
    multipart uploads. Records (runs, versions, events) are never deleted."""
    from mlopsctl.gc import collect_garbage

    with project_store() as store:
        report = collect_garbage(store, keep_last=keep_last, grace_s=grace * 3600, dry_run=dry_run)
    if json_out:
        emit_json(report.as_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    out(
        f"{verb} {len(report.blobs_deleted)} of {report.blobs_total} blobs "
        f"({report.bytes_freed / 1e6:.1f} MB), {len(report.cache_deleted)} cache entries, "
        f"{len(report.uploads_aborted)} stale uploads; kept {report.runs_kept} of "
        f"{report.runs_total} runs and {report.versions} versions; "
        f"{report.kept_young} unreachable but younger than the grace period"
    )
