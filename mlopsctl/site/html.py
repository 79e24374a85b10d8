"""Page building blocks for the static site: escaping, relative links, the page frame, tables,
pagers and JSON embedded for the page's script. Plain string building (no template engine):
every string that came from the store goes through :func:`esc` or :func:`json_script`."""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from typing import Any
from urllib.parse import quote

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*", re.ASCII)
PAGE_ROWS = 500  # rows per page of a long table


_SPECIAL = re.compile(r"[&<>\"']")


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute."""
    text = value if type(value) is str else fmt(value)
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


def slug(name: Any) -> str:
    """A file name for a store name: the name itself when it is plain (letters, digits, '.',
    '_' and '-', no leading dot, at most 100 characters, not ending like one of the site's own
    files, not 'index'), otherwise a digest of it, so that no name can step out of its folder
    or clash with the site's own files."""
    text = str(name)
    lower = text.lower()
    if (
        len(text) <= 100
        and _SAFE.fullmatch(text)
        and not lower.startswith("x-")
        and not lower.endswith((".html", ".htm", ".css", ".js", ".json"))
        and lower != "index"  # pipelines/<name>.html beside pipelines/index.html
    ):
        return text
    return "x-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def href(*parts: str) -> str:
    """A relative URL from path parts (each already a file name from :func:`slug`)."""
    return "/".join(quote(p, safe="") if p not in ("..", ".") else p for p in parts)


def fmt(value: Any) -> str:
    """One cell's text: numbers short, nothing as a dash, structures as compact JSON."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return str(value)


def short(value: Any, limit: int = 80) -> str:
    text = fmt(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def json_script(element_id: str, data: Any) -> str:
    """Data for the page's script, safe inside <script>: '<', '>' and '&' are written as JSON
    escapes, so no text from the store can close the element."""
    text = json.dumps(data, sort_keys=True, default=str, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def clean_json(value: Any) -> Any:
    """`value` with NaN and infinities as null (JSON has no spelling for them)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def link(url: str | None, text: Any, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    if url is None:
        return f"<span{klass}>{esc(text)}</span>"
    return f'<a href="{esc(url)}"{klass}>{esc(text)}</a>'


def badge(status: Any) -> str:
    text = fmt(status)
    kind = re.sub(r"[^a-z_]", "", text.lower())[:20]
    return f'<span class="badge b-{kind}">{esc(text)}</span>'


def table(headers: list[str], rows: list[list[str]], *, cls: str = "", attrs: str = "") -> str:
    """A table; `rows` hold cell HTML already escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def definition(items: list[tuple[str, str]]) -> str:
    """Label/value pairs; values are HTML already escaped."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def page_name(number: int) -> str:
    return "index.html" if number == 1 else f"page-{number}.html"


def pager(current: int, count: int) -> str:
    if count <= 1:
        return ""
    parts = []
    for n in range(1, count + 1):
        if n == current:
            parts.append(f'<span class="cur">{n}</span>')
        else:
            parts.append(f'<a href="{page_name(n)}">{n}</a>')
    return f'<nav class="pager">pages: {" ".join(parts)}</nav>'


NAV = (
    ("index.html", "Home"),
    ("experiments/index.html", "Experiments"),
    ("models/index.html", "Models"),
    ("pipelines/index.html", "Pipelines"),
    ("audit.html", "Audit log"),
    ("reports/index.html", "Reports"),
)


def frame(
    title: str, body: str, root: str, *, script: bool = False, generated: str = "", head: str = ""
) -> str:
    """A whole page: `root` is the relative way back to the site's root ('' or '../..');
    `head` is markup for the page's head (a policy)."""
    prefix = f"{root}/" if root else ""
    nav = " ".join(f'<a href="{prefix}{url}">{esc(text)}</a>' for url, text in NAV)
    tail = f'<script src="{prefix}site.js"></script>' if script else ""
    stamp = f" \u00b7 store as of {esc(generated)}" if generated else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}<title>{esc(title)} \u00b7 mlopsctl</title>"
        f'<link rel="stylesheet" href="{prefix}style.css"></head><body>'
        f'<header><span class="brand">mlopsctl</span><nav class="top">{nav}</nav></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main>"
        f"<footer>static site built by mlopsctl site build{stamp}</footer>{tail}</body></html>"
    )


STYLE = """\
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;
background:#f6f8fa}
header{background:#22313f;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center}
header a{color:#d8e4ef;text-decoration:none;margin-right:14px}header a:hover{color:#fff}
.brand{font-weight:700;letter-spacing:.5px}
main{padding:16px 24px;max-width:1400px}
h1{font-size:22px;margin:6px 0 14px}h2{font-size:17px;margin:22px 0 8px}
a{color:#1f5f99}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px;font-size:13px}
th,td{border:1px solid #d9e0e7;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#eef2f6;position:sticky;top:0}
table.kv th{background:#f3f6f9;width:160px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.diff td{background:#fff7e0}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;background:#e3e8ee}
.b-succeeded,.b-passed,.b-pass,.b-done,.b-executed{background:#d7f0dc;color:#17612a}
.b-failed,.b-fail,.b-rolled_back,.b-aborted,.b-invalid{background:#f9dcdc;color:#8a1c1c}
.b-cached{background:#dde9f8;color:#1c4a80}
.b-running,.b-promoting,.b-inconclusive,.b-interrupted{background:#fdf0cf;color:#7a5600}
.pager{margin:8px 0}.pager a,.pager span{margin-right:6px}.pager .cur{font-weight:700}
.filters{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0}
.filters label{display:flex;flex-direction:column;font-size:12px;color:#51606f}
.muted{color:#6b7886}
svg{background:#fff;border:1px solid #d9e0e7;margin:6px 0;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#1d2733}
.dag-box,#lineage{overflow-x:auto}.dag-box svg,#lineage svg{max-width:none}
.cards{display:flex;gap:14px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d9e0e7;padding:10px 14px;min-width:150px}
.card b{font-size:20px;display:block}
footer{color:#8493a3;font-size:12px;padding:18px 24px}
.notebook .cell{background:#fff;border:1px solid #d9e0e7;margin:8px 0;padding:6px 10px}
.notebook .prompt{color:#8493a3;font:11px ui-monospace,monospace}
.notebook pre{margin:4px 0;white-space:pre-wrap;font:12px/1.4 ui-monospace,Menlo,monospace}
.notebook .input_area{background:#f3f6f9;padding:2px 8px}
.notebook .output_error pre{background:#fbeaea}.notebook img{max-width:100%}
"""

