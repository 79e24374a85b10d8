"""Rendering a monitoring result: a text table for the terminal and one self-contained HTML page
(inline CSS and SVG; no script, no font, no file or address outside the page), so the report can
be mailed, attached to a CI run or opened from a bucket as it is.

The page: a summary on top (verdict, model and version, rows, share of drifted features,
prediction drift, performance, outlier share, attribution drift, data quality), the outlier and
attribution sections when those were checked (the features that made rows outliers; mean
|contribution| per feature, training against current, as bars), then one section per feature,
drifted ones first, each with its test, statistic, threshold and verdict and a chart of the
baseline against the current distribution (shares in 30 equal-width bins for numbers, bars per
category).
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from pathlib import Path
from typing import Any

BASE_COLOUR = "#5b7fa6"
CURRENT_COLOUR = "#e8873a"


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def verdict_of(feature: dict[str, Any]) -> str:
    if feature.get("statistic") is None:
        return "skipped"
    return "DRIFT" if feature["drifted"] else "ok"


def shown_statistic(feature: dict[str, Any]) -> str:
    """The statistic, with the (adjusted) p-value the verdict rests on for p-value tests."""
    text = fmt(feature.get("statistic"))
    p = feature.get("p_adjusted", feature.get("p_value"))
    if feature["test"] in ("ks", "chi2") and p is not None:
        text = f"{text} (p={fmt(p, 3)})"
    return text


def table(result: dict[str, Any]) -> list[str]:
    """Lines of the per-feature table, drifted first, then prediction/performance/quality."""
    rows = [("feature", "type", "test", "statistic", "threshold", "verdict")]
    for feature in result["features"]:
        rows.append(
            (
                feature["name"],
                feature["type"],
                feature["test"],
                shown_statistic(feature),
                fmt(feature["threshold"]),
                verdict_of(feature) + (f" ({feature['note']})" if feature.get("note") else ""),
            )
        )
    prediction = result.get("prediction")
    if prediction:
        rows.append(
            (
                f"(prediction: {prediction.get('of')})",
                prediction["type"],
                prediction["test"],
                shown_statistic(prediction),
                fmt(prediction["threshold"]),
                verdict_of(prediction),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
    performance = result.get("performance")
    if performance:
        lines.append(
            f"performance: {performance['metric']} = {fmt(performance['value'])} "
            f"(offline {fmt(performance['baseline'])}) on {performance['rows']} labelled rows: "
            + ("FAILED: " + "; ".join(performance["reasons"]) if performance["failed"] else "ok")
        )
    outliers = result.get("outliers")
    if outliers:
        lines.append(outlier_line(outliers))
    attribution = result.get("attribution")
    if attribution:
        lines.append(attribution_line(attribution))
        for entry in attribution["features"]:
            if entry["drifted"]:
                lines.append(
                    f"  {entry['name']}: mean |contribution| {fmt(entry['baseline'])} -> "
                    f"{fmt(entry['current'])}, share {fmt(entry['baseline_share'], 3)} -> "
                    f"{fmt(entry['current_share'], 3)} (change {fmt(entry['change'], 3)})"
                )
    for check in result["quality"]:
        if check["failed"]:
            lines.append(f"quality {check['test']}: FAILED {_quality_detail(check)}")
    if result.get("baseline"):
        lines.append(f"baseline: {result['baseline']}")
    for note in result.get("notes") or []:
        lines.append(f"note: {note}")
    return lines


def outlier_line(outliers: dict[str, Any]) -> str:
    verdict = "ok"
    if outliers["exceeded"]:
        verdict = "FAILED" if outliers["failed"] else "over the limit (not failing)"
    worst = ", ".join(f"{f['name']} ({f['outliers']})" for f in outliers["features"][:5])
    return (
        f"outliers: {outliers['outliers']}/{outliers['rows']} rows scored >= "
        f"{fmt(outliers['threshold'])} (share {fmt(outliers['share'], 3)}, max "
        f"{fmt(outliers['max_share'])}): {verdict}" + (f"; most extreme: {worst}" if worst else "")
    )


def attribution_line(attribution: dict[str, Any]) -> str:
    if attribution.get("statistic") is None:
        return f"attribution: {_contributions_source(attribution)}; " + (
            attribution.get("note") or "no baseline"
        )
    verdict = "ok"
    if attribution["drifted"]:
        names = ", ".join(attribution["drifted_features"])
        verdict = ("DRIFT in " if attribution["failed"] else "drift (not failing) in ") + names
    return (
        f"attribution: {_contributions_source(attribution)}, total share move "
        f"{fmt(attribution['statistic'], 3)}; a feature drifts when its share changes by "
        f"{fmt(attribution['threshold'])} of its training share: {verdict}"
    )


def _contributions_source(attribution: dict[str, Any]) -> str:
    """Which contributions were judged: those logged with the rows, on how many of them."""
    if attribution.get("source") == "logged" and attribution.get("of"):
        return (
            f"logged contributions on {attribution['sampled']} of {attribution['of']} rows "
            "(sampled)"
        )
    return f"{attribution['rows']} rows with contributions"


def _quality_detail(check: dict[str, Any]) -> str:
    if check["test"] == "schema":
        parts = []
        if check["missing_columns"]:
            parts.append("missing columns " + ", ".join(check["missing_columns"]))
        if check["wrong_types"]:
            parts.append("wrong types " + ", ".join(check["wrong_types"]))
        return "; ".join(parts)
    items = []
    for entry in check.get("features", []):
        share = entry.get("share", entry.get("current"))
        items.append(f"{entry['name']} ({fmt(share, 3)})")
    return f"(threshold {fmt(check.get('threshold'))}): " + ", ".join(items)


def summary_line(result: dict[str, Any]) -> str:
    model = result["model"]
    who = f"{model['name']}:{model['version']}" if model.get("name") else "baseline"
    judged = sum(1 for f in result["features"] if f.get("statistic") is not None)
    return (
        f"monitor {result['monitor']}: {who} on {result['rows']} rows; "
        f"{len(result['drifted_features'])}/{judged} features drifted "
        f"(share {result['drift_share']:.2f}, dataset drift at {result['drift_share_threshold']}): "
        + ("FAILED" if result["failed"] else "passed")
    )


# -- HTML ----------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f9;color:#1d2733;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 12px}
h3{font-size:16px;margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.sub{color:#5c6b7a;margin:0 0 18px}
.badge{display:inline-block;padding:3px 12px;border-radius:999px;font-weight:700;font-size:13px;
letter-spacing:.04em;vertical-align:middle;margin-left:10px}
.fail{background:#fde3e1;color:#b42318}.pass{background:#dcf5e6;color:#15703d}
.skip{background:#eceff3;color:#5c6b7a}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px rgba(16,24,40,.08)}
.card .k{color:#5c6b7a;font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:20px;font-weight:650;margin-top:2px;word-break:break-word}
.card .d{color:#5c6b7a;font-size:12px;margin-top:2px}
.bar{height:8px;background:#eceff3;border-radius:4px;margin-top:8px;overflow:hidden}
.bar span{display:block;height:100%;background:#d92d20}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:10px;overflow:hidden;
box-shadow:0 1px 2px rgba(16,24,40,.08)}
th,td{text-align:left;padding:7px 12px;border-bottom:1px solid #eef1f4;font-size:13px}
th{background:#f8fafc;color:#5c6b7a;font-weight:600}
td.num{font-variant-numeric:tabular-nums}
.feature{background:#fff;border-radius:10px;padding:16px 18px;margin:12px 0;
box-shadow:0 1px 2px rgba(16,24,40,.08);border-left:5px solid #c6d0db}
.feature.drift{border-left-color:#d92d20}.feature.ok{border-left-color:#12b76a}
.fhead{display:flex;align-items:center;gap:10px;flex-wrap:wrap;margin-bottom:8px}
.fhead .type{color:#5c6b7a;font-size:12px}
.facts{display:flex;flex-wrap:wrap;gap:6px 22px;color:#344354;font-size:13px;margin-bottom:6px}
.facts b{font-weight:600;color:#1d2733}
.legend{font-size:12px;color:#5c6b7a}.legend i{display:inline-block;width:10px;height:10px;
border-radius:2px;margin:0 4px 0 12px;vertical-align:-1px}
.note{color:#8a5a00;background:#fff6e0;border-radius:6px;padding:6px 10px;margin:6px 0;
font-size:13px}
svg{display:block;max-width:100%;height:auto}
.meter{position:relative;height:12px;background:#eceff3;border-radius:6px;margin:4px 0 14px}
.meter span{display:block;height:100%;background:#d92d20;border-radius:6px}
.meter i{position:absolute;top:-3px;width:2px;height:18px;background:#1d2733}
.hbar{height:7px;background:#eceff3;border-radius:4px;margin:2px 0;min-width:160px}
.hbar span{display:block;height:100%;border-radius:4px}
.hbar .base{background:#5b7fa6}.hbar .cur{background:#e8873a}
footer{color:#8493a3;font-size:12px;margin-top:28px}
"""


