"""Trigger semantics at a fixed `now`, on a local store: schedule, new data, drift and
performance (through the monitor seam), cooldown, and the compare-and-swap claim."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.app.retrain import check_trigger
from mlopsctl.config import load_project, open_project_store
from mlopsctl.ct import count_rows, read_state, state_key, write_state
from mlopsctl.errors import Conflict, ExitCode, MlopsError, SpecError, UsageError
from mlopsctl.pipeline.hashing import canonical_json, path_digest
from mlopsctl.store.base import ObjectStore

T0 = datetime(2026, 1, 5, 3, 30, tzinfo=timezone.utc)  # a Monday, champion registered
PIPELINE = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: tiny
steps:
  ingest: {component: ingest, with: {path: data/rows.csv}}
"""


def at(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "data").mkdir(parents=True)
        (root / "mlops.yaml").write_text(
            "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\nstore: {url: .mlops}\n"
        )
        (root / "pipeline.yaml").write_text(PIPELINE)
        self.write_rows(5)
        self.project = load_project(root)
        self.store: ObjectStore = open_project_store(self.project)

    def write_rows(self, n: int) -> None:
        lines = ["a,b"] + [f"{i},{i * 2}" for i in range(n)]
        (self.root / "data/rows.csv").write_text("\n".join(lines) + "\n")

    def champion(self, rows: int = 5, alias: str = "champion") -> None:
        """Version 1 of tiny-model, made by run r1 from the current data file."""
        digest = path_digest(self.root / "data/rows.csv")
        run = {
            "id": "r1",
            "status": "succeeded",
            "data": {"ingest.path": digest},
            "steps": {"ingest": {"info": {"rows": rows}}},
        }
        version = {
            "name": "tiny-model",
            "version": 1,
            "created": "2026-01-05T03:30:00Z",
            "run": {"id": "r1"},
            "data": {"sources": {"ingest.path": digest}},
        }
        self.store.put("runs/r1.json", canonical_json(run))
        self.store.put("models/tiny-model/versions/1.json", canonical_json(version))
        self.store.put(f"models/tiny-model/aliases/{alias}.json", canonical_json({"version": 1}))

    def trigger(self, **conditions: Any) -> Path:
        spec = {
            "apiVersion": "mlopsctl/v1",
            "kind": "Trigger",
            "name": "retrain",
            "pipeline": "pipeline.yaml",
            "model": "tiny-model@champion",
            **conditions,
        }
        path = self.root / "trigger.yaml"
        path.write_text(json.dumps(spec))
        return path

    def check(self, spec: Path, now: datetime, **kwargs: Any) -> dict[str, Any]:
        return check_trigger(spec, now=now, project=self.project, store=self.store, **kwargs)

    def last_run(self, started: datetime) -> None:
        state = {"trigger": "retrain", "last_run": {"started": started.isoformat(), "run": "r0"}}
        write_state(self.store, "retrain", state, None)


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Demo:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    return Demo(tmp_path / "demo")


def only(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["conditions"] if c["condition"] == name)


# -- schedule ------------------------------------------------------------------------------
def test_schedule_counts_from_the_champion_until_the_trigger_first_runs(demo: Demo) -> None:
    demo.champion()
    spec = demo.trigger(schedule="0 3 * * mon")
    quiet = demo.check(spec, at(days=6))  # Sunday: the next Monday 03:00 has not come
    assert quiet["fired"] == [] and not quiet["due"]
    assert only(quiet, "schedule")["next_fire"] == "2026-01-12T03:00:00Z"
    due = demo.check(spec, at(days=7))  # Monday 03:30, after the 03:00 fire time
    assert due["fired"] == ["schedule"] and due["due"]
    assert "due at 2026-01-12T03:00:00Z, after the champion's registration" in due["why"]


def test_schedule_counts_from_the_last_triggered_run(demo: Demo) -> None:
    demo.champion()
    demo.last_run(at(days=7, minutes=1))  # ran after Monday 12 Jan's fire time
    spec = demo.trigger(schedule="0 3 * * mon")
    assert demo.check(spec, at(days=13))["fired"] == []
    result = demo.check(spec, at(days=14))
    assert result["fired"] == ["schedule"]
    assert "after the last triggered run" in result["why"]


