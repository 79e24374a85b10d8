"""`release promote` run several times at once, as CI jobs on the same commit do:

- promotes of the same candidate: every one exits 0 (the wanted state is there), the alias
  moves once, one promotion event; the ones that found it done say so in one line;
- promotes of two different candidates: one exits 0, the other 7 (conflict), whichever order
  they land in; the alias moved once.

Each promote is a real `mlopsctl` process that waits on a start line after its imports, so the
racers are in the promote code at the same time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlopsctl.store.local import LocalStore
from tests.racing import release_together

from .conftest import Invoke

_RACER = """
import sys
from mlopsctl.cli.main import main
import mlopsctl.registry, mlopsctl.release.actions, mlopsctl.release.gates  # noqa: F401
print("ready", flush=True)
sys.stdin.readline()
main(sys.argv[1:])
"""

SPEC = """apiVersion: mlopsctl/v1
kind: Release
name: gate
model: m
candidate: {candidate}
champion: champion
gates:
  - {{type: threshold, metric: accuracy, min: 0.5}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, LocalStore]]:
    """Versions 1-3 of m, m@champion at 1, and a passed check of 2 and of 3 against it."""
    from mlopsctl.events import record_event
    from mlopsctl.registry import register_version, set_alias
    from mlopsctl.store.blobs import put_blob_bytes

    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: proj\nstore: {url: .mlops}\n"
    )
    for candidate in (2, 3):
        (root / f"release-{candidate}.yaml").write_text(SPEC.format(candidate=candidate))
    with LocalStore(root / ".mlops") as store:
        for n in (1, 2, 3):
            digest = put_blob_bytes(store, f"model {n}".encode())
            register_version(store, "m", {"artifact": {"digest": digest, "kind": "file"}})
        set_alias(store, "m", "champion", 1, reason="first")
        for candidate in (2, 3):
            record_event(
                store,
                "gate",
                model="m",
                version=candidate,
                release="gate",
                spec=f"release-{candidate}.yaml",
                champion={"alias": "champion", "version": 1},
                passed=True,
                gates=[],
            )
        yield root, store


def race(root: Path, specs: list[str]) -> list[tuple[int, str, str]]:
    commands = [["release", "promote", spec] for spec in specs]
    return release_together(_RACER, commands, root, timeout=120)


def moves(cli: Invoke, root: Path) -> list[tuple[int | None, int]]:
    shown = cli("models", "alias", "history", "m", "champion", "--json", cwd=root)
    assert shown.exit_code == 0, shown.stderr
    return [(m["previous"], m["version"]) for m in json.loads(shown.stdout)]


def promotions(store: LocalStore) -> list[int]:
    from mlopsctl.events import list_events

    return [e["version"] for e in list_events(store, model="m", kind="promotion")]


def test_promotes_of_the_same_candidate_all_succeed_and_move_once(
    cli: Invoke, project: tuple[Path, LocalStore]
) -> None:
    root, store = project
    results = race(root, ["release-2.yaml"] * 6)
    for code, _, err in results:
        assert code == 0, err
    said = sorted(out.strip() for _, out, _ in results)
    assert said[-1] == "m@champion: 1 -> 2"
    assert said[:-1] == ["m@champion already points at version 2; nothing to do"] * 5
    assert moves(cli, root) == [(None, 1), (1, 2)]
    assert promotions(store) == [2]

    again = cli("release", "promote", "release-2.yaml", cwd=root)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == "m@champion already points at version 2; nothing to do"
    assert moves(cli, root) == [(None, 1), (1, 2)]


def test_promotes_of_two_candidates_at_once_one_wins_the_other_conflicts(
    cli: Invoke, project: tuple[Path, LocalStore]
) -> None:
    root, store = project
    results = race(root, ["release-2.yaml", "release-3.yaml"])
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 7], results
    [(winner, _, _)] = [(i, out, err) for i, (code, out, err) in enumerate(results) if code == 0]
    won = (2, 3)[winner]
    _, _, loser_err = results[1 - winner]
    assert len(loser_err.strip().splitlines()) == 1, loser_err
    assert "m@champion" in loser_err and f"version {won}" in loser_err
    assert moves(cli, root) == [(None, 1), (1, won)]
    assert promotions(store) == [won]


def test_a_promote_after_another_candidate_won_is_a_conflict(
    cli: Invoke, project: tuple[Path, LocalStore]
) -> None:
    """The same race, lost by a promote that starts only once the other has finished."""
    root, _ = project
    assert cli("release", "promote", "release-3.yaml", cwd=root).exit_code == 0
    late = cli("release", "promote", "release-2.yaml", cwd=root)
    assert late.exit_code == 7, late.stderr
    assert "m@champion moved to version 3 after the check" in late.stderr
    assert moves(cli, root) == [(None, 1), (1, 3)]