def write_html(result: dict[str, Any], path: Path) -> None:
    """Write the report atomically (a reader never sees half a page)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(result)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    # mkstemp makes the file private; a report is meant to be read like any file written here.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def render_html(result: dict[str, Any]) -> str:
    e = html.escape
    model = result["model"]
    title = f"Monitor {result['monitor']}"
    failed = result["failed"]
    judged = [f for f in result["features"] if f.get("statistic") is not None]
    drifted = result["drifted_features"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>",
        '<section id="summary">',
        f'<h1>{e(title)}<span class="badge {"fail" if failed else "pass"}" id="verdict">'
        f"{'FAILED' if failed else 'PASSED'}</span></h1>",
        f'<p class="sub">{e(summary_line(result))}</p>',
        f'<p class="sub" id="baseline">baseline: {e(str(result.get("baseline") or "-"))}</p>',
        '<div class="cards">',
    ]
    who = f"{model['name']}:{model['version']}" if model.get("name") else "(no model)"
    share = result["drift_share"]
    cards = [
        ("Model", who, f"ref {model.get('ref') or '-'}"),
        ("Rows checked", f"{result['rows']:,}", e(str(result.get("current") or ""))),
        (
            "Drifted features",
            f"{len(drifted)} / {len(judged)}",
            f"dataset drift at share ≥ {result['drift_share_threshold']}: "
            + ("yes" if result["drift"] else "no"),
        ),
    ]
    prediction = result.get("prediction")
    if prediction:
        cards.append(
            (
                "Prediction drift",
                "yes" if prediction["drifted"] else "no",
                f"{prediction['test']} {shown_statistic(prediction)}, "
                f"threshold {fmt(prediction['threshold'])}",
            )
        )
    performance = result.get("performance")
    if performance:
        cards.append(
            (
                f"Performance ({performance['metric']})",
                fmt(performance["value"]),
                f"offline {fmt(performance['baseline'])}; "
                + ("FAILED" if performance["failed"] else "ok"),
            )
        )
    outliers = result.get("outliers")
    if outliers:
        cards.append(
            (
                "Outliers",
                f"{outliers['share'] * 100:.1f}%",
                f"{outliers['outliers']:,} of {outliers['rows']:,} rows score ≥ "
                f"{fmt(outliers['threshold'])}; limit {fmt(outliers['max_share'] * 100)}%: "
                + ("FAILED" if outliers["exceeded"] else "ok"),
            )
        )
    attribution = result.get("attribution")
    if attribution:
        cards.append(
            (
                "Attribution drift",
                "-"
                if attribution.get("statistic") is None
                else ("yes" if attribution["drifted"] else "no"),
                f"{len(attribution['drifted_features'])} of {len(attribution['features'])} "
                f"features drifted; total share move {fmt(attribution.get('statistic'), 3)}",
            )
        )
    bad_quality = [q["test"] for q in result["quality"] if q["failed"]]
    cards.append(
        ("Data quality", "failed" if bad_quality else "ok", ", ".join(bad_quality) or "all passed")
    )
    for key, value, detail in cards:
        bar = ""
        if key == "Drifted features":
            bar = f'<div class="bar"><span style="width:{share * 100:.1f}%"></span></div>'
        parts.append(
            f'<div class="card"><div class="k">{e(key)}</div><div class="v">{e(value)}</div>'
            f'<div class="d">{e(detail)}</div>{bar}</div>'
        )
    parts.append("</div>")
    for note in result.get("notes") or []:
        parts.append(f'<p class="note">{e(note)}</p>')
    if performance and performance.get("reasons"):
        for reason in performance["reasons"]:
            parts.append(f'<p class="note">performance: {e(reason)}</p>')
    parts.append("</section>")
    if outliers:
        parts.append(_outliers_html(outliers))
    if attribution:
        parts.append(_attribution_html(attribution))
    parts.append(_quality_html(result["quality"]))
    parts.append('<section id="features"><h2>Features</h2>')
    parts.append(
        f'<div class="legend">distribution:<i style="background:{BASE_COLOUR}"></i>baseline'
        f'<i style="background:{CURRENT_COLOUR}"></i>current</div>'
    )
    if prediction:
        parts.append(_feature_html({**prediction, "name": f"prediction ({prediction.get('of')})"}))
    for feature in result["features"]:
        parts.append(_feature_html(feature))
    parts.append("</section>")
    parts.append(
        f"<footer>mlopsctl monitor · baseline: {e(str(result.get('baseline') or ''))} · "
        f"event {e(str(result.get('event') or '-'))}</footer>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _quality_html(quality: list[dict[str, Any]]) -> str:
    e = html.escape
    rows = []
    for check in quality:
        status = "FAILED" if check["failed"] else "ok"
        detail = _quality_detail(check) if check["failed"] else ""
        if check["test"] == "schema" and check.get("extra_columns"):
            detail += (
                (" · " if detail else "")
                + "extra columns: "
                + ", ".join(check["extra_columns"][:20])
            )
        if check.get("note"):
            detail += (" · " if detail else "") + check["note"]
        cls = "fail" if check["failed"] else "pass"
        rows.append(
            f'<tr><td>{e(check["test"])}</td><td class="num">{e(fmt(check.get("threshold")))}'
            f'</td><td><span class="badge {cls}" style="margin:0">{status}</span></td>'
            f"<td>{e(detail)}</td></tr>"
        )
    return (
        '<section id="quality"><h2>Data quality</h2><table><thead><tr><th>test</th>'
        "<th>threshold</th><th>verdict</th><th>detail</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _outliers_html(outliers: dict[str, Any]) -> str:
    """The outlier share and the features most often the most extreme in an outlier row."""
    e = html.escape
    cls = "fail" if outliers["exceeded"] else "pass"
    status = "FAILED" if outliers["exceeded"] else "ok"
    if outliers["exceeded"] and not outliers["failed"]:
        status = "over the limit"
    limit = min(outliers["max_share"] * 100, 100.0)
    share = min(outliers["share"] * 100, 100.0)
    head = (
        f'<section id="outliers"><h2>Outliers<span class="badge {cls}">{e(status)}</span></h2>'
        f'<p class="sub">{e(outlier_line(outliers))}</p>'
        f'<div class="meter" title="share of outlier rows; the mark is the limit">'
        f'<span style="width:{share:.2f}%"></span><i style="left:{limit:.2f}%"></i></div>'
    )
    if outliers["logged"]:
        head += (
            f'<p class="sub">{outliers["logged"]:,} rows carried a logged score; the others '
            "were scored from their features.</p>"
        )
    rows = []
    for entry in outliers["features"]:
        rows.append(
            f'<tr data-outlier-feature="{e(entry["name"])}"><td>{e(entry["name"])}</td>'
            f'<td class="num">{entry["outliers"]:,}</td><td class="num">'
            f'{e(fmt(entry["share"], 3))}</td><td><div class="hbar"><span class="cur" '
            f'style="width:{entry["share"] * 100:.1f}%"></span></div></td></tr>'
        )
    if not rows:
        return head + "</section>"
    return (
        head + "<table><thead><tr><th>most extreme feature</th><th>outlier rows</th>"
        "<th>share</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        "</section>"
    )


def _attribution_html(attribution: dict[str, Any]) -> str:
    """Mean |contribution| per feature, training against current, as horizontal bars."""
    e = html.escape
    judged = attribution.get("statistic") is not None
    cls = "fail" if attribution["drifted"] else ("pass" if judged else "skip")
    status = "DRIFT" if attribution["drifted"] else ("ok" if judged else "no baseline")
    parts = [
        f'<section id="attribution"><h2>Attribution drift<span class="badge {cls}">'
        f"{e(status)}</span></h2>",
        f'<p class="sub">{e(attribution_line(attribution))}</p>',
        f'<div class="legend">mean |contribution|:<i style="background:{BASE_COLOUR}"></i>'
        f'training<i style="background:{CURRENT_COLOUR}"></i>current</div>',
    ]
    if attribution.get("note"):
        parts.append(f'<p class="note">{e(attribution["note"])}</p>')
    peak = max(
        [f["current"] for f in attribution["features"]]
        + [f["baseline"] or 0.0 for f in attribution["features"]]
        + [1e-300]
    )
    rows = []
    for entry in attribution["features"]:
        verdict = "DRIFT" if entry["drifted"] else ("ok" if entry["change"] is not None else "-")
        badge = "fail" if entry["drifted"] else "pass" if entry["change"] is not None else "skip"
        base_w = (entry["baseline"] or 0.0) / peak * 100
        cur_w = entry["current"] / peak * 100
        rows.append(
            f'<tr data-attribution="{e(entry["name"])}"><td>{e(entry["name"])}</td>'
            f'<td class="num">{e(fmt(entry["baseline"]))}</td>'
            f'<td class="num">{e(fmt(entry["current"]))}</td>'
            f'<td class="num">{e(fmt(entry["baseline_share"], 3))} → '
            f"{e(fmt(entry['current_share'], 3))}</td>"
            f'<td class="num">{e(fmt(entry["change"], 3))}</td>'
            f'<td><div class="hbar"><span class="base" style="width:{base_w:.1f}%"></span></div>'
            f'<div class="hbar"><span class="cur" style="width:{cur_w:.1f}%"></span></div></td>'
            f'<td><span class="badge {badge}" style="margin:0">{verdict}</span></td></tr>'
        )
    parts.append(
        "<table><thead><tr><th>feature</th><th>training</th><th>current</th>"
        "<th>share of total</th><th>change</th><th></th><th>verdict</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )
    return "".join(parts)


def _feature_html(feature: dict[str, Any]) -> str:
    e = html.escape
    verdict = verdict_of(feature)
    cls = {"DRIFT": "drift", "ok": "ok"}.get(verdict, "skipped")
    badge = {"DRIFT": "fail", "ok": "pass"}.get(verdict, "skip")
    facts = [
        ("test", feature["test"]),
        ("statistic", fmt(feature.get("statistic"))),
        ("threshold", fmt(feature["threshold"])),
    ]
    if feature.get("p_adjusted") is not None:
        facts.append(("adjusted p", fmt(feature["p_adjusted"], 3)))
    facts.append(("method", feature.get("method", "-")))
    missing = feature.get("missing") or {}
    if missing:
        facts.append(
            ("missing", f"{fmt(missing.get('baseline'), 3)} → {fmt(missing.get('current'), 3)}")
        )
    if feature.get("out_of_range") is not None:
        facts.append(("outside training range", fmt(feature["out_of_range"], 3)))
    if feature.get("unseen") is not None:
        facts.append(("unseen categories", fmt(feature["unseen"], 3)))
    body = "".join(f"<span>{e(k)} <b>{e(str(v))}</b></span>" for k, v in facts)
    chart = feature.get("chart")
    svg = _svg(chart) if chart else ""
    note = f'<p class="note">{e(feature["note"])}</p>' if feature.get("note") else ""
    anchor = "f-" + "".join(c if c.isalnum() else "-" for c in feature["name"])
    return (
        f'<article class="feature {cls}" id="{e(anchor)}" data-feature="{e(feature["name"])}">'
        f'<div class="fhead"><h3>{e(feature["name"])}</h3><span class="type">'
        f'{e(feature["type"])}</span><span class="badge {badge}" style="margin:0">'
        f'{verdict}</span></div><div class="facts">{body}</div>{note}{svg}</article>'
    )


def _svg(chart: dict[str, Any]) -> str:
    if chart["kind"] == "histogram":
        return _histogram_svg(chart)
    return _bars_svg(chart)


def _axes(width: int, height: int, left: int, top: int, plot_h: int, peak: float) -> list[str]:
    """The opening of a chart: the SVG element, the base line and gridlines at half and full
    height labelled as shares."""
    out = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="baseline vs current">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
        'stroke="#c6d0db"/>',
    ]
    for tick in (0.5, 1.0):
        y = top + plot_h - tick * plot_h
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#eef1f4"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" fill="#8493a3" '
            f'text-anchor="end">{tick * peak * 100:.0f}%</text>'
        )
    return out


def _histogram_svg(chart: dict[str, Any]) -> str:
    e = html.escape
    width, height, left, bottom, top = 1040, 170, 48, 24, 10
    base, current, edges = chart["baseline"], chart["current"], chart["edges"]
    n = len(base)
    peak = max(max(base, default=0), max(current, default=0)) or 1.0
    plot_w, plot_h = width - left - 10, height - bottom - top
    slot = plot_w / n
    out = _axes(width, height, left, top, plot_h, peak)
    for i in range(n):
        x = left + i * slot
        for j, (values, colour) in enumerate(((base, BASE_COLOUR), (current, CURRENT_COLOUR))):
            h = values[i] / peak * plot_h
            if h <= 0:
                continue
            bar_w = slot * 0.42
            out.append(
                f'<rect x="{x + slot * 0.06 + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}" rx="1.5"/>'
            )
    lo, hi = chart.get("baseline_range", [edges[0], edges[-1]])
    span = (edges[-1] - edges[0]) or 1.0
    for value, label in ((lo, "training min"), (hi, "training max")):
        x = left + (value - edges[0]) / span * plot_w
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#5c6b7a" '
            f'stroke-dasharray="3 3"><title>{label} {fmt(value)}</title></line>'
        )
    for index in (0, n // 2, n):
        x = left + index * slot
        anchor = "start" if index == 0 else "end" if index == n else "middle"
        out.append(
            f'<text x="{x:.1f}" y="{height - 6}" font-size="11" fill="#5c6b7a" '
            f'text-anchor="{anchor}">{e(fmt(edges[index]))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _bars_svg(chart: dict[str, Any]) -> str:
    e = html.escape
    labels, base, current = chart["labels"], chart["baseline"], chart["current"]
    n = max(len(labels), 1)
    width, height, left, bottom, top = 1040, 190, 48, 44, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    slot = plot_w / max(n, 6)
    peak = max(max(base, default=0), max(current, default=0)) or 1.0
    out = _axes(width, height, left, top, plot_h, peak)
    for i, label in enumerate(labels):
        x = left + i * slot
        bar_w = min(slot * 0.36, 40)
        middle = x + slot / 2
        for j, (values, colour) in enumerate(((base, BASE_COLOUR), (current, CURRENT_COLOUR))):
            h = values[i] / peak * plot_h
            out.append(
                f'<rect x="{middle - bar_w + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{max(h, 0):.1f}" fill="{colour}" rx="1.5">'
                f"<title>{e(label)}: {values[i] * 100:.1f}%</title></rect>"
            )
        text = label if len(label) <= 16 else label[:15] + "…"
        out.append(
            f'<text x="{middle:.1f}" y="{top + plot_h + 16}" font-size="11" fill="#344354" '
            f'text-anchor="middle">{e(text)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