def test_schedule_fires_with_no_champion_and_no_run(demo: Demo) -> None:
    result = demo.check(demo.trigger(schedule="@daily"), T0)
    assert result["fired"] == ["schedule"] and result["champion"] is None
    assert "never run, no champion" in result["why"]


def test_a_cron_the_schema_passes_but_the_parser_refuses_is_a_spec_error(demo: Demo) -> None:
    with pytest.raises(SpecError) as caught:
        demo.check(demo.trigger(schedule="61 * * * *"), T0)
    assert "minute field '61' has 61, outside 0-59" in caught.value.one_line()
    assert caught.value.exit_code == ExitCode.INVALID_SPEC


# -- new data ------------------------------------------------------------------------------
def test_new_data_fires_when_the_digest_differs_from_the_champions_run(demo: Demo) -> None:
    demo.champion()
    spec = demo.trigger(new_data=True)
    same = demo.check(spec, T0)
    assert same["fired"] == []
    assert "same data as tiny-model@champion (v1, run r1)" in only(same, "new_data")["why"]
    demo.write_rows(6)
    changed = demo.check(spec, T0)
    assert changed["fired"] == ["new_data"] and changed["due"]
    assert only(changed, "new_data")["changed"] == ["ingest.path"]
    assert "ingest.path" in changed["why"] and "since tiny-model@champion" in changed["why"]


def test_new_data_min_new_rows(demo: Demo) -> None:
    demo.champion(rows=5)
    spec = demo.trigger(new_data={"inputs": ["ingest.path"], "min_new_rows": 10})
    demo.write_rows(12)
    few = demo.check(spec, T0)
    assert few["fired"] == [] and only(few, "new_data")["new_rows"] == 7
    assert "7 new row(s) < min_new_rows 10" in only(few, "new_data")["why"]
    demo.write_rows(15)
    assert demo.check(spec, T0)["fired"] == ["new_data"]


def test_new_data_without_a_champion_fires_and_unknown_inputs_are_refused(demo: Demo) -> None:
    assert demo.check(demo.trigger(new_data=True), T0)["fired"] == ["new_data"]
    with pytest.raises(UsageError, match=r"its data inputs: ingest\.path"):
        demo.check(demo.trigger(new_data={"inputs": ["ingest.data"]}), T0)


def test_count_rows_csv_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n2")
    assert count_rows(path) == 2
    path.write_text("a\n")
    assert count_rows(path) == 0


# -- drift and performance, through the monitor seam ----------------------------------------
class FakeMonitor:
    def __init__(self, **found: Any) -> None:
        self.found = {"drift": False, "drift_share": 0.0, "drifted_features": [], **found}
        self.calls: list[Path] = []

    def __call__(self, path: Path, **_: Any) -> dict[str, Any]:
        self.calls.append(path)
        return self.found


def test_drift_fires_on_the_monitors_verdict_or_min_share(demo: Demo) -> None:
    (demo.root / "monitor.yaml").write_text("kind: Monitor\n")
    found = FakeMonitor(drift=True, drift_share=0.2, drifted_features=["a"], event="e1")
    result = demo.check(demo.trigger(drift={"monitor": "monitor.yaml"}), T0, monitor=found)
    assert result["fired"] == ["drift"]
    assert only(result, "drift")["event"] == "e1"
    assert "drift found: 1 feature(s) drifted (20%): a" in result["why"]
    strict = demo.trigger(drift={"monitor": "monitor.yaml", "min_share": 0.5})
    assert demo.check(strict, T0, monitor=found)["fired"] == []
    quiet = FakeMonitor()
    assert (
        demo.check(demo.trigger(drift={"monitor": "monitor.yaml"}), T0, monitor=quiet)["fired"]
        == []
    )


