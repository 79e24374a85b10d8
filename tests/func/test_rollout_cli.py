"""`mlopsctl release rollout | status | abort` through the CLI, on serving logs written into a
project's store as `mlopsctl serve` writes them: a good candidate walks its steps one call at a
time and the alias moves; a broken one is rolled back by itself (exit 4, one line, the alias
unchanged, all traffic on the champion); --watch stops at the rollback; abort; and `release
promote` refusing a canary in one line."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mlopsctl import registry
from mlopsctl.events import list_events
from mlopsctl.serving.arms import read_deployment
from mlopsctl.store.blobs import put_blob_bytes
from mlopsctl.store.local import LocalStore
from mlopsctl.timeutil import parse_time
from tests.unit.test_release_rollout import MODEL, passed_check, write_logs

from .conftest import Invoke

SPEC = f"""\
apiVersion: mlopsctl/v1
kind: Release
name: canary
model: {MODEL}
candidate: latest
champion: production
gates:
  - type: signature
promote:
  strategy: canary
  steps: [50, 100]
  hold: {{duration: 0s, min_requests: 100}}
  analysis:
    - type: error_rate
      max_increase: 0.05
    - type: latency
      percentile: 90
      max_ratio: 2
"""


@pytest.fixture
def root(project: Path) -> Path:
    (project / "release.yaml").write_text(SPEC)
    with LocalStore(project / ".mlops") as store:
        for v in (1, 2, 3):
            digest = put_blob_bytes(store, f"model {v}".encode())
            registry.register_version(
                store,
                MODEL,
                {
                    "artifact": {"digest": digest, "flavor": "sklearn"},
                    "signature": {"task": "classification", "features": []},
                },
            )
        registry.set_alias(store, MODEL, "production", 1)
    return project


def _store(root: Path) -> LocalStore:
    return LocalStore(root / ".mlops")


def _serve(root: Path, candidate: int, champion: int, error_share: float = 0.0) -> None:
    """A second of traffic on both arms, just after the current step began."""
    with _store(root) as store:
        state = json.loads(store.get(f"rollouts/{MODEL}/canary.json"))
        at = parse_time(state["step_started"]) + timedelta(milliseconds=100)
        seed = int(time.time() * 1000) % 100_000
        write_logs(store, champion, "production", 800, start=at, seconds=0.8, seed=seed)
        write_logs(
            store,
            candidate,
            str(candidate),
            300,
            start=at,
            seconds=0.8,
            seed=seed + 1,
            error_share=error_share,
        )
    time.sleep(max(0.0, (at + timedelta(seconds=1)).timestamp() - time.time()))


def _rollout(cli: Invoke, root: Path, *extra: str) -> Any:
    return cli("release", "rollout", "release.yaml", *extra, cwd=root)


def _traffic(root: Path) -> list[tuple[str, float]]:
    with _store(root) as store:
        found = read_deployment(store, MODEL)
    assert found is not None
    return [(a["arm"], a["weight"]) for a in found[0]["arms"]]


def _alias(root: Path) -> int:
    with _store(root) as store:
        found = registry.get_alias(store, MODEL, "production")
    assert found is not None
    return int(found[0]["version"])


def test_a_good_candidate_reaches_100_and_the_alias_moves(cli: Invoke, root: Path) -> None:
    with _store(root) as store:
        store_events = list_events(store, model=MODEL, kind="gate")
        assert store_events == []
    refused = _rollout(cli, root)
    assert refused.exit_code == 4 and "no release check" in refused.stderr
    with _store(root) as store:
        passed_check(store, version=3, champion=1)

    started = _rollout(cli, root, "--json")
    assert started.exit_code == 0, started.stderr
    assert json.loads(started.stdout)["action"] == "started"
    assert _traffic(root) == [("production", 50.0), ("3", 50.0)]

    held = _rollout(cli, root)
    assert held.exit_code == 0 and "holding at step 1 of 2" in held.stdout

    _serve(root, 3, 1)
    status = cli("release", "status", "release.yaml", cwd=root)
    assert status.exit_code == 0
    assert "step 1 of 2 (50%)" in status.stdout and "ready: the next rollout call" in status.stdout
    advanced = _rollout(cli, root)
    assert advanced.exit_code == 0, advanced.stdout
    assert "step 2 of 2: 100%" in advanced.stdout
    assert _traffic(root) == [("3", 100.0)]

    _serve(root, 3, 1)
    promoted = _rollout(cli, root)
    assert promoted.exit_code == 0, promoted.stdout
    assert f"{MODEL}@production: 1 -> 3" in promoted.stdout
    assert _alias(root) == 3 and _traffic(root) == [("production", 100.0)]
    again = _rollout(cli, root)
    assert again.exit_code == 0 and "is done" in again.stdout
    view = json.loads(cli("release", "status", "release.yaml", "--json", cwd=root).stdout)
    assert view["status"] == "done"


def test_a_broken_candidate_is_rolled_back_by_itself(cli: Invoke, root: Path) -> None:
    with _store(root) as store:
        passed_check(store, version=3, champion=1)
    assert _rollout(cli, root).exit_code == 0
    _serve(root, 3, 1, error_share=0.3)
    failed = _rollout(cli, root)
    assert failed.exit_code == 4
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "rolled back" in lines[0] and "error_rate failed" in lines[0]
    assert "rolled back" in failed.stdout
    assert _alias(root) == 1 and _traffic(root) == [("production", 100.0)]
    status = json.loads(cli("release", "status", "release.yaml", "--json", cwd=root).stdout)
    assert status["status"] == "rolled_back" and "error_rate" in status["reason"]
    # cron keeps calling: the same answer, nothing moves
    assert _rollout(cli, root).exit_code == 4
    assert _traffic(root) == [("production", 100.0)]


def test_watch_stops_at_the_rollback(cli: Invoke, root: Path) -> None:
    with _store(root) as store:
        passed_check(store, version=3, champion=1)
    assert _rollout(cli, root).exit_code == 0
    _serve(root, 3, 1, error_share=0.3)
    watched = _rollout(cli, root, "--watch", "--interval", "0.1")
    assert watched.exit_code == 4 and "rolled back" in watched.stdout


def test_abort_and_promote_refusing_a_canary(cli: Invoke, root: Path) -> None:
    with _store(root) as store:
        passed_check(store, version=3, champion=1)
    promote = cli("release", "promote", "release.yaml", cwd=root)
    assert promote.exit_code == 2
    [line] = promote.stderr.strip().splitlines()
    assert "promote.strategy: canary" in line and "mlopsctl release rollout" in line
    nothing = cli("release", "abort", "release.yaml", cwd=root)
    assert nothing.exit_code == 6
    assert _rollout(cli, root).exit_code == 0
    aborted = cli("release", "abort", "release.yaml", "--reason", "pager", cwd=root)
    assert aborted.exit_code == 0 and "all traffic is back on @production" in aborted.stdout
    assert _traffic(root) == [("production", 100.0)] and _alias(root) == 1
    with _store(root) as store:
        actions = [e["action"] for e in list_events(store, model=MODEL, kind="rollout")]
    assert actions == ["start", "abort"]
