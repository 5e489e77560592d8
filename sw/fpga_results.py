"""The boards' results table in README.md and docs/fpga.md, written from the build reports.

``tridsa build --publish`` stores the build's ``report.json`` as ``benchmarks/fpga/<board>.json`` and
rewrites the table between the ``<!-- fpga-boards -->`` and ``<!-- /fpga-boards -->`` markers (wherever
they are, :func:`tridsa.benchmarks.report.write_section`) from every stored report, and the late endpoints of
the boards that miss their clock between ``<!-- fpga-late -->`` markers, so no figure is copied by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["publish", "render_table", "render_late", "RESULTS", "SECTION", "LATE_SECTION"]

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "fpga"
SECTION = "fpga-boards"
LATE_SECTION = "fpga-late"


def _number(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _row(report: dict) -> str:
    cfg, res = report["config"], report["resources"]
    spread = report.get("fmax_spread")
    fmax = f"**{_number(report['fmax_mhz'])}**" + (
        f" ({_number(spread['min'])} / {_number(spread['median'])} / {_number(spread['max'])} over {spread['runs']} seeds"
        + (f"; {spread['failed']} more did not place" if spread.get("failed") else "") + ")"
        if spread and spread["runs"] + spread.get("failed", 0) > 1 else "")
    macs = f"{report['macs_per_cycle_int8']}" + (f" / {report['macs_per_cycle_int4']}" if report["macs_per_cycle_int4"] else " / -")
    gmacs = f"{_number(report['gmacs_int8'], 2)}" + (f" / {_number(report['gmacs_int4'], 2)}" if report.get("gmacs_int4") else " / -")

    def use(kind):
        r = res.get(kind, {})
        return f"{_number(r.get('used'))} / {_number(r.get('available'))}" if r.get("available") else "-"
    shape = f"{cfg['rows']}x{cfg['cols']} {'INT4+INT8' if cfg['int4'] else 'INT8'}"
    return (f"| {report['board']} ({report['device']}) | {shape} | {macs} | {gmacs} | {fmax} | {_number(report['target_mhz'])} "
            f"| {'yes' if report['timing_met'] else '**no**'} | {use('LUT')} | {use('FF')} | {use('DSP')} | {use('BRAM')} |")


def render_table(reports) -> str:
    """The Markdown table of ``reports`` (dicts as :func:`tridsa.sw.build.build` returns them)."""
    lines = ["| board | array | MACs/cycle INT8 / INT4 | GMAC/s INT8 / INT4 | Fmax MHz (min / median / max) "
             "| target MHz | timing met | LUT | FF | DSP | BRAM |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(r) for r in reports]
    return "\n".join(lines)


def render_late(reports) -> str:
    """For each of ``reports`` that misses its clock and has ``late_endpoints`` (:func:`tridsa.sw.build.late_endpoints`):
    how many register inputs arrive after the clock period, and the modules with the most."""
    parts = []
    for report in reports:
        late = report.get("late_endpoints")
        if report["timing_met"] or not late:
            continue
        parts.append(f"{report['board']} at {_number(report['target_mhz'])} MHz (nextpnr seed of the bitstream): "
                     f"{late['late']:,} of {late['endpoints']:,} register inputs arrive later than "
                     f"{late['period_ns']} ns after the clock edge. The modules with the most:\n")
        parts.append("| module | input | late endpoints | latest arrival ns |\n|---|---|---|---|")
        parts += [f"| `{row['name']}` | {row['kind']} | {row['endpoints']:,} | {row['worst_ns']} |" for row in late["by_module"]]
        parts.append("")
    if parts:
        return "\n".join(parts)
    missed = [r["board"] for r in reports if not r["timing_met"]]
    return (f"No late-endpoint report stored for {', '.join(missed)}." if missed
            else "Every published board meets its clock.")


def _stored_reports() -> list:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]


def publish(report: dict) -> Path:
    """Store ``report`` as the board's result and rewrite the table from every stored one; returns the file."""
    from ..benchmarks.report import write_section
    RESULTS.mkdir(parents=True, exist_ok=True)
    stored = {k: v for k, v in report.items() if k != "files"}
    path = RESULTS / f"{report['board']}.json"
    path.write_text(json.dumps(stored, indent=2) + "\n")
    note = ("LUT: LUT4 on ECP5, logic cells on iCE40. GMAC/s at the target clock when timing is met, else at the "
            "achieved Fmax; Fmax spread over nextpnr seeds (`tridsa build --seeds N`). Written by "
            "`tridsa build --publish` from `benchmarks/fpga/*.json`.")
    reports = _stored_reports()
    write_section(SECTION, f"{render_table(reports)}\n\n{note}")
    write_section(LATE_SECTION, render_late(reports) + "\n\nWritten by `tridsa build --publish` from the "
                  "`late_endpoints` of `benchmarks/fpga/*.json` (nextpnr's `--detailed-timing-report`; D: data, "
                  "CE: clock enable, LSR: reset).")
    return path
