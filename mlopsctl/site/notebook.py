"""Executed notebooks (the `notebook` output of a `notebook:` step) as pages of the site.

nbconvert's ``basic`` template renders the cells (markdown, highlighted code, text, tables and
images as data URIs); the page around it is the site's frame. A notebook's outputs are HTML the
notebook's code wrote, so the page carries a Content-Security-Policy that runs no script at all
(nbconvert's own sanitizer mangles ordinary headings and tables, so it is not used). One page
per notebook digest: the same executed notebook, cached across runs, is rendered once."""

from __future__ import annotations

import json
from typing import Any

from mlopsctl.site.html import esc, frame

# No script, plugin, frame, form target or <base> from a notebook's outputs.
CSP = "script-src 'none'; object-src 'none'; frame-src 'none'; base-uri 'none'; form-action 'none'"
HEAD = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'


def notebook_path(digest: str) -> str:
    """The site path of the executed notebook with this digest (``notebooks/<hex>.html``)."""
    return f"notebooks/{digest.split(':', 1)[-1]}.html"


def render_notebook(data: bytes, title: str, executed_by: str) -> str:
    """The page of one executed notebook; `executed_by` is HTML naming the runs and steps
    that produced it."""
    return frame(title, f"<p>Executed by {executed_by}.</p>{_cells(data)}", "..", head=HEAD)


def _cells(data: bytes) -> str:
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return (
            "<p>This site was built without nbconvert, so the notebook is not rendered here: "
            "pip install 'mlopsctl[notebook]' and build again, or open the .ipynb.</p>"
        )
    try:
        node: Any = nbformat.reads(data.decode("utf-8"), as_version=4)
        body, _ = HTMLExporter(template_name="basic").from_notebook_node(node)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, json.JSONDecodeError) as exc:
        return f'<p class="error">The stored notebook could not be rendered: {esc(exc)}</p>'
    return f'<div class="notebook">{body}</div>'
