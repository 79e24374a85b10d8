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


def junit(result: dict[str, Any], on_inconclusive: list[str]) -> str:
    """One testcase per gate. ``on_inconclusive`` is each gate's policy, in gate order: an
    inconclusive gate is a failure or a skip as its spec says."""
    from xml.etree import ElementTree as ET

    gates = result["gates"]
    suite = ET.Element(
        "testsuite",
        name=f"release {result['release']}",
        tests=str(len(gates)),
        timestamp=result["time"],
    )
    failures = skipped = 0
    for gate, policy in zip(gates, on_inconclusive, strict=True):
        case = ET.SubElement(
            suite, "testcase", name=gate["name"], classname=f"{result['model']}.{gate['type']}"
        )
        message = f"{gate['verdict']}: value {_num(gate.get('value'))}, bound {gate.get('bound')}"
        if gate.get("ci"):
            message += f", CI [{gate['ci'][0]:.4g}, {gate['ci'][1]:.4g}]"
        if gate.get("note"):
            message += f"; {gate['note']}"
        verdict = gate["verdict"]
        if verdict == "fail" or (verdict == "inconclusive" and policy == "fail"):
            failures += 1
            ET.SubElement(case, "failure", message=message, type=verdict).text = message
        elif verdict != "pass":
            skipped += 1
            ET.SubElement(case, "skipped", message=message)
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


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
