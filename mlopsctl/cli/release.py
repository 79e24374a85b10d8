from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt, ReasonOpt, project_store
from mlopsctl.cli.output import emit_json, out

app = typer.Typer(
    help="Release gates: check a candidate against a Release spec, approve, promote, roll back.",
    no_args_is_help=True,
)

SpecArg = Annotated[Path, typer.Argument(help="A Release spec (YAML).")]


def _spec(path: Path) -> dict[str, Any]:
    from mlopsctl.spec import load_spec

    return load_spec(path, kind="Release")


@app.command("check")
def check(
    spec_path: SpecArg,
    candidate: Annotated[
        str | None,
        typer.Option("--candidate", help="Judge this version instead (3, @challenger, latest)."),
    ] = None,
    junit_file: Annotated[
        Path | None, typer.Option("--junit", help="Also write the result as JUnit XML here.")
    ] = None,
    json_out: JsonOpt = False,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (recorded).")] = 0,
) -> None:
    """Judge every gate; record the result; exit 0 when all pass, 4 otherwise."""
    from mlopsctl.errors import CheckFailed
    from mlopsctl.release.gates import run_check
    from mlopsctl.release.report import junit, table

    spec = _spec(spec_path)
    with project_store() as store:
        result = run_check(store, spec, spec_path=str(spec_path), candidate=candidate, seed=seed)
    if junit_file is not None:
        policies = [str(g.get("on_inconclusive", "fail")) for g in spec["gates"]]
        junit_file.write_text(junit(result, policies), encoding="utf-8")
    if json_out:
        emit_json(result)
    else:
        out(
            f"release {result['release']}: {result['model']}:{result['version']} vs "
            f"@{result['champion']['alias']} ({result['champion']['version'] or 'none'}) "
            f"on {result['rows']} rows"
        )
        for line in table(result):
            out(line)
    if not result["passed"]:
        blocking = [
            f"{g['name']} ({g['verdict']})"
            for g, gate in zip(result["gates"], spec["gates"], strict=True)
            if g["verdict"] == "fail"
            or (g["verdict"] == "inconclusive" and gate.get("on_inconclusive", "fail") == "fail")
        ]
        raise CheckFailed(
            f"release check of {result['model']}:{result['version']} failed: "
            + ", ".join(blocking),
            "see the gates above",
        )


@app.command("approve")
def approve(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION to approve.")],
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Approver's email; must be your git user.email when mlops.yaml sets "
            "release.require_git_identity.",
        ),
    ],
    note: Annotated[str | None, typer.Option("--note", help="Why (kept in the audit log).")] = None,
) -> None:
    """Record an approval of a version, with the git identity and OS user who ran it."""
    from mlopsctl.config import load_project
    from mlopsctl.release.actions import approve as approve_version

    project = load_project()
    with project_store(project) as store:
        event = approve_version(
            store,
            ref,
            by,
            note,
            root=project.root,
            require_git_identity=project.require_git_identity,
        )
    out(f"{event['model']}:{event['version']} approved by {by}")


@app.command("promote")
def promote(spec_path: SpecArg, reason: ReasonOpt = None) -> None:
    """Move the champion alias to the candidate, if its latest check passed and it is approved."""
    from mlopsctl.release.actions import promote as promote_release

    spec = _spec(spec_path)
    with project_store() as store:
        move = promote_release(store, spec, reason)
    if move.get("unchanged"):
        out(move["note"])  # already there (a racing promote of the same candidate won): exit 0
        return
    out(f"{move['model']}@{move['alias']}: {move['previous'] or '(none)'} -> {move['version']}")


@app.command("rollback")
def rollback(spec_path: SpecArg, reason: ReasonOpt = None) -> None:
    """Move the champion alias back to the version it held before."""
    from mlopsctl.release.actions import rollback as rollback_release

    spec = _spec(spec_path)
    with project_store() as store:
        move = rollback_release(store, spec, reason)
    out(f"{move['model']}@{move['alias']}: {move['previous']} -> {move['version']} (rollback)")
