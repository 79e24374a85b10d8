"""What a trigger hands its run and chains after it, through the seams of mlopsctl/app/retrain.py
and mlopsctl/ct/data.py: run.params placeholders, the release check of a new version (passed,
failed, another model's spec), then the promotion or the rollout step it asks for, nothing
chained for an identical model, and the exit codes these make."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlopsctl.app import retrain
from mlopsctl.ct import merged, run_params
from mlopsctl.errors import CheckFailed, ExitCode, MlopsError, UsageError

RELEASE = """\
apiVersion: mlopsctl/v1
kind: Release
name: loop
model: breast-cancer
candidate: latest
champion: champion
gates:
  - type: signature
"""
DATASET = {
    "name": "served",
    "digest": "sha256:" + "ab" * 32,
    "rows": 712,
    "window": {"since": "2026-05-01T00:00:00Z", "until": "2026-05-02T00:00:00Z"},
}


def context(root: Path, then: dict[str, Any] | None = None, params: Any = None) -> Any:
    spec: dict[str, Any] = {"name": "loop", "run": {"params": params or {}}}
    if then is not None:
        spec["then"] = then
    return SimpleNamespace(
        spec=spec, name="loop", project=SimpleNamespace(root=root), store=object()
    )


@pytest.fixture
def release(tmp_path: Path) -> Path:
    (tmp_path / "release.yaml").write_text(RELEASE)
    return tmp_path


def test_run_params_are_filled_from_the_dataset(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        params={
            "dataset": "${dataset.digest}",
            "rows": "${ dataset.rows }",
            "window": {"note": "from ${window.since} to ${window.until}"},
            "fixed": 3,
        },
    )
    assert run_params(ctx, DATASET) == {
        "dataset": DATASET["digest"],
        "rows": 712,  # a lone placeholder keeps the value's type
        "window": {"note": "from 2026-05-01T00:00:00Z to 2026-05-02T00:00:00Z"},
        "fixed": 3,
    }
    with pytest.raises(UsageError, match=r"unknown placeholder \$\{dataset.size\}"):
        run_params(context(tmp_path, params={"x": "${dataset.size}"}), DATASET)
    with pytest.raises(UsageError, match=r"the trigger has no run\.dataset"):
        run_params(context(tmp_path, params={"x": "${window.until}"}), None)
    assert merged({"model": {"a": 1, "b": 2}, "t": 1}, {"model": {"b": 3}}) == {
        "model": {"a": 1, "b": 3},
        "t": 1,
    }


def test_nothing_is_chained_without_a_new_version(release: Path) -> None:
    ctx = context(release, then={"release": "release.yaml"})
    assert retrain.chain(ctx, "f1", None)["skipped"] == "the run registered no model"
    same = retrain.chain(ctx, "f1", {"model": "breast-cancer", "version": 2, "new": False})
    assert same == {
        "release": "release.yaml",
        "skipped": "identical to version 2: nothing registered, nothing to check",
    }


def test_a_passed_check_promotes_or_steps_a_rollout(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any]] = []

    def run_check(store: Any, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
        calls.append(("check", (spec["candidate"], kw["candidate"])))
        return {"id": "e1", "passed": True, "gates": [{"name": "signature", "verdict": "pass"}]}

    def promote(store: Any, spec: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        calls.append(("promote", (spec["candidate"], reason)))
        return {"model": "breast-cancer", "alias": "champion", "version": 2, "previous": 1}

    def advance(store: Any, spec: dict[str, Any], **kw: Any) -> Any:
        calls.append(("rollout", spec["candidate"]))
        return SimpleNamespace(
            action="started", state={"status": "running"}, message="step 1 of 2: 50%"
        )

    monkeypatch.setattr("mlopsctl.release.gates.run_check", run_check)
    monkeypatch.setattr("mlopsctl.release.actions.promote", promote)
    monkeypatch.setattr("mlopsctl.release.rollout.advance", advance)
    new = {"model": "breast-cancer", "version": 2, "new": True}

    done = retrain.chain(context(release, {"release": "release.yaml", "promote": True}), "f1", new)
    assert done == {
        "release": "release.yaml",
        "candidate": "breast-cancer:2",
        "passed": True,
        "event": "e1",
        "gates": [{"name": "signature", "verdict": "pass"}],
        "promote": {
            "model": "breast-cancer",
            "alias": "champion",
            "version": 2,
            "previous": 1,
            "unchanged": None,
        },
    }
    assert calls == [
        ("check", ("2", "2")),
        ("promote", ("2", "trigger loop firing f1: release check passed")),
    ]
    calls.clear()
    done = retrain.chain(context(release, {"release": "release.yaml", "rollout": True}), "f1", new)
    assert done["rollout"] == {
        "action": "started",
        "status": "running",
        "message": "step 1 of 2: 50%",
    }
    assert calls == [("check", ("2", "2")), ("rollout", "2")]
    retrain.raise_for_run({"trigger": "loop", "run": {"status": "succeeded", "then": done}})


def test_a_failed_check_promotes_nothing_and_exits_4(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run_check(store: Any, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return {"id": "e2", "passed": False, "gates": [{"name": "signature", "verdict": "fail"}]}

    def promote(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a failed check must not promote")

    monkeypatch.setattr("mlopsctl.release.gates.run_check", run_check)
    monkeypatch.setattr("mlopsctl.release.actions.promote", promote)
    new = {"model": "breast-cancer", "version": 3, "new": True}
    done = retrain.chain(context(release, {"release": "release.yaml", "promote": True}), "f", new)
    assert done["passed"] is False and "promote" not in done
    with pytest.raises(CheckFailed) as caught:
        retrain.raise_for_run({"trigger": "loop", "run": {"status": "succeeded", "then": done}})
    assert caught.value.exit_code == ExitCode.CHECK_FAILED
    assert "breast-cancer:3 failed release release.yaml (signature)" in caught.value.message

    other = {"model": "churn", "version": 1, "new": True}
    done = retrain.chain(context(release, {"release": "release.yaml"}), "f", other)
    assert done["error"].startswith(
        "then.release judges breast-cancer, but the run registered churn"
    )
    with pytest.raises(MlopsError, match=r"then: then\.release judges") as caught:
        retrain.raise_for_run({"trigger": "loop", "run": {"status": "succeeded", "then": done}})
    assert caught.value.exit_code == ExitCode.ERROR
