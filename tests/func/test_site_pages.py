"""Long tables of the site in blocks of 500 runs counted from the oldest: the newest block is
the experiment's index.html, and a new run rewrites that block alone, not the older ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlopsctl.runs import save_run
from mlopsctl.site import build_site
from mlopsctl.store.local import LocalStore

from .test_models import quickstart_project
from .test_site import broken_links, copy_run


def run_id(n: int) -> str:
    return f"20300101-{n // 60:04d}{n % 60:02d}-000-{n:06x}"


def test_runs_table_in_blocks_and_a_new_run_touches_the_newest(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run = quickstart_project(tmp_path_factory, tmp_path / "demo")
    store = LocalStore(tmp_path / "demo/.mlops")
    for n in range(600):
        save_run(store, copy_run(run, run_id(n), metrics={**run["metrics"], "roc_auc": n / 600}))
    site = tmp_path / "site"
    first = build_site(store, site)
    assert first["runs"] == 601
    folder = site / "experiments/quickstart"
    assert sorted(p.name for p in folder.iterdir()) == [
        "compare.html",
        "index.html",
        "page-1.html",
    ]

    def rows(page: str) -> list[str]:
        text = (folder / page).read_text()
        return [r["id"] for r in json.loads(text.split('id="runs-data">')[1].split("</script>")[0])]

    assert rows("page-1.html") == [run_id(n) for n in range(498, -1, -1)] + [run["id"]]
    assert rows("index.html") == [run_id(n) for n in range(599, 498, -1)]
    index = (folder / "index.html").read_text()
    assert "601 runs, newest first." in index and '<a href="page-1.html">1\u2013500</a>' in index
    compare = (folder / "compare.html").read_text()
    assert compare.index(run_id(599)) < compare.index(run_id(598))  # the best first

    # A run outside the best ten: the comparison stays as it was.
    save_run(store, copy_run(run, run_id(600), metrics={**run["metrics"], "roc_auc": 0.0}))
    second = build_site(store, site)
    tables = [p for p in second["written_pages"] if p.startswith("experiments/quickstart/")]
    assert tables == ["experiments/quickstart/index.html"]
    assert rows("index.html")[0] == run_id(600)
    assert broken_links(site) == []


def test_reports_deployments_and_rollouts(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from mlopsctl.digest import canonical_json
    from mlopsctl.events import record_event
    from mlopsctl.registry import set_alias

    from .test_models import MODEL

    run = quickstart_project(tmp_path_factory, tmp_path / "demo")
    store = LocalStore(tmp_path / "demo/.mlops")
    set_alias(store, MODEL, "production", 1)
    report = tmp_path / "drift.html"
    report.write_text("<!DOCTYPE html><html><body><h1 id='drift-report'>drift</h1></body></html>")
    drift = record_event(
        store,
        "drift",
        monitor="nightly",
        model=MODEL,
        version=1,
        verdict="failed",
        drift=True,
        drift_share=0.5,
        drifted_features=["age"],
        rows=100,
        report=str(report),
    )
    gone = record_event(
        store,
        "drift",
        monitor="gone",
        model=MODEL,
        version=1,
        verdict="passed",
        drift=False,
        report=str(tmp_path / "missing.html"),
    )
    ab = record_event(
        store,
        "ab",
        model=MODEL,
        version=1,
        release="<b>r1</b>",
        spec="release.yaml",
        at="2026-11-01T00:00:00Z",
        decision="pass",
        passed=True,
        gates=[],
    )
    now = "2026-11-01T00:00:00Z"
    store.put(
        f"deployments/{MODEL}/main.json",
        canonical_json(
            {
                "model": MODEL,
                "deployment": "main",
                "arms": [{"arm": "production", "weight": 100}],
                "key": None,
                "seq": 1,
                "updated": now,
                "by": "tester",
                "reason": None,
            }
        ),
    )
    store.put(
        f"rollouts/{MODEL}/r1.json",
        canonical_json(
            {
                "model": MODEL,
                "release": "r1",
                "strategy": "canary",
                "deployment": "main",
                "alias": "production",
                "candidate": {"version": 1},
                "champion": {"version": None},
                "check": None,
                "approvals": [],
                "steps": [10, 50, 100],
                "step": 1,
                "status": "running",
                "started": now,
                "step_started": now,
                "looks": 2,
                "reason": None,
                "history": [
                    {"time": now, "action": "start"},
                    {"time": now, "action": "step", "to": 1},
                ],
                "seq": 2,
                "updated": now,
            }
        ),
    )
    site = tmp_path / "site"
    build_site(store, site, base_dir=tmp_path / "demo")

    index = (site / "reports/index.html").read_text()
    monitoring = index.split('id="monitoring"')[1].split("</table>")[0]
    assert f'href="monitor/{drift["id"]}.html"' in monitoring
    assert (site / f"reports/monitor/{drift['id']}.html").read_bytes() == report.read_bytes()
    assert not (site / f"reports/monitor/{gone['id']}.html").exists()
    assert "missing.html" in monitoring  # named, not linked
    ab_page = (site / f"reports/ab/{ab['id']}.html").read_text()
    assert 'data-decision="pass"' in ab_page and "&lt;b&gt;r1&lt;/b&gt;" in ab_page
    assert 'href="../index.html"' in ab_page
    rollout = (site / f"reports/rollouts/{MODEL}/r1.html").read_text()
    assert "2/3 (50%)" in rollout and rollout.count("<tr>") >= 3
    assert "<td>main</td>" in index.split('id="deployments"')[1]
    version = (site / f"models/{MODEL}/v1.html").read_text()
    assert 'data-node="deployment:main"' in version  # served through @production
    model = (site / f"models/{MODEL}/index.html").read_text()
    assert f'href="../../reports/rollouts/{MODEL}/r1.html"' in model
    assert broken_links(site) == []
    assert run["id"] in (site / "index.html").read_text()


def test_names_that_would_clash_with_the_sites_files_are_renamed() -> None:
    from mlopsctl.site.html import slug

    assert slug("churn") == "churn" and slug("model.v2") == "model.v2"
    for name in (
        "index.html",
        "index",
        "site.js",
        "style.css",
        "manifest.json",
        "x-1",
        "../a",
        "a/b",
        ".hidden",
        "<b>",
        "",
        "A" * 101,
    ):
        got = slug(name)
        assert re.fullmatch(r"x-[0-9a-f]{20}", got), (name, got)
    assert slug("index.html") != slug("index")
