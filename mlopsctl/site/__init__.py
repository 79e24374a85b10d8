"""A static HTML site of the store (``mlopsctl site build``): experiments and runs with
comparisons and metric plots, the registry with aliases, their history and provenance,
lineage graphs, pipeline DAGs, the audit log with filters, and the monitoring, rollout and
A/B reports. No server: plain HTML, CSS, a little JavaScript and inline SVG, all links
relative (file://, a bucket, GitHub Pages).

- snapshot.py  one listing of the store, summaries of records, read only when changed
- pages.py     every page: its path, the inputs it depends on, its rendering
- html.py, svg.py  escaping, the page frame, tables; plots and layered graphs
- build.py     the manifest and the incremental build
"""

from __future__ import annotations

from mlopsctl.site.build import MANIFEST, build_site

__all__ = ["MANIFEST", "build_site"]
