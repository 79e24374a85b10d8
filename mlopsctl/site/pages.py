"""The site's pages: each is a path, the inputs that decide its content (digested into the
manifest) and a function that renders it. A page's inputs are small: summaries from the
snapshot and the signatures of the records it reads whole, so deciding what to rebuild reads
nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError
from mlopsctl.names import flatten
from mlopsctl.pipeline.plan import NOTEBOOK_OUTPUT
from mlopsctl.site import svg
from mlopsctl.site.html import (
    PAGE_ROWS,
    SCRIPT,
    STYLE,
    badge,
    clean_json,
    definition,
    esc,
    fmt,
    frame,
    href,
    json_script,
    link,
    page_name,
    pager,
    short,
    slug,
    table,
)
from mlopsctl.site.notebook import notebook_path, render_notebook
from mlopsctl.site.snapshot import Snapshot

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

Render = Callable[["ObjectStore"], "str | bytes"]

# Model-quality metrics first; for these lower is better.
FIRST = ("roc_auc", "accuracy", "f1", "r2", "rmse", "mae", "log_loss", "precision", "recall")
LOWER_BETTER = ("rmse", "mae", "mse", "log_loss", "loss", "error")
BEST_N = 10
RECENT_EVENTS = 15


@dataclass
class Page:
    path: str
    inputs: Any
    render: Render


def read_record(store: ObjectStore, key: str) -> dict[str, Any]:
    """A whole record: from the build's memory when it read it already (snapshot.Reads)."""
    reader = getattr(store, "record", None)
    if reader is not None:
        return dict(reader(key))
    return dict(json.loads(store.get(key)))


def rank(name: str) -> tuple[int, str]:
    base = name.rsplit(".", 1)[-1]
    return (FIRST.index(base) if base in FIRST else len(FIRST), name)


def lower_is_better(name: str) -> bool:
    base = name.rsplit(".", 1)[-1]
    return any(base == w or base.endswith("_" + w) for w in LOWER_BETTER)


def num_cell(value: Any) -> str:
    return esc(fmt(value))


def run_href(root: str, run_id: str) -> str:
    return href(*(root.split("/") if root else []), "runs", slug(run_id) + ".html")


def up(root: str, *parts: str) -> str:
    return href(*(root.split("/") if root else []), *parts)


