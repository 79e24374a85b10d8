from __future__ import annotations

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
