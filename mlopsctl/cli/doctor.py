from __future__ import annotations

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, out
from mlopsctl.errors import ExitCode


def doctor(
    json_out: JsonOpt = False,
) -> None:
    """Check the set-up: config, git, store (reachable, honours conditional writes), Docker
    hosts and image registry when configured. Exit 4 when a check fails."""
    from mlopsctl.project.doctor import FAIL, run_checks

    checks = run_checks()
    failed = any(c.status == FAIL for c in checks)
    if json_out:
        emit_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        for c in checks:
            hint = f" (hint: {c.hint})" if c.hint and c.status != "ok" else ""
            out(f"{c.status:<4}  {c.name:<10} {c.detail}{hint}")
    if failed:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