def test_performance_and_drift_on_one_monitor_run_it_once(demo: Demo) -> None:
    (demo.root / "monitor.yaml").write_text("kind: Monitor\n")
    found = FakeMonitor(
        performance={"metric": "accuracy", "value": 0.81, "baseline": 0.95, "failed": True}
    )
    spec = demo.trigger(drift={"monitor": "monitor.yaml"}, performance={"monitor": "monitor.yaml"})
    result = demo.check(spec, T0, monitor=found)
    assert len(found.calls) == 1
    assert result["fired"] == ["performance"]
    assert "accuracy dropped: 0.81 (baseline 0.95)" in result["why"]
    bounded = demo.trigger(performance={"monitor": "monitor.yaml", "min": 0.8})
    assert demo.check(bounded, T0, monitor=found)["fired"] == []
    unlabelled = FakeMonitor(performance=None)
    result = demo.check(
        demo.trigger(performance={"monitor": "monitor.yaml"}), T0, monitor=unlabelled
    )
    assert result["fired"] == [] and "no ground truth" in result["conditions"][0]["why"]


# -- cooldown and state -------------------------------------------------------------------
def test_cooldown_holds_a_firing_back(demo: Demo) -> None:
    demo.last_run(T0)
    spec = demo.trigger(schedule="*/5 * * * *", cooldown="1h")
    cooling = demo.check(spec, at(minutes=30))
    assert cooling["fired"] == ["schedule"] and not cooling["due"]
    assert cooling["cooldown"] == {
        "duration": "1h",
        "until": "2026-01-05T04:30:00Z",
        "active": True,
    }
    assert (
        "would fire" in cooling["why"]
        and "cooling down until 2026-01-05T04:30:00Z" in cooling["why"]
    )
    # Cooling down, --run starts nothing and writes nothing.
    before = read_state(demo.store, "retrain")
    assert demo.check(spec, at(minutes=30), run=True)["run"] is None
    assert read_state(demo.store, "retrain") == before
    assert demo.check(spec, at(minutes=61))["due"]


def test_state_is_replaced_only_by_compare_and_swap(demo: Demo) -> None:
    first = write_state(demo.store, "retrain", {"n": 1}, None)
    with pytest.raises(Conflict) as caught:
        write_state(demo.store, "retrain", {"n": 2}, None)  # it exists now
    assert caught.value.exit_code == ExitCode.CONFLICT
    write_state(demo.store, "retrain", {"n": 2}, first)
    with pytest.raises(Conflict, match="claimed by another check"):
        write_state(demo.store, "retrain", {"n": 3}, first)  # stale etag
    assert read_state(demo.store, "retrain")[0] == {"n": 2}


def test_a_check_that_loses_the_claim_runs_nothing(demo: Demo) -> None:
    (demo.root / "monitor.yaml").write_text("kind: Monitor\n")

    class RacingMonitor(FakeMonitor):
        def __call__(self, path: Path, **kwargs: Any) -> dict[str, Any]:
            # Another check claims the trigger while this one is still evaluating.
            write_state(demo.store, "retrain", {"last_run": {"started": "x"}}, None)
            return super().__call__(path, **kwargs)

    spec = demo.trigger(drift={"monitor": "monitor.yaml"})
    with pytest.raises(Conflict):
        demo.check(spec, T0, run=True, monitor=RacingMonitor(drift=True))
    assert list(demo.store.list("runs/")) == []
    assert json.loads(demo.store.get(state_key("retrain"))) == {"last_run": {"started": "x"}}


