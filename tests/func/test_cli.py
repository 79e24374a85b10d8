from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlopsctl import __version__

from .conftest import Invoke


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mlopsctl {__version__}"


def test_help_lists_groups_and_exit_codes(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("init", "validate", "doctor", "hooks"):
        assert command in result.stdout
    assert "7 conflict" in " ".join(result.stdout.split())


def test_unknown_command_is_a_usage_error(cli: Invoke) -> None:
    result = cli("definitely-not-a-command")
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_unknown_option_is_a_usage_error(cli: Invoke) -> None:
    result = cli("init", "--no-such-flag")
    assert result.exit_code == 2
    assert "--no-such-flag" in result.stderr


# Every command that reads (or reports what it did) takes --json; the writers below print one
# line about the record they changed and take none (yet).
READERS = [
    ("init",),
    ("validate",),
    ("doctor",),
    ("run",),
    ("build",),
    ("deploy",),
    ("runs", "list"),
    ("runs", "show"),
    ("runs", "compare"),
    ("models", "list"),
    ("models", "show"),
    ("models", "register"),
    ("models", "alias", "history"),
    ("lineage",),
    ("audit",),
    ("gc",),
    ("release", "check"),
    ("traffic", "set"),
    ("traffic", "show"),
    ("feedback",),
    ("monitor", "check"),
    ("ct", "check"),
]


def _leaves(command: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return {path: command}
    found: dict[tuple[str, ...], Any] = {}
    for name, sub in subcommands.items():
        found.update(_leaves(sub, (*path, name)))
    return found


def test_every_reading_command_takes_json() -> None:
    import typer.main

    from mlopsctl.cli.main import app

    leaves = _leaves(typer.main.get_command(app))
    assert set(READERS) <= set(leaves), set(READERS) - set(leaves)
    for path in READERS:
        options = {o for p in leaves[path].params for o in getattr(p, "opts", [])}
        assert "--json" in options, path
        helps = [p.help for p in leaves[path].params if "--json" in getattr(p, "opts", [])]
        assert helps == ["Print as JSON."], path  # one shared option, one meaning


def test_lineage_help_shows_json_not_a_json_format(cli: Invoke) -> None:
    result = cli("lineage", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "--json" in text and "[text|dot|mermaid]" in text
    assert "text|json" not in text


def test_read_commands_print_json_on_an_empty_project(cli: Invoke, project: Path) -> None:
    for args, expected in [
        (("runs", "list"), []),
        (("models", "list"), []),
        (("audit",), []),
        (("validate",), None),
    ]:
        result = cli(*args, "--json", cwd=project)
        assert result.exit_code == 0, (args, result.stderr)
        data = json.loads(result.stdout)
        if expected is not None:
            assert data == expected, args
    report = json.loads(cli("validate", "--json", cwd=project).stdout)
    assert report["valid"] is True and report["files"]
    gc = json.loads(cli("gc", "--dry-run", "--json", cwd=project).stdout)
    assert isinstance(gc, dict)
    doctor = cli("doctor", "--json", cwd=project)
    assert doctor.exit_code in (0, 4)
    checks = json.loads(doctor.stdout)
    assert {"ok", "checks"} <= set(checks) and checks["ok"] == (doctor.exit_code == 0)
    missing = cli("lineage", "demo-model", "--json", cwd=project)
    assert missing.exit_code == 6 and missing.stdout == ""
