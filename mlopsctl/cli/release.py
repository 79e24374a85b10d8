from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt, ReasonOpt, TrustOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import CheckFailed, UsageError
from mlopsctl.timeutil import parse_time

if TYPE_CHECKING:
    from types import ModuleType

app = typer.Typer(
    help="Release gates: check a candidate against a Release spec, approve, promote, roll back; "
    "canary and A/B rollouts judged on live traffic (rollout, status, abort).",
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
    hosts: Annotated[
        str | None,
        typer.Option(
            "--hosts",
            help="Measure latency gates on these hosts (comma-separated: local, docker or "
            "docker.hosts names), side by side in one hardware table.",
        ),
    ] = None,
    trust: TrustOpt = False,
) -> None:
    """Judge every gate; record the result; exit 0 when all pass, 4 otherwise. A latency gate
    serves the candidate (mlopsctl serve, or its serving image on a Docker host) and measures it."""
    from mlopsctl.release.gates import run_check
    from mlopsctl.release.report import hardware_table, junit, table

    spec = _spec(spec_path)
    chosen = [h.strip() for h in hosts.split(",") if h.strip()] if hosts else None
    started = time.perf_counter()
    with project_store() as store:
        result = run_check(
            store,
            spec,
            spec_path=str(spec_path),
            candidate=candidate,
            seed=seed,
            hosts=chosen,
            trust=trust,
            log=err,
        )
    if junit_file is not None:
        policies = [str(g.get("on_inconclusive", "fail")) for g in spec["gates"]]
        seconds = time.perf_counter() - started
        junit_file.write_text(junit(result, policies, seconds), encoding="utf-8")
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
        for gate in result["gates"]:
            if gate["type"] == "latency" and gate.get("details"):
                out(f"{gate['name']}: hardware")
                for line in hardware_table(gate["details"]):
                    out("  " + line)
    if not result["passed"]:
        blocking = [
            f"{g['name']} ({g['verdict']})"
            for g, gate in zip(result["gates"], spec["gates"], strict=True)
            if g["verdict"] in ("fail", "invalid")
            or (g["verdict"] == "inconclusive" and gate.get("on_inconclusive", "fail") == "fail")
        ]
        raise CheckFailed(
            f"release check of {result['model']}:{result['version']} failed: "
            + ", ".join(blocking),
            "see the gates above",
        )