class Site:
    """Builds the list of pages for one snapshot."""

    def __init__(self, snap: Snapshot, base_dir: Path | None = None) -> None:
        self.snap = snap
        self.base_dir = base_dir
        self.experiments: dict[str, list[dict[str, Any]]] = {}
        self.pipelines: dict[str, list[dict[str, Any]]] = {}
        self.runs_in_order = sorted(
            snap.runs.values(), key=lambda r: (str(r.get("started")), r["id"])
        )
        for run in self.runs_in_order:
            if run.get("experiment") is not None:
                self.experiments.setdefault(str(run["experiment"]), []).append(run)
            if run.get("pipeline") is not None:
                self.pipelines.setdefault(str(run["pipeline"]), []).append(run)
        self.models: dict[str, list[dict[str, Any]]] = {}
        for (name, _), version in sorted(snap.versions.items()):
            self.models.setdefault(name, []).append(version)
        for name in snap.aliases:
            self.models.setdefault(name, [])
        # executed notebook digest -> [(run id, step)], oldest run first
        self.notebooks: dict[str, list[tuple[str, str]]] = {}
        for run in self.runs_in_order:
            for step, digest in sorted((run.get("notebooks") or {}).items()):
                self.notebooks.setdefault(str(digest), []).append((str(run["id"]), step))
        self.registered: dict[str, list[tuple[str, int]]] = {}
        for (name, number), version in sorted(snap.versions.items()):
            if version.get("run"):
                self.registered.setdefault(str(version["run"]), []).append((name, number))

    # -- links -----------------------------------------------------------------------------
    def run_link(self, root: str, run_id: Any, text: Any = None) -> str:
        if run_id is None:
            return esc(None)
        target = run_href(root, str(run_id)) if str(run_id) in self.snap.runs else None
        return link(target, text if text is not None else run_id, "mono")

    def experiment_link(self, root: str, name: Any) -> str:
        if name is None or str(name) not in self.experiments:
            return esc(name)
        return link(up(root, "experiments", slug(name), "index.html"), name)

    def pipeline_link(self, root: str, name: Any) -> str:
        if name is None or str(name) not in self.pipelines:
            return esc(name)
        return link(up(root, "pipelines", slug(name) + ".html"), name)

    def model_link(self, root: str, name: Any) -> str:
        if name is None or str(name) not in self.models:
            return esc(name)
        return link(up(root, "models", slug(name), "index.html"), name)

    def rollout_href(self, root: str, model: Any, release: Any) -> str:
        return up(root, "reports", "rollouts", slug(model), slug(release) + ".html")

    def version_link(self, root: str, name: Any, number: Any, text: str | None = None) -> str:
        label = text if text is not None else f"{name}:{number}"
        if not isinstance(number, int) or (str(name), number) not in self.snap.versions:
            return esc(label)
        return link(up(root, "models", slug(name), f"v{number}.html"), label)

    # -- the page list ---------------------------------------------------------------------
    def pages(self) -> list[Page]:
        pages = [
            Page(".nojekyll", "", lambda s: ""),
            Page("style.css", STYLE, lambda s: STYLE),
            Page("site.js", SCRIPT, lambda s: SCRIPT),
        ]
        pages.append(self.index_page())
        pages += self.experiment_pages()
        pages += [self.run_page(run_id) for run_id in self.snap.runs]
        pages += self.model_pages()
        pages += self.pipeline_pages()
        pages += self.notebook_pages()
        pages.append(self.audit_page())
        pages += self.report_pages()
        return pages

    # -- home --------------------------------------------------------------------------------
    def index_page(self) -> Page:
        experiments = [
            (name, len(runs), runs[-1].get("started"))
            for name, runs in sorted(self.experiments.items())
        ]
        models = [
            (
                name,
                len(vs),
                vs[-1]["version"] if vs else None,
                sorted((a, m.get("version")) for a, m in self.snap.aliases.get(name, {}).items()),
            )
            for name, vs in sorted(self.models.items())
        ]
        pipelines = [
            (name, len(runs), runs[-1]["id"]) for name, runs in sorted(self.pipelines.items())
        ]
        recent = self.snap.events[-RECENT_EVENTS:][::-1]
        inputs = [
            experiments,
            models,
            pipelines,
            recent,
            len(self.snap.runs),
            len(self.snap.events),
        ]

        def render(store: ObjectStore) -> str:
            root = ""
            cards = "".join(
                f'<div class="card"><b>{n}</b>{esc(label)}</div>'
                for n, label in (
                    (len(self.snap.runs), "runs"),
                    (len(self.experiments), "experiments"),
                    (len(self.snap.versions), "model versions"),
                    (len(self.snap.events), "audit events"),
                )
            )
            body = [f'<div class="cards">{cards}</div>', "<h2>Experiments</h2>"]
            body.append(
                table(
                    ["experiment", "runs", "latest run"],
                    [
                        [self.experiment_link(root, n), num_cell(c), esc(t)]
                        for n, c, t in experiments
                    ],
                    attrs=' id="experiments"',
                )
            )
            body.append("<h2>Models</h2>")
            body.append(
                table(
                    ["model", "versions", "latest", "aliases"],
                    [
                        [
                            self.model_link(root, n),
                            num_cell(c),
                            self.version_link(root, n, latest),
                            ", ".join(
                                f"{esc(a)} \u2192 {self.version_link(root, n, v, str(v))}"
                                for a, v in al
                            ),
                        ]
                        for n, c, latest, al in models
                    ],
                    attrs=' id="models"',
                )
            )
            body.append("<h2>Pipelines</h2>")
            body.append(
                table(
                    ["pipeline", "runs", "latest run"],
                    [
                        [self.pipeline_link(root, n), num_cell(c), self.run_link(root, last)]
                        for n, c, last in pipelines
                    ],
                )
            )
            body.append('<h2>Latest events</h2><p><a href="audit.html">the whole audit log</a></p>')
            body.append(
                table(
                    ["time", "type", "model", "who", "what"],
                    [
                        [
                            esc(e["time"]),
                            esc(e["type"]),
                            self.version_link(root, e.get("model"), e.get("version"))
                            if e.get("version") is not None
                            else self.model_link(root, e.get("model")),
                            esc(e.get("actor")),
                            esc(short(e.get("text"), 160)),
                        ]
                        for e in recent
                    ],
                    attrs=' id="recent-events"',
                )
            )
            return frame("Store overview", "".join(body), root)

        return Page("index.html", inputs, render)

    # -- experiments and runs -----------------------------------------------------------------
    def experiment_pages(self) -> list[Page]:
        listing = []
        pages = []
        for name, runs in sorted(self.experiments.items()):
            metric_names = sorted({k for r in runs for k in r.get("metrics") or {}}, key=rank)
            head = metric_names[0] if metric_names else None
            best = self.best_runs(runs, head)
            listing.append(
                [
                    name,
                    len(runs),
                    runs[-1].get("started"),
                    head,
                    best[0]["metrics"].get(head) if best and head else None,
                ]
            )
            pages += self.experiment_tables(name, runs, metric_names)
            pages.append(self.compare_page(name, best, head))
        inputs = listing

        def render(store: ObjectStore) -> str:
            root = ".."
            rows = [
                [self.experiment_link(root, n), num_cell(c), esc(t), esc(h), num_cell(b)]
                for n, c, t, h, b in listing
            ]
            body = table(
                ["experiment", "runs", "latest run", "headline metric", "best"],
                rows,
                attrs=' id="experiments"',
            )
            return frame("Experiments", body, root)

        return [Page("experiments/index.html", inputs, render), *pages]

    def best_runs(self, runs: list[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
        if metric is None:
            return []
        scored = [r for r in runs if isinstance((r.get("metrics") or {}).get(metric), (int, float))]
        lower = lower_is_better(metric)
        scored.sort(
            key=lambda r: (r["metrics"][metric] if lower else -r["metrics"][metric], r["id"])
        )
        return scored[:BEST_N]

    def experiment_tables(
        self, name: str, runs: list[dict[str, Any]], metric_names: list[str]
    ) -> list[Page]:
        metric_cols = metric_names[:6]
        param_names = sorted({k for r in runs for k in r.get("params") or {}})
        varying = [k for k in param_names if _varies([r.get("params") or {} for r in runs], k)]
        param_cols = (varying + [k for k in param_names if k not in varying])[:6]
        count = max(1, -(-len(runs) // PAGE_ROWS))
        series = {m: [(r.get("metrics") or {}).get(m) for r in runs] for m in metric_names[:4]}
        folder = f"experiments/{slug(name)}"
        sigs = {r["id"]: self.snap.sigs[self.snap.run_keys[r["id"]]] for r in runs}
        pages = []
        # Block N holds runs N*500-499..N*500 counted from the oldest, so a new run changes
        # only the newest block (index.html); each block lists its runs newest first.
        for number in range(1, count + 1):
            rows = runs[(number - 1) * PAGE_ROWS : number * PAGE_ROWS][::-1]
            newest = number == count
            registered = [self.registered.get(r["id"]) for r in rows]
            # Rows are summaries of records, so the records' signatures stand for them.
            inputs = [
                name,
                number,
                count,
                [sigs[r["id"]] for r in rows],
                registered,
                metric_cols,
                param_cols,
                [sigs[r["id"]] for r in runs] if newest else None,
            ]
            pages.append(
                Page(
                    f"{folder}/{block_name(number, count)}",
                    inputs,
                    self._table_renderer(
                        name,
                        number,
                        count,
                        rows,
                        metric_cols,
                        param_cols,
                        series if newest else {},
                        len(runs),
                    ),
                )
            )
        return pages

    def _table_renderer(
        self,
        name: str,
        number: int,
        count: int,
        rows: list[dict[str, Any]],
        metric_cols: list[str],
        param_cols: list[str],
        series: dict[str, list[Any]],
        total: int,
    ) -> Render:
        def render(store: ObjectStore) -> str:
            root = "../.."
            if number == count:
                intro = f"{total} runs, newest first."
            else:
                intro = (
                    f"Runs {(number - 1) * PAGE_ROWS + 1} to {number * PAGE_ROWS}, newest first."
                )
            body = [f'<p>{intro} <a href="compare.html">Compare the best {BEST_N} runs</a>.</p>']

            if series:
                body.append('<h2>Metrics over runs</h2><div id="plots">')
                body += [svg.line_plot(m, values) for m, values in series.items()]
                body.append("</div>")
            body.append("<h2>Runs</h2>" + block_pager(number, count))
            headers = ["", "run", "status", "started", "seconds", "who", "commit", "model"]
            headers += [f"metric {m}" for m in metric_cols] + [f"param {p}" for p in param_cols]
            cells = []
            for run in rows:
                metrics, params = run.get("metrics") or {}, run.get("params") or {}
                versions = ", ".join(
                    self.version_link(root, n, v) for n, v in self.registered.get(run["id"], [])
                )
                cells.append(
                    [
                        f'<input type="checkbox" class="pick" value="{esc(run["id"])}">',
                        self.run_link(root, run["id"]),
                        badge(run.get("status")),
                        esc(run.get("started")),
                        num_cell(run.get("duration_s")),
                        esc(run.get("user")),
                        f'<span class="mono">{esc(str(run.get("commit") or "")[:10])}</span>',
                        versions,
                        *[num_cell(metrics.get(m)) for m in metric_cols],
                        *[esc(params.get(p)) for p in param_cols],
                    ]
                )
            body.append(table(headers, cells, cls="runs", attrs=' id="runs"'))
            body.append(block_pager(number, count))
            body.append(
                '<p><button type="button" id="compare-button">Compare checked runs</button>'
                '</p><div id="compare-out"></div>'
            )
            data = [
                {
                    "id": r["id"],
                    "params": r.get("params") or {},
                    "metrics": clean_json(r.get("metrics") or {}),
                }
                for r in rows
            ]
            body.append(json_script("runs-data", data))
            return frame(f"Experiment {name}", "".join(body), root, script=True)

        return render

    def compare_page(self, name: str, best: list[dict[str, Any]], head: str | None) -> Page:
        from mlopsctl.runs import compare_runs

        inputs = [name, head, best]

        def render(store: ObjectStore) -> str:
            root = "../.."
            if not best:
                return frame(
                    f"Best runs of {name}",
                    "<p>No run of this experiment recorded a metric.</p>",
                    root,
                )
            direction = "lowest" if head and lower_is_better(head) else "highest"
            table_data = compare_runs(best)
            headers = [""] + [r["id"] for r in best]
            rows = []
            for kind in ("params", "metrics"):
                for key, values in table_data[kind].items():
                    mark = "*" if table_data["differs"][f"{kind}.{key}"] else ""
                    rows.append([esc(f"{mark}{kind[:-1]} {key}")] + [num_cell(v) for v in values])
            head_row = [""] + [self.run_link(root, r["id"]) for r in best]
            body = [
                f"<p>The {len(best)} runs with the {direction} {esc(head)}, side by side; rows "
                "marked * differ.</p>",
                svg.bars(f"{head} by run", [(r["id"], r["metrics"].get(head)) for r in best]),
                table(headers, [head_row, *rows], cls="compare", attrs=' id="compare"'),
            ]
            return frame(f"Best runs of {name}", "".join(body), root)

        return Page(f"experiments/{slug(name)}/compare.html", inputs, render)

    def run_page(self, run_id: str) -> Page:
        key = self.snap.run_keys[run_id]
        inputs = [self.snap.sigs[key], self.registered.get(run_id)]

        def render(store: ObjectStore) -> str:
            record = read_record(store, key)
            return self.render_run(record)

        return Page(f"runs/{slug(run_id)}.html", inputs, render)

    def render_run(self, record: dict[str, Any]) -> str:

        root = ".."
        git = record.get("git") or {}
        spec = record.get("spec") or {}
        image = record.get("image")
        reason = record.get("reason")
        where = record.get("where") or {}
        facts = [
            ("run", f'<span class="mono" id="run-id">{esc(record.get("id"))}</span>'),
            ("status", badge(record.get("status"))),
            ("experiment", self.experiment_link(root, record.get("experiment"))),
            ("pipeline", self.pipeline_link(root, record.get("pipeline"))),
            (
                "spec",
                f'{esc(spec.get("path"))} <span class="mono">{esc(spec.get("digest"))}</span>',
            ),
            ("started", esc(record.get("started"))),
            ("ended", esc(record.get("ended"))),
            ("seconds", num_cell(record.get("duration_s"))),
            ("who", esc((record.get("user") or {}).get("name"))),
            ("where", esc(where.get("host"))),
            (
                "git",
                f'<span class="mono">{esc(git.get("commit"))}</span> {esc(git.get("branch") or "")}'
                + (" (dirty)" if git.get("dirty") else ""),
            ),
            ("image", esc(image) if image else esc(None)),
        ]
        if reason:
            facts.append(("reason", esc(reason)))
        if record.get("signal"):
            facts.append(("signal", esc(record.get("signal"))))
        versions = self.registered.get(str(record.get("id")), [])
        if versions:
            facts.append(
                ("registered", ", ".join(self.version_link(root, n, v) for n, v in versions))
            )
        body = [definition(facts)]
        metrics = flatten(record.get("metrics") or {})
        body.append("<h2>Metrics</h2>")
        body.append(
            table(
                ["metric", "value"],
                [[esc(k), num_cell(v)] for k, v in sorted(metrics.items())],
                attrs=' id="metrics"',
            )
        )
        body.append(svg.bars("metrics", sorted(metrics.items(), key=lambda kv: rank(kv[0]))[:12]))
        params = flatten(record.get("params") or {})
        body.append("<h2>Parameters</h2>")
        body.append(
            table(
                ["parameter", "value"],
                [[esc(k), esc(v)] for k, v in sorted(params.items())],
                attrs=' id="params"',
            )
        )
        data = record.get("data") or {}
        body.append("<h2>Data</h2>")
        body.append(
            table(
                ["input", "digest"],
                [[esc(k), f'<span class="mono">{esc(v)}</span>'] for k, v in sorted(data.items())],
                attrs=' id="data"',
            )
        )
        steps = record.get("steps") or {}
        order = [s for s in (record.get("order") or []) if s in steps]
        order += [s for s in steps if s not in order]
        rows = []
        for name in order:
            step = steps[name] or {}
            outputs = ", ".join(
                self.output_cell(root, name, k, v)
                for k, v in sorted((step.get("outputs") or {}).items())
            )
            cached = step.get("cached_from")
            rows.append(
                [
                    esc(name),
                    badge(step.get("status")),
                    esc(step.get("kind")),
                    num_cell(step.get("seconds")),
                    self.run_link(root, cached) if cached else "",
                    outputs,
                    esc(short(step.get("metrics") or "", 120)) if step.get("metrics") else "",
                ]
            )
        hits = sum(1 for s in steps.values() if (s or {}).get("status") == "cached")
        body.append(f"<h2>Steps</h2><p>{len(order)} steps, {hits} from the cache.</p>")
        body.append(
            table(
                ["step", "status", "kind", "seconds", "cached from", "outputs", "metrics"],
                rows,
                attrs=' id="steps"',
            )
        )
        body.append(svg.bars("step seconds", [(n, (steps[n] or {}).get("seconds")) for n in order]))
        body.append(step_dag(steps, order, f"pipeline {record.get('pipeline')}"))
        env = record.get("environment") or {}
        libs = env.get("libraries") or {}
        if env:
            body.append("<h2>Environment</h2>")
            body.append(
                table(
                    ["library", "version"],
                    [
                        [esc("python"), esc(env.get("python"))],
                        [esc("mlopsctl"), esc(env.get("mlopsctl"))],
                    ]
                    + [[esc(k), esc(v)] for k, v in sorted(libs.items())],
                )
            )
        return frame(f"Run {record.get('id')}", "".join(body), root)

    def output_cell(self, root: str, step: str, name: str, ref: Any) -> str:
        """One output of a run's step: its name and short digest; an executed notebook links to
        its page."""
        digest = str((ref or {}).get("digest"))
        label = esc(name)
        if name == NOTEBOOK_OUTPUT and digest in self.notebooks:
            label = link(up(root, *notebook_path(digest).split("/")), name)
        return f'{label} <span class="mono">{esc(digest[7:19])}</span>'

    # -- notebooks -------------------------------------------------------------------------------
    def notebook_pages(self) -> list[Page]:
        """One page per executed notebook (by digest) and its .ipynb beside it."""
        pages = []
        for digest, uses in sorted(self.notebooks.items()):
            path = notebook_path(digest)
            executed_by = ", ".join(
                f"{self.run_link('..', run)} step {esc(step)}" for run, step in uses
            )
            pages.append(Page(path, [digest, uses], self._notebook_renderer(digest, executed_by)))
            pages.append(Page(path[: -len(".html")] + ".ipynb", digest, self._blob_copier(digest)))
        return pages

    @staticmethod
    def _notebook_renderer(digest: str, executed_by: str) -> Render:
        def render(store: ObjectStore) -> str:
            from mlopsctl.store.blobs import get_blob_bytes

            title = f"Notebook {digest.split(':', 1)[-1][:12]}"
            return render_notebook(get_blob_bytes(store, digest), title, executed_by)

        return render

    @staticmethod
    def _blob_copier(digest: str) -> Render:
        def render(store: ObjectStore) -> bytes:
            from mlopsctl.store.blobs import get_blob_bytes

            return get_blob_bytes(store, digest)

        return render

    # -- registry ------------------------------------------------------------------------------
    def model_pages(self) -> list[Page]:
        listing: list[list[Any]] = [
            [
                name,
                len(vs),
                vs[-1]["version"] if vs else None,
                sorted((a, m.get("version")) for a, m in self.snap.aliases.get(name, {}).items()),
            ]
            for name, vs in sorted(self.models.items())
        ]

        def render(store: ObjectStore) -> str:
            root = ".."
            rows = [
                [
                    self.model_link(root, n),
                    num_cell(c),
                    self.version_link(root, n, latest),
                    ", ".join(
                        f"{esc(a)} \u2192 {self.version_link(root, n, v, str(v))}" for a, v in al
                    ),
                ]
                for n, c, latest, al in listing
            ]
            return frame(
                "Models",
                table(["model", "versions", "latest", "aliases"], rows, attrs=' id="models"'),
                root,
            )

        pages = [Page("models/index.html", listing, render)]
        for name, versions in sorted(self.models.items()):
            pages += self.model_tables(name, versions)
            pages += [self.version_page(name, v["version"]) for v in versions]
        return pages

    def deployments_of(self, model: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, d) for k, d in self.snap.deployments if d.get("model") == model]

    def model_tables(self, name: str, versions: list[dict[str, Any]]) -> list[Page]:
        newest = versions[::-1]
        aliases = self.snap.aliases.get(name, {})
        history = self.snap.history.get(name, {})
        deployments = [d for _, d in self.deployments_of(name)]
        rollouts = [r for _, r in self.snap.rollouts if r.get("model") == name]
        metric_cols = sorted({k for v in versions for k in v.get("metrics") or {}}, key=rank)[:4]
        count = max(1, -(-len(newest) // PAGE_ROWS))
        pages = []
        for number in range(1, count + 1):
            rows = newest[(number - 1) * PAGE_ROWS : number * PAGE_ROWS]
            first = number == 1
            inputs = [
                name,
                number,
                count,
                rows,
                metric_cols,
                aliases,
                history if first else None,
                deployments if first else None,
                [(r.get("release"), r.get("status")) for r in rollouts] if first else None,
                [v in self.snap.runs for v in {r.get("run") for r in rows}],
            ]

            def render(
                store: ObjectStore, rows: list[dict[str, Any]] = rows, number: int = number
            ) -> str:
                root = "../.."
                body = []
                if number == 1:
                    body.append("<h2>Aliases</h2>")
                    body.append(
                        table(
                            ["alias", "version", "moved", "by", "action", "reason"],
                            [
                                [
                                    esc(a),
                                    self.version_link(
                                        root, name, m.get("version"), str(m.get("version"))
                                    ),
                                    esc(m.get("time")),
                                    esc(m.get("by")),
                                    esc(m.get("action")),
                                    esc(m.get("reason")),
                                ]
                                for a, m in sorted(aliases.items())
                            ],
                            attrs=' id="aliases"',
                        )
                    )
                    for alias, moves in sorted(history.items()):
                        body.append(f"<h2>History of @{esc(alias)}</h2>")
                        body.append(
                            table(
                                ["#", "time", "action", "from", "to", "by", "reason"],
                                [
                                    [
                                        num_cell(m.get("seq")),
                                        esc(m.get("time")),
                                        esc(m.get("action")),
                                        self.version_link(
                                            root, name, m.get("previous"), fmt(m.get("previous"))
                                        ),
                                        self.version_link(
                                            root, name, m.get("version"), fmt(m.get("version"))
                                        ),
                                        esc(m.get("by")),
                                        esc(m.get("reason")),
                                    ]
                                    for m in moves
                                ],
                                cls="history",
                                attrs=f' data-alias="{esc(alias)}"',
                            )
                        )
                    if deployments:
                        body.append("<h2>Deployments</h2>")
                        body.append(
                            table(
                                ["deployment", "arms", "updated", "by", "reason"],
                                [
                                    [
                                        esc(d.get("deployment")),
                                        esc(
                                            ", ".join(
                                                f"{a.get('arm')} {fmt(a.get('weight'))}"
                                                for a in d.get("arms") or []
                                            )
                                        ),
                                        esc(d.get("updated")),
                                        esc(
                                            d.get("by")
                                            if not isinstance(d.get("by"), dict)
                                            else d["by"].get("name")
                                        ),
                                        esc(d.get("reason")),
                                    ]
                                    for d in deployments
                                ],
                            )
                        )
                    if rollouts:
                        body.append(
                            "<h2>Rollouts</h2><ul>"
                            + "".join(
                                "<li>"
                                + link(
                                    self.rollout_href(root, name, r.get("release")),
                                    r.get("release"),
                                )
                                + f" {badge(r.get('status'))}</li>"
                                for r in rollouts
                            )
                            + "</ul>"
                        )
                body.append(f"<h2>Versions</h2><p>{len(versions)} versions, newest first.</p>")
                body.append(pager(number, count))
                body.append(
                    table(
                        ["version", "created", "run", "experiment", "who", "commit"]
                        + [f"metric {m}" for m in metric_cols],
                        [
                            [
                                self.version_link(root, name, v["version"], str(v["version"])),
                                esc(v.get("created")),
                                self.run_link(root, v.get("run")),
                                self.experiment_link(root, v.get("experiment")),
                                esc(v.get("who")),
                                f'<span class="mono">{esc(str(v.get("commit") or "")[:10])}</span>',
                                *[num_cell((v.get("metrics") or {}).get(m)) for m in metric_cols],
                            ]
                            for v in rows
                        ],
                        attrs=' id="versions"',
                    )
                )
                body.append(pager(number, count))
                return frame(f"Model {name}", "".join(body), root)

            pages.append(Page(f"models/{slug(name)}/{page_name(number)}", inputs, render))
        return pages

    def version_page(self, name: str, number: int) -> Page:
        key = self.snap.version_keys[(name, number)]
        summary = self.snap.versions[(name, number)]
        run_id = summary.get("run")
        run_key = self.snap.run_keys.get(str(run_id)) if run_id else None
        here = sorted(
            a for a, m in self.snap.aliases.get(name, {}).items() if m.get("version") == number
        )
        deployments = self.deployments_of(name)
        inputs = [
            self.snap.sigs[key],
            self.snap.sigs.get(run_key or ""),
            here,
            [self.snap.sigs[k] for k, _ in deployments],
            summary.get("experiment") in self.experiments,
            summary.get("pipeline") in self.pipelines,
        ]

        def render(store: ObjectStore) -> str:
            record = read_record(store, key)
            return self.render_version(store, record, here, deployments, run_key is not None)

        return Page(f"models/{slug(name)}/v{number}.html", inputs, render)

    def render_version(
        self,
        store: ObjectStore,
        record: dict[str, Any],
        here: list[str],
        deployments: list[tuple[str, dict[str, Any]]],
        has_run: bool,
    ) -> str:

        root = "../.."
        name, number = str(record.get("name")), record.get("version")
        run = record.get("run") or {}
        pipeline = record.get("pipeline") or {}
        git = record.get("git") or {}
        artifact = record.get("artifact") or {}
        data = record.get("data") or {}
        facts = [
            ("model", self.model_link(root, name)),
            ("version", f'<span id="version">{esc(number)}</span>'),
            ("aliases", esc(", ".join(here)) if here else esc(None)),
            ("created", esc(record.get("created"))),
            ("registered by", esc((record.get("who") or {}).get("name"))),
            ("where", esc((record.get("where") or {}).get("host"))),
            ("run", self.run_link(root, run.get("id"))),
            ("experiment", self.experiment_link(root, run.get("experiment"))),
            (
                "pipeline",
                self.pipeline_link(root, pipeline.get("name"))
                + (f" step {esc(pipeline.get('step'))}" if pipeline.get("step") else ""),
            ),
            ("spec", spec_text(pipeline.get("spec"))),
            (
                "git",
                f'<span class="mono">{esc(git.get("commit"))}</span> {esc(git.get("branch") or "")}'
                + (" (dirty)" if git.get("dirty") else ""),
            ),
            ("image", esc(record.get("image"))),
            (
                "trained by",
                esc(
                    (record.get("trained_by") or {}).get("name")
                    if isinstance(record.get("trained_by"), dict)
                    else record.get("trained_by")
                ),
            ),
            ("trained at", esc(record.get("trained_at"))),
            (
                "artifact",
                f'<span class="mono">{esc(artifact.get("digest"))}</span> '
                f"{esc(artifact.get('flavor') or '')} {esc(artifact.get('size') or '')}",
            ),
            ("estimator", esc((record.get("estimator") or {}).get("class"))),
            ("note", esc(record.get("note"))),
        ]
        body = ['<section id="provenance">', definition(facts), "</section>"]
        training = data.get("training") or {}
        sources = data.get("sources") or {}
        body.append("<h2>Data</h2>")
        body.append(
            table(
                ["role", "name", "digest", "rows"],
                [
                    [
                        esc("training"),
                        esc(k),
                        f'<span class="mono">{esc((v or {}).get("digest"))}</span>',
                        num_cell((v or {}).get("rows")),
                    ]
                    for k, v in sorted(training.items())
                ]
                + [
                    [esc("source"), esc(k), f'<span class="mono">{esc(v)}</span>', ""]
                    for k, v in sorted(sources.items())
                ],
                attrs=' id="data"',
            )
        )
        metrics = flatten(record.get("metrics") or {})
        body.append("<h2>Metrics</h2>")
        body.append(
            table(
                ["metric", "value"],
                [[esc(k), num_cell(v)] for k, v in sorted(metrics.items())],
                attrs=' id="metrics"',
            )
        )
        params = flatten(record.get("params") or {})
        body.append("<h2>Parameters</h2>")
        body.append(
            table(
                ["parameter", "value"],
                [[esc(k), esc(v)] for k, v in sorted(params.items())],
                attrs=' id="params"',
            )
        )
        body.append("<h2>Lineage</h2>")
        body.append(self.lineage_svg(store, name, number, here, deployments, has_run))
        return frame(f"{name} version {number}", "".join(body), root)

    def lineage_svg(
        self,
        store: ObjectStore,
        name: str,
        number: Any,
        here: list[str],
        deployments: list[tuple[str, dict[str, Any]]],
        has_run: bool,
    ) -> str:
        from mlopsctl.lineage import upstream

        root = "../.."
        try:
            graph = upstream(store, f"{name}:{number}")
        except MlopsError as exc:
            return f'<p class="muted">no lineage: {esc(exc.one_line())}</p>'
        vid = graph.root
        for _, dep in deployments:
            for arm in dep.get("arms") or []:
                target = str(arm.get("arm"))
                if target == str(number) or target in here:
                    did = graph.node(
                        f"deployment:{dep.get('deployment')}",
                        "deployment",
                        f"deployment {dep.get('deployment')} {fmt(arm.get('weight'))}",
                    )
                    graph.edge(vid, did, f"serves as {target}")
        nodes: dict[str, dict[str, Any]] = {}
        for node_id, info in graph.nodes.items():
            entry: dict[str, Any] = dict(info)
            if node_id.startswith("run:") and node_id[4:] in self.snap.runs:
                entry["href"] = run_href(root, node_id[4:])
            nodes[node_id] = entry
        return (
            '<div id="lineage">'
            + svg.dag(nodes, graph.edges, title=f"lineage of {name}:{number}", cls="lineage")
            + "</div>"
        )

    # -- pipelines -----------------------------------------------------------------------------
    def pipeline_pages(self) -> list[Page]:
        listing = [[n, len(runs), runs[-1]["id"]] for n, runs in sorted(self.pipelines.items())]

        def render(store: ObjectStore) -> str:
            root = ".."
            rows = [
                [self.pipeline_link(root, n), num_cell(c), self.run_link(root, last)]
                for n, c, last in listing
            ]
            return frame(
                "Pipelines",
                table(["pipeline", "runs", "latest run"], rows, attrs=' id="pipelines"'),
                root,
            )

        pages = [Page("pipelines/index.html", listing, render)]
        for name, runs in sorted(self.pipelines.items()):
            latest = runs[-1]
            recent = [
                [r["id"], r.get("status"), r.get("started"), r.get("duration_s")]
                for r in runs[::-1][:50]
            ]
            key = self.snap.run_keys[latest["id"]]
            inputs = [name, self.snap.sigs[key], recent, len(runs)]

            def render_one(
                store: ObjectStore,
                name: str = name,
                key: str = key,
                recent: list[list[Any]] = recent,
                total: int = len(runs),
            ) -> str:
                root = ".."
                record = read_record(store, key)
                steps = record.get("steps") or {}
                order = [s for s in (record.get("order") or []) if s in steps]
                order += [s for s in steps if s not in order]
                body = [
                    f"<p>{total} runs. The graph is the latest run's "
                    f"({self.run_link(root, record.get('id'))}): an edge for every output "
                    "a step passed to another.</p>",
                    step_dag(steps, order, f"pipeline {name}"),
                    "<h2>Latest runs</h2>",
                    table(
                        ["run", "status", "started", "seconds"],
                        [
                            [self.run_link(root, i), badge(s), esc(t), num_cell(d)]
                            for i, s, t, d in recent
                        ],
                        attrs=' id="pipeline-runs"',
                    ),
                ]
                return frame(f"Pipeline {name}", "".join(body), root)

            pages.append(Page(f"pipelines/{slug(name)}.html", inputs, render_one))
        return pages

    # -- audit log -----------------------------------------------------------------------------
    def audit_page(self) -> Page:
        events = [
            {k: e.get(k) for k in ("id", "time", "type", "model", "version", "actor", "text")}
            for e in self.snap.events
        ]
        events = clean_json(events)

        def render(store: ObjectStore) -> str:
            root = ""
            form = (
                '<form id="audit-filters" class="filters">'
                '<label>type<select name="type"><option value="">any</option></select></label>'
                '<label>model<select name="model"><option value="">any</option></select></label>'
                '<label>who<select name="actor"><option value="">any</option></select></label>'
                '<label>text<input name="q" type="search" placeholder="search"></label></form>'
            )
            body = [
                "<p>Every event in the store's audit log, newest first. Filter by type, model, "
                "who, or any text; the filters also read the page address, e.g. "
                "<code>audit.html#type=alias_move&amp;model=NAME</code>.</p>",
                form,
                '<p id="events-count" class="muted">loading\u2026</p>',
                "<noscript><p>The filters need JavaScript; the events are in the page as JSON."
                "</p></noscript>",
                table(
                    ["time", "type", "model", "version", "who", "what"], [], attrs=' id="events"'
                ).replace("<tbody>", '<tbody id="events-body">'),
                json_script("events-data", events),
            ]
            return frame("Audit log", "".join(body), root, script=True)

        return Page("audit.html", events, render)

    # -- reports -------------------------------------------------------------------------------
    def report_pages(self) -> list[Page]:
        drift = [e for e in self.snap.events if e["type"] == "drift"]
        ab = [e for e in self.snap.events if e["type"] == "ab"]
        pages: list[Page] = []
        copied: dict[str, str] = {}
        for event in drift:
            source = self.report_file(event.get("report"))
            if source is None:
                continue
            stat = source.stat()
            path = f"reports/monitor/{slug(event['id'])}.html"
            copied[event["id"]] = path
            pages.append(
                Page(
                    path,
                    [self.snap.sigs[event["key"]], stat.st_size, stat.st_mtime],
                    self._copier(source),
                )
            )
        for event in ab:
            key = event["key"]

            def render_ab(store: ObjectStore, key: str = key) -> str:
                from mlopsctl.release.report import ab_html

                text = ab_html(read_record(store, key))
                back = '<p><a href="../index.html">\u2190 all reports</a></p>'
                return text.replace("<body>", "<body>" + back, 1)

            pages.append(
                Page(f"reports/ab/{slug(event['id'])}.html", self.snap.sigs[key], render_ab)
            )
        for key, rollout in self.snap.rollouts:
            pages.append(
                Page(
                    f"reports/rollouts/{slug(rollout.get('model'))}/{slug(rollout.get('release'))}.html",
                    [self.snap.sigs[key], str(rollout.get("model")) in self.models],
                    self._rollout_renderer(rollout),
                )
            )
        deployments = [d for _, d in self.snap.deployments]
        rollouts = [r for _, r in self.snap.rollouts]
        inputs = [drift, ab, rollouts, deployments, copied]

        def render(store: ObjectStore) -> str:
            root = ".."
            body = [
                "<h2>Monitoring</h2>",
                table(
                    [
                        "time",
                        "monitor",
                        "model",
                        "verdict",
                        "drift share",
                        "drifted",
                        "rows",
                        "report",
                    ],
                    [
                        [
                            esc(e["time"]),
                            esc(e.get("monitor")),
                            self.version_link(root, e.get("model"), e.get("version")),
                            badge(e.get("verdict")),
                            num_cell(e.get("drift_share")),
                            esc(", ".join(map(str, e.get("drifted_features") or []))),
                            num_cell(e.get("rows")),
                            link(href("monitor", slug(e["id"]) + ".html"), "report")
                            if e["id"] in copied
                            else f'<span class="muted">{esc(e.get("report") or "none")}</span>',
                        ]
                        for e in drift[::-1]
                    ],
                    attrs=' id="monitoring"',
                ),
            ]
            body += [
                "<h2>A/B tests</h2>",
                table(
                    ["time", "release", "model", "decision", "report"],
                    [
                        [
                            esc(e["time"]),
                            esc(e.get("release")),
                            self.version_link(root, e.get("model"), e.get("version")),
                            badge(e.get("decision")),
                            link(href("ab", slug(e["id"]) + ".html"), "report"),
                        ]
                        for e in ab[::-1]
                    ],
                    attrs=' id="ab-tests"',
                ),
            ]
            body += [
                "<h2>Rollouts</h2>",
                table(
                    [
                        "model",
                        "release",
                        "strategy",
                        "status",
                        "step",
                        "candidate",
                        "champion",
                        "started",
                        "ended",
                    ],
                    [
                        [
                            self.model_link(root, r.get("model")),
                            link(
                                href(
                                    "rollouts",
                                    slug(r.get("model")),
                                    slug(r.get("release")) + ".html",
                                ),
                                r.get("release"),
                            ),
                            esc(r.get("strategy")),
                            badge(r.get("status")),
                            esc(step_text(r)),
                            self.version_link(
                                root, r.get("model"), (r.get("candidate") or {}).get("version")
                            ),
                            self.version_link(
                                root, r.get("model"), (r.get("champion") or {}).get("version")
                            ),
                            esc(r.get("started")),
                            esc(r.get("ended")),
                        ]
                        for r in rollouts
                    ],
                    attrs=' id="rollouts"',
                ),
            ]
            body += [
                "<h2>Deployments</h2>",
                table(
                    ["model", "deployment", "arms", "updated", "reason"],
                    [
                        [
                            self.model_link(root, d.get("model")),
                            esc(d.get("deployment")),
                            esc(
                                ", ".join(
                                    f"{a.get('arm')} {fmt(a.get('weight'))}"
                                    for a in d.get("arms") or []
                                )
                            ),
                            esc(d.get("updated")),
                            esc(d.get("reason")),
                        ]
                        for d in deployments
                    ],
                    attrs=' id="deployments"',
                ),
            ]
            return frame("Monitoring, rollout and A/B reports", "".join(body), root)

        return [Page("reports/index.html", inputs, render), *pages]

    @staticmethod
    def _copier(source: Path) -> Render:
        def render(store: ObjectStore) -> bytes:
            return source.read_bytes()

        return render

    def _rollout_renderer(self, rollout: dict[str, Any]) -> Render:
        def render(store: ObjectStore) -> str:
            return self.render_rollout(rollout)

        return render

    def report_file(self, path: Any) -> Path | None:
        if not isinstance(path, str) or not path.endswith((".html", ".htm")):
            return None
        candidate = Path(path)
        tries = [candidate] if candidate.is_absolute() else [Path.cwd() / candidate]
        if not candidate.is_absolute() and self.base_dir is not None:
            tries.append(self.base_dir / candidate)
        for found in tries:
            if found.is_file():
                return found
        return None

    def render_rollout(self, rollout: dict[str, Any]) -> str:
        root = "../../.."
        model = rollout.get("model")
        facts = [
            ("model", self.model_link(root, model)),
            ("release", esc(rollout.get("release"))),
            ("strategy", esc(rollout.get("strategy"))),
            ("status", badge(rollout.get("status"))),
            ("step", esc(step_text(rollout))),
            (
                "candidate",
                self.version_link(root, model, (rollout.get("candidate") or {}).get("version")),
            ),
            (
                "champion",
                self.version_link(root, model, (rollout.get("champion") or {}).get("version")),
            ),
            ("deployment", esc(rollout.get("deployment"))),
            ("alias", esc(rollout.get("alias"))),
            ("started", esc(rollout.get("started"))),
            ("ended", esc(rollout.get("ended"))),
            ("reason", esc(rollout.get("reason"))),
        ]
        steps = rollout.get("steps") or []
        history = rollout.get("history") or []
        body = [
            definition(facts),
            svg.bars(
                "candidate share per step (%)", [(f"step {i + 1}", s) for i, s in enumerate(steps)]
            ),
            "<h2>History</h2>",
            table(
                ["time", "action", "details"],
                [
                    [
                        esc(h.get("time")),
                        esc(h.get("action")),
                        esc(
                            short({k: v for k, v in h.items() if k not in ("time", "action")}, 300)
                        ),
                    ]
                    for h in history
                    if isinstance(h, dict)
                ],
                attrs=' id="rollout-history"',
            ),
        ]
        return frame(f"Rollout {rollout.get('release')} of {model}", "".join(body), root)


def spec_text(spec: Any) -> str:
    if isinstance(spec, dict):
        return f'{esc(spec.get("path"))} <span class="mono">{esc(spec.get("digest"))}</span>'
    return esc(spec)


def _varies(params: list[dict[str, Any]], key: str) -> bool:
    first = params[0].get(key) if params else None
    return any(p.get(key) != first for p in params)


def block_name(number: int, count: int) -> str:
    return "index.html" if number == count else f"page-{number}.html"


def block_pager(current: int, count: int) -> str:
    """Links to every block of a long table, newest first, named by the rows they hold."""
    if count <= 1:
        return ""
    parts = []
    for n in range(count, 0, -1):
        label = "newest" if n == count else f"{(n - 1) * PAGE_ROWS + 1}\u2013{n * PAGE_ROWS}"
        if n == current:
            parts.append(f'<span class="cur">{label}</span>')
        else:
            parts.append(f'<a href="{block_name(n, count)}">{label}</a>')
    return f'<nav class="pager">runs: {" ".join(parts)}</nav>'


def step_text(rollout: dict[str, Any]) -> str:
    steps = rollout.get("steps") or []
    step = rollout.get("step")
    if isinstance(step, int) and 0 <= step < len(steps):
        return f"{step + 1}/{len(steps)} ({fmt(steps[step])}%)"
    return fmt(step)


def step_dag(steps: dict[str, Any], order: list[str], title: str) -> str:
    """The steps as a graph: an edge from a step to each step that read one of its outputs."""
    producers: dict[str, tuple[str, str]] = {}
    for name in order:
        for output, ref in ((steps[name] or {}).get("outputs") or {}).items():
            if isinstance(ref, dict) and ref.get("digest"):
                producers[str(ref["digest"])] = (name, output)
    nodes = {
        f"step:{n}": {"label": n, "kind": f"step {(steps[n] or {}).get('status', '')}".strip()}
        for n in order
    }
    edges = []
    for name in order:
        for input_name, digest in ((steps[name] or {}).get("inputs") or {}).items():
            source = producers.get(str(digest))
            if source and source[0] != name:
                edges.append(
                    (f"step:{source[0]}", f"step:{name}", f"{source[1]} \u2192 {input_name}")
                )
    shape = repr((title, [(k, v["kind"]) for k, v in nodes.items()], edges))
    drawn = _DAGS.get(shape)
    if drawn is None:  # runs of one pipeline mostly share their graph: draw it once
        drawn = '<div class="dag-box">' + svg.dag(nodes, edges, title=title) + "</div>"
        if len(_DAGS) > 1000:
            _DAGS.clear()
        _DAGS[shape] = drawn
    return drawn


_DAGS: dict[str, str] = {}