# Client-side parts: the audit log's filters and the runs table's "compare checked rows". Data
# comes from <script type="application/json"> elements in the page (no fetch: works from
# file://). Text goes into the DOM with textContent only.
SCRIPT = """\
(function(){
"use strict";
function data(id){var el=document.getElementById(id);return el?JSON.parse(el.textContent):null;}
function td(tr,text,cls){var c=document.createElement("td");c.textContent=text;
if(cls){c.className=cls;}tr.appendChild(c);return c;}
function show(v){if(v===null||v===undefined){return "\\u2013";}
if(typeof v==="object"){return JSON.stringify(v);}
if(typeof v==="number"&&!Number.isInteger(v)){return String(Number(v.toPrecision(6)));}
return String(v);}
function params(){var out={};var h=window.location.hash.replace(/^#/,"");
var q=window.location.search.replace(/^\\?/,"");
[q,h].forEach(function(s){s.split("&").forEach(function(kv){if(!kv){return;}
var i=kv.indexOf("=");var k=decodeURIComponent(i<0?kv:kv.slice(0,i));
var v=i<0?"":decodeURIComponent(kv.slice(i+1).replace(/\\+/g," "));out[k]=v;});});return out;}
function audit(){
var events=data("events-data");if(!events){return;}
var form=document.getElementById("audit-filters");var body=document.getElementById("events-body");
var count=document.getElementById("events-count");
var fields=["type","model","actor"];
fields.forEach(function(f){var sel=form.elements[f];var seen={};
events.forEach(function(e){var v=e[f];if(v!==null&&v!==undefined&&v!==""){seen[String(v)]=1;}});
Object.keys(seen).sort().forEach(function(v){var o=document.createElement("option");
o.value=v;o.textContent=v;sel.appendChild(o);});});
var p=params();
fields.concat(["q"]).forEach(function(f){if(p[f]!==undefined&&form.elements[f]){
var el=form.elements[f];
if(el.tagName==="SELECT"&&![].some.call(el.options,function(o){return o.value===p[f];})){
var o=document.createElement("option");o.value=p[f];o.textContent=p[f];el.appendChild(o);}
el.value=p[f];}});
function render(){
var want={};fields.forEach(function(f){want[f]=form.elements[f].value;});
var q=form.elements.q.value.toLowerCase();
while(body.firstChild){body.removeChild(body.firstChild);}
var shown=0;
for(var i=events.length-1;i>=0;i--){var e=events[i];var ok=true;
fields.forEach(function(f){if(want[f]&&String(e[f])!==want[f]){ok=false;}});
if(ok&&q&&JSON.stringify(e).toLowerCase().indexOf(q)<0){ok=false;}
if(!ok){continue;}shown++;
var tr=document.createElement("tr");tr.setAttribute("data-type",String(e.type));
td(tr,e.time);td(tr,e.type);td(tr,show(e.model));td(tr,show(e.version));td(tr,show(e.actor));
td(tr,e.text);body.appendChild(tr);}
count.textContent=shown+" of "+events.length+" events";
count.setAttribute("data-shown",String(shown));}
form.addEventListener("input",render);form.addEventListener("change",render);
form.addEventListener("submit",function(ev){ev.preventDefault();render();});
render();}
function compare(){
var rows=data("runs-data");if(!rows){return;}
var button=document.getElementById("compare-button");var out=document.getElementById("compare-out");
button.addEventListener("click",function(){
var ids=[].map.call(document.querySelectorAll("input.pick:checked"),function(c){return c.value;});
var picked=rows.filter(function(r){return ids.indexOf(r.id)>=0;});
while(out.firstChild){out.removeChild(out.firstChild);}
if(picked.length<2){out.textContent="check two or more runs";return;}
var t=document.createElement("table");var head=document.createElement("tr");
td(head,"");picked.forEach(function(r){td(head,r.id);});t.appendChild(head);
["params","metrics"].forEach(function(kind){var keys={};
picked.forEach(function(r){Object.keys(r[kind]||{}).forEach(function(k){keys[k]=1;});});
Object.keys(keys).sort().forEach(function(k){var tr=document.createElement("tr");
var vals=picked.map(function(r){return show((r[kind]||{})[k]);});
if(vals.some(function(v){return v!==vals[0];})){tr.className="diff";}
td(tr,kind.slice(0,-1)+" "+k);vals.forEach(function(v){td(tr,v,"num");});t.appendChild(tr);});});
out.appendChild(t);});}
audit();compare();
})();
"""
