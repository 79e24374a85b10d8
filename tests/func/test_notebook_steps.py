"""`notebook:` steps run through papermill: with: values injected as variables, inputs and
outputs as dicts of paths, metrics through metrics_file, the executed notebook stored as the
output `notebook`, the notebook file in the cache key, a failure naming the cell; the example
pipeline (specs/examples/notebook.yaml) runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.store.local import LocalStore

from .conftest import Invoke

pytest.importorskip("papermill")

REPO = Path(__file__).resolve().parents[2]


def _notebook(*sources: str, parameters: str = "factor = 1\ninputs = {}\noutputs = {}") -> str:
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": parameters,
            "outputs": [],
            "execution_count": None,
        }
    ]
    cells += [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for s in sources
    ]
    return json.dumps(
        {
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4,
            "nbformat_minor": 4,
        }
    )


SCALE = _notebook(
    "import json\nnumbers = json.load(open(inputs['numbers']))",
    "scaled = [n * factor for n in numbers]\nprint('scaled', len(scaled))",
    "json.dump(scaled, open(outputs['scaled'], 'w'))\n"
    "json.dump({'total': sum(scaled)}, open(metrics_file, 'w'))",
)
PIPELINE = """apiVersion: mlopsctl/v1
kind: Pipeline
name: nb
params:
  factor: 3
steps:
  make:
    run: "python -c 'import json,sys; json.dump(list(range(5)), open(sys.argv[1], \\"w\\"))' {outputs.numbers}"
    outputs: [numbers]
  scale:
    notebook: notebooks/scale.ipynb
    inputs: {numbers: make.numbers}
    with: {factor: "${params.factor}"}
    outputs: [scaled]
