"""A check result as a table for people and as JUnit XML for CI test reports."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def table(result: dict[str, Any]) -> list[str]:
    rows = [("gate", "value", "bound", "CI", "verdict")]
    for g in result["gates"]:
        ci = g.get("ci")
        rows.append(
            (
                g["name"] + (f" ({g['metric']})" if g.get("metric") else ""),
                _num(g.get("value")),
                g.get("bound") or "-",
                f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-",
                g["verdict"].upper(),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"  {g['name']}: {g['note']}" for g in result["gates"] if g.get("note")]
    return lines


def junit(result: dict[str, Any], on_inconclusive: list[str], seconds: float | None = None) -> str:
    """JUnit XML: a <testsuites> root holding one <testsuite> for the release check, with one
    testcase per gate, or per slice for a slices gate that judged slices. Test identities are
    unique: the classname says the model, version and gate type (`churn.v3.compare`), the name
    the gate and its metric (`compare [roc_auc]`, `by-region [accuracy] slice=eu`), numbered
    when two gates would still share one. ``on_inconclusive`` is each gate's policy, in gate
    order: an inconclusive gate is a failure or a skip as its spec says. Each case's `time` is
    the gate's own when the result records one, else 0; the suite's is ``seconds`` (the whole
    check) when given, else their sum."""
    from xml.etree import ElementTree as ET

    gates = result["gates"]
    version = result.get("version")
    model = str(result["model"]) + (f".v{version}" if version is not None else "")
    suite = ET.Element("testsuite", name=f"release {result['release']}")
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    total_time = 0.0
    seen: dict[tuple[str, str], int] = {}

    def case(classname: str, name: str, verdict: str, message: str, policy: str, t: float) -> None:
        seen[(classname, name)] = seen.get((classname, name), 0) + 1
        if seen[(classname, name)] > 1:
            name = f"{name} #{seen[(classname, name)]}"
        element = ET.SubElement(
            suite, "testcase", name=name, classname=classname, time=_junit_time(t)
        )
        counts["tests"] += 1
        if verdict in ("fail", "invalid") or (verdict == "inconclusive" and policy == "fail"):
            counts["failures"] += 1
            ET.SubElement(element, "failure", message=message, type=verdict).text = message
        elif verdict != "pass":
            counts["skipped"] += 1
            ET.SubElement(element, "skipped", message=message)

    for gate, policy in zip(gates, on_inconclusive, strict=True):
        classname = f"{model}.{gate['type']}"
        name = str(gate["name"])
        metric = gate.get("metric")
        if metric and str(metric) not in name:
            name += f" [{metric}]"
        took = float(gate.get("seconds") or 0.0)
        total_time += took
        slices = [d for d in gate.get("details") or [] if "slice" in d]
        if gate["type"] == "slices" and slices:
            for d in slices:
                case(
                    classname,
                    f"{name} slice={d['slice']}",
                    str(d["verdict"]),
                    _junit_message(d, gate.get("bound")) + f" ({d.get('rows', 0)} rows)",
                    policy,
                    took / len(slices),
                )
            continue
        case(
            classname,
            name,
            str(gate["verdict"]),
            _junit_message(gate, gate.get("bound")),
            policy,
            took,
        )
    return _junit_document(suite, counts, seconds if seconds is not None else total_time, result)


def _junit_time(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}"


def _junit_message(part: dict[str, Any], bound: Any) -> str:
    message = f"{part['verdict']}: value {_num(part.get('value'))}, bound {bound}"
    if part.get("ci"):
        message += f", CI [{part['ci'][0]:.4g}, {part['ci'][1]:.4g}]"
    if part.get("note"):
        message += f"; {part['note']}"
    return message


def _junit_document(
    suite: Any, counts: dict[str, int], seconds: float, event: dict[str, Any]
) -> str:
    """The suite's counts and times, under a <testsuites> root that sums them (what CI report
    readers, GitLab's and the GitHub actions', expect at the top)."""
    from xml.etree import ElementTree as ET

    attributes = {
        "tests": str(counts["tests"]),
        "failures": str(counts["failures"]),
        "errors": "0",
        "skipped": str(counts["skipped"]),
        "time": _junit_time(seconds),
    }
    for key, value in attributes.items():
        suite.set(key, value)
    if event.get("time"):
        suite.set("timestamp", str(event["time"]))
    root = ET.Element("testsuites", {"name": "mlopsctl release", **attributes})
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def hardware_table(rows: list[dict[str, Any]]) -> list[str]:
    """The hosts side by side: one line per host x batch size x concurrency."""
    header = (
        "host",
        "batch",
        "conc",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "CI",
        "pred/s",
        "$/1k",
        "verdict",
    )
    lines = [header]
    for r in rows:
        ci = r.get("ci")
        cost = r.get("cost_per_1000")
        lines.append(
            (
                str(r["host"]),
                str(r.get("batch_size", "-")),
                str(r.get("concurrency", "-")),
                _ms(r.get("p50_ms")),
                _ms(r.get("p95_ms")),
                _ms(r.get("p99_ms")),
                f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "-",
                f"{r['throughput']:.1f}" if r.get("throughput") is not None else "-",
                f"{cost:.4g}" if isinstance(cost, float) else "-",
                str(r["verdict"]).upper(),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]


def _ms(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-"


# -- A/B tests (release ab) -----------------------------------------------------------------------


def _pct(value: Any) -> str:
    return f"{value:+.2%}" if isinstance(value, float) else "-"


def _pair(pair: Any) -> str:
    if not pair or None in pair:
        return "-"
    return f"[{pair[0]:.4g}, {pair[1]:.4g}]"


def ab_lines(event: dict[str, Any]) -> list[str]:
    """An ``ab`` event for people: per gate the arms, the SRM test and a line per metric."""
    lines = [
        f"release {event['release']} A/B: {event['decision'].upper()} "
        f"({event['model']}:{event['version']}, at {event['at']})"
    ]
    for gate in event["gates"]:
        srm = gate["srm"]
        lines.append(f"{gate['gate']}: {gate['decision'].upper()}: {gate['reason']}")
        lines.append(
            f"  window {gate['window']['since']} .. {gate['window']['until']}, unit "
            f"{gate['unit']}, {gate['mode']}, alpha {gate['alpha']:g}"
        )
        for side in ("control", "treatment"):
            arm = gate["arms"][side]
            lines.append(
                f"  {side:<9} v{arm['version']}: {arm['units']} units ({arm['analysed']} "
                f"analysed), {arm['exposures']} predictions, {arm['outcomes']} outcomes"
            )
        lines.append(
            f"  SRM: treatment share {_num(srm['observed_share'])} vs "
            f"{srm['expected_share']:.4g} expected, chi2 {srm['chi2']:.3g}, p {srm['p']:.3g}"
            + (" MISMATCH" if srm["mismatch"] else "")
        )
        rows = [("metric", "control", "treatment", "delta", "lift", "interval", "p", "verdict")]
        for m in gate["metrics"]:
            interval = m.get("sequence") if gate["mode"] == "sequential" else m.get("ci")
            p = m.get("p_sequential") if gate["mode"] == "sequential" else m.get("p")
            rows.append(
                (
                    f"{m['name']} ({m['role']})",
                    _num(m.get("control")),
                    _num(m.get("treatment")),
                    _num(m.get("delta")),
                    _pct(m.get("relative")),
                    _pair(interval),
                    _num(p),
                    str(m["verdict"]).upper(),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines += [f"  {m['name']}: {m['note']}" for m in gate["metrics"] if m.get("note")]
        fb = gate["feedback"]
        if fb.get("duplicates") or fb.get("unknown"):
            lines.append(
                f"  feedback: {fb['feedback_rows']} outcomes, {fb['duplicates']} duplicate(s) "
                f"(latest kept), {fb['unknown']} for request ids not in the window's logs"
            )
        if gate.get("mixed_units"):
            lines.append(f"  {gate['mixed_units']} unit(s) seen on both arms: left out")
        if gate.get("pending_units"):
            lines.append(
                f"  {gate['pending_units']} unit(s) wait for their outcome window to close"
            )
    return lines


def ab_junit(event: dict[str, Any], on_inconclusive: list[str]) -> str:
    """JUnit XML in release check's shape (a <testsuites> root, one suite): per gate a testcase
    for the sample ratio, one per metric and one for the decision (invalid and fail are
    failures; inconclusive as the gate's on_inconclusive says)."""
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name=f"release {event['release']} ab")
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    classname = f"{event['model']}.v{event['version']}.ab"

    def case(name: str, verdict: str, message: str, policy: str) -> None:
        counts["tests"] += 1
        element = ET.SubElement(suite, "testcase", name=name, classname=classname, time="0.000")
        if verdict in ("fail", "invalid") or (verdict == "inconclusive" and policy == "fail"):
            counts["failures"] += 1
            ET.SubElement(element, "failure", message=message, type=verdict).text = message
        elif verdict != "pass":
            counts["skipped"] += 1
            ET.SubElement(element, "skipped", message=message)

    for gate, policy in zip(event["gates"], on_inconclusive, strict=True):
        srm = gate["srm"]
        case(
            f"{gate['gate']} [sample ratio]",
            "fail" if srm["mismatch"] else "pass",
            f"treatment share {_num(srm['observed_share'])}, expected "
            f"{srm['expected_share']:.4g}, p {srm['p']:.3g}",
            policy,
        )
        for m in gate["metrics"]:
            interval = m.get("sequence") if gate["mode"] == "sequential" else m.get("ci")
            case(
                f"{gate['gate']} [{m['name']}]",
                str(m["verdict"]),
                f"{m['verdict']}: delta {_num(m.get('delta'))}, interval {_pair(interval)}, "
                f"{m['bound_text']}" + (f"; {m['note']}" if m.get("note") else ""),
                policy,
            )
        case(str(gate["gate"]), gate["decision"], gate["reason"], policy)
    return _junit_document(suite, counts, 0.0, event)