def test_source_events_judges_recorded_monitor_checks_since_the_last_run(demo: Demo) -> None:
    from mlopsctl.events import record_event

    (demo.root / "monitor.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Monitor\nname: m1\ncurrent: {path: x.csv}\n"
    )
    demo.champion()  # registered at T0; the events below are recorded later, at the real now
    spec = demo.trigger(drift={"monitor": "monitor.yaml", "source": "events"})
    never = demo.check(spec, T0)
    assert (
        never["fired"] == []
        and "no check of monitor m1 recorded since 2026-01-05" in only(never, "drift")["why"]
    )

    def finding(monitor: str, drift: bool) -> None:
        record_event(
            demo.store,
            "drift",
            monitor=monitor,
            drift=drift,
            drift_share=0.5 if drift else 0.0,
            drifted_features=["a"] if drift else [],
            prediction_drift=False,
            performance=None,
        )

    finding("m1", False)
    finding("other", True)  # another monitor's finding does not count
    assert demo.check(spec, T0)["fired"] == []
    finding("m1", True)
    result = demo.check(spec, T0)
    assert result["fired"] == ["drift"]
    assert only(result, "drift")["source"] == "events"
    assert "1 of 2 check(s) of m1 since 2026-01-05T03:30:00Z" in result["why"]
    # A triggered run after those findings: they are used up.
    demo.last_run(datetime.now(timezone.utc) + timedelta(minutes=1))
    assert demo.check(spec, T0 + timedelta(days=400))["fired"] == []


def test_a_failed_triggered_run_is_recorded_and_counts_for_the_cooldown(demo: Demo) -> None:
    from mlopsctl.app.retrain import raise_for_run
    from mlopsctl.ct import list_history

    (demo.root / "pipeline.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: tiny\n"
        "steps:\n  boom: {run: \"python -c 'raise SystemExit(3)'\"}\n"
    )
    spec = demo.trigger(schedule="@hourly", cooldown="2h")
    result = demo.check(spec, T0, run=True)
    assert result["run"]["status"] == "failed" and result["run"]["error"] == "step(s) boom failed"
    with pytest.raises(MlopsError, match=r"started run .*, which failed") as caught:
        raise_for_run(result)
    assert caught.value.exit_code == ExitCode.ERROR
    state = read_state(demo.store, "retrain")[0]
    assert state["last_run"]["status"] == "failed" and state["last_run"]["run"]
    assert state["firings"] == 1
    assert [h["run"]["status"] for h in list_history(demo.store, "retrain")] == ["failed"]
    again = demo.check(spec, at(hours=1), run=True)
    assert again["fired"] == ["schedule"] and not again["due"] and again["run"] is None


# -- a run in progress, stale claims, and the outcome's state write -----------------------
WAIT = """\
import pathlib, sys, time
deadline = time.monotonic() + 30
while not pathlib.Path("go").exists():
    if time.monotonic() > deadline:
        sys.exit(9)
    time.sleep(0.02)
"""


def test_a_run_in_progress_holds_a_second_check_back_and_its_outcome_is_recorded(
    demo: Demo,
) -> None:
    """A check during a triggered run's training starts nothing (its conditions still show),
    a state edit during the run does not cost the run its outcome, and afterwards new_data
    compares with the data that run read (no champion yet: nothing else to compare with)."""
    import sys
    import threading

    from mlopsctl.ct import list_history
    from mlopsctl.events import list_events

    (demo.root / "wait.py").write_text(WAIT)
    (demo.root / "pipeline.yaml").write_text(
        PIPELINE + f"  wait: {{run: {json.dumps(sys.executable + ' wait.py')}}}\n"
    )
    spec = demo.trigger(schedule="*/5 * * * *", new_data=True)
    first: list[Any] = []

    def triggered() -> None:
        store = open_project_store(demo.project)
        try:
            first.append(check_trigger(spec, now=T0, project=demo.project, store=store, run=True))
        except MlopsError as exc:  # handed to the test's thread, which fails on it
            first.append(exc)
        finally:
            store.close()

    thread = threading.Thread(target=triggered)
    thread.start()
    try:
        for _ in range(500):  # the claim is written before the pipeline starts
            state, etag = read_state(demo.store, "retrain")
            if state or first:
                break
            thread.join(0.02)
        assert state and state["last_run"]["status"] == "running", first
        assert set(state["last_run"]["inputs"]) == {"ingest.path"}

        second = demo.check(spec, at(minutes=5), run=True)
        assert second["fired"] == ["schedule"] and not second["due"] and second["run"] is None
        assert second["running"]["stale"] is False
        assert second["running"]["stale_at"] == "2026-01-05T09:30:00Z"  # default max_run 6h
        assert second["why"].startswith(
            "a triggered run started at 2026-01-05T03:30:00Z is still running"
        )
        assert "same data as the last triggered run (running" in only(second, "new_data")["why"]
        # Someone edits the state meanwhile: the run's final write re-reads and merges.
        write_state(demo.store, "retrain", {**state, "note": "edited"}, etag)
    finally:
        (demo.root / "go").write_text("")
        thread.join(60)
    assert not thread.is_alive()
    result = first[0]
    assert not isinstance(result, Exception), result
    assert result["run"]["status"] == "succeeded" and "state_error" not in result["run"]
    state = read_state(demo.store, "retrain")[0]
    assert state["note"] == "edited" and state["firings"] == 1
    assert state["last_run"]["status"] == "succeeded"
    assert state["last_run"]["run"] == result["run"]["id"]
    assert [h["run"]["id"] for h in list_history(demo.store, "retrain")] == [result["run"]["id"]]
    events = list_events(demo.store, kind="trigger")
    assert [e["run"] for e in events] == [result["run"]["id"]]
    assert len(list(demo.store.list("runs/"))) == 1

    after = demo.check(spec, at(minutes=10))
    assert after["running"] is None and after["fired"] == ["schedule"]
    assert only(after, "new_data")["fired"] is False
    assert "same data as the last triggered run (succeeded" in only(after, "new_data")["why"]