"""


@pytest.fixture
def nb_project(project: Path) -> Path:
    (project / "notebooks").mkdir()
    (project / "notebooks/scale.ipynb").write_text(SCALE)
    (project / "pipelines/nb.yaml").write_text(PIPELINE)
    return project


def _run(cli: Invoke, root: Path, *args: str) -> dict[str, Any]:
    result = cli("run", "pipelines/nb.yaml", "--json", *args, cwd=root)
    assert result.exit_code == 0, result.stderr + result.stdout
    return dict(json.loads(result.stdout))


def test_a_notebook_step_runs_with_params_inputs_and_outputs(nb_project: Path, cli: Invoke) -> None:
    record = _run(cli, nb_project)
    step = record["steps"]["scale"]
    assert step["status"] == "executed" and step["kind"] == "notebook"
    assert record["metrics"] == {"total": 30.0}  # (0+1+2+3+4) * 3
    store = LocalStore(nb_project / ".mlops")
    scaled = step["outputs"]["scaled"]["digest"]
    assert json.loads(store.get(_blob(scaled))) == [0, 3, 6, 9, 12]
    # The executed notebook is an output: parameters injected, each cell's output kept.
    executed = json.loads(store.get(_blob(step["outputs"]["notebook"]["digest"])))
    injected = [
        c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    ]
    assert len(injected) == 1
    text = "".join(injected[0]["source"])
    assert "factor = 3" in text and "inputs = {" in text and "outputs = {" in text
    printed = [
        o for c in executed["cells"] for o in c.get("outputs", []) if o.get("name") == "stdout"
    ]
    assert any("scaled 5" in "".join(o["text"]) for o in printed)


def test_the_notebook_file_is_in_the_cache_key(nb_project: Path, cli: Invoke) -> None:
    first = _run(cli, nb_project)
    again = _run(cli, nb_project)
    assert again["steps"]["scale"]["status"] == "cached"
    assert again["steps"]["scale"]["cache_key"] == first["steps"]["scale"]["cache_key"]
    path = nb_project / "notebooks/scale.ipynb"
    path.write_text(SCALE.replace("n * factor", "n * factor + 1"))
    edited = _run(cli, nb_project)
    assert edited["steps"]["make"]["status"] == "cached"
    assert edited["steps"]["scale"]["status"] == "executed"
    assert edited["metrics"] == {"total": 35.0}


def test_a_failing_cell_is_named(nb_project: Path, cli: Invoke) -> None:
    (nb_project / "notebooks/scale.ipynb").write_text(
        _notebook("x = 1", "values = {}\nvalues['missing']", "print('never')")
    )
    result = cli("run", "pipelines/nb.yaml", cwd=nb_project)
    assert result.exit_code == 1
    assert "step 'scale' failed" in result.stderr
    assert "failed in cell 3 (`values = {}`): KeyError: 'missing'" in result.stderr, result.stderr
    assert "the executed notebook, with the traceback, is kept at" in result.stderr


def test_validate_checks_notebook_steps(project: Path, cli: Invoke) -> None:
    spec = project / "pipelines/bad.yaml"
    spec.write_text(
        "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: bad\nsteps:\n"
        "  a: {notebook: notebooks/none.ipynb}\n"
        "  b: {notebook: notebooks/plain.ipynb, outputs: [notebook]}\n"
    )
    (project / "notebooks").mkdir()
    (project / "notebooks/plain.ipynb").write_text("not json")
    result = cli("validate", "pipelines/bad.yaml", cwd=project)
    assert result.exit_code == 3
    lines = result.stdout + result.stderr
    assert "step 'a': notebook 'notebooks/none.ipynb' not found under" in lines
    assert "step 'b': 'notebook' is the executed notebook" in lines
    assert "step 'b': notebook 'notebooks/plain.ipynb' is not a Jupyter notebook" in lines
    spec.write_text(
        "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: bad\nsteps:\n  c: {notebook: report.txt}\n"
    )
    wrong = cli("validate", "pipelines/bad.yaml", cwd=project)
    assert wrong.exit_code == 3
    assert "5:17: notebook: 'report.txt' must be the path of a .ipynb file" in wrong.stdout


def test_the_example_pipeline_runs(tmp_path: Path, cli: Invoke) -> None:
    root = tmp_path / "repo"
    (root / "specs/examples").mkdir(parents=True)
    shutil.copy(REPO / "specs/examples/notebook.yaml", root / "specs/examples/notebook.yaml")
    shutil.copytree(REPO / "specs/examples/notebooks", root / "specs/examples/notebooks")
    (root / ".git").mkdir()
    result = cli("run", "specs/examples/notebook.yaml", "--json", cwd=root)
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["steps"]["explore"]["status"] == "executed"
    assert record["metrics"]["rows"] == 569.0
    summary = LocalStore(root / ".mlops").get(
        _blob(record["steps"]["explore"]["outputs"]["summary"]["digest"])
    )
    assert len(json.loads(summary)["strongest"]) == 5


def _blob(digest: str) -> str:
    from mlopsctl.store.blobs import blob_key

    return blob_key(digest)


def test_the_site_renders_the_executed_notebook(
    nb_project: Path, cli: Invoke, tmp_path: Path
) -> None:
    from .test_site import broken_links

    first = _run(cli, nb_project)
    again = _run(cli, nb_project)  # cached: the same executed notebook
    digest = first["steps"]["scale"]["outputs"]["notebook"]["digest"]
    assert again["steps"]["scale"]["outputs"]["notebook"]["digest"] == digest
    site = tmp_path / "site"
    result = cli("site", "build", "-o", str(site), "--json", cwd=nb_project)
    assert result.exit_code == 0, result.stderr

    hexa = digest.split(":", 1)[1]
    page = (site / f"notebooks/{hexa}.html").read_text()
    assert "script-src &#x27;none&#x27;" in page or "script-src 'none'" in page
    assert page.index("Content-Security-Policy") < page.index("</head>")
    text = re.sub(r"<[^>]+>", "", page)
    assert "scaled 5" in text  # a cell's printed output
    assert "factor = 3" in text  # the injected parameters, as highlighted code
    assert "scaled = [n * factor for n in numbers]" in text
    for run in (first, again):  # one page, executed by both runs
        assert f'href="../runs/{run["id"]}.html"' in page
    raw = (site / f"notebooks/{hexa}.ipynb").read_bytes()
    assert raw == LocalStore(nb_project / ".mlops").get(_blob(digest))
    run_page = (site / f"runs/{first['id']}.html").read_text()
    assert f'href="../notebooks/{hexa}.html">notebook</a>' in run_page
    assert broken_links(site) == []
    assert len(list((site / "notebooks").glob("*.html"))) == 1
