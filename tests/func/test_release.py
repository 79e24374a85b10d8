"""`mlopsctl release` on a project that trained the quickstart three times: 20 trees (good),
one stump (clearly worse) and 19 trees (near-identical to the good one). Checks re-score both
models on the candidate's recorded test set; promote follows only a passed, approved check;
everything lands in the audit log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from .conftest import Invoke
from .test_models import MODEL, quickstart_project

GOOD, WORSE, TWIN = 1, 2, 3


def _train(root: Path, *params: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
    args = [a for p in params for a in ("-p", p)]
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "run", "pipelines/quickstart.yaml", *args, "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


@pytest.fixture
def project(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = tmp_path_factory.getbasetemp() / "release-trained"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        quickstart_project(tmp_path_factory, base / "demo")
        _train(base / "demo", "model.n_estimators=1", "model.max_depth=1")
        _train(base / "demo", "model.n_estimators=19")
        (base / "done").write_text("")
    root = tmp_path / "demo"
    shutil.copytree(base / "demo", root, symlinks=True)
    return root


def _spec(root: Path, candidate: int, champion: str = "production", **compare: Any) -> Path:
    gate = {"type": "compare", "metric": "accuracy", "min_improvement": 0.0, **compare}
    gate = {k: v for k, v in gate.items() if v is not None}
    spec = {
        "apiVersion": "mlopsctl/v1",
        "kind": "Release",
        "name": "bc-release",
        "model": MODEL,
        "candidate": candidate,
        "champion": champion,
        "gates": [
            {"type": "threshold", "metric": "accuracy", "min": 0.5},
            gate,
            {"type": "signature"},
            {"type": "approval", "approvers": ["alice@example.com", "bob@example.com"]},
        ],
    }
    path = root / "release.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def _check(cli: Invoke, root: Path, spec: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("release", "check", str(spec), "--json", *extra, cwd=root)
    assert result.exit_code in (0, 4), result.stderr
    return result.exit_code, json.loads(result.stdout)


def _gate(result: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(g for g in result["gates"] if g["type"] == kind)


def _set(cli: Invoke, root: Path, alias: str, version: int) -> None:
    result = cli("models", "alias", "set", MODEL, alias, str(version), cwd=root)
    assert result.exit_code == 0, result.stderr


def test_compare_gate_pass_fail_inconclusive(cli: Invoke, project: Path) -> None:
    # Clearly better: the good model judged against the stump.
    _set(cli, project, "baseline", WORSE)
    code, better = _check(cli, project, _spec(project, GOOD, champion="baseline"))
    compare = _gate(better, "compare")
    assert compare["verdict"] == "pass" and compare["ci"][0] > 0, compare
    assert code == 0 and better["passed"]
    assert _gate(better, "approval")["verdict"] == "pending"
    assert _gate(better, "signature")["verdict"] == "pass"

    # Clearly worse: the stump judged against the good model.
    _set(cli, project, "production", GOOD)
    code, worse = _check(cli, project, _spec(project, WORSE))
    assert _gate(worse, "compare")["verdict"] == "fail" and _gate(worse, "compare")["ci"][1] < 0
    assert code == 4 and not worse["passed"]

    # Near-identical: the interval straddles the bound; the spec decides what that means.
    code, twin = _check(cli, project, _spec(project, TWIN))
    assert _gate(twin, "compare")["verdict"] == "inconclusive", _gate(twin, "compare")
    assert code == 4
    code, lenient = _check(cli, project, _spec(project, TWIN, on_inconclusive="pass"))
    assert _gate(lenient, "compare")["verdict"] == "inconclusive" and code == 0
    # A non-inferiority gate passes the twin: it may lose at most 5 points.
    code, non_inferior = _check(
        cli, project, _spec(project, TWIN, min_improvement=None, max_regression=0.05)
    )
    assert _gate(non_inferior, "compare")["verdict"] == "pass" and code == 0


def test_table_junit_and_seed(cli: Invoke, project: Path, tmp_path: Path) -> None:
    _set(cli, project, "production", GOOD)
    spec = _spec(project, WORSE)
    junit = tmp_path / "gates.xml"
    result = cli("release", "check", str(spec), "--junit", str(junit), "--seed", "3", cwd=project)
    assert result.exit_code == 4
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["gate", "value", "bound", "CI", "verdict"]
    assert any(
        line.startswith("compare (accuracy improvement)") and "FAIL" in line for line in lines
    )
    assert "no approvals yet" in result.stdout
    assert "release check of breast-cancer:2 failed" in result.stderr
    suite = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {
        "threshold [accuracy]",
        "compare [accuracy improvement]",
        "signature",
        "approval",
    }
    assert {c.get("classname") for c in suite.iter("testcase")} == {
        f"breast-cancer.v2.{kind}" for kind in ("threshold", "compare", "signature", "approval")
    }
    assert cases["compare [accuracy improvement]"].find("failure") is not None
    assert cases["approval"].find("skipped") is not None  # pending
    threshold = cases["threshold [accuracy]"]
    assert threshold.find("failure") is None and threshold.find("skipped") is None
    assert suite.tag == "testsuites" and suite.get("failures") == "1"
    assert float(suite.get("time") or 0) > 0  # the check's own duration
    # Same seed, same interval.
    first = _gate(_check(cli, project, spec, "--seed", "3")[1], "compare")["ci"]
    again = _gate(_check(cli, project, spec, "--seed", "3")[1], "compare")["ci"]
    assert first == again


def test_no_champion_skips_comparisons_visibly(cli: Invoke, project: Path) -> None:
    code, result = _check(cli, project, _spec(project, GOOD, champion="nobody"))
    compare = _gate(result, "compare")
    assert compare["verdict"] == "skipped" and "no champion" in compare["note"]
    assert _gate(result, "signature")["verdict"] == "skipped"
    assert code == 0 and result["champion"] == {"alias": "nobody", "version": None}


def test_promote_needs_a_passed_check_and_approvals_then_rollback(
    cli: Invoke, project: Path
) -> None:
    _set(cli, project, "production", GOOD)
    worse = _spec(project, WORSE)
    assert cli("release", "promote", str(worse), cwd=project).exit_code == 4  # never checked
    assert _check(cli, project, worse)[0] == 4
    refused = cli("release", "promote", str(worse), cwd=project)
    assert refused.exit_code == 4 and "failed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    lenient = _spec(project, TWIN, on_inconclusive="pass")
    assert _check(cli, project, lenient)[0] == 0
    refused = cli("release", "promote", str(lenient), cwd=project)
    assert refused.exit_code == 4 and "0 of 1 approval" in refused.stderr
    approved = cli(
        "release", "approve", f"{MODEL}:{TWIN}", "--by", "mallory@example.com", cwd=project
    )
    assert approved.exit_code == 0  # recorded, but not among the spec's approvers
    assert cli("release", "promote", str(lenient), cwd=project).exit_code == 4
    approved = cli(
        "release",
        "approve",
        f"{MODEL}:{TWIN}",
        "--by",
        "alice@example.com",
        "--note",
        "ok",
        cwd=project,
    )
    assert approved.exit_code == 0, approved.stderr
    promoted = cli("release", "promote", str(lenient), cwd=project)
    assert promoted.exit_code == 0, promoted.stderr
    shown = json.loads(cli("models", "show", f"{MODEL}@production", "--json", cwd=project).stdout)
    assert shown["version"] == TWIN

    # A stale check no longer counts once a later check of the same version fails.
    strict = _spec(project, TWIN)
    assert cli("release", "rollback", str(strict), cwd=project).exit_code == 0
    shown = json.loads(cli("models", "show", f"{MODEL}@production", "--json", cwd=project).stdout)
    assert shown["version"] == GOOD
    assert _check(cli, project, strict)[0] == 4
    assert cli("release", "promote", str(strict), cwd=project).exit_code == 4

    audit = json.loads(cli("audit", "--model", MODEL, "--json", cwd=project).stdout)
    kinds = [e["type"] for e in audit]
    assert kinds.count("gate") == 3
    assert kinds.count("approval") == 2 and "promotion" in kinds and "rollback" in kinds
    for event in audit:
        assert event["time"] and (event["actor"] or {}).get("name")
    approvals = [e for e in audit if e["type"] == "approval"]
    assert [a["by"] for a in approvals] == ["mallory@example.com", "alice@example.com"]
    promotion = next(e for e in audit if e["type"] == "promotion")
    assert promotion["approvals"] == ["alice@example.com"] and promotion["version"] == TWIN
    moves = [e for e in audit if e["type"] == "alias_move" and e["alias"] == "production"]
    assert [m["action"] for m in moves][-2:] == ["promote", "rollback"]
    text = cli("audit", "--model", MODEL, cwd=project).stdout
    assert "approval" in text and "promotion" in text and "rollback" in text


def test_slices_on_a_dataset_path(cli: Invoke, project: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.iloc[::3].copy()
    frame["region"] = ["north", "south", "east"] * (len(frame) // 3) + ["east"] * (len(frame) % 3)
    frame.to_csv(project / "holdout.csv", index=False)
    _set(cli, project, "production", GOOD)
    spec = {
        "apiVersion": "mlopsctl/v1",
        "kind": "Release",
        "name": "bc-slices",
        "model": MODEL,
        "candidate": WORSE,
        "champion": "production",
        "evaluation": {"data": "holdout.csv", "target": "target"},
        "gates": [
            {"type": "slices", "column": "region", "metric": "accuracy", "min": 0.5},
            {"type": "slices", "column": "region", "metric": "accuracy", "max_regression": 0.0},
        ],
    }
    path = project / "slices.yaml"
    path.write_text(json.dumps(spec))
    code, result = _check(cli, project, path)
    floor, regress = result["gates"]
    assert result["rows"] == len(frame) and result["data"] == {"path": "holdout.csv"}
    assert floor["verdict"] == "pass" and {d["slice"] for d in floor["details"]} == {
        "north",
        "south",
        "east",
    }
    assert regress["verdict"] == "fail" and "region in" in regress["note"]
    assert all(d["ci"][1] < 0 for d in regress["details"])
    assert code == 4


# -- who approved: the --by email next to the git identity and the OS user who ran it ---------


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose store holds one registered version, m:1, and whose git identity is
    alice@example.com (repository config only: global and system config are kept out)."""
    from mlopsctl.registry import register_version
    from mlopsctl.store.blobs import put_blob_bytes
    from mlopsctl.store.local import LocalStore

    from .conftest import git

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GITHUB_ACTOR", "GITLAB_USER_EMAIL", "GITLAB_USER_LOGIN"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "approvals"
    root.mkdir()
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: approvals\nstore: {url: .mlops}\n"
    )
    assert git(root, "init", "-q").returncode == 0
    assert git(root, "config", "user.email", "alice@example.com").returncode == 0
    assert git(root, "config", "user.name", "Alice Doe").returncode == 0
    with LocalStore(root / ".mlops") as store:
        register_version(store, "m", {"artifact": {"digest": put_blob_bytes(store, b"model")}})
    return root