def test_a_stale_claim_is_taken_over_and_its_late_outcome_leaves_the_new_claim(
    demo: Demo,
) -> None:
    from mlopsctl.ct import finish_state

    started = at(hours=-3)
    claim = {"last_run": {"firing": "old", "started": iso_z(started), "status": "running"}}
    write_state(demo.store, "retrain", {"trigger": "retrain", "firings": 4, **claim}, None)
    spec = demo.trigger(schedule="@hourly", max_run="2h")

    busy = demo.check(spec, at(hours=-2), run=True)
    assert busy["fired"] == ["schedule"] and not busy["due"] and busy["run"] is None
    assert "still running (taken as crashed from 2026-01-05T02:30:00Z)" in busy["why"]

    stale = demo.check(spec, T0)
    assert stale["due"] and stale["running"]["stale"] is True
    assert "did not finish within max_run 2h and is taken as crashed" in stale["why"]
    took = demo.check(spec, T0, run=True)
    assert took["run"]["status"] == "succeeded"
    state = read_state(demo.store, "retrain")[0]
    assert state["abandoned"] == {"firing": "old", "started": "2026-01-05T00:30:00Z"}
    assert state["firings"] == 5 and state["last_run"]["status"] == "succeeded"

    # The old run was only slow: when it finishes, the newer claim stands.
    late = finish_state(demo.store, "retrain", "old", {"status": "succeeded"})
    assert late and "no longer holds firing old" in late
    assert read_state(demo.store, "retrain")[0] == state
    # Without max_run, a claim is in progress for 6 hours.
    write_state(demo.store, "retrain", claim, read_state(demo.store, "retrain")[1])
    default = demo.check(demo.trigger(schedule="@hourly"), at(hours=2, minutes=59))
    assert not default["due"] and default["running"]["stale_at"] == "2026-01-05T06:30:00Z"
    assert demo.check(demo.trigger(schedule="@hourly"), at(hours=3))["due"]


def iso_z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class RacingWriter:
    """The store, with another writer changing the state just before each of the next
    `races` compare-and-swaps (a fault a real store only shows by chance)."""

    def __init__(self, store: ObjectStore, races: int) -> None:
        self.store, self.races = store, races

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self.store.get_versioned(key)

    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> str:
        if self.races:
            self.races -= 1
            state, etag = read_state(self.store, "retrain")
            write_state(self.store, "retrain", {**(state or {}), "note": self.races}, etag)
        return self.store.compare_and_swap(key, data, expected_etag)