@app.command("ab")
def ab(
    spec_path: SpecArg,
    candidate: Annotated[
        str | None,
        typer.Option("--candidate", help="The treatment arm instead (3, @challenger, latest)."),
    ] = None,
    junit_file: Annotated[
        Path | None, typer.Option("--junit", help="Also write the result as JUnit XML here.")
    ] = None,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", help="Write an HTML report (arms, metrics, interval over time)."),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option("--now", help="Analyse as of this time (ISO, UTC): the window's end."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Judge the spec's A/B gates (type: ab) on the store's prediction logs and outcomes, per
    unit: sample ratio, each metric's difference with its interval, a decision (pass, fail,
    inconclusive, invalid) recorded as an audit event. Exit 0 on pass, 4 otherwise (an
    inconclusive gate with on_inconclusive: pass counts as passed)."""
    from mlopsctl.release.ab import run_ab
    from mlopsctl.release.report import ab_html, ab_junit, ab_lines

    spec = _spec(spec_path)
    moment = _moment(now)
    with project_store() as store:
        event = run_ab(store, spec, spec_path=str(spec_path), candidate=candidate, now=moment)
    gates = [g for g in spec["gates"] if g.get("type") == "ab"]
    if junit_file is not None:
        policies = [str(g.get("on_inconclusive", "fail")) for g in gates]
        junit_file.write_text(ab_junit(event, policies), encoding="utf-8")
    if report_file is not None:
        report_file.write_text(ab_html(event), encoding="utf-8")
    if json_out:
        emit_json(event)
    else:
        for line in ab_lines(event):
            out(line)
    if not event["passed"]:
        raise CheckFailed(
            f"A/B test of {event['model']}:{event['version']} ({spec['name']}): "
            f"{event['decision']}",
            "see the numbers above",
        )


def _moment(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(
            f"--now {text!r} is not a time", "e.g. --now 2026-11-30T00:00:00Z"
        ) from None


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


def _rollouts() -> ModuleType:
    from mlopsctl.release import rollout

    return rollout


def _show_outcome(outcome: Any, json_out: bool) -> None:
    if json_out:
        emit_json(outcome.as_dict())
        return
    out(outcome.message)
    for check in outcome.checks:
        out("  " + _check_line(check))


def _check_line(check: dict[str, Any]) -> str:
    value = check.get("value")
    shown = f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))
    bound = check.get("bound") or "-"
    line = f"{check['name']}: {check['verdict'].upper()} {shown} (bound {bound})"
    if check.get("needed"):
        line += f"; needs {check['needed']}"
    if check.get("note"):
        line += f"; {check['note']}"
    return line


@app.command("rollout")
def rollout(
    spec_path: SpecArg,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep going (every --interval) until it ends.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between steps with --watch.")
    ] = 30.0,
    json_out: JsonOpt = False,
    reason: ReasonOpt = None,
) -> None:
    """Start or advance a canary/A-B rollout by at most one step: judge the checks on live
    traffic, hold, go to the next step, promote after the last, or roll back. Exit 0 while it
    runs and once promoted, 4 once rolled back or aborted, 7 when another runner moved it."""
    rollouts = _rollouts()
    spec = _spec(spec_path)
    with project_store() as store:
        if watch:
            outcome = rollouts.watch(
                store,
                spec,
                interval=interval,
                report=lambda o: _show_outcome(o, json_out),
                reason=reason,
            )
        else:
            outcome = rollouts.advance(store, spec, reason=reason)
            _show_outcome(outcome, json_out)
    if outcome.state.get("status") in ("rolled_back", "aborted"):
        raise CheckFailed(
            f"the rollout of {outcome.state['model']}:{outcome.state['candidate']['version']} "
            f"was {outcome.state['status'].replace('_', ' ')}: {outcome.state.get('reason')}",
            f"all traffic is on @{outcome.state['alias']}; the alias did not move",
        )


@app.command("status")
def status(spec_path: SpecArg, json_out: JsonOpt = False) -> None:
    """Where the rollout stands: the step, each check with its numbers (judged now, read only),
    and what it needs to advance."""
    spec = _spec(spec_path)
    with project_store() as store:
        view = _rollouts().status(store, spec)
    if json_out:
        emit_json(view)
        return
    if view["status"] == "none":
        out(view["message"])
        return
    step = view["step"]
    out(
        f"rollout {view['release']}: {view['model']}:{view['candidate']['version']} vs "
        f"@{view['alias']} ({view['champion']['version']}), {view['status']}, step "
        f"{step['index']} of {step['of']} ({step['traffic']:g}%) since {step['since']}"
    )
    traffic = ", ".join(f"{a['arm']}={a['weight']:g}" for a in view.get("traffic") or [])
    out(f"  traffic ({view['deployment']}): {traffic or '-'}")
    arms = view.get("arms")
    if arms:
        c, h = arms["candidate"], arms["champion"]
        out(
            f"  window since {view['window']['since']}: candidate {c['requests']} requests, "
            f"{c['errors']} errors; champion {h['requests']} requests, {h['errors']} errors"
        )
    for check in view["checks"]:
        out("  " + _check_line(check))
    out(view["message"])


@app.command("abort")
def abort(spec_path: SpecArg, reason: ReasonOpt = None) -> None:
    """Stop a rollout: all traffic back on the champion alias; the alias does not move."""
    spec = _spec(spec_path)
    with project_store() as store:
        outcome = _rollouts().abort(store, spec, reason=reason)
    out(outcome.message)
