"""`mlopsctl site build` on the trained quickstart: every page is there with the store's facts
(a run's metrics, a version's provenance, an alias's whole history, the audit log's data),
hostile names and texts are escaped, every relative link resolves, a rebuild rewrites only the
pages whose inputs changed, and a bad output path is a one-line usage error."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from mlopsctl.runs import save_run
from mlopsctl.store.local import LocalStore

from .conftest import Invoke
from .test_models import MODEL, quickstart_project

HOSTILE_EXPERIMENT = "<img src=x onerror=alert(1)>\"exp'"
HOSTILE_PARAM = '</script><script>alert(2)</script>"'
HOSTILE_REASON = '</script><b id="boo">"moved"</b>'


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.scripts: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.targets.append(value)
        self._script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._script:
            self.scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._script = False


def parse(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def broken_links(site: Path) -> list[str]:
    broken = []
    for page in site.rglob("*.html"):
        for target in parse(page).targets:
            parts = urlsplit(target)
            assert not parts.scheme and not parts.netloc, f"{page}: absolute link {target}"
            if not parts.path:
                continue  # a fragment of the page itself
            assert not parts.path.startswith("/"), f"{page}: root-relative link {target}"
            if not (page.parent / unquote(parts.path)).resolve().is_file():
                broken.append(f"{page.relative_to(site)} -> {target}")
    return broken


def ok(cli: Invoke, root: Path, *args: str) -> str:
    result = cli(*args, cwd=root)
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def copy_run(run: dict[str, Any], run_id: str, **changes: Any) -> dict[str, Any]:
    record = json.loads(json.dumps(run))
    record.pop("registered", None)
    record.update(id=run_id, **changes)
    return record


@pytest.fixture
def trained(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "demo"
    return root, quickstart_project(tmp_path_factory, root)


def test_site_of_the_quickstart(cli: Invoke, trained: tuple[Path, dict], tmp_path: Path) -> None:
    root, run = trained
    store = LocalStore(root / ".mlops")
    ok(cli, root, "models", "alias", "set", MODEL, "production", "1", "-m", "first")
    ok(cli, root, "models", "alias", "set", MODEL, "production", "1", "-m", HOSTILE_REASON)
    ok(cli, root, "models", "alias", "set", MODEL, "staging", "1")
    hostile_id = "20300101-000000-000-aaaaaa"
    save_run(
        store,
        copy_run(
            run,
            hostile_id,
            experiment=HOSTILE_EXPERIMENT,
            params={**run["params"], "note": HOSTILE_PARAM},
            metrics={**run["metrics"], "roc_auc": 0.5},
        ),
    )
    site = tmp_path / "site"

    result = json.loads(ok(cli, root, "site", "build", "-o", str(site), "--json"))
    assert result["written"] == result["pages"] > 10 and result["removed"] == 0
    assert result["runs"] == 2 and result["versions"] == 1 and result["events"] >= 4
    assert result["output"] == str(site)
    for path in (
        "index.html",
        ".nojekyll",
        "style.css",
        "site.js",
        "manifest.json",
        "experiments/index.html",
        "experiments/quickstart/index.html",
        "experiments/quickstart/compare.html",
        f"runs/{run['id']}.html",
        f"runs/{hostile_id}.html",
        "models/index.html",
        f"models/{MODEL}/index.html",
        f"models/{MODEL}/v1.html",
        "pipelines/index.html",
        "pipelines/quickstart.html",
        "audit.html",
        "reports/index.html",
    ):
        assert (site / path).is_file(), path

    # A run's page: its metrics, params, steps and graph.
    run_page = (site / f"runs/{run['id']}.html").read_text()
    roc_auc = f"{run['metrics']['roc_auc']:.6g}"
    assert re.search(rf"<td>roc_auc</td><td>{re.escape(roc_auc)}</td>", run_page)
    assert "<td>model.n_estimators</td><td>20</td>" in run_page
    for step in ("ingest", "split", "train", "evaluate"):
        assert f"<td>{step}</td>" in run_page
    assert '<svg class="dag"' in run_page and "<path" in run_page
    assert f'href="../models/{MODEL}/v1.html"' in run_page

    # The version's provenance, and its lineage from data to the run.
    version = (site / f"models/{MODEL}/v1.html").read_text()
    assert f'href="../../runs/{run["id"]}.html"' in version
    assert run["git"]["commit"] in version
    assert 'href="../../pipelines/quickstart.html">quickstart</a> step train' in version
    assert run["steps"]["split"]["outputs"]["train"]["digest"] in version
    assert '<svg class="lineage"' in version and f'data-node="run:{run["id"]}"' in version
    assert "<th>aliases</th><td>production, staging</td>" in version

    # Every move of an alias, the hostile reason escaped.
    model_page = (site / f"models/{MODEL}/index.html").read_text()
    history = model_page.split('data-alias="production"')[1].split("</table>")[0]
    assert history.count("<tr>") == 3  # the header and two moves
    assert "first" in history and "&lt;/script&gt;&lt;b id=&quot;boo&quot;&gt;" in history

    # The audit log's data, in the page for the filters.
    audit = (site / "audit.html").read_text()
    blocks = [s for s in parse(site / "audit.html").scripts if s.strip()]
    assert len(blocks) == 1  # the JSON (site.js is a file)
    events = json.loads(blocks[0])
    kinds = [e["type"] for e in events]
    assert kinds.count("alias_move") == 3 and kinds.count("register") == 1
    moves = [e for e in events if e["type"] == "alias_move"]
    assert all(e["model"] == MODEL and e["actor"] for e in moves)
    assert any(HOSTILE_REASON in e["text"] for e in moves)
    assert audit.count("</script>") == 2 and '<b id="boo">' not in audit
    assert 'id="audit-filters"' in audit and 'name="type"' in audit and 'name="actor"' in audit

    # Hostile names and texts never reach a page unescaped.
    for page in site.rglob("*.html"):
        text = page.read_text()
        for raw in ("<img src=x", "<script>alert", '<b id="boo">'):
            assert raw not in text, f"{raw} unescaped in {page}"
    experiments = (site / "experiments/index.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;exp&#x27;" in experiments
    hostile_page = (site / f"runs/{hostile_id}.html").read_text()
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;&quot;" in hostile_page
    hostile_folder = [p for p in (site / "experiments").iterdir() if p.name.startswith("x-")]
    assert len(hostile_folder) == 1 and (hostile_folder[0] / "index.html").is_file()

    # The experiment's table, plots, and the best runs compared.
    table = (site / "experiments/quickstart/index.html").read_text()
    assert f'value="{run["id"]}"' in table and 'id="runs-data"' in table
    assert '<svg class="plot" data-metric="roc_auc"' in table
    compare = (site / "experiments/quickstart/compare.html").read_text()
    assert 'id="compare"' in compare and run["id"] in compare

    assert broken_links(site) == []

    # Incremental: nothing changed, nothing written.
    again = json.loads(ok(cli, root, "site", "build", "-o", str(site), "--json"))
    assert again["written"] == 0 and again["records_read"] == 0
    assert again["pages"] == result["pages"]

    # One new run: its page and the pages that list it, nothing else.
    manifest = json.loads((site / "manifest.json").read_text())
    kept = [f"runs/{run['id']}.html", f"models/{MODEL}/v1.html", "audit.html"]
    mtimes = {p: (site / p).stat().st_mtime_ns for p in kept}
    new_id = "20300101-000001-000-bbbbbb"
    save_run(store, copy_run(run, new_id, metrics={**run["metrics"], "roc_auc": 0.75}))
    third = json.loads(ok(cli, root, "site", "build", "-o", str(site), "--json"))
    assert third["records_read"] == 1 and third["pages"] == result["pages"] + 1
    after = json.loads((site / "manifest.json").read_text())
    changed = {p for p, d in after["pages"].items() if manifest["pages"].get(p) != d}
    assert f"runs/{new_id}.html" in changed
    assert {
        "index.html",
        "experiments/quickstart/index.html",
        "pipelines/quickstart.html",
    } <= changed
    assert third["written"] == len(changed) < 10
    assert not changed & set(kept)
    assert {p: (site / p).stat().st_mtime_ns for p in kept} == mtimes
    assert broken_links(site) == []

    # A page deleted from the output is written again, and only it.
    (site / f"runs/{run['id']}.html").unlink()
    fourth = json.loads(ok(cli, root, "site", "build", "-o", str(site), "--json"))
    assert fourth["written"] == 1 and (site / f"runs/{run['id']}.html").is_file()

    # Text output names the folder and the counts.
    text = ok(cli, root, "site", "build", "-o", str(site))
    assert text.startswith(f"{site}: {fourth['pages']} pages, 0 written")


def test_site_build_refuses_a_bad_output(cli: Invoke, project: Path) -> None:
    (project / "notes.txt").write_text("not a folder\n")
    result = cli("site", "build", "-o", "notes.txt", cwd=project)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "notes.txt is a file, not a folder" in lines[0]

    mine = project / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine\n")
    result = cli("site", "build", "-o", str(mine), cwd=project)
    assert result.exit_code == 2 and "no site built by mlopsctl" in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]


def test_site_build_with_store_flag_outside_the_project(
    cli: Invoke, trained: tuple[Path, dict], tmp_path: Path
) -> None:
    root, run = trained
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = str(root / ".mlops")
    result = cli("site", "build", "--store", store, "-o", "out", "--json", cwd=elsewhere)
    assert result.exit_code == 0, result.stderr
    built = json.loads(result.stdout)
    assert built["runs"] == 1 and built["versions"] == 1 and built["written"] == built["pages"]
    assert (elsewhere / f"out/runs/{run['id']}.html").is_file()
    assert broken_links(elsewhere / "out") == []

    empty = tmp_path / "empty-store"
    empty.mkdir()
    result = cli("site", "build", "--store", str(empty), "-o", "none", "--json", cwd=elsewhere)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["runs"] == 0
    assert "<b>0</b>runs" in (elsewhere / "none/index.html").read_text()
    assert broken_links(elsewhere / "none") == []

    # The empty store into the first site's folder: every page rebuilt, the run's removed.
    result = cli("site", "build", "--store", str(empty), "-o", "out", "--json", cwd=elsewhere)
    assert result.exit_code == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["runs"] == 0 and again["written"] == again["pages"] and again["removed"] > 0
    assert not (elsewhere / f"out/runs/{run['id']}.html").exists()
    assert "<b>0</b>runs" in (elsewhere / "out/index.html").read_text()
    assert broken_links(elsewhere / "out") == []