def test_the_outcome_is_merged_into_the_state_with_retries(demo: Demo) -> None:
    from mlopsctl.ct import STATE_TRIES, finish_state

    claim = {"last_run": {"firing": "f1", "started": "2026-01-05T03:30:00Z", "status": "running"}}
    write_state(demo.store, "retrain", claim, None)
    racing: Any = RacingWriter(demo.store, races=2)
    assert finish_state(racing, "retrain", "f1", {"status": "succeeded", "run": "r9"}) is None
    state = read_state(demo.store, "retrain")[0]
    assert state["note"] == 0  # the last concurrent write is kept
    assert state["last_run"] == {**claim["last_run"], "status": "succeeded", "run": "r9"}

    write_state(demo.store, "retrain", claim, read_state(demo.store, "retrain")[1])
    endless: Any = RacingWriter(demo.store, races=STATE_TRIES)
    problem = finish_state(endless, "retrain", "f1", {"status": "failed"})
    assert (
        problem
        == f"the state of trigger 'retrain' changed {STATE_TRIES} times while recording firing f1"
    )
    assert read_state(demo.store, "retrain")[0]["last_run"]["status"] == "running"


def test_new_data_also_compares_with_the_last_triggered_run(demo: Demo) -> None:
    """A retrain that was not promoted: the champion still has the old data, and the same new
    data does not fire again; with min_new_rows, new rows count from both runs."""
    demo.champion(rows=5)
    demo.write_rows(12)
    digest = path_digest(demo.root / "data/rows.csv")
    demo.store.put(
        "runs/r2.json",
        canonical_json(
            {"id": "r2", "status": "succeeded", "steps": {"ingest": {"info": {"rows": 12}}}}
        ),
    )
    last = {"firing": "f", "started": "2026-01-05T04:00:00Z", "status": "succeeded", "run": "r2"}
    state = {"last_run": {**last, "inputs": {"ingest.path": digest}}}
    write_state(demo.store, "retrain", state, None)
    spec = demo.trigger(new_data=True)
    same = demo.check(spec, at(hours=2))
    assert same["fired"] == [] and not same["due"]
    assert only(same, "new_data")["why"] == (
        "same data as the last triggered run (succeeded, started 2026-01-05T04:00:00Z, run r2)"
    )
    demo.write_rows(14)
    moved = demo.check(spec, at(hours=2))
    assert moved["fired"] == ["new_data"]
    assert "since tiny-model@champion (v1, run r1); ingest.path" in moved["why"]
    assert "since the last triggered run (succeeded" in moved["why"]

    counted = demo.trigger(new_data={"min_new_rows": 5})
    few = demo.check(counted, at(hours=2))  # 9 rows more than the champion's, 2 than r2's
    assert few["fired"] == [] and only(few, "new_data")["new_rows"] == 2
    assert "but 2 new row(s) < min_new_rows 5" in only(few, "new_data")["why"]
    demo.write_rows(20)
    enough = demo.check(counted, at(hours=2))
    assert enough["fired"] == ["new_data"] and only(enough, "new_data")["new_rows"] == 8
    assert "(15 new rows)" in enough["why"] and "(8 new rows)" in enough["why"]


# -- the service and the application layer -------------------------------------------------
def test_the_ct_service_checks_without_running_and_imports_no_app_layer(demo: Demo) -> None:
    """mlopsctl.ct.check_trigger only checks (app.retrain acts on it); it says the same as
    app.retrain.check_trigger without --run, and loading ct loads neither app nor cli."""
    import subprocess
    import sys

    from mlopsctl import ct

    demo.champion()
    demo.write_rows(6)
    spec = demo.trigger(new_data=True, schedule="0 3 * * mon")
    checked = ct.check_trigger(spec, now=T0, project=demo.project, store=demo.store)
    assert checked == demo.check(spec, T0)
    assert checked["due"] and checked["run"] is None
    assert read_state(demo.store, "retrain") == (None, None)  # a check writes nothing
    code = "import sys, mlopsctl.ct; print(sorted(m for m in sys.modules if m.startswith(("
    code += "'mlopsctl.app', 'mlopsctl.cli', 'mlopsctl.pipeline'))))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
