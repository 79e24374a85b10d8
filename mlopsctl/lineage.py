"""Lineage: what made a model version (upstream: version <- run <- steps <- data by digest), and
what a dataset went into (downstream: the runs and versions that used a digest). Built from the
records alone, so it works on any store without an index service."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlopsctl.records.run import RunRecord
    from mlopsctl.store.base import ObjectStore


@dataclass
class Graph:
    root: str
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {kind, label}
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, label)

    def node(self, node_id: str, kind: str, label: str) -> str:
        self.nodes.setdefault(node_id, {"kind": kind, "label": label})
        return node_id

    def edge(self, src: str, dst: str, label: str = "") -> None:
        if (src, dst, label) not in self.edges:
            self.edges.append((src, dst, label))

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [{"id": k, **v} for k, v in self.nodes.items()],
            "edges": [{"from": a, "to": b, "label": lbl} for a, b, lbl in self.edges],
        }


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _add_run(graph: Graph, run: RunRecord, upto: str | None = None) -> None:
    """Add a run's steps with their inputs and outputs; with `upto`, only the steps that the
    named step depends on (its upstream closure)."""
    run_id = graph.node(f"run:{run['id']}", "run", f"run {run['id']} ({run.get('pipeline')})")
    steps = run.get("steps") or {}
    producers = {
        ref["digest"]: name
        for name, step in steps.items()
        for ref in (step.get("outputs") or {}).values()
    }
    wanted = set(steps)
    if upto:
        wanted, todo = set(), [upto]
        while todo:
            name = todo.pop()
            if name in wanted or name not in steps:
                continue
            wanted.add(name)
            todo.extend(
                producers[d] for d in (steps[name].get("inputs") or {}).values() if d in producers
            )
    for name in steps:
        if name not in wanted:
            continue
        step = steps[name]
        sid = graph.node(f"step:{run['id']}/{name}", "step", f"step {name} [{step.get('status')}]")
        graph.edge(run_id, sid, "ran")
        for input_name, digest in (step.get("inputs") or {}).items():
            did = graph.node(f"blob:{digest}", "data", f"{input_name} {_short(digest)}")
            graph.edge(did, sid, input_name)
        for key, digest in (step.get("data") or {}).items():
            did = graph.node(f"source:{digest}", "source", f"{key} {_short(digest)}")
            graph.edge(did, sid, key)
        for output, ref in (step.get("outputs") or {}).items():
            oid = graph.node(f"blob:{ref['digest']}", "data", f"{output} {_short(ref['digest'])}")
            graph.edge(sid, oid, output)


def upstream(store: ObjectStore, ref: str) -> Graph:
    from mlopsctl.registry import resolve
    from mlopsctl.runs import read_run

    version = resolve(store, ref)
    vid = f"model:{version['name']}:{version['version']}"
    graph = Graph(root=vid)
    graph.node(vid, "version", f"{version['name']}:{version['version']}")
    artifact = version["artifact"]["digest"]
    graph.node(f"blob:{artifact}", "data", f"model {_short(artifact)}")
    graph.edge(f"blob:{artifact}", vid, "registered")
    for fs in version.get("feature_sets") or []:  # trained on feature sets (mlopsctl.features)
        label = f"featureset {fs['name']} {_short(str(fs.get('digest', '')))}"
        node = graph.node(f"featureset:{fs.get('digest')}", "featureset", label)
        graph.edge(node, vid, "features")
    run_id = (version.get("run") or {}).get("id")
    if run_id:
        run = read_run(store, run_id)
        step = (version.get("pipeline") or {}).get("step")
        _add_run(graph, run, upto=step)
        evaluation = (version.get("evaluation") or {}).get("step")
        if evaluation:
            _add_run(graph, run, upto=evaluation)
            graph.edge(f"step:{run_id}/{evaluation}", vid, "metrics")
    return graph


def downstream(store: ObjectStore, digest: str) -> Graph:
    """Every run whose steps read or wrote `digest`, and every version that used it."""
    from mlopsctl.registry import all_versions
    from mlopsctl.runs import read_run, run_ids

    graph = Graph(root=f"blob:{digest}")
    graph.node(graph.root, "data", _short(digest))
    ids = run_ids(store)
    with ThreadPoolExecutor(max_workers=16) as pool:
        runs = list(pool.map(lambda i: read_run(store, i), ids))
    used_by: set[str] = set()
    for run in runs:
        for step in (run.get("steps") or {}).values():
            digests = set((step.get("inputs") or {}).values()) | set(
                (step.get("data") or {}).values()
            )
            digests |= {r["digest"] for r in (step.get("outputs") or {}).values()}
            if digest in digests:
                used_by.add(run["id"])
                _add_run(graph, run)
                break
    for version in all_versions(store):
        data = version.get("data") or {}
        digests = {d["digest"] for d in (data.get("training") or {}).values()}
        digests |= set((data.get("sources") or {}).values())
        digests.add(version["artifact"]["digest"])
        digests |= {str(f.get("digest")) for f in version.get("feature_sets") or []}
        run_id = (version.get("run") or {}).get("id")
        if digest in digests or run_id in used_by:
            vid = graph.node(
                f"model:{version['name']}:{version['version']}",
                "version",
                f"{version['name']}:{version['version']}",
            )
            graph.edge(f"blob:{version['artifact']['digest']}", vid, "registered")
            graph.node(
                f"blob:{version['artifact']['digest']}",
                "data",
                f"model {_short(version['artifact']['digest'])}",
            )
    return graph


def lineage(store: ObjectStore, ref: str) -> Graph:
    if ref.startswith("sha256:"):
        return downstream(store, ref)
    return upstream(store, ref)


# -- rendering ---------------------------------------------------------------------------
def render(graph: Graph, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(graph.as_dict(), indent=2)
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;"]
        shapes = {
            "version": "doubleoctagon",
            "run": "box",
            "step": "box",
            "data": "ellipse",
            "source": "note",
        }
        for node_id, node in graph.nodes.items():
            shape = shapes.get(node["kind"], "ellipse")
            label = json.dumps(node["label"])
            lines.append(f"  {json.dumps(node_id)} [label={label}, shape={shape}];")
        for src, dst, label in graph.edges:
            lines.append(f"  {json.dumps(src)} -> {json.dumps(dst)} [label={json.dumps(label)}];")
        lines.append("}")
        return "\n".join(lines)
    if fmt == "mermaid":
        ids = {node_id: f"n{i}" for i, node_id in enumerate(graph.nodes)}
        lines = ["graph LR"]
        for node_id, node in graph.nodes.items():
            label = node["label"].replace('"', "'")
            lines.append(f'  {ids[node_id]}["{label}"]')
        for src, dst, label in graph.edges:
            arrow = f"-->|{label}|" if label else "-->"
            lines.append(f"  {ids[src]} {arrow} {ids[dst]}")
        return "\n".join(lines)
    return _render_text(graph)


def _render_text(graph: Graph) -> str:
    """An indented tree from the root: upstream graphs walk edges backwards, downstream
    graphs forwards."""
    incoming: dict[str, list[tuple[str, str]]] = {}
    outgoing: dict[str, list[tuple[str, str]]] = {}
    for src, dst, label in graph.edges:
        incoming.setdefault(dst, []).append((src, label))
        outgoing.setdefault(src, []).append((dst, label))
    backwards = graph.nodes.get(graph.root, {}).get("kind") == "version"
    links = incoming if backwards else outgoing
    lines: list[str] = []
    seen: set[str] = set()

    def walk(node_id: str, depth: int, label: str) -> None:
        node = graph.nodes[node_id]
        via = f"{label}: " if label else ""
        again = " (see above)" if node_id in seen else ""
        arrow = ("<- " if backwards else "-> ") if depth else ""
        lines.append(f"{'  ' * depth}{arrow}{via}{node['label']}{again}")
        if node_id in seen:
            return
        seen.add(node_id)
        for child, child_label in links.get(node_id, []):
            if graph.nodes[child]["kind"] == "run":
                continue  # runs are named once, below, rather than under every step
            walk(child, depth + 1, child_label)

    walk(graph.root, 0, "")
    if backwards:
        runs = [n["label"] for n in graph.nodes.values() if n["kind"] == "run"]
        lines.append("from " + (", ".join(runs) or "no recorded run"))
    else:
        runs = [n["label"] for n in graph.nodes.values() if n["kind"] == "run"]
        versions = [n["label"] for n in graph.nodes.values() if n["kind"] == "version"]
        lines.append(f"used by {len(runs)} run(s): " + (", ".join(runs) or "none"))
        lines.append(f"in {len(versions)} model version(s): " + (", ".join(versions) or "none"))
    return "\n".join(lines)
