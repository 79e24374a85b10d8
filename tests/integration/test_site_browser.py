"""The static site in a real headless browser (Debian's chromium), loaded from file://: the
tables have rows and the plots and graphs have paths in the rendered DOM, screenshots are real,
non-blank pictures, and the audit log's filters, driven by the page address, keep only the
matching events once the page's script has run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mlopsctl.runs import save_run
from mlopsctl.site import build_site
from mlopsctl.store.local import LocalStore
from tests.func.test_models import MODEL, quickstart_project

from .test_monitor_report_browser import CHROMIUM, _chromium, _png_pixels

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.geteuid() != 0,
    reason="needs Debian's chromium (apt-get install chromium, as root; scripts/test.sh does it)",
)


def dom(page: str, user_dir: Path, budget_ms: int = 5000) -> str:
    """The DOM after the page's scripts ran (virtual time lets them finish)."""
    done = _chromium(f"--virtual-time-budget={budget_ms}", "--dump-dom", page, user_dir=user_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def assert_not_blank(shot: Path, width: int, height: int) -> None:
    got_w, got_h, channels, raw = _png_pixels(shot)
    assert (got_w, got_h) == (width, height)
    stride = 1 + got_w * channels
    rows = {raw[i : i + stride] for i in range(0, len(raw), stride)}
    assert len(rows) > 100, "the screenshot is (nearly) one colour"
    assert len(set(raw)) > 50


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("site")
    root = base / "demo"
    run = quickstart_project(tmp_path_factory, root)
    store = LocalStore(root / ".mlops")
    from mlopsctl.registry import set_alias

    set_alias(store, MODEL, "production", 1, reason="first release")
    set_alias(store, MODEL, "staging", 1, reason="for the browser test")
    for n, auc in enumerate((0.91, 0.95, 0.93)):
        record = json.loads(json.dumps(run))
        record.pop("registered", None)
        record.update(
            id=f"20300101-00000{n}-000-abcde{n}", metrics={**run["metrics"], "roc_auc": auc}
        )
        save_run(store, record)
    out = base / "site"
    build_site(store, out, base_dir=root)
    return out, run


def test_pages_render_with_rows_and_svg(site: tuple[Path, dict], tmp_path: Path) -> None:
    out, run = site
    table = dom((out / "experiments/quickstart/index.html").as_uri(), tmp_path / "p1")
    body = table.split('id="runs"')[1].split("</table>")[0]
    assert body.count('<input type="checkbox" class="pick"') == 4
    plot = table.split('<svg class="plot" data-metric="roc_auc"')[1].split("</svg>")[0]
    assert re.search(r'<path d="M[0-9.]+,[0-9.]+ L', plot)

    run_page = dom((out / f"runs/{run['id']}.html").as_uri(), tmp_path / "p2")
    steps = run_page.split('id="steps"')[1].split("</table>")[0]
    assert steps.count("<tr>") == 5  # header and four steps
    graph = run_page.split('<svg class="dag"')[1].split("</svg>")[0]
    # ingest -> split -> train -> evaluate, and split's test set -> evaluate
    assert graph.count('class="edge"') == 4 and graph.count('class="node"') == 4

    version = dom((out / f"models/{MODEL}/v1.html").as_uri(), tmp_path / "p3")
    lineage = version.split('<svg class="lineage"')[1].split("</svg>")[0]
    assert f'data-node="run:{run["id"]}"' in lineage and 'class="edge"' in lineage

    for page, name in (("index.html", "index"), (f"runs/{run['id']}.html", "run")):
        shot = tmp_path / f"{name}.png"
        taken = _chromium(
            f"--screenshot={shot}",
            "--window-size=1200,1400",
            (out / page).as_uri(),
            user_dir=tmp_path / f"shot-{name}",
        )
        assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
        assert_not_blank(shot, 1200, 1400)


def test_audit_filters_follow_the_page_address(site: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = site
    page = (out / "audit.html").as_uri()

    everything = dom(page, tmp_path / "all")
    total = int(re.search(r'data-shown="(\d+)"', everything).group(1))  # type: ignore[union-attr]
    assert total >= 3 and f"{total} of {total} events" in everything

    moves = dom(f"{page}#type=alias_move&model={MODEL}", tmp_path / "moves")
    rows = re.findall(r'<tr data-type="([^"]+)">', moves)
    assert rows == ["alias_move", "alias_move"]
    assert f"2 of {total} events" in moves
    assert '<option value="alias_move">alias_move</option>' in moves

    text = dom(f"{page}#q=browser%20test", tmp_path / "text")
    assert re.findall(r'<tr data-type="([^"]+)">', text) == ["alias_move"]
    assert "for the browser test" in text

    none = dom(f"{page}#type=no-such-type", tmp_path / "none")
    assert re.findall(r"<tr data-type=", none) == [] and f"0 of {total} events" in none


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "records"
PWNED = re.compile(r"<body[^>]*data-pwned=")  # what the notebook's script would do


def _executed_notebook() -> bytes:
    """An executed notebook whose outputs try to run script: an inline <script>, an <img>
    with onerror, and a javascript: link; and a text output to find on the page."""
    hostile = (
        "<p id='shown'>a table of results</p>"
        "<script>document.body.setAttribute('data-pwned', 'script')</script>"
        "<img src='x:' onerror=\"document.body.setAttribute('data-pwned', 'onerror')\">"
    )
    cell = {
        "cell_type": "code",
        "id": "report",
        "execution_count": 1,
        "metadata": {},
        "source": "report()",
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "rows 569\n"},
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"text/html": hostile, "text/plain": "report"},
            },
        ],
    }
    notebook = {
        "cells": [
            {
                "cell_type": "markdown",
                "id": "title",
                "metadata": {},
                "source": "# Exploring the data",
            },
            cell,
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook).encode()


def test_a_notebook_page_runs_none_of_the_notebooks_script(tmp_path: Path) -> None:
    """The executed notebook's page shows its cells and outputs, while the script its HTML
    outputs carry does not run; the same HTML without the page's policy does run it (so the
    check can fail)."""
    pytest.importorskip("nbconvert", reason="notebook pages render with nbconvert (the extra)")
    from mlopsctl.site.html import frame
    from mlopsctl.site.notebook import _cells
    from mlopsctl.store.blobs import put_blob_bytes

    store = LocalStore(tmp_path / "store")
    digest = put_blob_bytes(store, _executed_notebook())
    run_id = "20300101-000000-000-nbnbnb"
    record = json.loads((FIXTURES / "run.json").read_text())  # a valid run, one step kept
    step = {**record["steps"]["evaluate"], "kind": "notebook", "status": "executed"}
    step["outputs"] = {"notebook": {"digest": digest, "kind": "file", "size": 1}}
    record.update(id=run_id, steps={"explore": step}, order=["explore"])
    save_run(store, record)
    out = tmp_path / "site"
    build_site(store, out)
    page = out / f"notebooks/{digest.split(':')[1]}.html"

    shown = dom(page.as_uri(), tmp_path / "nb")
    assert "Exploring the data" in shown and "rows 569" in shown
    assert 'id="shown"' in shown and not PWNED.search(shown)
    run_page = dom((out / f"runs/{run_id}.html").as_uri(), tmp_path / "run")
    assert f'href="../notebooks/{digest.split(":")[1]}.html"' in run_page

    bare = tmp_path / "bare.html"  # the same cells without the page's policy
    bare.write_text(frame("bare", _cells(_executed_notebook()), ""))
    assert PWNED.search(dom(bare.as_uri(), tmp_path / "bare"))