def _approvals(cli: Invoke, root: Path) -> list[dict[str, Any]]:
    audit = cli("audit", "--model", "m", "--type", "approval", "--json", cwd=root)
    assert audit.exit_code == 0, audit.stderr
    return [e for e in json.loads(audit.stdout) if e["type"] == "approval"]


def test_approve_records_the_git_identity_and_os_user_next_to_by(
    cli: Invoke, registered: Path
) -> None:
    import getpass
    import socket

    result = cli("release", "approve", "m:1", "--by", "bob@example.com", cwd=registered)
    assert result.exit_code == 0, result.stderr  # --by is not checked unless the project says so
    [event] = _approvals(cli, registered)
    assert event["by"] == "bob@example.com"
    assert event["git_user"] == {"email": "alice@example.com", "name": "Alice Doe"}
    assert event["os_user"] == {"name": getpass.getuser(), "host": socket.gethostname()}
    assert event["identity_checked"] is False


def test_a_project_can_require_by_to_be_the_git_user(
    cli: Invoke, registered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import git

    config = registered / "mlops.yaml"
    config.write_text(config.read_text() + "release: {require_git_identity: true}\n")
    assert cli("validate", "mlops.yaml", cwd=registered).exit_code == 0

    refused = cli("release", "approve", "m:1", "--by", "bob@example.com", cwd=registered)
    assert refused.exit_code == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "bob@example.com" in refused.stderr and "alice@example.com" in refused.stderr
    assert "require_git_identity" in refused.stderr
    assert _approvals(cli, registered) == []

    accepted = cli("release", "approve", "m:1", "--by", "Alice@Example.COM", cwd=registered)
    assert accepted.exit_code == 0, accepted.stderr
    [event] = _approvals(cli, registered)
    assert event["by"] == "Alice@Example.COM" and event["identity_checked"] is True
    assert event["git_user"]["email"] == "alice@example.com"

    assert git(registered, "config", "--unset", "user.email").returncode == 0
    unset = cli("release", "approve", "m:1", "--by", "alice@example.com", cwd=registered)
    assert unset.exit_code == 2
    assert "git config user.email" in unset.stderr
    assert len(unset.stderr.strip().splitlines()) == 1

    config.write_text(config.read_text().replace("true}", "yes please}"))
    invalid = cli("validate", "mlops.yaml", cwd=registered)
    assert invalid.exit_code == 3 and "require_git_identity" in invalid.stdout


def test_check_and_promote_accept_approvals_recorded_before_identities(
    cli: Invoke, project: Path
) -> None:
    from mlopsctl.events import record_event
    from mlopsctl.store.local import LocalStore

    config = project / "mlops.yaml"
    config.write_text(config.read_text() + "release: {require_git_identity: true}\n")
    _set(cli, project, "production", GOOD)
    lenient = _spec(project, TWIN, on_inconclusive="pass")
    with LocalStore(project / ".mlops") as store:  # the shape of an approval before the change
        record_event(
            store, "approval", model=MODEL, version=TWIN, by="alice@example.com", note=None
        )
    code, result = _check(cli, project, lenient)
    assert code == 0 and _gate(result, "approval")["verdict"] == "pass", result
    promoted = cli("release", "promote", str(lenient), cwd=project)
    assert promoted.exit_code == 0, promoted.stderr
    audit = json.loads(cli("audit", "--model", MODEL, "--json", cwd=project).stdout)
    promotion = next(e for e in audit if e["type"] == "promotion")
    assert promotion["approvals"] == ["alice@example.com"]