_AB_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;
color:#1d2733}main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:18px 0 6px}
.sub{color:#5c6b7a;font-size:13px;margin:2px 0}
.badge{display:inline-block;margin-left:10px;padding:2px 10px;border-radius:10px;font-size:12px;
font-weight:700;color:#fff;vertical-align:3px}
.pass{background:#12b76a}.fail{background:#d92d20}.inconclusive{background:#f79009}
.invalid{background:#6c2bd9}
section.gate{background:#fff;border-radius:10px;padding:16px 18px;margin:14px 0;
box-shadow:0 1px 2px rgba(16,24,40,.08)}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eef1f4;font-size:13px}
th{background:#f8fafc;color:#5c6b7a;font-weight:600}
td.num{font-variant-numeric:tabular-nums}
.facts{display:flex;flex-wrap:wrap;gap:4px 20px;font-size:13px;color:#344354}
.note{color:#8a5a00;background:#fff6e0;border-radius:6px;padding:6px 10px;margin:6px 0;
font-size:13px}.legend{font-size:12px;color:#5c6b7a}
svg{display:block;max-width:100%;height:auto}
"""


def ab_html(event: dict[str, Any]) -> str:
    """A self-contained page: the decision, and per gate the arms, the sample-ratio test, every
    metric with its interval, and the primary metric's interval over time."""
    import html

    e = html.escape
    decision = str(event["decision"])
    title = f"A/B {event['release']}: {event['model']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_AB_CSS}</style></head><body><main>",
        '<section id="summary">',
        f'<h1>{e(title)}<span class="badge {e(decision)}" id="decision" '
        f'data-decision="{e(decision)}">{e(decision.upper())}</span></h1>',
        f'<p class="sub">candidate version {event["version"]}, analysed at {e(event["at"])} '
        f"by {e(str(event.get('actor') or '-'))}; spec {e(str(event.get('spec') or '-'))}</p>",
        "</section>",
    ]
    for gate in event["gates"]:
        parts.append(_gate_html(gate))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _gate_html(gate: dict[str, Any]) -> str:
    import html

    e = html.escape
    srm = gate["srm"]
    decision = str(gate["decision"])
    out = [
        f'<section class="gate" data-gate="{e(gate["gate"])}">',
        f'<h2>{e(gate["gate"])}<span class="badge {e(decision)}">{e(decision.upper())}</span></h2>',
        f'<p class="sub" data-reason="1">{e(gate["reason"])}</p>',
        '<div class="facts">',
        f"<span>window <b>{e(gate['window']['since'])}</b> .. <b>{e(gate['window']['until'])}"
        "</b></span>",
        f"<span>unit <b>{e(str(gate['unit']))}</b></span>",
        f"<span>mode <b>{e(gate['mode'])}</b>, alpha <b>{gate['alpha']:g}</b></span>",
    ]
    if gate.get("outcome_window"):
        out.append(f"<span>outcome window <b>{e(gate['outcome_window'])}</b></span>")
    if gate.get("cuped"):
        out.append(f"<span>CUPED on <b>{e(gate['cuped'])}</b></span>")
    out.append("</div>")
    out.append(
        "<table><tr><th>arm</th><th>version</th><th>weight</th><th>units</th>"
        "<th>analysed</th><th>predictions</th><th>outcomes</th></tr>"
    )
    for side in ("control", "treatment"):
        arm = gate["arms"][side]
        out.append(
            f'<tr data-arm="{side}"><td>{side}</td><td class="num">{arm["version"]}</td>'
            f'<td class="num">{gate["weights"][side]:g}</td>'
            f'<td class="num">{arm["units"]:,}</td><td class="num">{arm["analysed"]:,}</td>'
            f'<td class="num">{arm["exposures"]:,}</td><td class="num">{arm["outcomes"]:,}</td>'
            "</tr>"
        )
    out.append("</table>")
    out.append(
        f'<p class="sub" id="srm-{e(gate["gate"])}" data-srm="'
        f'{"mismatch" if srm["mismatch"] else "ok"}">sample ratio: treatment share '
        f"{_num(srm['observed_share'])}, expected {srm['expected_share']:.4g}; chi-square "
        f"{srm['chi2']:.3g}, p {srm['p']:.3g} (mismatch below {srm['alpha']:g})</p>"
    )
    sequential = gate["mode"] == "sequential"
    out.append(
        "<table><tr><th>metric</th><th>role</th><th>control</th><th>treatment</th>"
        f"<th>delta</th><th>lift</th><th>{1 - gate['alpha']:.0%} CI (fixed)</th>"
        "<th>always-valid</th><th>p</th>"
        "<th>bound</th><th>verdict</th></tr>"
    )
    for m in gate["metrics"]:
        verdict = str(m["verdict"])
        p = m.get("p_sequential") if sequential else m.get("p")
        out.append(
            f'<tr data-metric="{e(m["name"])}" data-verdict="{e(verdict)}">'
            f"<td>{e(m['name'])} <small>{e(m['metric'])}</small></td><td>{e(m['role'])}</td>"
            f'<td class="num">{_num(m.get("control"))}</td>'
            f'<td class="num">{_num(m.get("treatment"))}</td>'
            f'<td class="num">{_num(m.get("delta"))}</td>'
            f'<td class="num">{_pct(m.get("relative"))}</td>'
            f'<td class="num">{_pair(m.get("ci"))}</td>'
            f'<td class="num">{_pair(m.get("sequence"))}</td><td class="num">{_num(p)}</td>'
            f"<td>{e(m['bound_text'])}</td>"
            f'<td><span class="badge {e(verdict)}">{e(verdict.upper())}</span></td></tr>'
        )
    out.append("</table>")
    for m in gate["metrics"]:
        facts = []
        if m.get("required_units"):
            facts.append(
                f"{m['name']}: {m['required_units']:,} units needed for mde {m['mde']:g} "
                f"(power now {_num(m.get('power'))})"
            )
        if m.get("variance_reduction") is not None:
            facts.append(f"{m['name']}: CUPED cut the variance by {m['variance_reduction']:.0%}")
        if m.get("note"):
            facts.append(f"{m['name']}: {m['note']}")
        out += [f'<p class="note">{e(f)}</p>' for f in facts]
    notes = []
    if gate.get("mixed_units"):
        notes.append(f"{gate['mixed_units']} unit(s) seen on both arms were left out")
    if gate.get("pending_units"):
        notes.append(f"{gate['pending_units']} unit(s) wait for their outcome window to close")
    fb = gate["feedback"]
    if fb.get("unknown") or fb.get("duplicates"):
        notes.append(
            f"{fb['unknown']} outcome(s) for request ids not in the window's logs; "
            f"{fb['duplicates']} duplicate outcome(s) (the latest kept)"
        )
    out += [f'<p class="note">{e(n)}</p>' for n in notes]
    if gate["metrics"]:
        out.append(_interval_svg(gate, gate["metrics"][0]))
    out.append("</section>")
    return "\n".join(out)


def _interval_svg(gate: dict[str, Any], primary: dict[str, Any]) -> str:
    """The primary metric's difference at each look with its fixed interval (light band) and
    the always-valid sequence so far (dark band), against zero and the bound."""
    import html

    looks = [
        lk
        for lk in gate.get("looks") or []
        if lk.get("delta") is not None and None not in (lk.get("ci") or [None])
    ]
    width, height, left, right, top, bottom = 760, 260, 64, 16, 16, 40
    name = html.escape(primary["name"])
    head = (
        f'<svg viewBox="0 0 {width} {height}" role="img" data-chart="interval" '
        f'aria-label="{name}: treatment - control over time">'
    )
    if not looks:
        return (
            head + f'<text x="{left}" y="{height / 2}" font-size="13" fill="#5c6b7a">no look '
            "with enough units on both arms yet</text></svg>"
        )
    seq = [lk.get("sequence") or [None, None] for lk in looks]
    values = [0.0, float(primary.get("bound") or 0.0)]
    for lk, s in zip(looks, seq, strict=True):
        values += [lk["delta"], *lk["ci"], *[v for v in s if v is not None]]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 1.0
    low, high = low - pad, high + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / len(looks))

    def y(v: float) -> float:
        return top + plot_h * (high - v) / (high - low)

    out = [head, f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfcfd"/>']
    for tick in (low + pad, (low + high) / 2, high - pad):
        out.append(
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#5c6b7a">{tick:.3g}</text>'
        )
    band = 0.6 * plot_w / len(looks)
    for i, (lk, s) in enumerate(zip(looks, seq, strict=True)):
        lo, hi = lk["ci"]
        out.append(
            f'<rect x="{x(i) - band / 2:.1f}" y="{y(hi):.1f}" width="{band:.1f}" '
            f'height="{max(1.0, y(lo) - y(hi)):.1f}" fill="#c9dcf0" data-look="{i}"/>'
        )
        if s[0] is not None and s[1] is not None:
            s_lo, s_hi = max(s[0], low), min(s[1], high)
            out.append(
                f'<rect x="{x(i) - band / 6:.1f}" y="{y(s_hi):.1f}" width="{band / 3:.1f}" '
                f'height="{max(1.0, y(s_lo) - y(s_hi)):.1f}" fill="#2f5f8f" opacity="0.8"/>'
            )
    points = " ".join(f"{x(i):.1f},{y(lk['delta']):.1f}" for i, lk in enumerate(looks))
    out.append(f'<polyline points="{points}" fill="none" stroke="#e8873a" stroke-width="2"/>')
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" '
        'stroke="#1d2733" stroke-width="1"/>'
    )
    bound = float(primary.get("bound") or 0.0)
    if primary.get("lower_is_better"):
        bound = -bound
    if bound:
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(bound):.1f}" y2="{y(bound):.1f}" '
            'stroke="#d92d20" stroke-dasharray="5 4"/>'
        )
    first, last = looks[0]["time"], looks[-1]["time"]
    out.append(
        f'<text x="{left}" y="{height - 12}" font-size="11" fill="#5c6b7a">{html.escape(first)}'
        f'</text><text x="{left + plot_w}" y="{height - 12}" font-size="11" text-anchor="end" '
        f'fill="#5c6b7a">{html.escape(last)}</text>'
    )
    out.append("</svg>")
    out.append(
        f'<p class="legend">{name}, treatment - control at each look ({len(looks)}): the line; '
        f"light band: that look's fixed-horizon {1 - gate['alpha']:.0%} interval (not valid "
        "when peeking); dark band: "
        "the always-valid sequence at that look; dashed: the bound</p>"
    )
    return "\n".join(out)
