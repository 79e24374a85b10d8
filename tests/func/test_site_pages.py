"""Long tables of the site in blocks of 500 runs counted from the oldest: the newest block is
the experiment's index.html, and a new run rewrites that block alone, not the older ones."""

from __future__ import annotations

import json
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
